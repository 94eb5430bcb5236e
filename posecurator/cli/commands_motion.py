"""CLI command of PoseSyn's motion model: `motion-train` (registered by cli.main)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from posecurator.errors import DataError, PoseCuratorError

PRESET_NAMES = ("cpu", "cpu-large", "gpu", "tiny")  # = posecurator.train.motion_trainer.PRESETS (not imported: --help stays fast)


def register(sub, add_parser, commands: dict) -> None:
    """Add `motion-train` to the ``posecurator`` parser (``add_parser(sub, name, help, examples)``)."""
    s = add_parser(sub, "motion-train",
                   "Train PoseSyn's motion model (motion VQ-VAE + text- and pose-conditioned code transformer) on mocap.",
                   "  posecurator motion-train ../shared/data/hdm05 -o models/motion-hdm05              # preset cpu (12 min on 2 idle cores)\n"
                   "  posecurator motion-train ../shared/data/bandai -o models/motion-bandai --preset cpu-large   # a large source in the same time\n"
                   "  posecurator motion-train hdm05.pcs bandai.pcs -o models/motion-big --preset gpu   # --device cuda by the preset\n"
                   "  posecurator motion-train hdm05.pcs -o models/m --config motion.yaml --seed 1      # motion.yaml: MotionConfig fields\n"
                   "  posecurator motion-train hdm05.pcs -o models/motion-hdm05                         # again: resumes, or does nothing when finished\n"
                   "writes MODEL_DIR/config.json, normalizer.npz, vqvae.safetensors, transformer.safetensors, history.json,\n"
                   "captions.json and summary.json; load it with posecurator.train.motion_model.load_motion_model(MODEL_DIR)\n")
    s.add_argument("datasets", nargs="+", metavar="DATASET",
                   help="dataset folders or any importable files/folders with 3D motion (h36m17, 30 fps)")
    s.add_argument("-o", "--output", required=True, metavar="MODEL_DIR",
                   help="model folder (re-running resumes from its last checkpoint; a finished model is left as it is)")
    s.add_argument("--preset", choices=PRESET_NAMES, default="cpu",
                   help="cpu: sized for a 2-core CPU (default); gpu: larger, for a GPU; tiny: a smoke test (seconds)")
    s.add_argument("--config", help="YAML/JSON file of MotionConfig fields (over the preset; flags override its keys)")
    s.add_argument("--device", choices=["cpu", "cuda"], default=None, help="torch device (default: the preset's)")
    s.add_argument("--seed", type=int, default=None, help="seed of everything (default 0)")
    s.add_argument("--fresh", action="store_true", help="start afresh, removing the model folder's earlier training files")
    commands["motion-train"] = cmd_motion_train


def _log(args):
    return (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))


def _motion_config(args):
    from posecurator.train.motion_trainer import MotionConfig

    overrides: dict = {}
    if args.config:
        from posecurator.cli.configs import check_options, read_config_file

        overrides = read_config_file(args.config)
        check_options(MotionConfig, overrides, path=args.config)
    if args.device is not None:
        overrides["device"] = args.device
    if args.seed is not None:
        overrides["seed"] = args.seed
    try:
        return MotionConfig.preset(args.preset, **overrides)
    except (TypeError, ValueError) as e:
        raise DataError(args.config, f"bad motion config: {e}") from None


def cmd_motion_train(args) -> None:
    from posecurator.pipelines.splits import load_dataset
    from posecurator.train.motion_trainer import train_motion_model

    t0 = time.perf_counter()
    config = _motion_config(args)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise DataError(out, "exists and is not a folder")
    sets = []
    for path in args.datasets:
        ps = load_dataset(path, progress=not args.quiet)
        if ps.joints3d is None:
            raise DataError(path, "has no 3D poses; the motion model trains on 3D motion")
        if ps.layout != "h36m17":
            raise DataError(path, f"layout {ps.layout}; the motion model needs h36m17 poses")
        sets.append(ps)
    if not sets:
        raise PoseCuratorError("no datasets given")
    s = train_motion_model(sets, out_dir=out, config=config, progress=not args.quiet, resume=not args.fresh, log=_log(args))
    vq, tf = s["vqvae"], s["transformer"]
    usage = vq.get("train_codebook", {})
    what = "already trained, nothing to do" if not s.get("stages_trained") and s.get("resumed") else \
        f"trained {' + '.join(s['stages_trained']) or 'nothing'}"
    print(f"motion model ({what}): reconstruction MPJPE {_num(vq.get('val_mpjpe_mm'), ' mm')}, "
          f"codebook {usage.get('codes_used', '-')}/{config.codebook_size} codes used "
          f"({_num(100 * usage['fraction_used'] if usage else None, '%', 0)}, perplexity {_num(usage.get('perplexity'), '', 0)}), "
          f"transformer top-1 accuracy {_num(100 * tf['val_acc'] if tf.get('val_acc') is not None else None, '%')} "
          f"(CE {_num(tf.get('val_ce'), '', 2)}); training {s['training_time_s'] / 60:.1f} min, this run "
          f"{(time.perf_counter() - t0) / 60:.1f} min -> {out}")


def _num(v, unit: str = "", digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}{unit}"
