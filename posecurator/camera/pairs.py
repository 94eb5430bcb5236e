"""2D-3D pairs: 3D poses seen through cameras, projected and normalised as the lifter sees them.

Every pair is

- ``x2d`` (J, 2) float32: the joints projected to pixels (plus optional Gaussian pixel noise,
  added BEFORE normalisation), normalised as VideoPose3D does (``x / w * 2 - [1, h / w]``);
- ``y3d`` (J, 3) float32: the joints in that camera's frame (OpenCV: x right, y down, z forward),
  minus the root joint (pelvis), in millimetres.

This is the camera layer's version of the pair-making the trainer uses
(:mod:`posecurator.train.pairs` has the same functions with the same random draws), so that the
scoring layer (ADD's lifter-error score) can make pairs without importing the training layer.
"""

from __future__ import annotations

import numpy as np

from posecurator.camera.core import (
    CameraBatch,
    RandomCameraSampler,
    normalize_screen_coordinates,
    project_points,
    world_to_camera,
)
from posecurator.errors import DataError
from posecurator.poseset import PoseSet
from posecurator.skeleton import get_layout


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


def project_normalise(joints_world: np.ndarray, R, t, f, c, width, height, *, root_joint: int,
                      noise_px: float = 0.0, rng: np.random.Generator | None = None,
                      first_row: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, J, 3) world mm + per-row camera arrays (R (N, 3, 3), t (N, 3), f (N, 2), c (N, 2),
    width/height (N,) px) -> (x2d_norm (N, J, 2), y3d (N, J, 3) root-relative camera frame mm), float32.

    Raises DataError when a joint is at or behind the camera plane (z <= 1 mm), naming the pose
    as row ``first_row + i`` (a block of a larger batch names the batch's row).
    """
    x_cam = world_to_camera(np.asarray(joints_world, dtype=np.float64), R, t)
    if np.any(x_cam[..., 2] <= 1.0):
        bad = first_row + int(np.argmax((x_cam[..., 2] <= 1.0).any(axis=1)))
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
    return project_normalise(joints, cameras.R, cameras.t, cameras.f, cameras.c, cameras.width, cameras.height,
                             root_joint=root_joint_of(poses), noise_px=noise_px, rng=rng)


# pairs projected at a time: the float64 work of one block (about 2 KB a pair), not of every pair
PAIR_BLOCK = 65_536


def sample_training_pairs(poses: PoseSet, *, rng: np.random.Generator, sampler: RandomCameraSampler | None = None,
                          n_views: int = 1, index: np.ndarray | None = None,
                          noise_px: float = 0.0, block: int = PAIR_BLOCK) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs through fresh random cameras: every selected pose seen by ``n_views`` cameras.

    ``sampler`` is the camera sampler (default :class:`RandomCameraSampler()`); cameras aim at
    each pose's own pelvis, floor at Z = 0. ``index`` (M,) selects (and may repeat) rows of
    ``poses``; default all rows. Returns ``x2d_norm`` (M*n_views, J, 2), ``y3d`` (M*n_views, J, 3)
    mm and ``pose_index`` (M*n_views,) int64 (view-major: the index list repeated n_views times).
    The random draws are those of :func:`posecurator.train.pairs.sample_training_pairs`. Memory:
    the pairs, their cameras and the float64 work of ``block`` pairs at a time (the pairs are
    the same whatever ``block``: see :func:`_project_pairs`).
    """
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    joints = _joints3d(poses)
    index = np.arange(len(joints), dtype=np.int64) if index is None else np.asarray(index, dtype=np.int64)
    pose_index = np.tile(index, n_views)
    x2d, y3d = _project_pairs(joints, pose_index, root=root_joint_of(poses), rng=rng, sampler=sampler,
                              noise_px=noise_px, block=block)
    return x2d, y3d, pose_index


def _project_pairs(joints: np.ndarray, pose_index: np.ndarray, *, root: int, rng: np.random.Generator,
                   sampler: RandomCameraSampler | None, noise_px: float, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Pair ``p`` = pose ``joints[pose_index[p]]`` through a fresh camera. Every camera first,
    from the one stream (as one call draws them), then the projections block by block: every
    step is per pair, and the noise of consecutive blocks is the continuation of one stream, so
    the pairs are those of a single block."""
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    sampler = RandomCameraSampler() if sampler is None else sampler
    n_pairs = len(pose_index)
    cams = sampler.sample(joints[pose_index, root], rng, floor_z=0.0)
    x2d = np.empty((n_pairs, joints.shape[1], 2), np.float32)
    y3d = np.empty((n_pairs, joints.shape[1], 3), np.float32)
    for start in range(0, n_pairs, block):
        sel = slice(start, min(start + block, n_pairs))
        x2d[sel], y3d[sel] = project_normalise(joints[pose_index[sel]], cams.R[sel], cams.t[sel], cams.f[sel],
                                               cams.c[sel], cams.width[sel], cams.height[sel], root_joint=root,
                                               noise_px=noise_px, rng=rng, first_row=start)
    return x2d, y3d


def sample_training_pairs_from_store(store, *, rng: np.random.Generator, sampler: RandomCameraSampler | None = None,
                                     n_views: int = 1, index: np.ndarray | None = None, noise_px: float = 0.0,
                                     block: int = PAIR_BLOCK) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`sample_training_pairs` of a stored set opened lazily (a :class:`~posecurator.poseset.PoseStore`),
    reading only the rows ``index`` asks for (their 3D joints): the pairs, random draws and
    returned ``pose_index`` are those of the in-memory call on the loaded set with the same ``rng``
    (the draws depend on the gathered poses alone, in order). Memory: the selected rows, their
    cameras and pairs, and the float64 work of ``block`` pairs at a time, never the whole set."""
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    index = np.arange(len(store), dtype=np.int64) if index is None else np.asarray(index, dtype=np.int64)
    rows = store.take(index, columns=["joints3d"])  # rows in index order, repeats kept
    joints = _joints3d(rows)
    local = np.tile(np.arange(len(joints), dtype=np.int64), n_views)  # pair p is row p mod m
    x2d, y3d = _project_pairs(joints, local, root=root_joint_of(rows), rng=rng, sampler=sampler, noise_px=noise_px,
                              block=block)
    return x2d, y3d, np.tile(index, n_views)


def as_unlabeled_2d(poses: PoseSet, cameras: CameraBatch, pixels: np.ndarray, *, name: str = "random") -> PoseSet:
    """``poses`` seen as 2D only: ``pixels`` (N, J, 2) (their projection through ``cameras``, one
    per pose, noise and all) with every joint labelled, one camera-table row per pose
    (``{name}-{i}``), and the 3D dropped so that nothing downstream can use it."""
    if len(cameras) != len(poses) or pixels.shape[:1] != (len(poses),):
        raise ValueError(f"need one camera and one 2D pose per pose: {len(cameras)}, {len(pixels)} for {len(poses)}")
    table = [{"name": f"{name}-{i}", "R": cameras.R[i].tolist(), "t": cameras.t[i].tolist(), "f": cameras.f[i].tolist(),
              "c": cameras.c[i].tolist(), "width": int(cameras.width[i]), "height": int(cameras.height[i])}
             for i in range(len(poses))]
    return poses.replace(joints3d=None, joints2d=np.asarray(pixels, dtype=np.float32),
                         visibility=np.ones(pixels.shape[:2], np.float32), camera=np.arange(len(poses), dtype=np.int32),
                         cameras=table)
