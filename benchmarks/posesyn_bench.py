"""PoseSyn on a cross-dataset split: does data synthesized around the estimator's hard in-the-wild
samples lower its error on people, activities and skeletons it has never seen?

Per seed, with the estimator = the root-scale lifter of `posecurator bench coco-2d` trained on the
split's training data (``--estimators``: its bench folder; HDM05 for hdm05-to-cmu, Bandai for
bandai-to-hdm05) and the 2D source = the COCO train subset, runs `run_posesyn` for:

=====================  ==================================================================
row                    what is fine-tuned on (FT: from the real-only lifter, same schedule)
=====================  ==================================================================
real only              nothing (the estimator itself)
real only, FT          the real poses alone (the control: more training is not a merit)
+ mis-predicted only   + the hard samples' predicted poses held still (Tab. 3's J^3D)
+ MSM w/o init codes   + motions from the caption only (Tab. 3)
+ PoseSyn              + motions from caption and mis-predicted pose (full MSM)
+ PoseSyn w/o EEM      + the same around random samples instead of hard ones (Tab. 4)
+ PoseSyn, FS          the full data, lifter trained from scratch (Tab. 4 FS)
+ ADD aug., same n     ADD's full augmentation (evolution from the real training clips,
                       plausibility prior, no distillation), as many poses as + PoseSyn kept
=====================  ==================================================================

and evaluates every lifter on the split's test set (MPJPE, PA-MPJPE; GT 2D through the fixed
evaluation rig) and on the COCO val subset (PCK@0.05 of the reprojected predictions). Prints a
markdown table (mean ± std over seeds), the filter's pass rate and tau sweep, and times.

Command:
    python benchmarks/posesyn_bench.py --split hdm05-to-cmu --estimators bench-out/coco-2d-hdm05 \\
        --model bench-out/motion-hdm05 --seeds 0 1 2 -o bench-out/posesyn-hdm05-to-cmu
(each seed is independent: run seeds in separate processes side by side with --seeds N, then
--table-only to tabulate)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROWS = [("real only", None), ("real only, FT", "control"), ("+ mis-predicted only", "mispredicted_only"),
        ("+ MSM w/o init codes", "no_init"), ("+ PoseSyn", "full"), ("+ PoseSyn w/o EEM", "random_samples"),
        ("+ PoseSyn, FS", "full_fs"), ("+ ADD aug., same n", "add_aug")]


def run_seed(args, seed: int) -> None:
    from posecurator.io import import_path
    from posecurator.pipelines.posesyn import run_posesyn
    from posecurator.pipelines.splits import COCO_TRAIN_FILE, COCO_VAL_FILE, default_data_root, load_part, resolve_split
    from posecurator.train.evaluate import evaluate_run

    root = default_data_root()
    split = resolve_split(args.split)
    out = Path(args.output) / f"seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    train = load_part(split.train, cache_dir=Path(args.output) / "cache", progress=False)
    test = load_part(split.test, cache_dir=Path(args.output) / "cache", progress=False)
    coco_train = import_path(root / "coco" / COCO_TRAIN_FILE, progress=False)
    coco_val = import_path(root / "coco" / COCO_VAL_FILE, progress=False)
    estimator = Path(args.estimators) / "runs" / f"baseline-gt-seed{seed}"
    results = {}
    done_path = out / "rows.json"
    if done_path.is_file():
        results = json.loads(done_path.read_text())

    def evaluate(run) -> dict:
        r3 = evaluate_run(run, test)
        r2 = evaluate_run(run, coco_val)
        return {"mpjpe": r3["mpjpe"], "pa_mpjpe": r3["pa_mpjpe"], "pck_0.05": r2["pck_0.05"], "pck_0.1": r2["pck_0.1"]}

    if "real only" not in results:
        results["real only"] = evaluate(estimator)
    for row, variant in ROWS[1:]:
        if row in results:
            continue
        t0 = time.perf_counter()
        if variant == "add_aug":
            n_added = int(results["+ PoseSyn"]["kept"])
            run, info = add_augmentation_run(train, estimator, n_added=n_added, out=out / "add_aug", seed=seed)
            results[row] = {**evaluate(run), **info, "wall_s": time.perf_counter() - t0}
            done_path.write_text(json.dumps(results, indent=1, default=float))
            print(f"[posesyn-bench] seed {seed} {row}: MPJPE {results[row]['mpjpe']:.1f} mm", flush=True)
            continue
        name = {"control": "full", "full_fs": "full"}.get(variant, variant)
        mode = "fs" if variant == "full_fs" else "ft"
        folder = out / ("full" if variant == "control" else variant)
        summary = run_posesyn(coco_train, estimator_run=estimator, train=train, motion_model_dir=args.model, out_dir=folder,
                              top=args.top, bottom=args.bottom, per_sample=args.per_sample, tau=args.tau, mode=mode,
                              seed=seed, variant=name, control=(variant in ("control", "full")), top_k=args.top_k)
        run = folder / ("control" if variant == "control" else "lifter")
        results[row] = {**evaluate(run), "kept": summary["data"]["kept"], "pairs": summary["data"]["synthesized_pairs"],
                        "pass_rate": summary["data"]["pass_rate"], "tau_sweep": summary["filter"]["tau_sweep"],
                        "loop_s": summary["times"]["loop_s"], "sampling_sequences_per_s": summary["times"]["sampling_sequences_per_s"],
                        "wall_s": time.perf_counter() - t0}
        done_path.write_text(json.dumps(results, indent=1, default=float))
        print(f"[posesyn-bench] seed {seed} {row}: MPJPE {results[row]['mpjpe']:.1f} mm, PCK@0.05 {100 * results[row]['pck_0.05']:.1f} %",
              flush=True)
    done_path.write_text(json.dumps(results, indent=1, default=float))


def add_augmentation_run(train, estimator, *, n_added: int, out: Path, seed: int) -> tuple[Path, dict]:
    """ADD's full augmentation at PoseSyn's amount: ``n_added`` children evolved (seeded) from the
    real training part the estimator was trained on (its validation clips left out, as
    :func:`finetune` leaves them out), checked by the plausibility prior fitted on that part,
    then the same FT schedule as the PoseSyn rows. Returns the lifter run folder and counts."""
    from posecurator.augment import JointAnglePrior
    from posecurator.augment.evolution import EvolutionConfig, evolve
    from posecurator.pipelines.posesyn import finetune, run_train_config
    from posecurator.train.trainer import split_by_clip

    cfg = run_train_config(estimator)
    real3d = train.replace(joints2d=None, visibility=None, camera=None, bbox=None, cameras=[])
    part, _ = split_by_clip(real3d, val_fraction=cfg.val_fraction, seed=cfg.seed, cut=cfg.val_cut)
    t0 = time.perf_counter()
    prior = JointAnglePrior().fit(part)
    aug, stats = evolve(part, prior=prior, config=EvolutionConfig(seed=seed, max_generations=200),
                        target_size=len(part) + n_added, progress=False)
    evolve_s = time.perf_counter() - t0
    run = out / "lifter"
    finetune(train, aug, real_run=estimator, out_dir=run, mode="ft", resume=True)
    made = sum(st.made for st in stats)
    return run, {"kept": len(aug), "pass_rate": len(aug) / max(made, 1), "generations": len(stats), "evolve_s": evolve_s}


def table(args) -> str:
    per_seed = {}
    for seed in args.seeds:
        p = Path(args.output) / f"seed{seed}" / "rows.json"
        if p.is_file():
            per_seed[seed] = json.loads(p.read_text())
    pm = lambda v, s=1.0: f"{np.mean(v) * s:.1f} ± {np.std(v, ddof=1) * s:.1f}" if len(v) > 1 else (f"{v[0] * s:.1f}" if v else "-")  # noqa: E731
    lines = [f"Split `{args.split}`, seeds {sorted(per_seed)}; estimator: {args.estimators}; motion model: {args.model}; "
             f"top {args.top}, bottom {args.bottom}, {args.per_sample} motions per hard sample, tau {args.tau} mm.", "",
             "| lifter | MPJPE (mm) | PA-MPJPE (mm) | COCO PCK@0.05 (%) | COCO PCK@0.1 (%) | synthetic pairs kept | pass rate (%) |",
             "|---|---|---|---|---|---|---|"]
    for row, _ in ROWS:
        vals = [r[row] for r in per_seed.values() if row in r]
        if not vals:
            continue
        # the control trains on no synthetic data (its run shares the full row's stages, not its data)
        get = lambda k: [v[k] for v in vals if v.get(k) is not None and not (row == "real only, FT" and k in ("kept", "pass_rate"))]  # noqa: E731
        lines.append(f"| {row} | {pm(get('mpjpe'))} | {pm(get('pa_mpjpe'))} | {pm(get('pck_0.05'), 100)} | {pm(get('pck_0.1'), 100)} "
                     f"| {int(np.mean(get('kept'))) if get('kept') else '-'} | {pm(get('pass_rate'), 100) if get('pass_rate') else '-'} |")
    full = [r["+ PoseSyn"] for r in per_seed.values() if "+ PoseSyn" in r]
    if full:
        sweep = full[0]["tau_sweep"]
        lines += ["", "Tau sweep of the full PoseSyn data (seed " + str(sorted(per_seed)[0]) + "): " + json.dumps(sweep),
                  f"Loop time (EEM + sampling + pairs + filter + fine-tuning): {np.mean([f['loop_s'] for f in full]):.0f} s; "
                  f"sampling {np.mean([f['sampling_sequences_per_s'] for f in full]):.0f} sequences/s."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="hdm05-to-cmu")
    ap.add_argument("--estimators", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--top", type=int, default=500)
    ap.add_argument("--bottom", type=int, default=200)
    ap.add_argument("--per-sample", type=int, default=8)
    ap.add_argument("--tau", type=float, default=120.0)
    ap.add_argument("--top-k", type=int, default=None)
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    if not args.table_only:
        for seed in args.seeds:
            run_seed(args, seed)
    text = table(args)
    (Path(args.output) / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
