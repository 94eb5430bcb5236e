"""CLI commands of PoseSyn (registered by cli.main): `hard` (error extraction on real 2D),
`synthesize` (motions for a hard folder's samples, aligned to its easy samples and projected) and
`posesyn` (the whole loop: error extraction -> motions -> pairs -> 3D-error filter -> fine-tuning)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from posecurator.errors import DataError, PoseCuratorError


def register(sub, add_parser, commands: dict) -> None:
    s = add_parser(sub, "hard", "Find the samples an estimator gets most wrong on real 2D (PoseSyn's error extraction) and "
                                "describe them.",
                   "  posecurator hard ../shared/data/coco/person_keypoints_train2017_subset2155.json --estimator runs/wild -o hard-coco\n"
                   "  posecurator hard coco.json --predictions my_model_predictions.npz -o hard-mine   # any image model's 3D\n"
                   "  posecurator hard hdm05.pcs --estimator runs/wild -o hard-hdm05 --error 3d        # a 3D set: true 3D error\n"
                   "  posecurator hard coco.json --estimator runs/wild -o hard --top 500 --bottom 200 --weights weights.yaml\n"
                   "  posecurator evaluate runs/wild hard-coco/hard.pcs --json                         # PCK on the hard set\n"
                   "writes OUT/hard.pcs, easy.pcs, random.pcs (datasets with lineage), scores.npz, predictions.npz,\n"
                   "captions.json, text_embeddings.npz, summary.json and plots/ (hardest samples, error histogram)\n"
                   "the estimator should be a lifter trained with --input-mode root_scale for in-the-wild 2D\n")
    s.add_argument("dataset", help="2D annotations (COCO json, MPII json/mat, a dataset) or a 3D dataset "
                                   "(seen through seeded random cameras)")
    group = s.add_mutually_exclusive_group(required=True)
    group.add_argument("--estimator", metavar="RUN_DIR", help="a lifter run folder (posecurator train)")
    group.add_argument("--predictions", metavar="FILE",
                       help="3D predictions made elsewhere: npz or JSON, sample id -> 17 x 3 joints in mm, camera frame "
                            "(format: posecurator.io.predictions)")
    s.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    s.add_argument("--top", type=int, default=500, help="hard samples K_C (default 500)")
    s.add_argument("--bottom", type=int, default=200, help="easy samples K_NC (default 200)")
    s.add_argument("--weights", help="YAML/JSON {joint name: weight} (default: ankles, wrists 1; knees, elbows 0.5; "
                                     "hips, shoulders 0.25)")
    s.add_argument("--error", choices=["2d", "3d"], default="2d",
                   help="2d: reprojection error (Eq. 1, default); 3d: the true 3D error, for sets that have 3D")
    s.add_argument("--captions", metavar="FILE", help="your captions (JSON {sample_id: text} or CSV sample_id,text); "
                                                      "they override the describer")
    s.add_argument("--min-keypoints", type=int, default=8, help="leave out 2D annotations with fewer labelled keypoints "
                                                                "(default 8, ../shared/BENCHMARK.md)")
    s.add_argument("--no-embed", action="store_true", help="do not compute text embeddings of the captions")
    s.add_argument("--in-sample", action="store_true", help="say that the estimator trained on these samples (recorded; "
                                                            "their scores are then in-sample)")
    s.add_argument("--seed", type=int, default=0, help="seeds the random cameras of 3D input and the random selection")
    commands["hard"] = cmd_hard

    variants = ("full", "no_init", "no_text", "mispredicted_only", "random_samples")  # = pipelines.posesyn.VARIANTS
    s = add_parser(sub, "synthesize", "Synthesize motions for the hard samples of a `posecurator hard` folder, align each to an "
                                      "easy (reference) sample and project it through its camera: 2D-3D pairs.",
                   "  posecurator synthesize hard-coco --model runs/motion -o syn-coco --per-sample 8 --frames 64\n"
                   "  posecurator synthesize hard-coco --real-motions hdm05.pcs -o syn-real     # real mocap near each hard pose\n"
                   "  posecurator synthesize hard-coco --variant mispredicted_only -o syn-still # the mis-predicted pose held still\n"
                   "  posecurator synthesize hard-coco --model runs/motion -o syn --export-guidance 16   # + OpenPose images\n"
                   "writes OUT/pairs.pcs (world 3D, 2D in the reference image, a camera row per sequence, lineage: parents = "
                   "(hard id, reference id)),\nOUT/summary.json and, with --export-guidance, OUT/guidance/ (per-frame OpenPose "
                   "skeleton PNGs and a JSON per sequence)\n")
    s.add_argument("hard_dir", metavar="HARD_DIR", help="output folder of `posecurator hard`")
    _add_motion_arguments(s, variants, real_default=False)
    s.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    s.add_argument("--random-cameras", type=int, default=0, help="extra seeded random views of each sequence (default 0)")
    s.add_argument("--export-guidance", type=int, default=0, metavar="FRAMES",
                   help="also export the first FRAMES frames of every sequence for image animation models (0: no export)")
    commands["synthesize"] = cmd_synthesize

    s = add_parser(sub, "posesyn", "PoseSyn end to end: hard samples of real 2D -> synthesized motions -> pairs in reference "
                                   "cameras -> 3D-error filter (Eq. 6) -> the lifter fine-tuned on real + kept synthetic poses.",
                   "  posecurator posesyn ../shared/data/coco/person_keypoints_train2017_subset2155.json --estimator runs/wild \\\n"
                   "      --train ../shared/data/hdm05 --model runs/motion -o runs/posesyn\n"
                   "  posecurator posesyn coco.json --estimator runs/wild --train hdm05.pcs --real-motions -o runs/ps-real  # baseline\n"
                   "  posecurator posesyn coco.json --estimator runs/wild --train hdm05.pcs --model runs/motion -o runs/ps-fs --mode fs\n"
                   "  posecurator posesyn coco.json --estimator runs/wild --train hdm05.pcs --model runs/motion -o runs/ps-notext \\\n"
                   "      --variant no_text --tau 150 --test cmu.pcs\n"
                   "  posecurator evaluate runs/posesyn cmu.pcs --json        # the run folder is a lifter run folder\n"
                   "writes RUN_DIR/lifter (and config.json + best.safetensors at the top), synthetic.pcs, rejected.pcs, hard/,\n"
                   "summary.json (data amounts, pass rate, tau sweep, what the filter removes, times), plots/plot_data.json;\n"
                   "rerunning the same command reuses finished stages (RUN_DIR/stages) and resumes the fine-tuning\n")
    s.add_argument("dataset", help="2D annotations (COCO json, a dataset) or a 3D dataset (seen through seeded random cameras)")
    s.add_argument("--estimator", required=True, metavar="RUN_DIR", help="the lifter run folder to improve (posecurator train, "
                                                                         "--input-mode root_scale for in-the-wild 2D)")
    s.add_argument("--train", required=True, metavar="TRAIN_DATASET", help="the 3D data the estimator was trained on")
    _add_motion_arguments(s, variants, real_default=True)
    s.add_argument("-o", "--output", required=True, metavar="RUN_DIR", help="output run folder")
    s.add_argument("--tau", type=float, default=120.0, help="filter threshold: root-relative MPJPE in mm (default 120)")
    s.add_argument("--mode", choices=["ft", "fs"], default="ft", help="ft: fine-tune the estimator (default); fs: from scratch")
    s.add_argument("--top", type=int, default=500, help="hard samples K_C (default 500)")
    s.add_argument("--bottom", type=int, default=200, help="easy (reference) samples K_NC (default 200)")
    s.add_argument("--random-cameras", type=int, default=0, help="extra seeded random views of each sequence (default 0)")
    s.add_argument("--finetune-epochs", type=float, default=0.5, help="FT: fraction of the estimator's epochs (default 0.5)")
    s.add_argument("--config", help="YAML/JSON TrainConfig for the new lifter (default: the estimator run's config)")
    s.add_argument("--test", metavar="DATASET", help="a 3D test set: the error before / after, per activity")
    s.add_argument("--control", action="store_true", help="also fine-tune on the real poses alone with the same schedule "
                                                          "(RUN_DIR/control): what more training alone gives")
    s.add_argument("--captions", metavar="FILE", help="your captions of the 2D samples (JSON {sample_id: text} or CSV)")
    s.add_argument("--export-guidance", type=int, default=0, metavar="FRAMES",
                   help="also export FRAMES frames of every kept sequence for image animation models")
    commands["posesyn"] = cmd_posesyn


def _add_motion_arguments(s, variants, *, real_default: bool) -> None:
    group = s.add_mutually_exclusive_group()
    group.add_argument("--model", metavar="MODEL_DIR", help="a trained motion model folder (posecurator.train.motion_model)")
    if real_default:
        group.add_argument("--real-motions", nargs="?", const="", metavar="DATASET",
                           help="real motion windows near each hard pose instead of a motion model (the baseline; "
                                "default data: --train)")
    else:
        group.add_argument("--real-motions", metavar="DATASET", help="real motion windows (mocap) near each hard pose instead "
                                                                     "of a motion model (the baseline)")
    s.add_argument("--variant", choices=variants, default="full",
                   help="full: text + mis-predicted pose; no_init: text only; no_text: pose only; mispredicted_only: the "
                        "pose held still (no motion model); random_samples: random instead of hard samples")
    s.add_argument("--per-sample", type=int, default=8, help="motions per hard sample (default 8)")
    s.add_argument("--frames", type=int, default=None, help="frames per motion (default: the model's window, else 32)")
    s.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of the motion model (default 1)")
    s.add_argument("--top-k", type=int, default=None, help="top-k sampling of the motion model (real motions: candidates)")
    s.add_argument("--seed", type=int, default=0)


def _motion_source(args, train=None):
    """The motion model, real motion windows, or None (mispredicted_only), from the arguments."""
    from posecurator.pipelines.posesyn import DEFAULT_FRAMES_WITHOUT_MODEL, REAL_MOTION_STRIDE, load_motion_source

    if args.model:
        return load_motion_source(args.model)
    if args.real_motions is not None:
        from posecurator.pipelines.splits import load_dataset
        from posecurator.synthesis.real_motions import RealMotionBank

        poses = train if args.real_motions == "" else load_dataset(args.real_motions, progress=not args.quiet)
        try:
            return RealMotionBank.from_poses(poses, length=args.frames or DEFAULT_FRAMES_WITHOUT_MODEL, stride=REAL_MOTION_STRIDE)
        except ValueError as e:
            raise DataError(args.real_motions or None, str(e)) from None
    if args.variant != "mispredicted_only":
        raise PoseCuratorError("give --model MODEL_DIR or --real-motions (or --variant mispredicted_only, which needs neither)")
    return None


def _check_counts(args) -> None:
    if args.per_sample < 1 or (args.frames is not None and args.frames < 2):
        raise PoseCuratorError(f"--per-sample must be >= 1 and --frames >= 2, got {args.per_sample}, {args.frames}")
    if args.random_cameras < 0 or args.export_guidance < 0:
        raise PoseCuratorError("--random-cameras and --export-guidance must be >= 0")


def cmd_synthesize(args):
    from posecurator.pipelines.posesyn import default_log, load_hard_dir, synthesize

    _check_counts(args)
    hard = load_hard_dir(args.hard_dir)  # a folder of another layout is said before anything loads
    source = _motion_source(args)
    summary = synthesize(hard, source=source, out_dir=args.output, variant=args.variant, per_sample=args.per_sample,
                         n_frames=args.frames, temperature=args.temperature, top_k=args.top_k, seed=args.seed,
                         n_random_cameras=args.random_cameras, export_frames=args.export_guidance or None,
                         log=default_log(not args.quiet))
    m = summary["motions"]
    print(f"{summary['sequences']} sequences x {summary['frames']} frames = {summary['pairs']} pairs "
          f"({m['conditioning']}; {m['sequences_per_s'] or 0:.1f} sequences/s) -> {args.output}/pairs.pcs")


def cmd_posesyn(args):
    from posecurator.pipelines.posesyn import default_log, run_posesyn
    from posecurator.pipelines.splits import load_dataset
    from posecurator.train.estimator import LifterEstimator

    _check_counts(args)
    if args.top < 1 or args.bottom < 1 or not args.tau > 0 or not 0 < args.finetune_epochs <= 1:
        raise PoseCuratorError("--top and --bottom must be >= 1, --tau > 0 and --finetune-epochs in (0, 1]")
    if args.captions and not Path(args.captions).is_file():
        raise DataError(args.captions, "captions file not found")
    LifterEstimator(args.estimator)  # a run folder cut short (or of another format) is said before any data loads
    config = None
    if args.config:
        from posecurator.cli.common import load_train_config

        config = load_train_config(args.config)
    train = load_dataset(args.train, progress=not args.quiet)
    model_dir = args.model
    if model_dir:
        from posecurator.pipelines.posesyn import load_motion_source

        load_motion_source(model_dir)  # checked before the long work
    real = None
    if args.real_motions:
        real = load_dataset(args.real_motions, progress=not args.quiet)
    elif not model_dir and args.real_motions is None and args.variant != "mispredicted_only":
        raise PoseCuratorError("give --model MODEL_DIR or --real-motions (or --variant mispredicted_only, which needs neither)")
    data = load_dataset(args.dataset, progress=not args.quiet)
    test = load_dataset(args.test, progress=not args.quiet) if args.test else None
    summary = run_posesyn(data, estimator_run=args.estimator, train=train, motion_model_dir=model_dir, out_dir=args.output,
                          top=args.top, bottom=args.bottom, per_sample=args.per_sample, n_frames=args.frames, tau=args.tau,
                          mode=args.mode, seed=args.seed, variant=args.variant, real_motions=real,
                          temperature=args.temperature, top_k=args.top_k, n_random_cameras=args.random_cameras,
                          finetune_epochs=args.finetune_epochs, train_config=config, test=test, captions_file=args.captions,
                          export_guidance_frames=args.export_guidance or None, control=args.control, progress=not args.quiet,
                          log=default_log(not args.quiet))
    d, lif = summary["data"], summary["lifters"]
    print(f"synthesized {d['synthesized_pairs']} pairs ({d['sequences']} sequences), kept {d['kept']} "
          f"({(d['pass_rate'] or 0) * 100:.1f} % at tau {summary['filter']['tau_mm']:g} mm)")
    print(f"validation MPJPE {lif['real']['best_val_mpjpe']} -> {lif['final']['best_val_mpjpe']} mm ({args.mode.upper()}) "
          f"-> {args.output} (posecurator evaluate {args.output} DATASET)")
    print(json.dumps({"pass_rate": d["pass_rate"], "tau_sweep": summary["filter"]["tau_sweep"],
                      "reused_stages": [k for k, v in summary["stages"].items() if v["reused"]]}))


def _read_weights(path) -> dict:
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise DataError(path, f"cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise DataError(path, f"not YAML/JSON: {str(e).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise DataError(path, "weights must be a mapping {joint name: weight}")
    return doc


def cmd_hard(args):
    from posecurator.pipelines.hard_samples import run_hard
    from posecurator.pipelines.splits import load_dataset
    from posecurator.report.plots import render_hard_plots
    from posecurator.scoring.reprojection import joint_weights

    weights = None
    if args.weights:
        weights = _read_weights(args.weights)
        try:
            joint_weights("h36m17", weights)
        except ValueError as e:
            raise DataError(args.weights, str(e)) from None
    if args.top < 1 or args.bottom < 0:
        raise PoseCuratorError(f"--top must be >= 1 and --bottom >= 0, got {args.top}, {args.bottom}")
    if args.captions and not Path(args.captions).is_file():
        raise DataError(args.captions, "captions file not found")
    if args.estimator:
        from posecurator.train.estimator import LifterEstimator

        estimator = LifterEstimator(args.estimator)
    else:
        from posecurator.scoring.estimator import PredictionsFileEstimator

        estimator = PredictionsFileEstimator(args.predictions)
    from posecurator.cli.commands_report import command_record, record_command, write_run_report

    # run_hard replaces the whole output folder when it is done: the command taken now is written then
    record = command_record(args)
    poses = load_dataset(args.dataset, progress=not args.quiet)
    summary = run_hard(poses, estimator, out_dir=args.output, top=args.top, bottom=args.bottom, weights=weights,
                       error=args.error, seed=args.seed, min_keypoints=args.min_keypoints, captions_file=args.captions,
                       embed=not args.no_embed, in_sample=args.in_sample,
                       log=(lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr)))
    record_command(args.output, args, record=record)
    render_hard_plots(args.output)
    q = summary["quantiles"]
    print(f"scored {summary['n_scored']} samples ({', '.join(f'{k}: {v}' for k, v in summary['status'].items())})")
    print(f"error ({summary['error_unit']}): median {q.get('q50', float('nan')):.3f}, 95% {q.get('q95', float('nan')):.3f}, "
          f"max {q.get('q100', float('nan')):.3f}")
    if "check_against_3d" in summary and "spearman" in summary["check_against_3d"]:
        c = summary["check_against_3d"]
        print(f"against the true 3D error: Spearman {c['spearman']:.2f}, precision of the top {c['k']} {c['precision_at_k']:.2f} "
              f"(chance {c['chance_precision']:.2f})")
    print(f"hard {len(summary['selection']['hard_sample_ids'])}, easy {len(summary['selection']['easy_sample_ids'])} "
          f"-> {args.output} (summary.json, plots/hardest.png)")
    print(json.dumps({"captions": summary["captions"]["sources"]}))
    write_run_report(args.output, args, kind="hard")
