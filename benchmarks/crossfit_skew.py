"""How much of the VAE difficulty score is "not trained on": in-sample vs cross-fitted scores.

On the ``hdm05-xsub`` split (source HDM05 bd + bk, target HDM05 dg) with the bench VAE config of
``posecurator vae-bench`` (:func:`posecurator.pipelines.vae_sampling.bench_vae_config`), seed 0:

1. **Held-out clips in the hard third.** The in-sample VAE (``source_scores(crossfit=None)``) is
   trained on 90 % of the clips; the VAE trainer holds the rest out for validation
   (:func:`posecurator.train.vae_trainer.training_split`). Printed: the fraction of those
   held-out poses that land in the hard third (the hardest 33 % by score, as ``hard:0.33``
   selects them; 33 % expected if "hard" did not depend on having been trained on) and their share
   of the hard third (their share of all poses expected), for the in-sample scores and for the
   5-fold cross-fitted scores (``source_scores(crossfit=5)``: every pose scored by the fold VAE
   that never saw its clip) of the very same poses.
2. **Target in the source's top 3 of 25 bins.** The target (HDM05 dg: new person, same
   activities) scored by the source VAE(s) and counted in the source's 25 equal-size bins: with
   the in-sample reference (the one VAE scores its own training set and the target) and with the
   cross-fitted reference (source scores out of fold, target by the mean of the 5 fold VAEs; also
   each fold VAE's target scores on their own, averaged, as a check). 12 % expected if the target
   were distributed like the source.

Run (about 5 minutes on one core, seconds when cached; VAEs cached in OUT/runs, the import in OUT/cache)::

    python benchmarks/crossfit_skew.py [--out bench-out/crossfit-skew] [--seed 0] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from posecurator.pipelines.splits import load_part, resolve_split
from posecurator.pipelines.vae_sampling import (DEFAULT_BINS, HARD_FRACTION, score_with_source_vae, source_scores)
from posecurator.selection.bins import assign_bins, bin_edges, difficulty_bins
from posecurator.train.vae_trainer import load_vae, prepare_inputs, split_by_clip, training_split

FOLDS = 5


def hard_mask(scores: np.ndarray, fraction: float = HARD_FRACTION) -> np.ndarray:
    """(N,) bool: the hardest ``fraction`` of the poses by score (ties by index, as a stable sort)."""
    n_hard = int(np.floor(fraction * len(scores) + 0.5))
    order = np.argsort(-scores, kind="stable")
    out = np.zeros(len(scores), dtype=bool)
    out[order[:n_hard]] = True
    return out


def top_bins_fraction(src: np.ndarray, tgt: np.ndarray, k: int = DEFAULT_BINS, top: int = 3) -> float:
    bins = difficulty_bins(src, k)
    edges = bin_edges(src, bins, k)
    return float(np.mean(assign_bins(tgt, edges) >= k - top))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench-out/crossfit-skew")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=None, help="data root (default ../shared/data)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    t0 = time.perf_counter()
    split = resolve_split("hdm05-xsub", args.data)
    train = load_part(split.train, cache_dir=out / "cache", progress=False)
    test = load_part(split.test, cache_dir=out / "cache", progress=False)
    print(f"hdm05-xsub: source {split.train.label} {len(train)} poses / {len(np.unique(train.clip))} clips, "
          f"target {split.test.label} {len(test)} poses (import {time.perf_counter() - t0:.0f} s)")

    log = print
    t1 = time.perf_counter()
    s_in, d_in = source_scores(train, cache_dir=out / "runs", seed=args.seed, progress=False, log=log, crossfit=None)
    t_in = time.perf_counter() - t1
    t1 = time.perf_counter()
    s_cf, d_cf = source_scores(train, cache_dir=out / "runs", seed=args.seed, progress=False, log=log, crossfit=FOLDS)
    t_cf = time.perf_counter() - t1
    _, cfg_in = load_vae(d_in)
    _, cfg_fold = load_vae(d_cf / "fold0")
    print(f"bench VAE config: in sample {cfg_in.epochs} epochs on {len(train)} poses "
          f"({t_in:.0f} s); {FOLDS} fold VAEs of {cfg_fold.epochs} epochs on ~{len(train) * (FOLDS - 1) // FOLDS} poses "
          f"each ({t_cf:.0f} s); 0 s = cached")

    # 1. the in-sample VAE's held-out (validation) clips in the hard third
    _, _, valid, _ = prepare_inputs(train, cfg_in)
    _, va = training_split(train.clip, valid, cfg_in)
    held = np.zeros(len(train), dtype=bool)
    held[va] = True
    rows = {}
    for name, scores in (("in_sample", s_in), (f"crossfit {FOLDS}", s_cf)):
        hard = hard_mask(scores)
        rows[name] = {"held_in_hard": float(hard[held].mean()), "held_share_of_hard": float(held[hard].mean()),
                      "trained_in_hard": float(hard[~held].mean())}
    print(f"\n1. The in-sample VAE's held-out clips ({held.sum()} poses, {len(np.unique(train.clip[held]))} clips = "
          f"{100 * held.mean():.1f} % of the source) and the hard third (hardest {100 * HARD_FRACTION:.0f} %):")
    print(f"   {'scores':<12} {'held-out poses in hard third':>30} {'their share of hard third':>27} "
          f"{'other poses in hard third':>27}")
    print(f"   {'expected':<12} {100 * HARD_FRACTION:>29.1f}% {100 * held.mean():>26.1f}% {100 * HARD_FRACTION:>26.1f}%")
    for name, r in rows.items():
        print(f"   {name:<12} {100 * r['held_in_hard']:>29.1f}% {100 * r['held_share_of_hard']:>26.1f}% "
              f"{100 * r['trained_in_hard']:>26.1f}%")
    # how far one draw of 10 % of the clips strays by itself: clip sets drawn as the trainer draws
    # them (split_by_clip, seeds 1..200), counted in the cross-fitted hard third (no training)
    hard_cf = hard_mask(s_cf)
    draws = np.array([hard_cf[split_by_clip(train.clip, cfg_in.val_fraction, seed=s)].mean() for s in range(1, 201)])
    rows["crossfit_random_clip_sets"] = {"mean": float(draws.mean()), "std": float(draws.std(ddof=1)),
                                         "p5": float(np.percentile(draws, 5)), "p95": float(np.percentile(draws, 95))}
    print(f"   (cross-fit, 200 other random {100 * cfg_in.val_fraction:.0f} %-clip sets: {100 * draws.mean():.1f} % "
          f"+- {100 * draws.std(ddof=1):.1f} in the hard third, 5-95 %: {100 * np.percentile(draws, 5):.1f}-"
          f"{100 * np.percentile(draws, 95):.1f} %)")

    # 2. the target in the source's top 3 of 25 bins
    tgt_in = score_with_source_vae(d_in, test)
    tgt_cf = score_with_source_vae(d_cf, test)
    per_fold = [top_bins_fraction(s_cf, score_with_source_vae(d_cf / f"fold{k}", test)) for k in range(FOLDS)]
    k = DEFAULT_BINS
    res2 = {"in_sample": top_bins_fraction(s_in, tgt_in), f"crossfit {FOLDS} (target: mean of fold VAEs)":
            top_bins_fraction(s_cf, tgt_cf), f"crossfit {FOLDS} (target: each fold VAE, averaged)": float(np.mean(per_fold))}
    q70 = {"in_sample": float(np.mean(tgt_in > np.quantile(s_in, 0.7))),
           f"crossfit {FOLDS} (target: mean of fold VAEs)": float(np.mean(tgt_cf > np.quantile(s_cf, 0.7)))}
    print(f"\n2. Target {split.test.label} ({len(test)} poses) in the source's top 3 of {k} VAE bins "
          f"(expected {100 * 3 / k:.0f} %), and above the source's 70 % quantile (expected 30 %):")
    for name, v in res2.items():
        extra = f"; above 70 % quantile {100 * q70[name]:.1f}%" if name in q70 else \
            f" (per fold: {', '.join(f'{100 * x:.1f}' for x in per_fold)})"
        print(f"   {name:<48} top 3 bins {100 * v:5.1f}%{extra}")
    print(f"   median score: source in sample {np.median(s_in):.3f}, cross-fit {np.median(s_cf):.3f}; "
          f"target by the in-sample VAE {np.median(tgt_in):.3f}, by the fold VAEs' mean {np.median(tgt_cf):.3f}")
    doc = {"split": "hdm05-xsub", "seed": args.seed, "folds": FOLDS, "n_source": len(train), "n_target": len(test),
           "n_heldout": int(held.sum()), "hard_fraction": HARD_FRACTION, "heldout_in_hard": rows,
           "target_top3_of_25": res2, "target_top3_per_fold": per_fold, "target_above_q70": q70,
           "vae_dirs": {"in_sample": str(d_in), "crossfit": str(d_cf)}, "wall_s": time.perf_counter() - t0}
    (out / "crossfit_skew.json").write_text(json.dumps(doc, indent=1))
    print(f"\n-> {out / 'crossfit_skew.json'} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
