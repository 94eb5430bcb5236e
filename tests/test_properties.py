"""Property tests (hypothesis) of the geometry and the metrics, on real poses.

Poses are real HDM05 frames (read once here through posecurator.io.import_path) moved by
hypothesis-drawn rotations, scales, translations and cameras, never random point clouds: the
properties are checked on the shapes the code meets in use (17 joints spanning a human body).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from posecurator.camera import (  # noqa: E402
    camera_to_world, look_at, project_points, project_points_torch, world_to_camera, world_to_camera_torch,
)
from posecurator.camera.placement import solve_root_translation  # noqa: E402
from posecurator.metrics import mpjpe, pa_mpjpe, pck2d, pck3d  # noqa: E402

HDM05_AMC = Path(__file__).resolve().parents[2] / "shared" / "data" / "hdm05" / "amc"


def _real_poses() -> np.ndarray:
    """Every 4th frame of the smallest HDM05 clip: (F, 17, 3) float64 mm, world Z up."""
    files = sorted(HDM05_AMC.glob("*.amc*"), key=lambda p: (p.stat().st_size, p.name)) if HDM05_AMC.is_dir() else []
    if not files:
        pytest.skip(f"real data {HDM05_AMC} is absent (../shared/data)", allow_module_level=True)
    from posecurator.io import import_path

    return import_path(files[0], progress=False).joints3d[::4].astype(np.float64)


POSES = _real_poses()
ROOT_RELATIVE = POSES - POSES[:, :1]
# derandomize: CI sees the same examples every run (no flaky failures); database=None: no
# .hypothesis folder in the checkout
FAST = settings(max_examples=60, deadline=None, derandomize=True, database=None)

# ------------------------------------------------------------------ strategies
frames = st.integers(0, len(POSES) - 1)
unit_floats = st.floats(-1.0, 1.0, allow_nan=False)
scales = st.floats(0.2, 5.0)
translations = st.tuples(*[st.floats(-5000.0, 5000.0)] * 3).map(np.array)
angles = st.floats(-np.pi, np.pi)


@st.composite
def rotations(draw, min_angle: float = 0.0):
    """A proper rotation matrix: a drawn axis (not near zero) and angle (|angle| >= min_angle)."""
    axis = np.array(draw(st.tuples(unit_floats, unit_floats, unit_floats).filter(lambda v: np.linalg.norm(v) > 0.1)))
    axis /= np.linalg.norm(axis)
    angle = draw(st.floats(min_angle, np.pi)) * draw(st.sampled_from((-1.0, 1.0)))
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


@st.composite
def cameras(draw):
    """A camera looking at a real pose's pelvis from 2-10 m, as look_at builds it, with intrinsics."""
    pose = POSES[draw(frames)]
    azimuth = draw(angles)
    elevation = draw(st.floats(-1.0, 1.0))             # radians: never straight along the up axis
    distance = draw(st.floats(2000.0, 10000.0))
    target = pose[0]
    eye = target + distance * np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                                        np.sin(elevation)])
    R, t = look_at(eye, target, roll=draw(st.floats(-0.3, 0.3)))
    f = np.array([draw(st.floats(300.0, 3000.0))] * 2)
    c = np.array([draw(st.floats(0.0, 2000.0)), draw(st.floats(0.0, 2000.0))])
    return pose, R, t, f, c


def similarity(x: np.ndarray, R: np.ndarray, s: float, t: np.ndarray) -> np.ndarray:
    """s * R @ x + t for (..., J, 3) points."""
    return s * x @ R.T + t


# ------------------------------------------------------------------ rotations and camera frames
@FAST
@given(cameras())
def test_look_at_gives_a_proper_orthonormal_rotation(cam):
    pose, R, t, _, _ = cam
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-12)
    # the target (the pelvis) lies on the optical axis, in front of the camera
    x = world_to_camera(pose[:1], R, t)[0]
    np.testing.assert_allclose(x[:2], 0.0, atol=1e-6)
    assert x[2] > 0


@FAST
@given(cameras(), frames)
def test_world_camera_round_trip(cam, frame):
    _, R, t, _, _ = cam
    pose = POSES[frame]
    np.testing.assert_allclose(camera_to_world(world_to_camera(pose, R, t), R, t), pose, atol=1e-7)
    # distances between joints do not change in the camera frame
    in_cam = world_to_camera(pose, R, t)
    np.testing.assert_allclose(np.linalg.norm(in_cam[1:] - in_cam[:-1], axis=-1),
                               np.linalg.norm(pose[1:] - pose[:-1], axis=-1), rtol=1e-9, atol=1e-7)


# ------------------------------------------------------------------ projection
distortions = st.one_of(st.none(), st.tuples(st.floats(-0.2, 0.2), st.floats(-0.05, 0.05), st.floats(-0.01, 0.01)))
tangentials = st.one_of(st.none(), st.tuples(st.floats(-0.01, 0.01), st.floats(-0.01, 0.01)))


@FAST
@given(cameras(), st.floats(0.1, 10.0), distortions, tangentials)
def test_projection_is_finite_and_constant_along_each_ray(cam, scale, k, p):
    pose, R, t, f, c = cam
    x = world_to_camera(pose, R, t)
    assert (x[:, 2] > 0).all()  # the whole body is in front of a camera 2 m away or more
    k = None if k is None else np.array(k)
    p = None if p is None else np.array(p)
    px = project_points(x, f, c, k, p)
    assert np.isfinite(px).all()
    # a point moved along its ray (scaled about the camera centre) keeps its pixel
    np.testing.assert_allclose(project_points(scale * x, f, c, k, p), px, rtol=1e-9, atol=1e-7)


@FAST
@given(cameras(), distortions, tangentials)
def test_numpy_and_torch_projections_agree(cam, k, p):
    pose, R, t, f, c = cam
    x = world_to_camera(pose, R, t)
    as_t = lambda a: None if a is None else torch.tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    x_t = world_to_camera_torch(as_t(pose), as_t(R), as_t(t))
    np.testing.assert_allclose(x_t.numpy(), x, rtol=1e-12, atol=1e-9)
    px = project_points(x, f, c, None if k is None else np.array(k), None if p is None else np.array(p))
    px_t = project_points_torch(x_t, as_t(f), as_t(c), as_t(k), as_t(p))
    np.testing.assert_allclose(px_t.numpy(), px, rtol=1e-10, atol=1e-8)


# ------------------------------------------------------------------ Procrustes / PA-MPJPE / MPJPE
@FAST
@given(frames, frames, rotations(), scales, translations)
def test_pa_mpjpe_is_invariant_to_a_similarity_of_the_prediction(a, b, R, s, t):
    pred, target = ROOT_RELATIVE[a], ROOT_RELATIVE[b]
    base = pa_mpjpe(pred[None], target[None])
    moved = pa_mpjpe(similarity(pred, R, s, t)[None], target[None])
    assert moved == pytest.approx(base, rel=1e-6, abs=1e-6)


@FAST
@given(frames, rotations(), scales, translations)
def test_pa_mpjpe_of_a_similarity_of_the_target_is_zero(a, R, s, t):
    target = ROOT_RELATIVE[a]
    assert pa_mpjpe(similarity(target, R, s, t)[None], target[None]) == pytest.approx(0.0, abs=1e-6)


@FAST
@given(frames, frames, rotations(min_angle=0.2), scales, translations, st.floats(0.0, 10.0), st.integers(0, 2**32 - 1))
def test_pa_mpjpe_is_at_most_mpjpe(a, b, R, s, t, noise_mm, noise_seed):
    target = ROOT_RELATIVE[a]
    noise = np.random.default_rng(noise_seed).normal(0.0, noise_mm, target.shape)
    # a moved, noisy copy of the target: the alignment removes the motion, not the noise
    pred = similarity(target + noise, R, s, t)
    assert pa_mpjpe(pred[None], target[None]) <= mpjpe(pred[None], target[None]) + 1e-9
    # for any pair of real poses: PA-MPJPE is at most the RMS joint error without alignment (the
    # identity is one of the similarities the alignment minimises the squared error over)
    other = ROOT_RELATIVE[b]
    rms = np.sqrt(np.mean(np.sum((other - target) ** 2, axis=-1)))
    assert pa_mpjpe(other[None], target[None]) <= rms + 1e-9


@FAST
@given(frames, frames, frames, rotations(), translations)
def test_mpjpe_is_a_symmetric_metric_obeying_the_triangle_inequality(a, b, c, R, t):
    x, y, z = POSES[a], similarity(POSES[b], R, 1.0, t), POSES[c]
    assert mpjpe(x[None], y[None]) == pytest.approx(mpjpe(y[None], x[None]), rel=1e-12)
    assert mpjpe(x[None], z[None]) <= mpjpe(x[None], y[None]) + mpjpe(y[None], z[None]) + 1e-9
    assert mpjpe(x[None], x[None]) == 0.0


# ------------------------------------------------------------------ PCK
@FAST
@given(frames, frames, st.floats(0.0, 500.0), st.floats(0.0, 500.0))
def test_pck3d_is_a_fraction_monotone_in_the_threshold(a, b, t1, t2):
    lo, hi = min(t1, t2), max(t1, t2)
    pred, target = ROOT_RELATIVE[a][None], ROOT_RELATIVE[b][None]
    p_lo, p_hi = pck3d(pred, target, threshold=lo), pck3d(pred, target, threshold=hi)
    assert 0.0 <= p_lo <= p_hi <= 1.0


@FAST
@given(cameras(), frames, st.floats(1e-3, 0.5), st.floats(1e-3, 0.5), st.lists(st.booleans(), min_size=17, max_size=17))
def test_pck2d_is_a_fraction_monotone_in_the_threshold(cam, frame, t1, t2, labelled):
    pose, R, t, f, c = cam
    target = project_points(world_to_camera(pose, R, t), f, c)
    pred = project_points(world_to_camera(POSES[frame], R, t), f, c)
    vis = np.array(labelled, dtype=float)
    lo, hi = min(t1, t2), max(t1, t2)
    p_lo = pck2d(pred[None], target[None], visibility=vis[None], threshold=lo)
    p_hi = pck2d(pred[None], target[None], visibility=vis[None], threshold=hi)
    if vis.sum() >= 2:  # a reference length needs two labelled joints
        assert 0.0 <= p_lo <= p_hi <= 1.0
    else:
        assert np.isnan(p_lo) and np.isnan(p_hi)


# ------------------------------------------------------------------ root translation
@FAST
@given(cameras(), frames, st.lists(st.booleans(), min_size=17, max_size=17).filter(lambda v: sum(v) >= 3),
       st.lists(st.floats(0.1, 3.0), min_size=17, max_size=17))
def test_root_translation_is_exact_for_exact_projections(cam, frame, labelled, weights):
    pose, R, t, f, c = cam
    cam_pose = world_to_camera(POSES[frame] - POSES[frame, :1] + pose[:1], R, t)  # a real pose, pelvis on the axis
    rel = cam_pose - cam_pose[:1]
    x2d = project_points(cam_pose, f, c)
    vis = np.array(labelled, dtype=float)
    solved = solve_root_translation(rel, x2d, f, c, visibility=vis, weights=np.array(weights))
    np.testing.assert_allclose(solved, cam_pose[0], rtol=1e-6, atol=1e-3)
