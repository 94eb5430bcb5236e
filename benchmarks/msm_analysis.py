"""PoseSyn's Table 2 in the lifting setting: does the motion model produce, around a mis-predicted
pose, at least one pose closer to the unknown true pose than the mis-prediction itself?

On a 3D set that neither the lifter nor the motion model trained on (default: the CMU test files of
hdm05-to-cmu, for models trained on HDM05), seen through seeded random cameras as if 2D-only, the
100 samples with the largest true 3D error of the lifter's prediction are taken. For each:
(a) the mis-prediction alone; (b) MSM without initial codes (caption only); (c) full MSM (caption
and the mis-predicted pose); (d) real mocap windows of the motion model's training data around
nothing (a random real motion: how close chance gets). For every generated pose the PA-MPJPE to
the true pose is computed; per sample the mean, std and min over its ``--per-sample`` sequences;
the table averages them over the 100 samples. Captions come from the describer on the prediction
(as `posecurator hard` makes them). Nothing here trains anything.

Command:
    python benchmarks/msm_analysis.py --estimator bench-out/coco-2d-hdm05/runs/baseline-gt-seed0 \\
        --model bench-out/motion-hdm05 --seed 0
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--estimator", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--test", default=None, help="3D set (default: the CMU test files of hdm05-to-cmu)")
    ap.add_argument("--train", default=None, help="the motion model's training data for row (d) (default: all of HDM05)")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--per-sample", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from posecurator.camera.core import world_to_camera
    from posecurator.camera.placement import sample_cameras
    from posecurator.io import import_path
    from posecurator.metrics import pa_mpjpe
    from posecurator.pipelines.hard_samples import through_random_cameras
    from posecurator.pipelines.splits import _cmu_test_files, default_data_root
    from posecurator.poseset import PoseSet
    from posecurator.synthesis.captions import caption_samples
    from posecurator.synthesis.motion_repr import camera_to_upright, motion_windows
    from posecurator.synthesis.text_embedding import embed_unique, load_text_encoder
    from posecurator.train.estimator import LifterEstimator
    from posecurator.train.motion_model import load_motion_model

    root = default_data_root()
    test = (import_path(args.test, progress=False) if args.test else
            PoseSet.concatenate([import_path(p, progress=False) for p in _cmu_test_files(root)], renumber=True))
    seen = through_random_cameras(test, seed=args.seed)
    pred = LifterEstimator(args.estimator).predict(seen)
    cams = sample_cameras(seen)
    true = world_to_camera(seen.joints3d.astype(np.float64), cams["R"], cams["t"])
    true = true - true[:, :1]
    err = np.linalg.norm(pred - true, axis=-1).mean(-1)
    ok = np.isfinite(err)
    hard = np.flatnonzero(ok)[np.argsort(-err[ok], kind="stable")[: args.n]]
    gt, mis = true[hard], pred[hard]

    model = load_motion_model(args.model)
    part = seen.subset(hard)
    texts = [str(t) for t in caption_samples(part, pred3d=mis, up=(0.0, -1.0, 0.0)).text]
    encoder = load_text_encoder()
    _, vectors, inverse = embed_unique(texts, encoder)
    text_emb = vectors[inverse]
    init = model.encode_init(camera_to_upright(mis))
    s = args.per_sample

    def stats(motions: np.ndarray) -> dict:
        """motions (N, S, L, 17, 3) -> mean over samples of the per-sample mean / std / min PA-MPJPE."""
        n, k, length = motions.shape[:3]
        flat = motions.reshape(n, k * length, 17, 3)
        target = np.broadcast_to(gt[:, None], flat.shape)
        pa = pa_mpjpe(flat.reshape(-1, 17, 3), target.reshape(-1, 17, 3), reduce="none").reshape(n, k * length)
        return {"mean": float(pa.mean(1).mean()), "std": float(pa.std(1).mean()), "min": float(pa.min(1).mean())}

    mis_pa = pa_mpjpe(mis, gt, reduce="none")
    rows = {"(a) mis-prediction": {"mean": float(mis_pa.mean()), "std": 0.0, "min": float(mis_pa.mean())}}
    rows["(b) MSM w/o init codes"] = stats(model.sample(text_emb, None, n_per_sample=s, seed=args.seed))
    rows["(c) MSM (full)"] = stats(model.sample(text_emb, init, n_per_sample=s, seed=args.seed))
    train = import_path(args.train or root / "hdm05", progress=False)
    windows = motion_windows(train, length=model.window_length, stride=8).joints
    rng = np.random.default_rng(args.seed)
    pick = rng.integers(0, len(windows), size=(len(hard), s))
    rows["(d) random real motions (chance)"] = stats(windows[pick])
    lines = [f"100 hardest of {int(ok.sum())} poses ({'CMU test files' if not args.test else args.test}, random cameras, seed "
             f"{args.seed}); lifter {args.estimator}; mean 3D error of the 100: {err[hard].mean():.1f} mm; "
             f"{s} sequences of {model.window_length} frames per sample", "",
             "| poses | mean PA-MPJPE (mm) | std | min |", "|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['mean']:.1f} | {r['std']:.1f} | {r['min']:.1f} |")
    print(json.dumps(rows) if args.json else "\n".join(lines))


if __name__ == "__main__":
    main()
