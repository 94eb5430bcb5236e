"""Cameras (evaluation rig, sampler, projection: NumPy vs torch vs a per-point reference) and the
pose-set folder format (chunks, streaming, version and corruption errors, atomic writes)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from posecurator import PoseSet
from posecurator.camera import (
    Camera, RandomCameraSampler, camera_to_world, evaluation_rig, image_to_normalized,
    normalize_screen_coordinates, project_points, project_points_torch, world_to_camera,
)
from posecurator.errors import DataError
from posecurator.poseset import FORMAT_VERSION, PoseSetWriter, iter_chunks


@pytest.fixture(scope="module")
def hdm05_poses(shared_data):
    from posecurator.io import import_path

    files = sorted((shared_data / "hdm05" / "amc").glob("HDM_dg_*"))[:2]
    return PoseSet.concatenate([import_path(f, progress=False) for f in files], renumber=True)


def project_reference(x_cam, f, c, k=None, p=None):
    """Plain per-point pinhole + Brown-Conrady projection, written as OpenCV documents it."""
    out = np.zeros(x_cam.shape[:-1] + (2,))
    for idx in np.ndindex(*x_cam.shape[:-1]):
        X, Y, Z = x_cam[idx]
        x, y = X / Z, Y / Z
        r2 = x * x + y * y
        radial = 1.0 if k is None else 1 + k[0] * r2 + k[1] * r2**2 + k[2] * r2**3
        xd, yd = x * radial, y * radial
        if p is not None:
            xd += 2 * p[0] * x * y + p[1] * (r2 + 2 * x * x)
            yd += p[0] * (r2 + 2 * y * y) + 2 * p[1] * x * y
        out[idx] = (f[0] * xd + c[0], f[1] * yd + c[1])
    return out


def test_evaluation_rig_follows_the_protocol():
    pelvis = np.array([1234.0, -567.0, 950.0])
    cams = evaluation_rig(pelvis)
    assert [c.name for c in cams] == ["eval_az45", "eval_az135", "eval_az225", "eval_az315"]
    target = np.array([[[pelvis[0], pelvis[1], 1000.0]]])
    for cam, az in zip(cams, (45, 135, 225, 315)):
        center = cam.center
        assert np.hypot(*(center[:2] - pelvis[:2])) == pytest.approx(5000.0)
        assert center[2] == pytest.approx(1600.0)
        assert np.degrees(np.arctan2(*(center[:2] - pelvis[:2])[::-1])) % 360 == pytest.approx(az)
        assert np.allclose(cam.project(target), 500.0)  # looks at the point 1 m over the pelvis
        assert cam.f.tolist() == [1145.0, 1145.0] and (cam.width, cam.height) == (1000, 1000)
        assert np.allclose(cam.R @ cam.R.T, np.eye(3)) and np.linalg.det(cam.R) == pytest.approx(1.0)
        # image y points down: a point higher up projects nearer the top of the image
        up = cam.project(target + [0, 0, 500.0])
        assert up[0, 0, 1] < 500.0


def test_projection_numpy_torch_and_reference_agree(hdm05_poses):
    rng = np.random.default_rng(0)
    poses = hdm05_poses.joints3d[:50].astype(np.float64)
    cams = RandomCameraSampler().sample(poses[:, 0], rng)
    xc = world_to_camera(poses, cams.R, cams.t)
    assert np.allclose(camera_to_world(xc, cams.R, cams.t), poses, atol=1e-6)
    k, p = np.array([-0.2, 0.05, -0.01]), np.array([-0.001, 0.0005])
    for kk, pp in ((None, None), (k, None), (k, p)):
        px = project_points(xc, cams.f, cams.c, kk, pp)
        ref = np.stack([project_reference(xc[i], cams.f[i], cams.c[i], kk, pp) for i in range(len(xc))])
        assert np.allclose(px, ref, atol=1e-8)
        tk = None if kk is None else torch.tensor(kk)
        tp = None if pp is None else torch.tensor(pp)
        pt = project_points_torch(torch.tensor(xc), torch.tensor(cams.f), torch.tensor(cams.c), tk, tp)
        assert np.allclose(pt.numpy(), px, atol=1e-8)
    # any number of leading dimensions
    single = Camera(R=cams.R[0], t=cams.t[0], f=cams.f[0], c=cams.c[0])
    assert single.project(poses[None, :3]).shape == (1, 3, 17, 2)
    # gradients flow through the torch projection
    x = torch.tensor(xc[:2], requires_grad=True)
    project_points_torch(x, torch.tensor(cams.f[:2]), torch.tensor(cams.c[:2])).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_random_cameras_are_seeded_and_see_the_person(hdm05_poses):
    poses = hdm05_poses.joints3d
    a = RandomCameraSampler().sample(poses[:, 0], np.random.default_rng(7))
    b = RandomCameraSampler().sample(poses[:, 0], np.random.default_rng(7))
    c = RandomCameraSampler().sample(poses[:, 0], np.random.default_rng(8))
    assert np.array_equal(a.R, b.R) and not np.array_equal(a.R, c.R)
    px, xc = a.project(poses)
    assert (xc[..., 2] > 0).all()  # every joint in front of the camera
    inside = (px >= 0).all(-1) & (px[..., 0] < 1000) & (px[..., 1] < 1000)
    assert inside.mean() > 0.99


def test_normalisation_round_trip():
    x = np.array([[[0.0, 0.0], [1000.0, 500.0], [500.0, 1000.0]]])
    n = normalize_screen_coordinates(x, 1000, 1000)
    assert np.allclose(n, [[[-1, -1], [1, 0], [0, 1]]])
    assert np.allclose(image_to_normalized(n, 1000, 1000), x)


def test_poseset_chunked_round_trip_and_streaming(tmp_path, hdm05_poses):
    ps = hdm05_poses
    path = tmp_path / "set.pcs"
    ps.save(path, chunk_size=100)
    meta = json.loads((path / "posecurator.json").read_text())
    assert len(meta["chunks"]) == -(-len(ps) // 100)
    back = PoseSet.load(path)
    assert np.array_equal(back.joints3d, ps.joints3d)
    for name in ("subject", "activity", "clip", "frame", "sample_id", "parents", "generation", "source"):
        assert np.array_equal(getattr(back, name), getattr(ps, name)), name
    parts = list(iter_chunks(path))
    assert sum(len(p) for p in parts) == len(ps) and max(len(p) for p in parts) == 100
    # a writer appends without holding everything in memory
    with PoseSetWriter(tmp_path / "stream.pcs", chunk_size=64) as w:
        for p in parts:
            w.append(p)
    assert np.array_equal(PoseSet.load(tmp_path / "stream.pcs").joints3d, ps.joints3d)


def test_poseset_errors_and_atomic_writes(tmp_path, hdm05_poses):
    ps = hdm05_poses
    path = tmp_path / "set.pcs"
    ps.save(path)
    meta_path = path / "posecurator.json"
    meta = json.loads(meta_path.read_text())
    assert meta["version"] == 1  # a set without the columns of later versions stays readable by older ones
    meta["version"] = FORMAT_VERSION + 1
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="newer"):
        PoseSet.load(path)
    ps.save(path)  # overwriting a dataset replaces it whole
    chunk = path / "chunk-00000.npz"
    chunk.write_bytes(chunk.read_bytes()[:200])
    with pytest.raises(DataError, match="chunk-00000.npz"):
        PoseSet.load(path)
    with pytest.raises(DataError, match="not a posecurator dataset"):
        PoseSet.load(tmp_path)
    # a failed write leaves nothing behind
    out = tmp_path / "half.pcs"
    with pytest.raises(RuntimeError):
        with PoseSetWriter(out) as w:
            w.append(ps.subset(slice(0, 10)))
            raise RuntimeError("interrupted")
    assert not out.exists() and not list(tmp_path.glob(".half.pcs*"))
    # NaN coordinates are named with their clip
    bad = ps.replace(joints3d=ps.joints3d.copy())
    bad.joints3d[5, 3, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        bad.check_finite("x.bvh")
