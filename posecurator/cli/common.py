"""Argument groups and helpers shared by the CLI commands (`bench`, `vae-bench`, `train`)."""

from __future__ import annotations


from posecurator.errors import DataError, PoseCuratorError

# The lifter preset of every command that trains a lifter (train, add, bench, vae-bench, demo), so
# that their results compare; each command says which preset it used.
DEFAULT_LIFTER_PRESET = "fast"

# = posecurator.train.trainer.VAL_CUTS (not imported here: it would load torch for --help; a test keeps them equal)
VAL_CUTS = ("clip", "neighbourhood")


def add_val_cut_argument(s, *, judged: str = "the best epoch") -> None:
    """``--val-cut``: which training clips form the validation part (TrainConfig.val_cut)."""
    s.add_argument("--val-cut", choices=VAL_CUTS, default=None,
                   help="which clips the validation part holds: clip = random clips (default), neighbourhood = the "
                        "clips nearest one seeded clip in mean pose, a held-out region of pose space that carries a "
                        f"shift. It judges {judged}")

SPLIT_HELP = ("hdm05-xsub | bandai-to-hdm05 | hdm05-to-cmu | bandai-to-cmu | coco-2d (2D only: PCK; --train replaces its "
              "training set) | bandai-to-hdm05-uda | hdm05-to-coco (with unlabeled target 2D: the adapt rows use it) "
              "| custom (with --train/--test)")


def add_split_arguments(s, *, default_settings: list[str], default_methods: list[str], default_preset: str = "fast") -> None:
    """The arguments every benchmark command takes: a split (or --train/--test), seeds, 2D
    settings, methods, the lifter's training preset or config, the output folder."""
    s.add_argument("split", help=SPLIT_HELP)
    s.add_argument("--data", help="data root (default ../shared/data)")
    s.add_argument("--train", help="training (source) file/folder, any supported format")
    s.add_argument("--test", help="test (target) file/folder")
    s.add_argument("--mapping", help="mapping file for --train/--test skeletons")
    s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    s.add_argument("--settings", nargs="+", default=None, choices=["gt", "noisy"],
                   help=f"2D settings (default {' '.join(default_settings)}; coco-2d: gt)")
    s.set_defaults(default_settings=list(default_settings))
    s.add_argument("--methods", nargs="+", default=default_methods)
    s.add_argument("--preset", default=default_preset, help=f"lifter training preset (default {default_preset})")
    s.add_argument("--config", help="JSON file of TrainConfig fields (overrides --preset)")


def split_from_args(args, command: str):
    """The Split named on the command line, or a custom one from --train/--test."""
    from posecurator.pipelines.splits import custom_split, resolve_split

    if args.train and not args.test and args.split not in ("custom",):
        return resolve_split(args.split, args.data).with_train(args.train, mapping=args.mapping)
    if args.train or args.test or args.split == "custom":
        if not (args.train and args.test):
            raise PoseCuratorError(f"{command}: give both --train and --test (or a split name without them)")
        return custom_split(args.train, args.test, mapping=args.mapping)
    return resolve_split(args.split, args.data)


def settings_from_args(args, split) -> list[str]:
    """The 2D settings to run: --settings, else the split's own default, else the command's."""
    if args.settings:
        return list(args.settings)
    return list(split.settings) if split.settings else list(args.default_settings)


def load_train_config(path):
    """A TrainConfig from a YAML or JSON file of its fields (the others at their defaults),
    validated (:mod:`posecurator.cli.configs`); a bad file is a one-line DataError naming the key."""
    from posecurator.cli.configs import build, read_config_file
    from posecurator.train.trainer import TrainConfig

    return build(TrainConfig, read_config_file(path), path=path)


def load_add_config(path):
    """An ADDConfig from a YAML or JSON file of its fields, validated like :func:`load_train_config`."""
    from posecurator.cli.configs import build, read_config_file
    from posecurator.pipelines.add import ADDConfig

    data = read_config_file(path)
    build(ADDConfig, data, path=path)  # the checks, with the key named
    try:
        return ADDConfig.from_dict(data)  # the pipeline's own reading (nested option objects)
    except (PoseCuratorError, TypeError, ValueError) as e:
        raise DataError(path, f"bad option value: {e}") from None
