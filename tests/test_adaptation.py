"""Lifter adaptation to unlabeled target 2D (posecurator.train.adaptation) on real HDM05 poses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posecurator.train import adaptation as ad


@pytest.fixture(scope="module")
def hdm05(shared_data):
    from posecurator.io import import_path
    from posecurator.poseset import PoseSet

    amc = shared_data / "hdm05" / "amc"
    if not amc.is_dir():
        pytest.skip(f"{amc} is absent")
    files = sorted(amc.iterdir())[::15][:10]
    return PoseSet.concatenate([import_path(p, progress=False) for p in files], renumber=True)


def _camera_pairs(poses, n, seed):
    """Root-relative camera-frame 3D (mm), normalised image coordinates and the camera-frame root."""
    from posecurator.camera import RandomCameraSampler
    from posecurator.camera.core import world_to_camera

    rng = np.random.default_rng(seed)
    idx = rng.choice(len(poses), size=n, replace=False)
    world = poses.joints3d[idx].astype(np.float64)
    cams = RandomCameraSampler().sample(world[:, 0], rng)
    cam = np.stack([world_to_camera(world[i], cams.R[i], cams.t[i]) for i in range(n)])
    uv = cam[..., :2] / cam[..., 2:3]
    return cam - cam[:, :1], uv, cam[:, 0]


def test_exact_predictions_reproject_with_zero_error_and_the_solved_translation_is_the_root(hdm05):
    rel, uv, root = _camera_pairs(hdm05, 64, 0)
    mask = np.ones(uv.shape[:2], bool)
    t, ok = ad.solve_translation_torch(torch.from_numpy(rel), torch.from_numpy(uv), torch.from_numpy(mask))
    assert ok.all() and np.allclose(t.numpy(), root, atol=1e-6)
    err, ok = ad.reprojection_error_mm(torch.from_numpy(rel), torch.from_numpy(uv), torch.from_numpy(mask))
    assert ok.all() and float(err.max()) < 1e-6


def test_batched_reprojection_agrees_with_the_plain_reference_and_masks_joints(hdm05):
    rel, uv, _ = _camera_pairs(hdm05, 40, 1)
    rng = np.random.default_rng(2)
    wrong = rel + rng.normal(0, 40, rel.shape)  # a lifter's errors
    mask = rng.random(uv.shape[:2]) > 0.2
    mask[:, 0] = True
    got, ok = ad.reprojection_error_mm(torch.from_numpy(wrong), torch.from_numpy(uv), torch.from_numpy(mask))
    want = ad.reprojection_error_mm_reference(wrong, uv, mask)
    assert np.array_equal(ok.numpy(), np.isfinite(want))
    assert np.allclose(got.numpy()[ok.numpy()], want[np.isfinite(want)], rtol=1e-6, atol=1e-6)
    assert 5 < np.nanmedian(want) < 80  # 40 mm of noise per coordinate: tens of mm off the 2D
    # unlabelled joints do not count, whatever their 2D
    uv2 = uv.copy()
    uv2[~mask] = 1e3
    again, _ = ad.reprojection_error_mm(torch.from_numpy(wrong), torch.from_numpy(uv2), torch.from_numpy(mask))
    assert torch.allclose(again, got)


def test_reprojection_gradient_moves_a_prediction_towards_the_2d(hdm05):
    rel, uv, _ = _camera_pairs(hdm05, 16, 3)
    mask = torch.ones(uv.shape[:2], dtype=torch.bool)
    x = torch.from_numpy(rel + np.random.default_rng(4).normal(0, 30, rel.shape)).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=2.0)
    first = None
    for _ in range(50):
        err, ok = ad.reprojection_error_mm(x, torch.from_numpy(uv), mask)
        loss = err.mean()
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first


def test_bone_length_gap_is_zero_for_the_same_skeleton_and_grows_with_scale(hdm05):
    from posecurator.skeleton.layouts import get_layout

    parents = get_layout(hdm05.layout).parents
    x = torch.from_numpy(hdm05.joints3d[:200].astype(np.float64))
    assert float(ad.bone_length_gap_mm(x, x, parents)) < 1e-9
    assert float(ad.bone_length_gap_mm(x * 1.1, x, parents)) > 10


# ---------------------------------------------------------------------- the trainer with a target
def _target_2d(poses, seed):
    """Poses seen through seeded random cameras as an unlabeled 2D set (3D dropped)."""
    from posecurator.camera import RandomCameraSampler

    from posecurator.camera.pairs import as_unlabeled_2d

    cams = RandomCameraSampler().sample(poses.joints3d[:, 0].astype(np.float64), np.random.default_rng(seed))
    px, _ = cams.project(poses.joints3d.astype(np.float64))
    return as_unlabeled_2d(poses, cams, px)


@pytest.fixture(scope="module")
def source_and_target(hdm05):
    clips = np.unique(hdm05.clip)
    is_target = np.isin(hdm05.clip, clips[::3])
    return hdm05.subset(~is_target), _target_2d(hdm05.subset(is_target), 7)


def _cfg(**kw):
    from posecurator.train.trainer import TrainConfig

    return TrainConfig.preset("fast", epochs=3, max_epoch_pairs=1024, **kw)


def test_a_target_only_for_validation_changes_no_weight_and_records_the_target_figure(source_and_target, tmp_path):
    import hashlib
    import json

    from posecurator.train.trainer import LifterTrainer

    source, target = source_and_target
    a = LifterTrainer(_cfg()).fit(source, out_dir=tmp_path / "a", progress=False)
    b = LifterTrainer(_cfg()).fit(source, out_dir=tmp_path / "b", progress=False, target=target)
    sha = lambda p: hashlib.sha1(p.read_bytes()).hexdigest()  # noqa: E731
    assert sha(tmp_path / "a" / "best.safetensors") == sha(tmp_path / "b" / "best.safetensors")
    hist = json.loads((tmp_path / "b" / "history.json").read_text())
    figures = [e["val_target_reproj_mm"] for e in hist["epochs"]]
    assert len(figures) == 3 and all(0 < f < 500 for f in figures)
    assert "val_target_reproj_mm" not in json.loads((tmp_path / "a" / "history.json").read_text())["epochs"][0]
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert "adapt" not in config["train"] and "target" not in config["data"]  # earlier runs' configs unchanged
    assert a["best_epoch"] == b["best_epoch"]


def test_reprojection_adaptation_trains_on_the_target_and_is_reproducible(source_and_target, tmp_path):
    import hashlib
    import json

    from posecurator.errors import PoseCuratorError
    from posecurator.train.trainer import LifterTrainer

    source, target = source_and_target
    cfg = _cfg(adapt="reprojection", adapt_weight=0.5)
    for name in ("a", "b"):
        LifterTrainer(cfg).fit(source, out_dir=tmp_path / name, progress=False, target=target)
    sha = lambda p: hashlib.sha1(p.read_bytes()).hexdigest()  # noqa: E731
    assert sha(tmp_path / "a" / "best.safetensors") == sha(tmp_path / "b" / "best.safetensors")
    doc = json.loads((tmp_path / "a" / "config.json").read_text())
    assert doc["train"]["adapt"] == "reprojection" and doc["data"]["target"]["n_adapt"] > 0
    epochs = json.loads((tmp_path / "a" / "history.json").read_text())["epochs"]
    assert all(e["target_reproj_mm"] > 0 and e["target_bone_gap_mm"] >= 0 for e in epochs)
    with pytest.raises(PoseCuratorError, match="target"):
        LifterTrainer(cfg).fit(source, out_dir=tmp_path / "c", progress=False)


def test_the_new_view_of_the_cycle_is_what_a_camera_would_see(hdm05):
    """Turning the placed pose by 0 and projecting gives the lifter input of the original 2D; a
    turn and its inverse give the pose back."""
    from posecurator.camera import normalize_screen_coordinates

    rel, uv, root = _camera_pairs(hdm05, 32, 5)
    f = np.full((32, 2), 1000.0)
    c = np.full((32, 2), 500.0)
    wh = np.full((32, 2), 1000.0)
    px = uv * f[:, None] + c[:, None]
    want = normalize_screen_coordinates(px, 1000.0, 1000.0)
    got = ad.project_to_input(torch.from_numpy(rel + root[:, None]), torch.from_numpy(f), torch.from_numpy(c),
                              torch.from_numpy(wh))
    assert np.allclose(got.numpy(), want, atol=1e-9)
    angle = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, 32))
    pose = torch.from_numpy(rel)
    back = ad.turn_about_camera_vertical(ad.turn_about_camera_vertical(pose, angle), -angle)
    assert torch.allclose(back, pose, atol=1e-9)
    turned = ad.turn_about_camera_vertical(pose, angle)
    assert torch.allclose(torch.linalg.norm(turned, dim=-1), torch.linalg.norm(pose, dim=-1))  # a rotation


def test_rotation_cycle_adaptation_runs_and_records_its_term(source_and_target, tmp_path):
    import json

    from posecurator.train.trainer import LifterTrainer

    source, target = source_and_target
    LifterTrainer(_cfg(adapt="reprojection", adapt_cycle_weight=1.0)).fit(source, out_dir=tmp_path / "a", progress=False,
                                                                         target=target)
    epochs = json.loads((tmp_path / "a" / "history.json").read_text())["epochs"]
    assert all(e["target_cycle_mm"] > 0 for e in epochs)
