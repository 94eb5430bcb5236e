"""CLI commands of the VAE difficulty method (paper 002): ``difficulty`` and ``vae-bench``.

Loaded by :mod:`posecurator.cli.main`, which calls :func:`register`. The sampling itself is used
through ``posecurator train DATASET --sampler hard:0.33 --scores OUT/scores.npz`` and
``posecurator bench SPLIT --methods vae_all random33 vae_hard33 vae_curriculum``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from posecurator.cli.common import add_split_arguments, load_train_config, settings_from_args, split_from_args
from posecurator.errors import DataError, PoseCuratorError

DIFFICULTY_EXAMPLES = """\
  posecurator difficulty ../shared/data/hdm05 -o diff-hdm05                    # 3D VAE, 25 bins
  posecurator difficulty bandai.pcs -o diff-bandai --bins 10 --seed 1
  posecurator difficulty ../shared/data/hdm05 -o diff-hdm05-insample --crossfit 0  # one VAE scores its own training set
  posecurator difficulty ../shared/data/hdm05 -o diff-hdm05 --engine ray --workers 5  # the 5 fold VAEs side by side
  posecurator difficulty ../shared/data/coco/person_keypoints_train2017_subset2155.json -o diff-coco --space 2d \\
      --heldout ../shared/data/coco/person_keypoints_val2017_subset2213.json     # 2D, scores a held-out set too
  posecurator train bandai.pcs -o runs/hard --sampler hard:0.33 --scores diff-bandai/scores.npz
"""

VAE_BENCH_EXAMPLES = """\
  posecurator vae-bench bandai-to-hdm05 --seeds 0 1 2                           # GT 2D, preset fast, 5-fold cross-fitted scores
  posecurator vae-bench hdm05-xsub --crossfit 0 -o bench-out/vae-xsub-insample    # the old in-sample VAE scores
  posecurator vae-bench bandai-to-hdm05 --engine ray --workers 5                 # the 5 fold VAEs side by side (same results)
  posecurator vae-bench bandai-to-cmu --settings gt noisy -o bench-out/vae-b2c
  posecurator vae-bench custom --train source_folder/ --test target_folder/
  posecurator bench bandai-to-hdm05 --methods vae_all random33 vae_hard33 vae_curriculum --settings gt   # table only
"""


CROSSFIT_HELP = ("out-of-sample scores: K pose VAEs, each trained on K-1 folds of whole clips, each scoring the "
                 "fold it never saw (default 5; each fold VAE costs about what one VAE costs); 0 or 1 = in sample: "
                 "one VAE trained on the whole set scores it (poses it trained on score lower)")


def _crossfit_arg(value: int) -> int | None:
    if value < 0:
        raise PoseCuratorError(f"--crossfit must be >= 0 (0 or 1 = in sample, K >= 2 folds), got {value}")
    return None if value <= 1 else value


def register(sub, add_parser, commands: dict) -> None:
    """Add ``difficulty`` and ``vae-bench`` to the subparsers ``sub`` (``add_parser(sub, name,
    help, examples)`` makes a subparser with ``-q``) and their handlers to ``commands``."""
    s = add_parser(sub, "difficulty", "Score every pose by a pose VAE's reconstruction error, cut the scores into "
                   "equal-size bins, and write scores, per-bin statistics, the bin-to-bin EvalPose heatmap and galleries.",
                   DIFFICULTY_EXAMPLES)
    s.add_argument("dataset", help="dataset folder or any importable file/folder (BVH, ASF/AMC, npz, COCO json)")
    s.add_argument("-o", "--output", required=True, help="output folder (scores.npz, bins.json, *.png, vae/)")
    s.add_argument("--bins", type=int, default=25, help="number of equal-size bins (default 25)")
    s.add_argument("--space", choices=["3d", "2d"], default=None,
                   help="3d (default when the data has 3D) or 2d (default for 2D-only data such as COCO)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--config", help="JSON file of pose VAE options (VAEConfig fields: epochs, hidden, latent_dim, "
                                    "lambda_kl, max_samples, ...)")
    s.add_argument("--epochs", type=int, default=None, help="VAE epochs (default: about 2 million pose passes)")
    s.add_argument("--heldout", help="a second data set scored by the same VAE (never trained on); report in OUT/heldout/")
    s.add_argument("--mapping", help="mapping file for a skeleton posecurator has never seen")
    s.add_argument("--gallery", type=int, default=6, help="easiest / hardest poses drawn (default 6 each)")
    s.add_argument("--min-keypoints", type=int, default=8,
                   help="2D only: leave out poses with fewer labelled joints (default 8; 0 keeps all)")
    s.add_argument("--crossfit", type=int, default=5, metavar="K", help=CROSSFIT_HELP)
    from posecurator.cli.commands_add import _add_engine_arguments

    _add_engine_arguments(s, what="the --crossfit fold VAEs train (each seeded by the config alone)")
    commands["difficulty"] = cmd_difficulty

    s = add_parser(sub, "vae-bench", "The VAE difficulty-sampling experiment on a split: all of the source / a random third / the VAE-hardest "
                   "third / VAE curriculum x seeds, with EvalPose and the per-bin accuracy on the target (Fig. 4).", VAE_BENCH_EXAMPLES)
    add_split_arguments(s, default_settings=["gt"], default_methods=["vae_all", "random33", "vae_hard33", "vae_curriculum"])
    s.add_argument("--vae-config", help="JSON file of pose VAE options for the methods' VAE")
    s.add_argument("--bins", type=int, default=25)
    s.add_argument("-o", "--output", default=None, help="output folder (default bench-out/vae-SPLIT)")
    s.add_argument("--crossfit", type=int, default=5, metavar="K",
                   help=CROSSFIT_HELP + "; the target is scored by the mean of the K fold VAEs (in sample: by the one VAE)")
    _add_engine_arguments(s, what="the --crossfit fold VAEs train (each seeded by the config alone)")
    commands["vae-bench"] = cmd_vae_bench


def _read_json_object(path: str, what: str) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as e:
        raise DataError(path, f"cannot read {what}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(path, f"{what} is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise DataError(path, f"{what} must be a JSON object of option names and values")
    return doc


def _vae_options(path: str | None, epochs: int | None = None) -> dict:
    from posecurator.train.vae_trainer import VAEConfig

    options = _read_json_object(path, "pose VAE config") if path else {}
    known = set(VAEConfig.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise DataError(path, f"unknown pose VAE option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if epochs is not None:
        options["epochs"] = epochs
    try:
        VAEConfig.from_dict(options)  # validate now, with the file named in the error
    except (TypeError, ValueError) as e:
        raise DataError(path, f"bad pose VAE config: {e}") from None
    return options


def cmd_difficulty(args) -> None:
    from posecurator.pipelines.vae_sampling import run_difficulty
    from posecurator.report.plots import render_difficulty_plots

    if args.bins < 1:
        raise PoseCuratorError(f"--bins must be >= 1, got {args.bins}")
    crossfit = _crossfit_arg(args.crossfit)
    if args.engine != "local" and crossfit is None:
        raise PoseCuratorError(f"--engine {args.engine} trains the fold VAEs of --crossfit K side by side; with "
                               f"--crossfit {args.crossfit} one VAE trains here (use --engine local)")
    options = _vae_options(args.config, args.epochs)
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr))
    from posecurator.cli.commands_add import _engine
    from posecurator.cli.commands_report import recorded_command, write_run_report
    from posecurator.scoring.crossfit import fold_engine

    # the pipeline does not pass an engine down: the cross-fit scorer takes it from fold_engine
    with recorded_command(args.output, args), _engine(args) as engine, fold_engine(engine if engine.parallel else None):
        res = run_difficulty(args.dataset, out_dir=args.output, k=args.bins, space=args.space, seed=args.seed,
                             vae_config=options, heldout=args.heldout, mapping=args.mapping, n_gallery=args.gallery,
                             min_keypoints=args.min_keypoints, crossfit=crossfit,
                             progress=not args.quiet, log=log, render=render_difficulty_plots)
    rep = res["report"]
    q = rep["score_quantiles"]
    print(f"scored {rep['n_scored']} of {res['n_poses']} poses ({res['space']} VAE, {res['scoring']}); median score {q['q50']:.4g} "
          f"(10%: {q['q10']:.4g}, 90%: {q['q90']:.4g}); {res['k']} bins -> {args.output}")
    for name in ("scores", "bins", "heatmap", "histogram", "gallery", "bins_gallery"):
        if name in rep["files"]:
            print(f"  {name:<12} {Path(args.output) / rep['files'][name]}")
    if "heldout" in res:
        print(f"  held-out set: {res['heldout']['n_scored']} poses scored -> {Path(args.output) / 'heldout'}")
    write_run_report(args.output, args, kind="difficulty")


def cmd_vae_bench(args) -> None:
    from posecurator.pipelines.bench_vae import run_vae_experiment
    from posecurator.report.plots import render_vae_experiment_plots

    crossfit = _crossfit_arg(args.crossfit)
    if args.engine != "local" and crossfit is None:
        raise PoseCuratorError(f"--engine {args.engine} trains the fold VAEs of --crossfit K side by side; with "
                               f"--crossfit {args.crossfit} one VAE trains here (use --engine local)")
    split = split_from_args(args, "vae-bench")
    config = load_train_config(args.config) if args.config else None
    vae_config = _vae_options(args.vae_config) if args.vae_config else None  # overrides of the bench VAE config
    out = Path(args.output or Path("bench-out") / f"vae-{split.name}")
    from posecurator.cli.commands_add import _engine
    from posecurator.cli.commands_report import recorded_command, write_run_report
    from posecurator.scoring.crossfit import fold_engine

    # as in `difficulty`: the cross-fit scorers take the engine from fold_engine
    with recorded_command(out, args), _engine(args) as engine, fold_engine(engine if engine.parallel else None):
        doc = run_vae_experiment(split, out_dir=out, seeds=args.seeds, settings=settings_from_args(args, split), methods=args.methods,
                                 preset=args.preset, config=config, vae_config=vae_config, k=args.bins,
                                 progress=not args.quiet, log=lambda m: print(m, file=sys.stderr),
                                 render=render_vae_experiment_plots, crossfit=crossfit)
    print((out / "vae_table.md").read_text())
    print(f"results: {out / 'vae_results.json'}; figures: " + ", ".join(str(out / f) for f in doc["files"].values()))
    write_run_report(out, args, kind="vae-bench")
