"""Pose VAE difficulty scoring (paper 002, Eq. 1-2) on real HDM05 mocap and real COCO keypoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from posecurator.errors import DataError
from posecurator.models.pose_vae import (PoseNormalization, normalize_pose_reference, normalize_poses,
                                         reconstruction_error_reference, vae_loss)
from posecurator.poseset import PoseSet
from posecurator.scoring import get_scorer
from posecurator.scoring.vae import VAEReconstructionScorer
from posecurator.skeleton import COCO17, H36M17
from posecurator.train.vae_trainer import (VAEConfig, load_vae, load_vae_scorer, make_vae_scorer, prepare_inputs,
                                           split_by_clip, train_vae)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HDM = DATA / "hdm05" / "amc"
COCO = DATA / "coco"
pytestmark = pytest.mark.skipif(not HDM.is_dir() or not COCO.is_dir(),
                                reason=f"real data not found under {DATA} (HDM05 and COCO needed)")

# Upright everyday movements of actors bd and bk train the VAE; actor dg doing the same movements
# is "in distribution"; lying down on the floor and kicks are not (nothing like them in training).
UPRIGHT = ("jogLeftCircle4StepsRstart", "sneak2StepsLStart", "grabHighR", "rotateArmsBothBackward1Reps", "squat1Reps")


def _read(files) -> PoseSet:
    from posecurator.io import import_path

    return PoseSet.concatenate([import_path(f, progress=False) for f in files], renumber=True)


def _files(actors, motions, takes=None):
    out = []
    for a in actors:
        for m in motions:
            out += sorted(HDM.glob(f"HDM_{a}_{m}_*.amc*"))[:takes]
    return out


@pytest.fixture(scope="module")
def hdm():
    return {
        "train": _read(_files(("bd", "bk"), UPRIGHT)),
        "same": _read(_files(("dg",), UPRIGHT)),
        "lie": _read(_files(("dg",), ("lieDownFloor",))),
        "kick": _read(_files(("dg",), ("kickLFront1Reps",))),
    }


@pytest.fixture(scope="module")
def fitted(hdm):
    scorer = make_vae_scorer(space="3d", epochs=15, seed=0)
    return scorer.fit(hdm["train"])


@pytest.fixture(scope="module")
def coco():
    from posecurator.io.coco import read_coco

    return read_coco(COCO / "person_keypoints_val2017_subset2213.json")


# ---------------------------------------------------------------------- normalisation
def test_normalisation_batched_matches_per_pose_reference(hdm, coco):
    norm3 = PoseNormalization.for_layout(H36M17, 3)
    x = hdm["kick"].joints3d[::37]
    y, m, v = normalize_poses(x, norm=norm3)
    for i in range(len(x)):
        yr, mr, vr = normalize_pose_reference(x[i], norm=norm3)
        np.testing.assert_allclose(y[i], yr, atol=1e-5)
        assert vr == v[i] and np.array_equal(m[i], mr)
    norm2 = PoseNormalization.for_layout(COCO17, 2)
    x2, vis = coco.joints2d[:300], coco.visibility[:300]
    y2, m2, v2 = normalize_poses(x2, vis, norm=norm2)
    assert (~v2).any() and v2.any()  # this slice has poses with too few labelled joints
    for i in range(len(x2)):
        yr, mr, vr = normalize_pose_reference(x2[i], vis[i], norm=norm2)
        np.testing.assert_allclose(y2[i], yr, atol=1e-5)
        assert vr == v2[i] and np.array_equal(m2[i], mr)


def test_normalisation_removes_position_size_and_heading(hdm, fitted):
    ps = hdm["kick"]
    x = ps.joints3d.astype(np.float64)
    a = np.deg2rad(70.0)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    moved = (x @ rot.T) * 1.3 + np.array([2500.0, -800.0, 0.0])
    norm = PoseNormalization.for_layout(H36M17, 3)
    y0, _, _ = normalize_poses(x, norm=norm)
    y1, _, _ = normalize_poses(moved, norm=norm)
    np.testing.assert_allclose(y0, y1, atol=1e-4)
    rms = np.sqrt((y0 ** 2).sum(axis=2).mean(axis=1))
    np.testing.assert_allclose(rms, 1.0, atol=1e-5)
    s0 = fitted.score_samples(ps)
    s1 = fitted.score_samples(ps.replace(joints3d=moved))
    np.testing.assert_allclose(s0, s1, rtol=1e-3, atol=1e-5)


# ---------------------------------------------------------------------- training and scoring
def test_vae_loss_decreases(fitted):
    h = fitted.history_
    assert len(h["train_loss"]) == 15 and h["n_val"] > 0 and h["n_train"] > 0
    assert h["train_loss"][-1] < 0.2 * h["train_loss"][0]
    assert h["val_recon"][-1] < 0.5 * h["val_recon"][0]
    # held-out clips: most of the pose variance is explained (a normalised pose has sum_j |y_j|^2 = J)
    assert h["val_recon"][-1] < 0.15 * H36M17.n_joints
    assert all(np.isfinite(h["train_kl"])) and h["train_kl"][-1] > 0.5  # latent in use, not collapsed


def test_validation_split_holds_out_whole_clips(hdm):
    clip = hdm["train"].clip
    val = split_by_clip(clip, 0.2, seed=3)
    assert not set(clip[val]) & set(clip[~val])
    assert 0.1 < val.mean() < 0.4
    np.testing.assert_array_equal(val, split_by_clip(clip, 0.2, seed=3))


def test_unusual_poses_score_higher(hdm, fitted):
    """The paper's premise: poses without support in the training set reconstruct worse."""
    same = fitted.score_samples(hdm["same"])
    lie = fitted.score_samples(hdm["lie"])
    kick = fitted.score_samples(hdm["kick"])
    assert np.isfinite(same).all() and (same >= 0).all()
    assert np.mean(lie) > 5 * np.mean(same)
    assert np.mean(kick) > 1.5 * np.mean(same)
    # ranking, not only means: most lying-down frames are harder than 90% of in-distribution frames
    assert np.mean(lie > np.percentile(same, 90)) > 0.5


def test_scores_deterministic_and_batched_matches_reference(hdm, fitted):
    ps = hdm["kick"]
    s = fitted.score_samples(ps)
    np.testing.assert_array_equal(s, fitted.score_samples(ps))
    normed, mask, _, _ = prepare_inputs(ps, fitted.config_)
    for i in range(0, len(ps), 97):
        ref = reconstruction_error_reference(fitted.model_, normed[i], mask[i])
        assert ref == pytest.approx(s[i], rel=1e-4, abs=1e-6)
    # scores follow the sample, not its position in the set
    perm = np.random.default_rng(0).permutation(len(ps))
    np.testing.assert_allclose(fitted.score_samples(ps.subset(perm)), s[perm], rtol=1e-5)


def test_training_is_seeded(hdm):
    small = hdm["kick"]
    cfg = VAEConfig(epochs=2, seed=7, hidden=(64,), latent_dim=4)
    m1, h1 = train_vae(small, cfg, progress=False)
    m2, h2 = train_vae(small, cfg, progress=False)
    assert h1["train_loss"] == h2["train_loss"]
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k


def test_save_load_roundtrip(tmp_path, hdm, fitted):
    fitted.save(tmp_path / "vae")
    meta = json.loads((tmp_path / "vae" / "vae.json").read_text())
    assert meta["format"] == "posecurator-pose-vae" and meta["config"]["lambda_kl"] == fitted.config_.lambda_kl
    again = load_vae_scorer(tmp_path / "vae")
    np.testing.assert_array_equal(again.score_samples(hdm["kick"]), fitted.score_samples(hdm["kick"]))
    model, cfg = load_vae(tmp_path / "vae")
    assert cfg == fitted.config_ and model.hparams == fitted.model_.hparams


def test_train_vae_writes_out_dir(tmp_path, hdm):
    model, hist = train_vae(hdm["kick"], VAEConfig(epochs=1, hidden=(32,), latent_dim=2), out_dir=tmp_path / "m",
                            progress=False)
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"vae.json", "vae.safetensors"}
    loaded, _ = load_vae(tmp_path / "m")
    assert loaded.hparams == model.hparams


def test_bad_model_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not a pose VAE folder"):
        load_vae(tmp_path)
    (tmp_path / "vae.json").write_text("{not json")
    (tmp_path / "vae.safetensors").write_bytes(b"")
    with pytest.raises(DataError, match="corrupt VAE header"):
        load_vae(tmp_path)


def test_registry_and_options(hdm):
    scorer = make_vae_scorer(space="2d", epochs=3, latent_dim=4)
    assert isinstance(scorer, VAEReconstructionScorer) and scorer.name == "vae_recon"
    assert scorer.config.space == "2d" and scorer.config.epochs == 3 and scorer.config.latent_dim == 4
    with pytest.raises(TypeError, match="unknown vae_recon option"):
        make_vae_scorer(epoch=3)
    with pytest.raises(RuntimeError, match="not fitted"):
        scorer.score_samples(None)
    # the registry's vae_recon is the same class; without injected functions it says how to build one
    bare = get_scorer("vae_recon")
    assert isinstance(bare, VAEReconstructionScorer) and bare.name == "vae_recon"
    with pytest.raises(RuntimeError, match="make_vae_scorer"):
        bare.fit(hdm["kick"])
    # any injected model works: a "model" that is the mean root-relative pose, error = squared distance to it
    def rooted(ps):
        return ps.joints3d - ps.joints3d[:, :1]

    def fit_fn(ref):
        return rooted(ref).mean(axis=0), {}

    def errors_fn(mean, ps):
        return ((rooted(ps) - mean) ** 2).sum(axis=(1, 2)) / 1e6

    injected = get_scorer("vae_recon", fit_fn=fit_fn, errors_fn=errors_fn).fit(hdm["same"])
    s = injected.score_samples(hdm["lie"])
    assert s.shape == (len(hdm["lie"]),) and np.mean(s) > np.mean(injected.score_samples(hdm["same"]))


def test_loss_is_eq1():
    """Eq. 1 by hand on a 2-joint example: squared error summed over joints + lambda * KL."""
    target = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])
    recon = torch.tensor([[[0.0, 1.0], [1.0, 2.0]]])  # errors 1 and 4
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, np.log(2.0)]])
    kl = 0.5 * (1.0 + 0.0) + 0.5 * (2.0 - 1.0 - np.log(2.0))
    total, rec, k = vae_loss(recon, target, mu, logvar, lambda_kl=0.1)
    assert rec.item() == pytest.approx(5.0) and k.item() == pytest.approx(kl, rel=1e-6)
    assert total.item() == pytest.approx(5.0 + 0.1 * kl, rel=1e-6)
    # with joint 1 unlabelled the error is rescaled to 2 joints: 2 / 1 * 1
    _, rec_m, _ = vae_loss(recon, target, mu, logvar, torch.tensor([[1.0, 0.0]]), lambda_kl=0.1)
    assert rec_m.item() == pytest.approx(2.0)


# ---------------------------------------------------------------------- 2D
def test_2d_vae_on_coco_with_visibility(coco):
    scorer = make_vae_scorer(space="2d", epochs=8, seed=0).fit(coco)
    assert scorer.model_.masked and scorer.model_.dim == 2
    s = scorer.score_samples(coco)
    n_vis = coco.visibility.sum(axis=1)
    assert np.array_equal(np.isnan(s), n_vis < 4)
    assert (s[np.isfinite(s)] >= 0).all()
    h = scorer.history_
    assert h["train_loss"][-1] < 0.6 * h["train_loss"][0]
    # unlabelled joints cannot change a score: move them anywhere
    moved = coco.joints2d.copy()
    hidden = coco.visibility == 0
    moved[hidden] = np.array([123.0, -456.0], dtype=np.float32)
    np.testing.assert_array_equal(scorer.score_samples(coco.replace(joints2d=moved)), s)


def test_2d_projection_of_a_3d_set(hdm):
    scorer = make_vae_scorer(space="2d", epochs=10, seed=0).fit(hdm["train"])
    assert scorer.model_.dim == 2
    same, lie = scorer.score_samples(hdm["same"]), scorer.score_samples(hdm["lie"])
    assert np.isfinite(same).all() and np.isfinite(lie).all()
    assert np.mean(lie) > 2 * np.mean(same)
    # each sample has its own fixed scoring camera: scores do not depend on the order of the set
    perm = np.random.default_rng(1).permutation(len(hdm["lie"]))
    np.testing.assert_allclose(scorer.score_samples(hdm["lie"].subset(perm)), lie[perm], rtol=1e-5)


def test_3d_space_on_a_2d_set_is_refused(coco):
    with pytest.raises(ValueError, match="needs joints3d"):
        make_vae_scorer(space="3d", epochs=1).fit(coco)
