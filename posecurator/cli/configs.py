"""Config files of the commands: YAML (or JSON, a subset of YAML), validated with pydantic.

Every pipeline's options live in one dataclass (:class:`posecurator.train.trainer.TrainConfig`,
:class:`posecurator.pipelines.add.ADDConfig`, :class:`posecurator.train.vae_trainer.VAEConfig`).
A config file holds any of their fields; this module checks it before anything runs, with
pydantic models built from the dataclasses' type hints (strict: ``"lr": "x"`` and
``"epochs": 2.5`` are errors, not conversions; unknown keys are errors, also nested ones such as
ADD's ``lifter`` or ``evolution`` options), and reports the first problems in one line: the file,
the key path, what was expected and what was given. The dataclasses' own range checks run after
(their message is reported the same way). ``posecurator config NAME`` prints the defaults with a
comment per option (:func:`default_config_text`).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import typing
from pathlib import Path

from posecurator.errors import DataError, PoseCuratorError

MAX_SHOWN = 40  # characters of a given value shown in a message


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def read_config_file(path) -> dict:
    """A YAML or JSON file holding one mapping -> dict. DataError (one line) when unreadable."""
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DataError(path, f"cannot read config: {e.strerror}") from None
    except UnicodeDecodeError:
        raise DataError(path, "config is not UTF-8 text") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DataError(path, f"not valid YAML/JSON: {getattr(e, 'problem', None) or 'syntax error'}",
                        line=None if mark is None else mark.line + 1) from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise DataError(path, f"a config must be a mapping of option: value, got {type(doc).__name__}")
    return doc


# ------------------------------------------------------------------------------ schemas
def _nested_schemas() -> dict:
    """Dict-typed fields whose keys are another class's options: (owner, field) -> class or callable."""
    from posecurator.augment.plausibility import JointAnglePrior
    from posecurator.camera import RandomCameraSampler
    from posecurator.pipelines.add import ADDConfig
    from posecurator.scoring.density import DensityScorer
    from posecurator.train.trainer import TrainConfig

    return {(TrainConfig, "camera"): RandomCameraSampler, (ADDConfig, "lifter"): TrainConfig,
            (ADDConfig, "prior"): JointAnglePrior.__init__, (ADDConfig, "density"): DensityScorer.__init__}


def _options_of(target) -> dict[str, tuple[object, object]]:
    """{name: (type, default)} of a dataclass's fields or a function's keyword parameters."""
    if dataclasses.is_dataclass(target):
        hints = typing.get_type_hints(target)
        out = {}
        for f in dataclasses.fields(target):
            if not f.init:
                continue
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else ...)
            out[f.name] = (hints.get(f.name, typing.Any), default)
        return out
    try:
        hints = typing.get_type_hints(target)
    except (NameError, TypeError):  # annotations naming what this module cannot resolve: check names only
        hints = {}
    out = {}
    for name, p in inspect.signature(target).parameters.items():
        if name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        out[name] = (hints.get(name, typing.Any), p.default if p.default is not p.empty else ...)
    return out


_MODELS: dict = {}


def model_for(target, *, all_optional: bool = False):
    """A strict pydantic model of ``target``'s options (unknown keys forbidden), nested schemas
    included. ``all_optional``: every field may be left out (override dicts)."""
    import pydantic

    key = (target, all_optional)
    if key in _MODELS:
        return _MODELS[key]
    nested = _nested_schemas()
    fields = {}
    for name, (tp, default) in _options_of(target).items():
        owner = target if dataclasses.is_dataclass(target) else None
        if (owner, name) in nested:
            sub = model_for(nested[(owner, name)], all_optional=True)
            tp = typing.Optional[sub]
            default = None
        elif dataclasses.is_dataclass(tp):
            tp = typing.Union[model_for(tp, all_optional=True), None]
            default = None
        if all_optional or (default is not ... and not isinstance(default, (int, float, str, bool, type(None), tuple, list, dict))):
            default = None  # an override may leave any option out; defaults are the dataclass's business
        fields[name] = (tp, default)
    name = getattr(target, "__qualname__", str(target)).replace(".", "_")
    model = pydantic.create_model(f"Config_{name}", __config__=pydantic.ConfigDict(extra="forbid", strict=True,
                                                                                  arbitrary_types_allowed=True), **fields)
    _MODELS[key] = model
    return model


def check_options(target, data: dict, *, path=None, prefix: str = "", all_optional: bool = True) -> None:
    """Raise DataError naming ``path`` and the key when ``data`` does not fit ``target``'s options.
    Numbers are checked as JSON would carry them (so a list may stand for a tuple, and an int for
    a float, but ``"x"`` is no number and ``2.5`` no integer)."""
    import pydantic

    model = model_for(target, all_optional=all_optional)
    try:
        text = json.dumps(data, allow_nan=True, default=_json_default)
        model.model_validate_json(text, strict=True)
    except pydantic.ValidationError as e:
        errs = e.errors()
        first = errs[0]
        loc = ".".join(str(p) for p in (prefix.split(".") if prefix else []) + [str(x) for x in first["loc"]])
        given = first.get("input")
        if first["type"] == "extra_forbidden":
            known = ", ".join(sorted(_model_at(model, first["loc"][:-1]).model_fields))
            msg = f"unknown option {loc!r} (known here: {known})"
        else:
            msg = f"{loc}: {first['msg'].lower()}, got {_short(given)}"
        more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
        raise DataError(path, msg + more) from None
    except (TypeError, ValueError) as e:
        raise DataError(path, f"config values must be plain numbers, strings, lists and mappings ({e})") from None


def _model_at(model, loc):
    """The (nested) model that a location path below ``model`` points into."""
    import pydantic

    for part in loc:
        field = model.model_fields.get(str(part)) if hasattr(model, "model_fields") else None
        if field is None:
            return model
        sub = [a for a in typing.get_args(field.annotation) or (field.annotation,)
               if isinstance(a, type) and issubclass(a, pydantic.BaseModel)]
        if not sub:
            return model
        model = sub[0]
    return model


def _json_default(o):
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not a config value")


def build(cls, data: dict, *, path=None):
    """``cls(**data)`` after :func:`check_options`; the dataclass's own checks as one-line DataError."""
    check_options(cls, data, path=path)
    try:
        return cls(**data)
    except (ValueError, TypeError, PoseCuratorError) as e:
        raise DataError(path, f"bad option value: {e}") from None


# ------------------------------------------------------------------------------ defaults with comments
HELP = {
    "train": {
        "width": "hidden units of the residual MLP lifter", "blocks": "residual blocks", "dropout": "dropout rate",
        "max_norm": "max L2 norm of each weight row (Martinez); null = off", "lr": "Adam learning rate",
        "lr_decay": "learning rate factor per epoch", "weight_decay": "Adam weight decay",
        "batch_size": "2D-3D pairs per step", "epochs": "training epochs", "max_steps": "cap on optimisation steps; null = none",
        "max_epoch_pairs": "cap on the pairs of one epoch (bounds the time on large sets); null = every pose n_views times",
        "n_views": "random training cameras per pose per epoch",
        "val_fraction": "fraction of the training poses held out for validation (whole clips)",
        "val_cut": "which clips: clip = random clips, neighbourhood = a region of pose space",
        "val_views": "fixed random cameras per validation pose", "max_val_pairs": "cap on validation pairs; null = none",
        "camera": "ranges of the random training cameras (RandomCameraSampler fields); null = its defaults",
        "noise_px_train": "Gaussian 2D noise (px) added while training",
        "input_mode": "absolute = the benchmark rig's normalised pixels; root_scale = root-centred, scale-normalised 2D for in-the-wild images",
        "joint_dropout": "root_scale only: probability that each joint is hidden while training",
        "adapt": "none | reprojection: self-training on the target's unlabeled 2D (train --target) with reprojection "
                 "consistency and a bone-length prior",
        "adapt_weight": "weight of the target terms against the source MPJPE", "adapt_bone_weight": "weight of the bone-length term",
        "target_val_fraction": "fraction of the target's clips held out for the val_target_reproj_mm figure",
        "seed": "seeds everything", "device": "torch device (cpu, cuda)", "num_threads": "torch CPU threads; null = torch's default",
    },
    "difficulty": {
        "space": "3d (joints3d) or 2d (joints2d, or 3D seen through seeded cameras)", "hidden": "MLP widths of the encoder (the decoder mirrors them)",
        "latent_dim": "latent size", "lambda_kl": "weight of the KL term", "lr": "Adam learning rate", "weight_decay": "Adam weight decay",
        "epochs": "training epochs", "batch_size": "poses per step", "seed": "seeds everything",
        "val_fraction": "fraction held out for validation", "align_heading": "turn every pose to face one way before scoring",
        "projection_seed": "seed of the cameras that project 3D for the 2d space", "max_samples": "train on at most this many poses; null = all",
        "num_threads": "torch CPU threads; null = torch's default",
    },
    "add": {
        "evolution": "the evolutionary augmentation: operators and their rates, offspring ratio, batch size, max generations",
        "prior": "options of the joint-angle plausibility prior", "full_multiple": "size of the full-augmentation baseline (x original)",
        "w": "weight of the diversity term 1 - prob in the quality score", "keep": "fraction kept by quality distillation per generation",
        "density": "options of the density scorer", "error_normalization": "minmax | rank | robust (the lifter-error term)",
        "error_views": "random cameras per pose for the lifter-error term",
        "multiplier": "train part + distilled data = multiplier x train part (scale distillation)",
        "population": "all | last: which generations the distilled data comes from", "search": "none | multiscale | bayes",
        "n_trials": "trials of the bayes search", "search_batch": "bayes trials asked and run at once (1 = one after the other; engine workers run a batch side by side)", "search_epochs": "fraction of the lifter's epochs a search candidate trains",
        "multiscale_whole": "multipliers of the multiscale search's first level", "multiscale_levels": "levels of the multiscale search",
        "bayes_keep": "range (or one value) of keep for the bayes search", "bayes_multiplier": "range (or value) of the multiplier",
        "bayes_w": "range (or value) of w", "retrain": "finetune (from the reference lifter, as the paper) | scratch",
        "finetune_epochs": "fraction of the lifter's epochs to fine-tune", "finetune_lr": "factor on the lifter's learning rate when fine-tuning",
        "lifter_preset": "training preset of every lifter of the run", "lifter": "TrainConfig fields overriding the preset",
        "noise_px": "2D noise of training and of the lifter-error term", "seed": "seeds everything",
        "plots": "write plot data", "gallery": "poses per gallery row",
    },
}


def default_config_text(name: str) -> str:
    """The default config of command ``name`` ("train", "add", "difficulty") as YAML (each value
    written as JSON, which YAML reads), with a comment per option."""
    classes = config_classes()
    if name not in classes:
        raise PoseCuratorError(f"unknown config {name!r}; known: {', '.join(classes)}")
    cls, make = classes[name]
    values = dataclasses.asdict(make())
    lines = [f"# posecurator {name}: every option with its default ({cls.__name__}).",
             f"# Use: posecurator {name} ... --config this.yaml (command-line flags override these keys)."]
    for f in dataclasses.fields(cls):
        if not f.init or f.name == "preset_name":
            continue
        lines.append(f"{f.name}: {json.dumps(_plain(values[f.name]))}  # {HELP.get(name, {}).get(f.name, '')}".rstrip(" #"))
    return "\n".join(lines) + "\n"


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def config_classes() -> dict:
    """name -> (dataclass, factory of its default instance)."""
    from posecurator.cli.common import DEFAULT_LIFTER_PRESET
    from posecurator.pipelines.add import ADDConfig
    from posecurator.train.trainer import TrainConfig
    from posecurator.train.vae_trainer import VAEConfig

    return {"train": (TrainConfig, lambda: TrainConfig.preset(DEFAULT_LIFTER_PRESET)), "add": (ADDConfig, ADDConfig),
            "difficulty": (VAEConfig, VAEConfig)}
