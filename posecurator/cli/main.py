"""The `posecurator` command line. Subcommand names and JSON keys are a public interface."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from posecurator.cli.common import DEFAULT_LIFTER_PRESET, add_split_arguments, add_val_cut_argument, load_train_config, settings_from_args, split_from_args
from posecurator.errors import DataError, PoseCuratorError

EPILOG = """\
examples:
  posecurator demo                                   # import -> train -> evaluate on clips shipped with pybullet
  posecurator import ../shared/data/hdm05 -o hdm05.pcs
  posecurator import my_rig_bvhs/ -o mine.pcs --mapping my_rig.yaml
  posecurator info hdm05.pcs --json
  posecurator export hdm05.pcs --format videopose3d -o data_3d_hdm05.npz
  posecurator train hdm05.pcs -o runs/base --seed 0
  posecurator evaluate runs/base cmu.pcs --noise 5 --json
  posecurator bench hdm05-xsub --data ../shared/data
  posecurator bench custom --train train_folder/ --test test_folder/
"""


_COMMON = argparse.ArgumentParser(add_help=False)
_COMMON.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _add(sub, name, help_, examples):
    return sub.add_parser(name, help=help_, description=help_, epilog="examples:\n" + examples, parents=[_COMMON],
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="posecurator", description="Make better training data for 3D human pose estimators.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"posecurator {__import__('posecurator').__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = _add(sub, "import", "Import a file or folder (BVH, ASF/AMC, VideoPose3D/mmpose npz, COCO json) into a dataset.",
             "  posecurator import ../shared/data/hdm05 -o hdm05.pcs\n  posecurator import rig.bvh -o rig.pcs --mapping rig.yaml\n")
    s.add_argument("src", help="file or folder to import (searched recursively)")
    s.add_argument("-o", "--output", required=True, help="dataset folder to write (.pcs by convention)")
    s.add_argument("--mapping", help="YAML/JSON joint mapping (target joint -> source joint or {midpoint: [a, b]}) for a new skeleton")
    s.add_argument("--fps", type=float, default=30.0, help="target frame rate (default 30)")

    s = _add(sub, "info", "Summarise a dataset (frames, clips, subjects, activities).",
             "  posecurator info hdm05.pcs\n  posecurator info hdm05.pcs --json\n")
    s.add_argument("dataset")
    s.add_argument("--json", action="store_true", help="print one JSON object")

    s = _add(sub, "export", "Write a dataset, or the rows of it a selection keeps, in another project's layout (VideoPose3D or "
             "mmpose Human3.6M npz) or as a posecurator set (pcs, streamed chunk by chunk).",
             "  posecurator export hdm05.pcs --format videopose3d -o data_3d_hdm05.npz\n  posecurator export hdm05.pcs --format mmpose -o h36m_hdm05.npz\n"
             "  posecurator export big.pcs --format pcs -o plausible.pcs --plausible-only --prior-from bandai.pcs\n"
             "  posecurator export big.pcs --format pcs -o kept.pcs --scores density.npz --keep-lowest 0.8\n"
             "pcs streams (memory: a chunk plus a few bytes per pose); videopose3d and mmpose hold every exported\n"
             "pose in one npz, so the kept rows are loaded\n")
    s.add_argument("dataset")
    s.add_argument("--format", required=True, choices=["videopose3d", "mmpose", "pcs"])
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--plausible-only", action="store_true",
                   help="keep only the poses the joint-angle prior passes (needs --prior-from)")
    s.add_argument("--prior-from", metavar="REFERENCE", help="--plausible-only: the real poses the prior is learned from "
                   "(a dataset, streamed) or a saved prior (.npz of JointAnglePrior.save)")
    s.add_argument("--scores", metavar="SCORES", help="score file (of `posecurator score`, keyed by sample_id) for --keep-lowest")
    s.add_argument("--keep-lowest", type=float, metavar="F", help="keep the fraction F of poses with the lowest --scores "
                   "(ties by position; of the plausible ones with --plausible-only): ADD's quality distillation of one score")

    s = _add(sub, "train", "Train the 2D-to-3D lifter (validation split cut from the training data; resumable).",
             "  posecurator train hdm05.pcs -o runs/base\n  posecurator train hdm05.pcs -o runs/big --preset large --seed 1\n"
             "  posecurator train bandai.pcs -o runs/hard --sampler hard:0.33\n"
             "  posecurator train hdm05.pcs -o runs/shifted-val --val-cut neighbourhood\n"
             "  posecurator train hdm05.pcs -o runs/wild --preset fast --input-mode root_scale --joint-dropout 0.2   # for in-the-wild 2D\n"
             "  posecurator train bandai.pcs -o runs/adapted --target my_videos_2d.json --adapt reprojection   # to unlabeled target 2D\n")
    s.add_argument("dataset", help="dataset folder (or any importable file/folder)")
    s.add_argument("-o", "--output", required=True, help="run folder (re-running resumes from its last checkpoint)")
    s.add_argument("--config", help="YAML/JSON file of TrainConfig fields (see `posecurator config train`); flags override its keys")
    s.add_argument("--preset", default=None, help=f"fast | default | large (default: {DEFAULT_LIFTER_PRESET}, the preset of every "
                                                  "command that trains a lifter); ignored with --config")
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--val-fraction", type=float, default=None, help="fraction of clips held out for validation")
    add_val_cut_argument(s)
    s.add_argument("--noise-px", type=float, default=None, help="Gaussian 2D noise (px) added while training")
    s.add_argument("--input-mode", choices=["absolute", "root_scale"], default=None,
                   help="what the lifter sees of the 2D: absolute = the benchmark rig's normalised pixels (default); "
                        "root_scale = root-centred, scale-normalised 2D that does not depend on image size, focal length "
                        "or distance, for in-the-wild 2D (COCO, MPII, your own images)")
    s.add_argument("--joint-dropout", type=float, default=None,
                   help="root_scale only: probability that each joint is hidden while training, so the lifter copes with "
                        "unlabelled joints (in-the-wild 2D: 0.2)")
    s.add_argument("--sampler", default=None, help="hard:FRACTION | easy:FRACTION (the lowest scores) | curriculum[:SCHEDULE] | random:FRACTION")
    s.add_argument("--scores", default=None, help="difficulty scores from `posecurator difficulty` for --sampler")
    s.add_argument("--target", default=None,
                   help="unlabeled 2D of the domain the lifter is for (COCO-style JSON, a 2D pose set, ...): its held-out clips "
                        "give the val_target_reproj_mm figure every epoch; with --adapt it is trained on")
    s.add_argument("--adapt", choices=["none", "reprojection"], default=None,
                   help="reprojection = self-training on --target with reprojection consistency and a bone-length prior "
                        "(VideoPose3D's semi-supervised objective, per pose)")
    s.add_argument("--adapt-weight", type=float, default=None, help="weight of the target terms (default 1)")

    s = _add(sub, "evaluate", "Evaluate a trained lifter on a dataset through the fixed evaluation rig of BENCHMARK.md.",
             "  posecurator evaluate runs/base hdm05_dg.pcs --json\n  posecurator evaluate runs/base cmu.pcs --noise 5 --seed 0 --json\n"
             "  posecurator evaluate runs/wild ../shared/data/coco/person_keypoints_val2017_subset2213.json --json   # 2D only: PCK\n")
    s.add_argument("run_dir")
    s.add_argument("dataset")
    s.add_argument("--noise", type=float, default=0.0, help="2D noise std in pixels (noisy 2D setting: 5)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--json", action="store_true", help="print one JSON object (3D data: keys mpjpe, pa_mpjpe, pck3d, auc, n_poses, "
                                                       "per_activity; 2D-only data such as COCO: pck_0.05, pck_0.1, n_poses, "
                                                       "n_left_out, per_joint, and pckh_0.5 where the data has a head segment)")

    s = _add(sub, "bench", "Run a split of ../shared/BENCHMARK.md (all methods, seeds, GT and noisy 2D) and print its table.",
             "  posecurator bench hdm05-xsub\n  posecurator bench bandai-to-hdm05 --data ../shared/data --seeds 0 1 2\n"
             "  posecurator bench custom --train my_train/ --test my_test/ --mapping rig.yaml\n"
             "  posecurator bench hdm05-to-cmu --jobs 2 --methods baseline full_aug random_subset quality_only scale_only add add_optuna\n"
             "  posecurator bench hdm05-xsub --engine ray --workers 6                  # the 6 (setting, seed) pairs as Ray tasks\n")
    add_split_arguments(s, default_settings=["gt", "noisy"], default_methods=["baseline"])
    s.add_argument("-o", "--output", default=None, help="output folder (default bench-out/SPLIT)")
    s.add_argument("--table-only", action="store_true", help="train nothing: tabulate the runs already finished in the output folder")
    s.add_argument("--jobs", type=int, default=1,
                   help="processes running (setting, seed) pairs side by side (each trains on one CPU thread; "
                        "default 1). The results do not depend on it. With --engine ray: tasks at once (as --workers)")
    s.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="where the (setting, seed) pairs run: local (this machine: one after the other, or --jobs "
                        "processes) or ray (Ray tasks on a local 127.0.0.1 cluster, or --address); results are identical")
    s.add_argument("--address", default=None, metavar="ADDR",
                   help="--engine ray: HOST:PORT of a running cluster (ray start --head), or auto; the output folder "
                        "must be on a file system every node mounts")
    s.add_argument("--workers", type=int, default=None, metavar="N",
                   help="--engine ray: pairs at once (default: --jobs when above 1, else the cluster's CPUs)")
    add_val_cut_argument(s, judged="every method's best epoch and ADD's searches")

    s = _add(sub, "demo", "The main job on an embedded default: DeepMimic reference clips shipped in pybullet -> train -> evaluate, then ADD.",
             "  posecurator demo\n  posecurator demo -o demo-out --preset fast\n")
    s.add_argument("-o", "--output", default="demo-out")
    s.add_argument("--preset", default="fast")
    s.add_argument("--seed", type=int, default=0)

    # Method pipelines add their own subcommands (ADD: add/augment/score; VAE: difficulty).
    for module in _extension_modules():
        module.register(sub, _add, COMMANDS)
    return p


EXTENSIONS = ("posecurator.cli.commands_add", "posecurator.cli.commands_vae", "posecurator.cli.commands_posesyn",
              "posecurator.cli.commands_describe", "posecurator.cli.commands_report", "posecurator.cli.commands_fuzz",
              "posecurator.cli.commands_config", "posecurator.cli.commands_motion")


def _extension_modules():
    import importlib

    mods = []
    for name in EXTENSIONS:
        try:
            mods.append(importlib.import_module(name))
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
    return mods


def cmd_import(args):
    from posecurator.io import import_to_store

    # file by file into the output: memory holds one file and one chunk, not the whole set
    s = import_to_store(args.src, args.output, mapping=args.mapping, fps=args.fps, progress=not args.quiet)
    print(f"imported {s['frames']} frames, {s['clips']} clips, {len(s['subjects'])} subjects, "
          f"{len(s['activities'])} activities -> {args.output}")


def cmd_info(args):
    from posecurator.pipelines.splits import load_dataset

    s = load_dataset(args.dataset, progress=not args.quiet).summary()
    if args.json:
        print(json.dumps(s))
    else:
        for k, v in s.items():
            if isinstance(v, list):
                v = f"{len(v)}: " + ", ".join(map(str, v[:20])) + (" ..." if len(v) > 20 else "")
            print(f"{k:>11}: {v}")


def cmd_export(args):
    import numpy as np

    from posecurator.io import h36m_npz
    from posecurator.pipelines.splits import load_dataset
    from posecurator.poseset import META_FILE, PoseSet

    if args.keep_lowest is not None and not args.scores:
        raise PoseCuratorError("--keep-lowest needs --scores SCORES (the score file it ranks)")
    if args.scores and args.keep_lowest is None:
        raise PoseCuratorError("--scores is ranked by --keep-lowest F; give the fraction to keep")
    if args.keep_lowest is not None and not 0.0 <= args.keep_lowest <= 1.0:
        raise PoseCuratorError(f"--keep-lowest must be a fraction in [0, 1], got {args.keep_lowest}")
    if args.plausible_only != bool(args.prior_from):
        raise PoseCuratorError("--plausible-only and --prior-from go together: the prior must learn from other poses "
                               "(real ones) than those it checks; one fitted on the set itself passes every pose")
    # A stored set is selected and (as pcs) written block by block, holding only the (N,) mask and
    # scores; anything else (an importable file or folder) is loaded and selected in memory.
    stored = (Path(args.dataset) / META_FILE).is_file()
    store = PoseSet.open(args.dataset) if stored else None
    ps = None if stored else load_dataset(args.dataset, progress=not args.quiet)
    n = len(store) if stored else len(ps)
    mask, notes = None, []
    try:
        if args.plausible_only:
            from posecurator.augment.plausibility import check_dataset

            prior = _export_prior(args)
            mask = check_dataset(prior, store) if stored else prior.check(ps)
            notes.append(f"{int(mask.sum())} of {n} plausible")
        if args.scores:
            from posecurator.selection.bins import align_scores, load_scores
            from posecurator.selection.distill import lowest_fraction_mask

            ids, sc = load_scores(args.scores)
            scores = align_scores(store.column("sample_id") if stored else ps.sample_id, ids, sc, path=args.scores)
            del ids, sc  # a 10^7-pose selection holds what it needs only: the scores and the mask
            if mask is None:
                mask = lowest_fraction_mask(scores, keep=args.keep_lowest)
            else:
                rows = np.flatnonzero(mask)
                low = np.zeros(n, dtype=bool)
                low[rows[lowest_fraction_mask(scores[rows], keep=args.keep_lowest)]] = True
                mask = low
            notes.append(f"lowest {args.keep_lowest:g} of the scores")
    except DataError:
        raise  # names its own file (the score file, the prior's source)
    except ValueError as e:
        raise DataError(args.dataset, str(e)) from None
    if args.format == "pcs":
        if stored:
            from posecurator.selection.stream import write_selection

            written = write_selection(store, mask, args.output)
        else:
            written = len(ps if mask is None else ps.subset(mask))
            (ps if mask is None else ps.subset(mask)).save(args.output)
    else:
        if stored:  # these formats hold every pose in one npz: the kept rows are loaded
            ps = store.load() if mask is None else store.select(mask).load()
        elif mask is not None:
            ps = ps.subset(mask)
        written = len(ps)
        if args.format == "videopose3d":
            h36m_npz.write_videopose3d_npz(ps, args.output)
        else:
            h36m_npz.write_mmpose_h36m_npz(ps, args.output)
    kept = f" ({'; '.join(notes)})" if notes else ""
    print(f"wrote {written} of {n} poses{kept} in {args.format} layout -> {args.output}")


def _export_prior(args):
    """The joint-angle prior of ``export --prior-from``: a saved prior (.npz file), or one learned
    (with the defaults of `posecurator augment`) from a dataset, streamed when it is a stored set."""
    from posecurator.augment.plausibility import JointAnglePrior, fit_dataset
    from posecurator.pipelines.splits import load_dataset
    from posecurator.poseset import META_FILE

    src = Path(args.prior_from)
    if src.is_file() and src.suffix == ".npz":
        try:
            return JointAnglePrior.load(src)
        except (OSError, KeyError, ValueError) as e:
            raise DataError(src, f"not a saved joint-angle prior: {e}") from None
    prior = JointAnglePrior()
    try:
        if (src / META_FILE).is_file():
            return fit_dataset(prior, src)
        return prior.fit(load_dataset(src, progress=not args.quiet))
    except DataError:
        raise
    except ValueError as e:
        raise DataError(src, str(e)) from None


def cmd_train(args):
    from posecurator.pipelines.splits import load_dataset
    from posecurator.poseset import META_FILE, PoseSet
    from posecurator.train.trainer import LifterTrainer, TrainConfig

    config = load_train_config(args.config) if args.config else TrainConfig.preset(args.preset or DEFAULT_LIFTER_PRESET)
    if args.seed is not None:
        config.seed = args.seed
    if args.val_fraction is not None:
        config.val_fraction = args.val_fraction
    if args.val_cut is not None:
        config.val_cut = args.val_cut
    if args.noise_px is not None:
        config.noise_px_train = args.noise_px
    if args.input_mode is not None:
        config.input_mode = args.input_mode
    if args.joint_dropout is not None:
        config.joint_dropout = args.joint_dropout
    if args.adapt is not None:
        config.adapt = args.adapt
    if args.adapt_weight is not None:
        config.adapt_weight = args.adapt_weight
    if config.adapt != "none" and not args.target:
        raise PoseCuratorError(f"--adapt {config.adapt} needs --target (the unlabeled 2D to adapt to)")
    try:
        config.__post_init__()  # re-check the combination the flags made
    except ValueError as e:
        raise PoseCuratorError(f"bad training options: {e}") from None
    sampler = None
    if args.sampler:
        from posecurator.selection.samplers import parse_sampler_spec
        from posecurator.train.vae_trainer import vae_score_fn

        # without --scores, a pose VAE trained on the training rows scores them (the CLI injects it:
        # the selection layer does not train models)
        sampler = parse_sampler_spec(args.sampler, scores=args.scores, score_fn=vae_score_fn(progress=not args.quiet))
    if sampler is None and (Path(args.dataset) / META_FILE).is_file():
        # a stored set is trained on lazily (same run, bit for bit): only each epoch's rows are
        # read; a sampler factory needs the train part in memory, so --sampler loads the set
        ps = PoseSet.open(args.dataset)
    else:
        ps = load_dataset(args.dataset, progress=not args.quiet)
    target = None
    if args.target:
        target = load_dataset(args.target, progress=not args.quiet)
        if target.joints2d is None:
            raise DataError(args.target, "the target has no 2D poses (joints2d)")
        target = target.replace(joints3d=None)  # unlabeled: whatever 3D the file has is never used
        if target.layout != ps.layout:  # COCO / MPII keypoints: the written rules of skeleton.keypoints2d
            from posecurator.skeleton.keypoints2d import to_target_layout

            try:
                target = to_target_layout(target, ps.layout)
            except ValueError as e:
                raise DataError(args.target, str(e)) from None
    if not args.quiet:
        print(f"lifter preset: {config.preset_name or 'custom config ' + str(args.config)}", file=sys.stderr)
    from posecurator.cli.commands_report import recorded_command, write_run_report

    with recorded_command(args.output, args):
        result = LifterTrainer(config).fit(ps, out_dir=args.output, sampler=sampler, progress=not args.quiet, target=target)
    best = result.get("best_val_mpjpe") if isinstance(result, dict) else None
    print(f"trained lifter -> {args.output}" + (f" (best validation MPJPE {best:.1f} mm)" if best is not None else ""))
    write_run_report(args.output, args, kind="lifter")


def cmd_evaluate(args):
    from posecurator.pipelines.splits import load_dataset
    from posecurator.train.evaluate import evaluate_run

    ps = load_dataset(args.dataset, progress=not args.quiet)
    res = evaluate_run(args.run_dir, ps, noise_px=args.noise, seed=args.seed)
    if args.json:
        print(json.dumps(res))
    elif "pck_0.05" in res:  # 2D-only data: PCK of the reprojected predictions
        line = f"PCK@0.05 {100 * res['pck_0.05']:.1f}%  PCK@0.1 {100 * res['pck_0.1']:.1f}%"
        if "pckh_0.5" in res:
            line += f"  PCKh@0.5 {100 * res['pckh_0.5']:.1f}%"
        print(line + f"  ({res['n_poses']} people)")
        for why, n in res["n_left_out"].items():
            print(f"  left out: {n} ({why})")
    else:
        print(f"MPJPE {res['mpjpe']:.1f} mm  PA-MPJPE {res['pa_mpjpe']:.1f} mm  PCK3D@150 {100 * res['pck3d']:.1f}%  "
              f"AUC {100 * res['auc']:.1f}%  ({res['n_poses']} 2D-3D pairs)")
        for act, r in sorted(res["per_activity"].items()):
            print(f"  {act:<32} MPJPE {r['mpjpe']:7.1f}  PA-MPJPE {r['pa_mpjpe']:7.1f}  n={r['n_poses']}")


def cmd_bench(args):
    from posecurator.pipelines.bench import run_bench, run_bench_parallel

    if args.jobs < 1:
        raise PoseCuratorError(f"--jobs must be >= 1, got {args.jobs}")
    if args.engine == "local" and (args.address or args.workers is not None):
        raise PoseCuratorError("--address and --workers go with --engine ray (local processes: --jobs N)")
    if args.engine != "local" and args.workers is not None and args.jobs > 1 and args.workers != args.jobs:
        raise PoseCuratorError(f"--jobs {args.jobs} and --workers {args.workers} disagree; with --engine ray give one")
    split = split_from_args(args, "bench")
    out = Path(args.output or Path("bench-out") / split.name)
    config = load_train_config(args.config) if args.config else None
    if args.val_cut is not None:
        from posecurator.train.trainer import TrainConfig

        config = config or TrainConfig.preset(args.preset, **split.train_overrides)
        config.val_cut = args.val_cut
    if any("optuna" in m for m in args.methods):  # say it now, not after the baseline has trained
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise PoseCuratorError("method add_optuna needs Optuna: pip install optuna (or posecurator[search])") from None
    kwargs = dict(out_dir=out, seeds=args.seeds, settings=settings_from_args(args, split), methods=args.methods, preset=args.preset,
                  config=config, log=lambda m: print(m, file=sys.stderr))
    from posecurator.cli.commands_report import recorded_command, write_run_report

    parallel = not args.table_only and (args.jobs > 1 or args.engine != "local")
    with recorded_command(out, args):
        if parallel and args.engine != "local":
            from posecurator.engine import make_engine

            workers = args.workers if args.workers is not None else (args.jobs if args.jobs > 1 else None)
            with make_engine(args.engine, address=args.address, workers=workers) as engine:
                run_bench_parallel(split, engine=engine, **kwargs)
        elif parallel:
            run_bench_parallel(split, jobs=args.jobs, **kwargs)
        res = run_bench(split, progress=not args.quiet, table_only=args.table_only or parallel, **kwargs)
    print((out / "table.md").read_text())
    print(f"results: {out / 'results.json'} ({res['wall_time_s']:.0f} s)")
    write_run_report(out, args, kind="bench")


def cmd_demo(args):
    from posecurator.cli.commands_report import recorded_command, write_demo_reports
    from posecurator.pipelines.demo import run_demo
    from posecurator.report.plots import render_add_plots, render_difficulty_plots, render_hard_plots

    with recorded_command(args.output, args):
        run_demo(out_dir=args.output, preset=args.preset, seed=args.seed, progress=not args.quiet, render_add=render_add_plots,
                 render_difficulty=render_difficulty_plots, render_hard=render_hard_plots)
    write_demo_reports(args.output, args)


COMMANDS = {"import": cmd_import, "info": cmd_info, "export": cmd_export, "train": cmd_train,
            "evaluate": cmd_evaluate, "bench": cmd_bench, "demo": cmd_demo}


EXIT_BAD_INPUT = 2        # the input (a file, an option) is wrong: one line says which and why
EXIT_INTERNAL_ERROR = 3   # posecurator itself failed: one line points to the log with the traceback
MAX_MESSAGE = 400         # characters of an error line; longer messages are cut


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def _log_internal_error(command: str, argv) -> Path | None:
    """Write the traceback of the exception being handled to a log file; its path (None if even
    that fails). The folder is $POSECURATOR_LOG_DIR, else posecurator-logs in the temp folder."""
    import os
    import tempfile
    import time
    import traceback

    folder = Path(os.environ.get("POSECURATOR_LOG_DIR") or Path(tempfile.gettempdir()) / "posecurator-logs")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"internal-error-{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        path.write_text(f"posecurator {__import__('posecurator').__version__}\nargv: {list(argv or sys.argv[1:])}\n\n"
                        + traceback.format_exc())
        return path
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit codes: 0 done, 2 bad input (one line naming the file or option and the
    problem), 3 internal error (one line; the traceback goes to a log file), 130 interrupted.
    Warnings raised while a command runs are shown after it succeeds, never before an error line."""
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    name = args.command
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            COMMANDS[name](args)
        except PoseCuratorError as e:
            print(f"posecurator {name}: error: {_one_line(e)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as e:
            print(f"posecurator {name}: error: {_one_line(f'{e.filename or chr(32)}: {e.strerror}')}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt:
            print(f"posecurator {name}: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:
            # the reader of our output went away (`posecurator info X | head`): not an error of ours;
            # stdout is pointed at /dev/null so the interpreter's final flush does not fail again
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):  # no file behind stdout (called from Python): nothing to flush
                pass
            return 0
        except Exception as e:  # noqa: BLE001 - anything else is a bug of posecurator: say so in one line
            log = _log_internal_error(name, argv)
            where = f"; the traceback is in {log}" if log else ""
            print(f"posecurator {name}: internal error ({type(e).__name__}: {_one_line(e)[:200]}){where}; "
                  "please report it", file=sys.stderr)
            return EXIT_INTERNAL_ERROR
    for w in caught:
        print(f"posecurator {name}: warning: {_one_line(w.message)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
