"""Poses in a canonical frame: root-relative and turned to face one way.

Lives in the skeleton layer because augmentation (exploration measures), scoring (density),
training (the validation cut) and synthesis (real-motion search) all compare poses this way.
"""

from __future__ import annotations

import numpy as np


def pose_features(joints: np.ndarray, *, canonical_yaw: bool = True, right_hip: int = 1, left_hip: int = 4,
                  root: int = 0) -> np.ndarray:
    """(N, J, 3) joints in mm -> (N, 3J) float64 vectors relative to joint ``root`` (hips turned to
    face +Y if asked; Z up). Defaults: the H36M17 layout."""
    x = np.asarray(joints, dtype=np.float64)
    x = x - x[:, root:root + 1]
    if canonical_yaw:
        hip = x[:, right_hip] - x[:, left_hip]
        yaw = np.arctan2(hip[:, 1], hip[:, 0])  # turn by -yaw: the right hip points along +X
        c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
        x = np.stack([c * x[..., 0] + s * x[..., 1], -s * x[..., 0] + c * x[..., 1], x[..., 2]], axis=-1)
    return x.reshape(len(x), -1)
