"""2D-3D pairs for the lifter: project 3D poses through cameras (../shared/BENCHMARK.md).

Every pair is

- ``x2d`` (J, 2) float32: the joints projected to pixels (plus optional Gaussian pixel noise,
  added BEFORE normalisation), normalised as VideoPose3D does (``x / w * 2 - [1, h / w]``);
- ``y3d`` (J, 3) float32: the joints in that camera's frame (OpenCV: x right, y down, z forward),
  minus the root joint (pelvis), in millimetres.

Training pairs use fresh random cameras (:class:`posecurator.camera.RandomCameraSampler`, one per
pose and view; the trainer draws new ones every epoch). Evaluation pairs use the four fixed
cameras of :func:`posecurator.camera.evaluation_rig` around each clip's mean pelvis, with the
floor at Z = 0; they are never used for training.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from posecurator.camera import evaluation_rig, normalize_screen_coordinates
# Training pairs are pure camera geometry and live in the camera layer (scorers use them too).
from posecurator.camera.pairs import (  # noqa: F401  (re-exported)
    _joints3d,
    make_pairs,
    project_normalise,
    root_joint_of,
    sample_training_pairs,
)
from posecurator.errors import DataError
from posecurator.poseset import PoseSet

N_EVAL_CAMERAS = 4


class EvalPairs(NamedTuple):
    """Evaluation pairs, camera-major: pair ``k * N + i`` is pose ``i`` seen by rig camera ``k``."""

    x2d: np.ndarray           # (4N, J, 2) float32, normalised screen coordinates
    y3d: np.ndarray           # (4N, J, 3) float32, camera frame, root-relative, mm
    pose_index: np.ndarray    # (4N,) int64, row of the source pose set
    camera_index: np.ndarray  # (4N,) int64, 0..3 = azimuth 45, 135, 225, 315 degrees


def clip_mean_root(poses: PoseSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-clip mean root (pelvis) position: (clip names (C,), mean (C, 3) mm, inverse (N,) clip of each pose)."""
    joints = _joints3d(poses)
    names, inverse = np.unique(poses.clip, return_inverse=True)
    inverse = inverse.reshape(-1)
    root = joints[:, root_joint_of(poses)].astype(np.float64)
    counts = np.bincount(inverse, minlength=len(names)).astype(np.float64)
    mean = np.stack([np.bincount(inverse, weights=root[:, d], minlength=len(names)) for d in range(3)], axis=1)
    return names, mean / counts[:, None], inverse


def evaluation_pairs(poses: PoseSet, *, noise_px: float = 0.0, seed: int = 0) -> EvalPairs:
    """The benchmark's test pairs: every pose through the four evaluation cameras of its clip.

    The rig of a clip stands around the clip's mean pelvis with the floor at Z = 0. "Noisy 2D"
    (``noise_px`` > 0, the benchmark uses 5) adds seeded N(0, noise_px^2) pixels before
    normalisation. Pairs are camera-major (see :class:`EvalPairs`); 4N in all.
    """
    joints = _joints3d(poses)
    n = len(joints)
    names, mean_root, inverse = clip_mean_root(poses)
    rigs = [evaluation_rig(m, floor_z=0.0) for m in mean_root]  # one rig per clip, not per pose
    R = np.array([[cam.R for cam in rig] for rig in rigs]).reshape(len(names), N_EVAL_CAMERAS, 3, 3)
    t = np.array([[cam.t for cam in rig] for rig in rigs]).reshape(len(names), N_EVAL_CAMERAS, 3)
    f = np.array([[cam.f for cam in rig] for rig in rigs]).reshape(len(names), N_EVAL_CAMERAS, 2)
    c = np.array([[cam.c for cam in rig] for rig in rigs]).reshape(len(names), N_EVAL_CAMERAS, 2)
    size = np.array([[(cam.width, cam.height) for cam in rig] for rig in rigs], dtype=np.float64).reshape(len(names), N_EVAL_CAMERAS, 2)
    camera_index = np.repeat(np.arange(N_EVAL_CAMERAS), n)
    pose_index = np.tile(np.arange(n), N_EVAL_CAMERAS)
    clip_of_pair = inverse[pose_index]
    sel = (clip_of_pair, camera_index)
    rng = np.random.default_rng(seed) if noise_px > 0 else None
    try:
        x2d, y3d = project_normalise(joints[pose_index], R[sel], t[sel], f[sel], c[sel], size[sel][:, 0], size[sel][:, 1],
                                      root_joint=root_joint_of(poses), noise_px=noise_px, rng=rng)
    except DataError as e:
        raise DataError(None, "a pose stands at or behind an evaluation camera (a clip travels more than 5 m "
                              f"from its mean pelvis); the protocol cannot evaluate it: {e.message}") from None
    return EvalPairs(x2d, y3d, pose_index.astype(np.int64), camera_index.astype(np.int64))


def evaluation_pairs_reference(poses: PoseSet, *, noise_px: float = 0.0, seed: int = 0) -> EvalPairs:
    """Plain per-pose reference of :func:`evaluation_pairs` (slow; for tests only)."""
    joints = _joints3d(poses)
    n, root = len(joints), root_joint_of(poses)
    rigs = {}
    for name in np.unique(poses.clip):
        rows = [i for i in range(n) if poses.clip[i] == name]
        rigs[name] = evaluation_rig(np.mean([joints[i, root].astype(np.float64) for i in rows], axis=0))
    j = joints.shape[1]
    px, y3d, size = np.zeros((N_EVAL_CAMERAS * n, j, 2)), np.zeros((N_EVAL_CAMERAS * n, j, 3)), []
    for k in range(N_EVAL_CAMERAS):
        for i in range(n):
            cam = rigs[poses.clip[i]][k]
            x_cam = cam.world_to_camera(joints[i].astype(np.float64))
            px[k * n + i] = cam.project(joints[i].astype(np.float64))
            y3d[k * n + i] = x_cam - x_cam[root]
            size.append((cam.width, cam.height))
    if noise_px > 0:  # same draw as the batched version: one (4N, J, 2) block
        px = px + np.random.default_rng(seed).normal(0.0, noise_px, px.shape)
    x2d = np.stack([normalize_screen_coordinates(p, w, h) for p, (w, h) in zip(px, size)])
    return EvalPairs(x2d.astype(np.float32), y3d.astype(np.float32),
                     np.tile(np.arange(n), N_EVAL_CAMERAS), np.repeat(np.arange(N_EVAL_CAMERAS), n))
