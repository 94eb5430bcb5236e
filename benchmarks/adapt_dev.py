"""A development split for lifter adaptation, built from source-side data only.

The benchmark splits' targets and tests are never used to develop a method. This script makes a
split of its own out of the Bandai data (the source of `bandai-to-hdm05-uda`): source = Bandai
dataset-1 in 3D, unlabeled target = Bandai dataset-2 seen through seeded random training cameras
(3D dropped), development test = dataset-2's 3D through the evaluation rig. It trains the lifter
with each adaptation setting and prints the development MPJPE beside the training-side validation
figures (source validation MPJPE, target reprojection on held-out target clips).

Command:
    python benchmarks/adapt_dev.py --epochs 30 -o bench-out/adapt-dev
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SETTINGS = {
    "source only": {},
    "reprojection + bones": {"adapt": "reprojection"},
    "reprojection + bones + rotation cycle": {"adapt": "reprojection", "adapt_cycle_weight": 1.0},
    "reprojection + bones, weight 0.1": {"adapt": "reprojection", "adapt_weight": 0.1},
    "reprojection + bones + rotation cycle, weight 0.1": {"adapt": "reprojection", "adapt_weight": 0.1,
                                                          "adapt_cycle_weight": 1.0},
}


def projected_target(ps, seed: int):
    from posecurator.camera import RandomCameraSampler

    from posecurator.camera.pairs import as_unlabeled_2d

    cams = RandomCameraSampler().sample(ps.joints3d[:, 0].astype(np.float64), np.random.default_rng(seed))
    px, _ = cams.project(ps.joints3d.astype(np.float64))
    return as_unlabeled_2d(ps, cams, px)


def main() -> None:
    import torch

    from posecurator.pipelines.splits import default_data_root, load_dataset
    from posecurator.train.evaluate import evaluate_run
    from posecurator.train.trainer import LifterTrainer, TrainConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS))
    ap.add_argument("-o", "--output", default="bench-out/adapt-dev")
    args = ap.parse_args()
    torch.set_num_threads(1)
    root = default_data_root() / "bandai"
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    source = load_dataset(root / "dataset-1", progress=False)
    dev = load_dataset(root / "dataset-2", progress=False)
    target = projected_target(dev, seed=1000 + args.seed)
    print(f"source Bandai dataset-1 ({len(source)} poses), target dataset-2 2D ({len(target)}), dev test dataset-2 3D; "
          f"fast preset, {args.epochs} epochs, seed {args.seed}\n")
    print("| setting | dev MPJPE (mm) | dev PA-MPJPE (mm) | source val. MPJPE (mm) | target val. reproj. (mm) | s |")
    print("|---|---|---|---|---|---|")
    rows = {}
    for name in args.settings:
        cfg = TrainConfig.preset("fast", epochs=args.epochs, seed=args.seed, **SETTINGS[name])
        run = out / name.replace(" ", "_").replace("+", "and")
        t0 = time.perf_counter()
        summary = LifterTrainer(cfg).fit(source, out_dir=run, target=target, progress=False)
        res = evaluate_run(run, dev)
        hist = json.loads((run / "history.json").read_text())["epochs"]
        best = hist[summary["best_epoch"]]
        rows[name] = {"dev_mpjpe": res["mpjpe"], "dev_pa_mpjpe": res["pa_mpjpe"], "val_mpjpe": best["val_mpjpe"],
                      "val_target_reproj_mm": best.get("val_target_reproj_mm")}
        print(f"| {name} | {res['mpjpe']:.1f} | {res['pa_mpjpe']:.1f} | {best['val_mpjpe']:.1f} | "
              f"{best.get('val_target_reproj_mm', float('nan')):.1f} | {time.perf_counter() - t0:.0f} |", flush=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
