"""What PoseSyn's error extraction finds on real 2D, and whether it finds what is truly hard.

Uses the lifters of two `posecurator bench coco-2d` runs (trained on HDM05 and on Bandai, root-scale
input, seeds 0-2) as target estimators and prints, as markdown:

1. the EEM error (Eq. 1, fraction of the person's size) on the COCO train subset, per training
   source (mean ± std over seeds of the median, the 95 % quantile and the hard-set cut-off);
2. how stable the hard set is (overlap between seeds, and between the HDM05 and Bandai lifters)
   and how much it overlaps with the VAE's hardest poses (``--vae``: a `posecurator difficulty`
   scores.npz of the same COCO file; chance = K / scored);
3. whether a 2D-only EEM finds the truly hard poses: on 3D sets the lifter never trained on, seen
   through seeded random cameras as if 2D-only (Bandai lifters on all of HDM05, HDM05 lifters on
   the CMU test files), the Spearman correlation between the 2D score and the true 3D error of the
   same prediction, and the precision of the top K against the true top K (chance = K / N);
4. the captions of the hardest and easiest samples of seed 0 (what those poses are).

Command (after the two bench runs and the difficulty run, see BENCHMARKS.md):
    python benchmarks/eem_analysis.py --hdm05 bench-out/coco-2d-hdm05 --bandai bench-out/coco-2d-bandai \
        --vae bench-out/diff-coco/scores.npz -o bench-out/eem
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from posecurator.io import import_path
from posecurator.pipelines.hard_samples import run_hard
from posecurator.pipelines.splits import COCO_TRAIN_FILE, _cmu_test_files, default_data_root
from posecurator.poseset import PoseSet
from posecurator.train.estimator import LifterEstimator

TOP, BOTTOM = 500, 200


def pm(values, scale=1.0, nd=3) -> str:
    v = np.asarray(values, dtype=np.float64) * scale
    return f"{v.mean():.{nd}f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.{nd}f}"


def overlap(a, b) -> float:
    a, b = set(a), set(b)
    return len(a & b) / max(min(len(a), len(b)), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hdm05", required=True, help="bench output folder of coco-2d trained on HDM05")
    ap.add_argument("--bandai", required=True, help="bench output folder of coco-2d trained on Bandai")
    ap.add_argument("--vae", help="scores.npz of `posecurator difficulty` on the COCO train subset")
    ap.add_argument("--data", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("-o", "--output", default="bench-out/eem")
    args = ap.parse_args()
    root = Path(args.data) if args.data else default_data_root()
    out = Path(args.output)
    t0 = time.perf_counter()
    coco = import_path(root / "coco" / COCO_TRAIN_FILE, progress=False)
    hdm05 = import_path(root / "hdm05", progress=False)
    cmu = PoseSet.concatenate([import_path(p, progress=False) for p in _cmu_test_files(root)], renumber=True)
    sources = {"HDM05": Path(args.hdm05), "Bandai": Path(args.bandai)}
    third = {"HDM05": ("CMU test files", cmu), "Bandai": ("HDM05 (all)", hdm05)}
    res: dict = {}
    for name, bench in sources.items():
        for seed in args.seeds:
            run = bench / "runs" / f"baseline-gt-seed{seed}"
            est = LifterEstimator(run)
            s2d = run_hard(coco, est, out_dir=out / f"coco-{name.lower()}-seed{seed}", top=TOP, bottom=BOTTOM, seed=seed,
                           embed=False, log=lambda m: None)
            label, poses3d = third[name]
            s3d = run_hard(poses3d, est, out_dir=out / f"3d-{name.lower()}-seed{seed}", top=TOP, bottom=BOTTOM, seed=seed,
                           embed=False, log=lambda m: None)
            res[(name, seed)] = {"coco": s2d, "3d": s3d, "3d_label": label}
    lines = ["### EEM error on the COCO train subset (1,483 annotations with >= 8 keypoints)", "",
             "| lifter trained on | scored | median | 95 % quantile | hard cut-off (top 500) | easy cut-off (bottom 200) |",
             "|---|---|---|---|---|---|"]
    for name in sources:
        rows = [res[(name, s)]["coco"] for s in args.seeds]
        lines.append(f"| {name} | {rows[0]['n_scored']} | {pm([r['quantiles']['q50'] for r in rows])} "
                     f"| {pm([r['quantiles']['q95'] for r in rows])} | {pm([r['selection']['hard_error_range'][0] for r in rows])} "
                     f"| {pm([r['selection']['easy_error_range'][1] for r in rows])} |")
    lines += ["", "### How stable the hard set is, and its overlap with the VAE's hardest poses", "",
              "| comparison | overlap of the top 500 (mean over pairs) | chance |", "|---|---|---|"]
    n_scored = res[(next(iter(sources)), args.seeds[0])]["coco"]["n_scored"]
    chance = TOP / n_scored
    hard = {k: v["coco"]["selection"]["hard_sample_ids"] for k, v in res.items()}
    for name in sources:
        pairs = [overlap(hard[(name, a)], hard[(name, b)]) for i, a in enumerate(args.seeds) for b in args.seeds[i + 1:]]
        lines.append(f"| {name} lifters, seed vs seed | {np.mean(pairs):.2f} | {chance:.2f} |")
    cross = [overlap(hard[("HDM05", s)], hard[("Bandai", s)]) for s in args.seeds]
    lines.append(f"| HDM05 vs Bandai lifter, same seed | {np.mean(cross):.2f} | {chance:.2f} |")
    if args.vae:
        with np.load(args.vae, allow_pickle=False) as z:
            vids, vscore = z["sample_id"], z["score"]
        ok = np.isfinite(vscore)
        vae_top = vids[ok][np.argsort(-vscore[ok], kind="stable")[:TOP]].tolist()
        for name in sources:
            lines.append(f"| {name} lifters vs VAE top 500 | {np.mean([overlap(hard[(name, s)], vae_top) for s in args.seeds]):.2f} "
                         f"| {TOP / ok.sum():.2f} |")
    lines += ["", "### Does the 2D-only score find the truly hard poses? (3D sets the lifter never saw, through random cameras)", "",
              "| lifter trained on | scored set | poses | Spearman (2D score vs true 3D error) | precision of the top 500 | chance |",
              "|---|---|---|---|---|---|"]
    for name in sources:
        rows = [res[(name, s)]["3d"]["check_against_3d"] for s in args.seeds]
        lines.append(f"| {name} | {res[(name, args.seeds[0])]['3d_label']} | {rows[0]['n']} | {pm([r['spearman'] for r in rows], nd=2)} "
                     f"| {pm([r['precision_at_k'] for r in rows], nd=2)} | {rows[0]['chance_precision']:.2f} |")
    lines += ["", "### What the hardest and easiest COCO samples are (HDM05 lifter, seed 0: most common caption phrases)", ""]
    cap = json.loads((out / f"coco-hdm05-seed{args.seeds[0]}" / "captions.json").read_text())
    for which in ("hard", "easy"):
        phrases = Counter(p.strip() for t, s in zip(cap["text"], cap["set"]) if s == which for p in t.split(","))
        n = sum(1 for s in cap["set"] if s == which)
        lines.append(f"- {which} ({n}): " + "; ".join(f"{p} ({100 * c / n:.0f} %)" for p, c in phrases.most_common(8)))
    lines += ["", f"({time.perf_counter() - t0:.0f} s)"]
    text = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eem_analysis.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
