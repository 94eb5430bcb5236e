"""Which augmented poses ADD's quality distillation drops, seen from the test poses (analysis only).

For a finished ``posecurator bench`` of the ADD methods, one (setting, seed): the cached 5x
augmentation is scored again exactly as the ``quality_only`` row scored it (the same reference
lifter, the same reference distribution fitted on the training part, keep 80 %), and split into
kept and dropped. Each group's distance to the *test* poses is then measured: the distance to the
nearest test pose, root-relative and heading-aligned (the density scorer's features), as an RMS
over the 17 joints in mm, on a seeded sample of each group. The test poses are only looked at
here, after every choice was made; nothing is selected by them.

    python benchmarks/add_target_analysis.py hdm05-to-cmu bench-out/add-hdm05-to-cmu --setting gt --seed 0
    python benchmarks/add_target_analysis.py bandai-to-hdm05 bench-out/add-bandai-to-hdm05 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch


def nearest_distance(queries: np.ndarray, targets: np.ndarray, *, chunk: int = 2048) -> np.ndarray:
    """(N, 3J) and (M, 3J) pose features -> (N,) distance to the nearest target, RMS per joint (mm)."""
    t = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32))
    out = [torch.cdist(torch.from_numpy(np.ascontiguousarray(queries[i:i + chunk], dtype=np.float32)), t).min(dim=1).values
           for i in range(0, len(queries), chunk)]
    n_joints = queries.shape[1] // 3
    return (torch.cat(out).numpy() / math.sqrt(n_joints)) if out else np.zeros(0)


def main(argv=None) -> int:
    from posecurator.pipelines import bench_add
    from posecurator.pipelines.bench import SETTINGS, MethodContext, run_name
    from posecurator.pipelines.splits import load_part, resolve_split
    from posecurator.scoring.density import pose_features
    from posecurator.train.trainer import TrainConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("split", help="a split of ../shared/BENCHMARK.md")
    ap.add_argument("bench_dir", type=Path, help="the output folder of the finished bench")
    ap.add_argument("--data", default=None, help="data root (default ../shared/data)")
    ap.add_argument("--setting", default="gt", choices=sorted(SETTINGS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preset", default="fast", help="the bench's lifter preset")
    ap.add_argument("--sample", type=int, default=5000, help="poses per group whose nearest test pose is searched")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    split = resolve_split(args.split, args.data)
    cache = args.bench_dir / "cache"
    train = load_part(split.train, cache_dir=cache, progress=False)
    test = load_part(split.test, cache_dir=cache, progress=False)
    cfg = TrainConfig.preset(args.preset)
    cfg.seed, cfg.noise_px_train = args.seed, SETTINGS[args.setting]
    work = args.bench_dir / "runs" / run_name("quality_only", args.setting, args.seed)
    shared = bench_add._Shared(MethodContext(train=train, work_dir=work, seed=args.seed, noise_px=cfg.noise_px_train,
                                           config=cfg, progress=False))
    aug, _ = shared.full_augmentation()  # the bench's cached 5x augmentation
    reference_dir, _ = shared.reference()  # the bench's reference lifter (the baseline run)
    distiller = shared.ctx.scale_distiller(reference_dir=reference_dir).distiller
    _, kept = distiller.select(aug)
    novelty, error = distiller.last_novelty_, distiller.last_error_

    rng = np.random.default_rng([args.seed, 303])
    target = pose_features(test.joints3d)
    dist_aug = np.full(len(aug), np.nan)
    groups = {}
    figures = {}
    for name, mask in (("kept", kept), ("dropped", ~kept)):
        idx = np.flatnonzero(mask)
        idx = np.sort(rng.choice(idx, min(args.sample, len(idx)), replace=False))
        dist_aug[idx] = nearest_distance(pose_features(aug.joints3d[idx]), target)
        groups[name] = idx
    orig = shared.ctx.train_part.joints3d
    orig_idx = np.sort(rng.choice(len(orig), min(args.sample, len(orig)), replace=False))
    d_orig = nearest_distance(pose_features(orig[orig_idx]), target)
    for name, d, nov, err in (("original (train part)", d_orig, None, None),
                              ("kept", dist_aug[groups["kept"]], novelty[groups["kept"]], error[groups["kept"]]),
                              ("dropped", dist_aug[groups["dropped"]], novelty[groups["dropped"]], error[groups["dropped"]])):
        figures[name] = {"n_sampled": int(len(d)), "nearest_test_mm_mean": float(d.mean()),
                         "nearest_test_mm_median": float(np.median(d)),
                         "novelty_mean": None if nov is None else float(nov.mean()),
                         "lifter_error_mm_mean": None if err is None else float(err.mean())}
    # of the sampled augmented poses nearest the test poses, how many did distillation drop?
    sampled = np.flatnonzero(np.isfinite(dist_aug))
    # the sample holds kept and dropped in equal numbers: weight them back to their real shares
    weight = np.where(kept[sampled], kept.mean() / max(len(groups["kept"]), 1), (~kept).mean() / max(len(groups["dropped"]), 1))
    order = np.argsort(dist_aug[sampled], kind="stable")
    cum = np.cumsum(weight[order])
    nearest10 = order[: int(np.searchsorted(cum, 0.1 * cum[-1]) + 1)]
    dropped_share_nearest = float(weight[nearest10][~kept[sampled][nearest10]].sum() / weight[nearest10].sum())
    figures["dropped share overall"] = float((~kept).mean())
    figures["dropped share of the 10 % of augmented poses nearest the test poses"] = dropped_share_nearest
    figures["augmented"] = int(len(aug))
    figures["seconds"] = time.perf_counter() - t0

    print(f"{args.split} {args.setting} seed {args.seed}: {len(aug)} augmented poses, {int(kept.sum())} kept, "
          f"{int((~kept).sum())} dropped; test {split.test.label} ({len(test)} poses)")
    print(f"{'group':<24}{'nearest test pose (mm)':>24}{'median':>10}{'1 - prob':>10}{'lifter err (mm)':>17}")
    for name in ("original (train part)", "kept", "dropped"):
        f = figures[name]
        nov = "-" if f["novelty_mean"] is None else f"{f['novelty_mean']:.3f}"
        err = "-" if f["lifter_error_mm_mean"] is None else f"{f['lifter_error_mm_mean']:.1f}"
        print(f"{name:<24}{f['nearest_test_mm_mean']:>24.1f}{f['nearest_test_mm_median']:>10.1f}{nov:>10}{err:>17}")
    print(f"dropped: {figures['dropped share overall']:.0%} of the augmentation, "
          f"{dropped_share_nearest:.0%} of the 10 % of augmented poses nearest the test poses "
          f"({figures['seconds']:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
