"""The lifter, its 2D-3D pairs, trainer, run folders and the evaluation protocol, on real HDM05 clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from posecurator.camera import RandomCameraSampler, evaluation_rig, image_to_normalized, project_points, world_to_camera
from posecurator.errors import DataError, PoseCuratorError
from posecurator.models import SimpleBaselineLifter
from posecurator.poseset import PoseSet
from posecurator.skeleton import H36M17
from posecurator.skeleton.layouts import get_layout
from posecurator.train import checkpoint as ckpt
from posecurator.train import pairs as pairs_mod
from posecurator.train import trainer as trainer_mod
from posecurator.train.evaluate import evaluate_model, evaluate_run, predict
from posecurator.train.pairs import evaluation_pairs, evaluation_pairs_reference, make_pairs, sample_training_pairs
from posecurator.train.trainer import _SPLIT_STREAM, LifterTrainer, TrainConfig, clip_mean_poses, split_by_clip

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HDM05 = DATA / "hdm05" / "amc"
# short clips of one actor (training) and another (test), three activities, several takes each
TRAIN_CLIPS = {"HDM_bd_squat1Reps": 8, "HDM_bd_kickLFront1Reps": 4, "HDM_bd_grabHighR": 3}
TEST_CLIPS = {"HDM_dg_squat1Reps": 1, "HDM_dg_kickLFront1Reps": 1}

pytestmark = pytest.mark.skipif(not HDM05.is_dir(), reason=f"real mocap data not found at {HDM05}")

TINY = dict(width=64, blocks=1, dropout=0.0, lr=3e-3, lr_decay=0.95, batch_size=64, epochs=3, val_fraction=0.2, num_threads=1)


def _import(clips: dict[str, int]) -> PoseSet:
    from posecurator.io import import_path

    files = [f for prefix, n in clips.items() for f in sorted(HDM05.glob(f"{prefix}_*.amc.gz"))[:n]]
    assert len(files) == sum(clips.values()), f"expected HDM05 files missing in {HDM05}"
    return PoseSet.concatenate([import_path(f, progress=False) for f in files], renumber=True)


@pytest.fixture(scope="module")
def train_set() -> PoseSet:
    return _import(TRAIN_CLIPS)


@pytest.fixture(scope="module")
def test_set() -> PoseSet:
    return _import(TEST_CLIPS)


@pytest.fixture(scope="module")
def tiny_run(train_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_run")
    trainer = LifterTrainer(TrainConfig(**TINY))
    summary = trainer.fit(train_set, out_dir=out, progress=False)
    return out, trainer, summary


# ------------------------------------------------------------------------------------ model
def test_lifter_output_is_root_relative_mm(train_set):
    x2d, _ = make_pairs(train_set, RandomCameraSampler().sample(train_set.joints3d[:, 0], np.random.default_rng(0)))
    model = SimpleBaselineLifter(width=32, blocks=1).eval()
    out = model(torch.from_numpy(x2d[:10]))
    assert out.shape == (10, 17, 3)
    assert torch.all(out[:, 0] == 0)
    with pytest.raises(ValueError):
        model(torch.zeros(4, 16, 2))
    # the input features are the root position and the scaled root-relative joints: invertible
    x = torch.from_numpy(x2d[:10])
    feats = model.input_features(x).reshape(10, 17, 2)
    back = torch.cat([feats[:, :1], feats[:, 1:] / model.relative_scale + feats[:, :1]], dim=1)
    torch.testing.assert_close(back, x)
    capped = SimpleBaselineLifter(width=32, blocks=1, max_norm=0.5)
    capped.apply_max_norm()
    assert all(m.weight.norm(dim=1).max() <= 0.5 + 1e-6 for m in capped.modules() if isinstance(m, torch.nn.Linear))


# ------------------------------------------------------------------------------------ pairs
def test_training_pairs_reproject_to_their_2d_input(train_set):
    rng = np.random.default_rng(1)
    joints = train_set.joints3d.astype(np.float64)
    cams = RandomCameraSampler().sample(joints[:, 0], rng)
    x2d, y3d = make_pairs(train_set, cams)
    assert x2d.shape == (len(train_set), 17, 2) and y3d.shape == (len(train_set), 17, 3)
    assert x2d.dtype == np.float32 and y3d.dtype == np.float32
    assert np.all(y3d[:, 0] == 0)  # pelvis-relative
    # the 3D target put back at the pelvis and projected with the known camera gives the 2D input
    root_cam = world_to_camera(joints[:, :1], cams.R, cams.t)
    px = project_points(y3d.astype(np.float64) + root_cam, cams.f, cams.c)
    np.testing.assert_allclose(image_to_normalized(x2d.astype(np.float64), cams.width, cams.height), px, atol=0.02)
    # the camera frame is a rigid motion of the world: bone lengths are kept
    bones = H36M17.bones
    world_len = np.linalg.norm(joints[:, bones[:, 1]] - joints[:, bones[:, 0]], axis=-1)
    cam_len = np.linalg.norm(y3d[:, bones[:, 1]] - y3d[:, bones[:, 0]], axis=-1)
    np.testing.assert_allclose(cam_len, world_len, atol=0.05)


def test_sample_training_pairs_views_and_index(train_set):
    index = np.array([3, 3, 10])
    x2d, y3d, pose_index = sample_training_pairs(train_set, rng=np.random.default_rng(0), n_views=2, index=index)
    assert x2d.shape == (6, 17, 2) and y3d.shape == (6, 17, 3)
    assert pose_index.tolist() == [3, 3, 10, 3, 3, 10]
    assert not np.allclose(x2d[0], x2d[1])  # the same pose through two different random cameras


@pytest.mark.parametrize("noise_px", [0.0, 5.0])
def test_evaluation_pairs_batched_equals_per_pose_reference(train_set, noise_px):
    part = train_set.subset(np.arange(0, len(train_set), 7))
    fast = evaluation_pairs(part, noise_px=noise_px, seed=3)
    slow = evaluation_pairs_reference(part, noise_px=noise_px, seed=3)
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_evaluation_pairs_follow_the_protocol(test_set):
    n = len(test_set)
    clean = evaluation_pairs(test_set)
    assert clean.x2d.shape == (4 * n, 17, 2) and clean.y3d.shape == (4 * n, 17, 3)
    assert np.array_equal(clean.pose_index, np.tile(np.arange(n), 4))
    assert np.array_equal(clean.camera_index, np.repeat(np.arange(4), n))
    assert np.all(clean.y3d[:, 0] == 0)
    # pair k*n+i is pose i through camera k of the rig around its clip's mean pelvis
    i = n - 1
    rows = test_set.clip == test_set.clip[i]
    rig = evaluation_rig(test_set.joints3d[rows, 0].astype(np.float64).mean(axis=0))
    for k, cam in enumerate(rig):
        px = cam.project(test_set.joints3d[i].astype(np.float64))
        np.testing.assert_allclose(image_to_normalized(clean.x2d[k * n + i].astype(np.float64), 1000, 1000), px, atol=0.02)
    noisy = evaluation_pairs(test_set, noise_px=5.0, seed=0)
    assert np.array_equal(noisy.y3d, clean.y3d)
    diff = image_to_normalized(noisy.x2d.astype(np.float64), 1000, 1000) - image_to_normalized(clean.x2d.astype(np.float64), 1000, 1000)
    assert abs(diff.std() - 5.0) < 0.2 and abs(diff.mean()) < 0.2
    again = evaluation_pairs(test_set, noise_px=5.0, seed=0)
    assert np.array_equal(again.x2d, noisy.x2d)  # seeded


def test_training_never_uses_the_evaluation_rig(train_set, tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("training touched the evaluation rig")

    monkeypatch.setattr(pairs_mod, "evaluation_rig", forbidden)
    monkeypatch.setattr(pairs_mod, "evaluation_pairs", forbidden)
    LifterTrainer(TrainConfig(**{**TINY, "epochs": 1})).fit(train_set, out_dir=tmp_path, progress=False)
    monkeypatch.undo()
    # and random training views of a pose never coincide with one of its evaluation views
    part = train_set.subset(np.arange(0, len(train_set), 5))
    ev = evaluation_pairs(part)
    tr, _, _ = sample_training_pairs(part, rng=np.random.default_rng(0), n_views=4)
    gap = np.abs(tr.reshape(4, 1, len(part), -1) - ev.x2d.reshape(1, 4, len(part), -1)).max(axis=-1)
    assert gap.min() > 1e-3


def test_split_by_clip_keeps_clips_whole(train_set):
    tr, va = split_by_clip(train_set, val_fraction=0.2, seed=0)
    assert len(tr) + len(va) == len(train_set)
    assert not set(tr.clip) & set(va.clip)
    assert 0.05 < len(va) / len(train_set) < 0.5
    tr2, va2 = split_by_clip(train_set, val_fraction=0.2, seed=0)
    assert np.array_equal(va.sample_id, va2.sample_id)
    assert split_by_clip(train_set, val_fraction=0.0, seed=0)[1] is None



def _activity(clip: str) -> str:
    return clip.split("/")[-1].split("_")[2]  # HDM_bd_squat1Reps_001_120 -> squat1Reps


def test_neighbourhood_cut_holds_out_a_region_of_pose_space(train_set):
    """The "neighbourhood" cut holds out clips near one seeded clip in mean pose: with three
    activities it holds out one activity whole (no labels used), where the random cut mixes them."""
    for seed in range(6):
        tr, va = split_by_clip(train_set, val_fraction=0.2, seed=seed, cut="neighbourhood")
        assert len(tr) + len(va) == len(train_set) and not set(tr.clip) & set(va.clip)
        assert 0.1 < len(va) / len(train_set) < 0.4
        assert len({_activity(c) for c in va.clip}) == 1, seed
        # nearest first: every held-out clip is nearer the seed clip than every kept clip
        names, inverse = np.unique(train_set.clip, return_inverse=True)
        means = clip_mean_poses(train_set, inverse.reshape(-1), len(names))
        first = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(len(names))[0]
        dist = np.linalg.norm(means - means[first], axis=1)
        held = np.isin(names, np.unique(va.clip))
        assert held[first] and dist[held].max() <= dist[~held].min()
    mixed = [len({_activity(c) for c in split_by_clip(train_set, val_fraction=0.2, seed=s)[1].clip}) for s in range(6)]
    assert max(mixed) > 1
    with pytest.raises(PoseCuratorError, match="unknown validation cut"):
        split_by_clip(train_set, val_fraction=0.2, seed=0, cut="activity")


def test_clip_mean_poses_match_a_per_clip_loop(train_set):
    names, inverse = np.unique(train_set.clip, return_inverse=True)
    fast = clip_mean_poses(train_set, inverse.reshape(-1), len(names))
    layout = get_layout(train_set.layout)
    rh, lh = layout.joints.index("right_hip"), layout.joints.index("left_hip")
    for k, name in enumerate(names):  # plain reference: one clip, one pose at a time
        rows = []
        for pose in np.asarray(train_set.joints3d[train_set.clip == name], dtype=np.float64):
            x = pose - pose[0]
            yaw = np.arctan2(x[rh, 1] - x[lh, 1], x[rh, 0] - x[lh, 0])
            rot = np.array([[np.cos(yaw), np.sin(yaw), 0.0], [-np.sin(yaw), np.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
            turned = x @ rot.T
            assert abs(turned[rh, 1] - turned[lh, 1]) < 1e-6  # the hips lie along X
            rows.append(turned.reshape(-1))
        np.testing.assert_allclose(fast[k], np.mean(rows, axis=0), atol=1e-6)


def test_val_cut_config_keeps_old_configs_unchanged():
    """val_cut came later: at its default it is left out of the config dict, so the hashes and
    resume checks of runs trained before it stay valid; set, it round-trips."""
    assert "val_cut" not in TrainConfig.preset("fast").to_dict()
    cfg = TrainConfig.preset("fast", val_cut="neighbourhood")
    assert TrainConfig.from_dict(cfg.to_dict()).val_cut == "neighbourhood"
    with pytest.raises(ValueError, match="val_cut"):
        TrainConfig(val_cut="subject")


# ---------------------------------------------------------------------------------- trainer
def test_training_reduces_the_loss_and_writes_a_run(tiny_run, train_set):
    out, trainer, summary = tiny_run
    history = json.loads((out / "history.json").read_text())
    epochs = history["epochs"]
    assert len(epochs) == TINY["epochs"]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert epochs[-1]["val_mpjpe"] < epochs[0]["val_mpjpe"]
    assert history["poses_per_s"] > 0 and history["training_time_s"] > 0
    for name in ("best.safetensors", "last.safetensors", "optimizer.safetensors", "state.json", "config.json"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["width"] == TINY["width"] and config["layout"] == "h36m17"
    assert config["train"]["seed"] == 0 and len(config["history"]["epochs"]) == TINY["epochs"]
    assert summary["best_val_mpjpe"] == min(e["val_mpjpe"] for e in epochs)
    assert summary["n_train"] + summary["n_val"] == len(train_set)
    assert set(config["data"]["val_clips"]) < set(train_set.clip)


def test_save_load_gives_the_same_predictions(tiny_run, test_set, tmp_path):
    out, trainer, _ = tiny_run
    x2d = evaluation_pairs(test_set).x2d
    expected = predict(trainer.model_, x2d)
    model, config = ckpt.load_lifter(out)
    np.testing.assert_array_equal(predict(model, x2d), expected)
    ckpt.save_run(tmp_path, model, {"layout": config["layout"]})
    again, _ = ckpt.load_lifter(tmp_path)
    np.testing.assert_array_equal(predict(again, x2d), expected)


def test_resume_continues_and_matches_an_uninterrupted_run(train_set, tmp_path):
    cfg = dict(TINY, epochs=3)
    LifterTrainer(TrainConfig(**{**cfg, "epochs": 2})).fit(train_set, out_dir=tmp_path / "a", progress=False)
    assert json.loads((tmp_path / "a" / "state.json").read_text())["epoch"] == 1
    resumed = LifterTrainer(TrainConfig(**cfg)).fit(train_set, out_dir=tmp_path / "a", progress=False)
    assert resumed["resumed"] and resumed["epochs"] == 3
    assert [e["epoch"] for e in json.loads((tmp_path / "a" / "history.json").read_text())["epochs"]] == [0, 1, 2]
    straight = LifterTrainer(TrainConfig(**cfg)).fit(train_set, out_dir=tmp_path / "b", progress=False)
    assert not straight["resumed"]
    a = ckpt.load_tensors(tmp_path / "a" / "last.safetensors")
    b = ckpt.load_tensors(tmp_path / "b" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)  # resumed == uninterrupted == same seed, same weights
    other = LifterTrainer(TrainConfig(**{**cfg, "seed": 1})).fit(train_set, out_dir=tmp_path / "c", progress=False)
    c = ckpt.load_tensors(tmp_path / "c" / "last.safetensors")
    assert not torch.equal(a["output_layer.weight"], c["output_layer.weight"])
    assert other["best_val_mpjpe"] > 0
    with pytest.raises(PoseCuratorError, match="different training config"):
        LifterTrainer(TrainConfig(**{**cfg, "width": 32})).fit(train_set, out_dir=tmp_path / "a", progress=False)


def test_max_steps_and_validation_options(train_set, tmp_path):
    summary = LifterTrainer(TrainConfig(**{**TINY, "max_steps": 5})).fit(train_set, out_dir=tmp_path / "a", progress=False)
    assert summary["steps"] == 5 and summary["epochs"] == 1
    # no validation: the last epoch is the best
    summary = LifterTrainer(TrainConfig(**{**TINY, "val_fraction": 0.0, "epochs": 2})).fit(train_set, out_dir=tmp_path / "b", progress=False)
    assert summary["best_val_mpjpe"] is None and summary["best_epoch"] == 1 and summary["n_val"] == 0
    # explicit validation poses: the whole training set trains
    val = train_set.subset(np.arange(0, len(train_set), 10))
    summary = LifterTrainer(TrainConfig(**{**TINY, "epochs": 1})).fit(train_set, val=val, out_dir=tmp_path / "c", progress=True)
    assert summary["n_train"] == len(train_set) and summary["n_val"] == len(val) and summary["best_val_mpjpe"] > 0


class _EveryThird(torch.utils.data.Sampler):
    """Yields only the indices 0, 3, 6, ... of the train part and records set_epoch calls."""

    def __init__(self, n: int):
        self.n, self.epochs = n, []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def __iter__(self):
        return iter(range(0, self.n, 3))

    def __len__(self):
        return len(range(0, self.n, 3))


def test_sampler_hook_decides_which_poses_train(train_set, tmp_path, monkeypatch):
    made, seen = {}, []

    def factory(train_part):
        made["n_train"] = len(train_part)
        made["sampler"] = _EveryThird(len(train_part))
        return made["sampler"]

    real = trainer_mod.sample_training_pairs

    def spy(poses, **kwargs):
        seen.append(kwargs.get("index"))
        return real(poses, **kwargs)

    monkeypatch.setattr(trainer_mod, "sample_training_pairs", spy)
    cfg = TrainConfig(**{**TINY, "n_views": 2})
    LifterTrainer(cfg).fit(train_set, out_dir=tmp_path, sampler=factory, progress=False)
    sampler, n_train = made["sampler"], made["n_train"]
    assert sampler.epochs == [0, 1, 2]
    assert seen[0] is None  # the validation pairs: every validation pose
    train_seen = seen[1:]
    assert len(train_seen) == 3
    for index in train_seen:
        assert set(index.tolist()) == set(range(0, n_train, 3))
        assert len(index) == 2 * len(sampler)


def test_fine_tune_starts_from_the_given_run(tiny_run, train_set, tmp_path):
    out, _, _ = tiny_run
    cfg = TrainConfig(**{**TINY, "lr": 0.0, "epochs": 1, "width": 999})  # lr 0: weights stay as loaded
    LifterTrainer(cfg).fit(train_set, out_dir=tmp_path, init_from=out, progress=False)
    start = ckpt.load_tensors(out / "best.safetensors")
    tuned = ckpt.load_tensors(tmp_path / "best.safetensors")
    assert torch.equal(start["output_layer.weight"], tuned["output_layer.weight"])
    assert json.loads((tmp_path / "config.json").read_text())["init_from"] == str(out)


def test_config_json_round_trip_and_presets(tmp_path):
    cfg = TrainConfig.preset("fast", seed=4, camera={"distance": [4000.0, 6000.0]})
    again = TrainConfig.from_json(cfg.to_json(tmp_path / "c.json"))
    assert again == cfg and TrainConfig.from_json(tmp_path / "c.json") == cfg
    assert again.camera_sampler().distance == (4000.0, 6000.0)
    for name in ("fast", "default", "large"):
        assert TrainConfig.preset(name).epochs >= 1
    with pytest.raises(PoseCuratorError):
        TrainConfig.preset("huge")
    with pytest.raises(PoseCuratorError):
        TrainConfig.from_dict({"widht": 3})


def test_load_lifter_reports_bad_run_folders(tiny_run, tmp_path):
    out, _, _ = tiny_run
    with pytest.raises(DataError, match="config.json"):
        ckpt.load_lifter(tmp_path)
    (tmp_path / "config.json").write_text((out / "config.json").read_text())
    (tmp_path / "best.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(DataError, match="best.safetensors"):
        ckpt.load_lifter(tmp_path)


# ------------------------------------------------------------------------------- evaluation
def test_evaluate_run_reports_the_benchmark_metrics(tiny_run, test_set):
    out, trainer, _ = tiny_run
    res = evaluate_run(out, test_set)
    assert set(res) == {"mpjpe", "pa_mpjpe", "pck3d", "auc", "n_poses", "per_activity"}
    assert res["n_poses"] == 4 * len(test_set)
    assert 0 < res["pa_mpjpe"] <= res["mpjpe"] < 1000
    assert 0 <= res["auc"] <= res["pck3d"] <= 1
    assert set(res["per_activity"]) == set(test_set.activity)
    assert sum(r["n_poses"] for r in res["per_activity"].values()) == res["n_poses"]
    weighted = sum(r["mpjpe"] * r["n_poses"] for r in res["per_activity"].values()) / res["n_poses"]
    assert weighted == pytest.approx(res["mpjpe"])
    for r in res["per_activity"].values():
        assert set(r) == {"mpjpe", "pa_mpjpe", "pck3d", "auc", "n_poses"}
    json.dumps(res)  # plain JSON types
    noisy = evaluate_model(trainer.model_, test_set, noise_px=5.0, seed=0, return_per_pose=True)
    assert noisy["mpjpe"] != res["mpjpe"]
    per = noisy["per_pose"]
    assert per["mpjpe"].shape == (4 * len(test_set),)
    assert per["mpjpe"].mean() == pytest.approx(noisy["mpjpe"])
    assert np.array_equal(per["pose_index"], np.tile(np.arange(len(test_set)), 4))


def test_max_epoch_pairs_streams_through_the_data():
    # index bookkeeping only: 10 rows, epochs of 4 pairs -> 5 epochs are exactly 2 shuffled passes
    trainer = LifterTrainer(TrainConfig(batch_size=2, max_epoch_pairs=4, seed=3))
    epochs = [trainer._uniform_epoch_index(e, 10) for e in range(5)]
    assert all(len(e) == 4 for e in epochs)
    assert np.array_equal(np.bincount(np.concatenate(epochs), minlength=10), np.full(10, 2))
    assert np.array_equal(trainer._uniform_epoch_index(3, 10), epochs[3])  # a function of the epoch: resumable
    assert sorted(LifterTrainer(TrainConfig(batch_size=2))._uniform_epoch_index(0, 10).tolist()) == list(range(10))
