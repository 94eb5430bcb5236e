"""CLI commands of PoseSyn: `hard` (error extraction on real 2D; registered by cli.main)."""

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
    poses = load_dataset(args.dataset, progress=not args.quiet)
    summary = run_hard(poses, estimator, out_dir=args.output, top=args.top, bottom=args.bottom, weights=weights,
                       error=args.error, seed=args.seed, min_keypoints=args.min_keypoints, captions_file=args.captions,
                       embed=not args.no_embed, in_sample=args.in_sample,
                       log=(lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr)))
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
