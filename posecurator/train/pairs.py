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

from posecurator.camera import (
    CameraBatch,
    RandomCameraSampler,
    evaluation_rig,
    normalize_screen_coordinates,
    project_points,
    world_to_camera,
)
from posecurator.errors import DataError
from posecurator.poseset import PoseSet
from posecurator.skeleton import get_layout

N_EVAL_CAMERAS = 4


class EvalPairs(NamedTuple):
    """Evaluation pairs, camera-major: pair ``k * N + i`` is pose ``i`` seen by rig camera ``k``."""

    x2d: np.ndarray           # (4N, J, 2) float32, normalised screen coordinates
    y3d: np.ndarray           # (4N, J, 3) float32, camera frame, root-relative, mm
    pose_index: np.ndarray    # (4N,) int64, row of the source pose set
    camera_index: np.ndarray  # (4N,) int64, 0..3 = azimuth 45, 135, 225, 315 degrees


def root_joint_of(poses: PoseSet) -> int:
    """Index of the root joint (the pelvis in H36M17) of the pose set's layout."""
    try:
        return get_layout(poses.layout).parents.index(-1)
    except ValueError:
        return 0  # unknown layout: by convention the first joint is the root


def _joints3d(poses: PoseSet) -> np.ndarray:
    if poses.joints3d is None:
        raise DataError(None, "the pose set has no 3D joints; 2D-3D pairs need joints3d")
    return poses.joints3d


def _project_normalise(joints_world: np.ndarray, R, t, f, c, width, height, *, root_joint: int,
                       noise_px: float, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
    """(N, J, 3) world mm + per-row camera arrays -> (x2d_norm (N, J, 2), y3d (N, J, 3)) float32."""
    x_cam = world_to_camera(joints_world.astype(np.float64), R, t)
    if np.any(x_cam[..., 2] <= 1.0):
        bad = int(np.argmax((x_cam[..., 2] <= 1.0).any(axis=1)))
        raise DataError(None, f"pose {bad} has joints at or behind the camera plane; cannot project it")
    x_px = project_points(x_cam, f, c)
    if noise_px > 0:
        if rng is None:
            raise ValueError("noise_px > 0 needs an rng")
        x_px = x_px + rng.normal(0.0, noise_px, x_px.shape)
    x2d = normalize_screen_coordinates(x_px, width, height)
    y3d = x_cam - x_cam[:, root_joint:root_joint + 1]
    return x2d.astype(np.float32), y3d.astype(np.float32)


def make_pairs(poses: PoseSet, cameras: CameraBatch, *, noise_px: float = 0.0,
               rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One pair per pose: pose ``i`` seen by camera ``i`` of ``cameras`` (len N).

    Returns ``x2d_norm`` (N, J, 2) float32 and ``y3d_cam_rootrel`` (N, J, 3) float32 mm.
    ``noise_px`` > 0 adds N(0, noise_px^2) pixels to the projection (needs ``rng``).
    """
    joints = _joints3d(poses)
    if len(cameras) != len(joints):
        raise ValueError(f"need one camera per pose: {len(cameras)} cameras for {len(joints)} poses")
    return _project_normalise(joints, cameras.R, cameras.t, cameras.f, cameras.c, cameras.width, cameras.height,
                              root_joint=root_joint_of(poses), noise_px=noise_px, rng=rng)


def sample_training_pairs(poses: PoseSet, *, rng: np.random.Generator, sampler: RandomCameraSampler | None = None,
                          n_views: int = 1, index: np.ndarray | None = None,
                          noise_px: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs through fresh random cameras: every selected pose seen by ``n_views`` cameras.

    ``sampler`` is the camera sampler (default :class:`RandomCameraSampler()`); cameras aim at
    each pose's own pelvis, floor at Z = 0. ``index`` (M,) selects (and may repeat) rows of
    ``poses``; default all rows. Returns ``x2d_norm`` (M*n_views, J, 2), ``y3d`` (M*n_views, J, 3)
    mm and ``pose_index`` (M*n_views,) int64 (view-major: the index list repeated n_views times).
    """
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    sampler = RandomCameraSampler() if sampler is None else sampler
    joints = _joints3d(poses)
    index = np.arange(len(joints)) if index is None else np.asarray(index, dtype=np.int64)
    pose_index = np.tile(index, n_views)
    root = root_joint_of(poses)
    world = joints[pose_index]
    cams = sampler.sample(world[:, root], rng, floor_z=0.0)
    x2d, y3d = _project_normalise(world, cams.R, cams.t, cams.f, cams.c, cams.width, cams.height,
                                  root_joint=root, noise_px=noise_px, rng=rng)
    return x2d, y3d, pose_index.astype(np.int64)


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
        x2d, y3d = _project_normalise(joints[pose_index], R[sel], t[sel], f[sel], c[sel], size[sel][:, 0], size[sel][:, 1],
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
