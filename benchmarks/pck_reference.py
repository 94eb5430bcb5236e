"""How much of the coco-2d PCK a lifter earns: the same protocol for an estimator that ignores the
2D and always predicts one pose (the mean root-relative camera-frame pose of the lifter's
training pairs, seen through the trainer's random cameras), placed and projected like any
prediction. The gap between this row and a lifter's is what lifting adds.

Command: python benchmarks/pck_reference.py  (about 20 s)
"""

from __future__ import annotations

import json

import numpy as np

from posecurator.camera.pairs import sample_training_pairs
from posecurator.io import import_path
from posecurator.pipelines.splits import COCO_VAL_FILE, default_data_root
from posecurator.scoring.estimator import FunctionEstimator
from posecurator.train.evaluate import evaluate_2d


def main() -> None:
    root = default_data_root()
    train = import_path(root / "hdm05", progress=False)
    _, y3d, _ = sample_training_pairs(train, rng=np.random.default_rng(0))
    mean_pose = y3d.astype(np.float64).mean(0)
    coco = import_path(root / "coco" / COCO_VAL_FILE, progress=False)

    def constant(ps):
        # like the lifter, no prediction without a labelled root, so the same people are counted
        out = np.broadcast_to(mean_pose, (len(ps),) + mean_pose.shape).copy()
        out[ps.visibility[:, 0] <= 0] = np.nan
        return out

    res = evaluate_2d(FunctionEstimator(constant, name="mean pose"), coco)
    print(json.dumps({k: v for k, v in res.items() if k != "per_joint"}))


if __name__ == "__main__":
    main()
