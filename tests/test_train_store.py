"""Issue 12, item 2: the lifter trains on a stored set opened lazily (PoseSet.open) with the same
run, bit for bit, as on the loaded set: weights, optimizer state and history (timings aside),
whatever the chunk size; each epoch reads only the rows it draws."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from posecurator.errors import DataError, PoseCuratorError
from posecurator.poseset import PoseSet, PoseStore
from posecurator.train import trainer as trainer_mod
from posecurator.train.trainer import LifterTrainer, TrainConfig, clip_mean_poses, data_fingerprint, split_by_clip

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HDM05 = DATA / "hdm05" / "amc"
CLIPS = {"HDM_bd_squat1Reps": 5, "HDM_bd_kickLFront1Reps": 3, "HDM_bd_grabHighR": 2}

pytestmark = pytest.mark.skipif(not HDM05.is_dir(), reason=f"real mocap data not found at {HDM05}")

TINY = dict(width=32, blocks=1, dropout=0.1, lr=3e-3, lr_decay=0.95, batch_size=64, epochs=2, val_fraction=0.2,
            num_threads=1)
TIMING = {"time_s", "poses_per_s", "training_time_s", "train_time_s"}  # wall-clock figures differ run to run


@pytest.fixture(scope="module")
def real() -> PoseSet:
    from posecurator.io import import_path

    files = [f for prefix, n in CLIPS.items() for f in sorted(HDM05.glob(f"{prefix}_*.amc.gz"))[:n]]
    return PoseSet.concatenate([import_path(f, progress=False) for f in files], renumber=True)


def _untimed(doc):
    if isinstance(doc, dict):
        return {k: _untimed(v) for k, v in doc.items() if k not in TIMING}
    if isinstance(doc, list):
        return [_untimed(v) for v in doc]
    return doc


def _run_files(out: Path) -> dict:
    """The run folder's weights as bytes and its JSON documents without timings."""
    got = {name: (out / name).read_bytes() for name in ("best.safetensors", "last.safetensors", "optimizer.safetensors")}
    for name in ("history.json", "config.json", "state.json"):
        got[name] = _untimed(json.loads((out / name).read_text()))
    return got


def _assert_same_run(a: Path, b: Path):
    ra, rb = _run_files(a), _run_files(b)
    for name in ra:
        assert ra[name] == rb[name], f"{name} differs between the in-memory and the stored run"


@pytest.mark.parametrize("overrides", [
    {},  # uniform epochs over the whole train part
    {"val_cut": "neighbourhood", "max_epoch_pairs": 640, "epochs": 3, "noise_px_train": 2.0, "max_val_pairs": 300},
    {"input_mode": "root_scale", "joint_dropout": 0.2, "n_views": 2, "val_views": 3, "max_epoch_pairs": 1000},
])
def test_fit_on_store_equals_fit_in_memory(real, tmp_path, overrides):
    config = TrainConfig(**{**TINY, **overrides})
    want_summary = LifterTrainer(config).fit(real, out_dir=tmp_path / "mem", progress=False)
    for chunk in (97, 10 ** 6):
        path = real.save(tmp_path / f"{chunk}.pcs", chunk_size=chunk)
        trainer = LifterTrainer(config)
        summary = trainer.fit(PoseSet.open(path), out_dir=tmp_path / f"store-{chunk}", progress=False)
        assert _untimed(summary) | {"run_dir": None} == _untimed(want_summary) | {"run_dir": None}
        _assert_same_run(tmp_path / "mem", tmp_path / f"store-{chunk}")
    # a path is opened lazily too
    LifterTrainer(config).fit(str(path), out_dir=tmp_path / "path", progress=False)
    _assert_same_run(tmp_path / "mem", tmp_path / "path")


def test_store_epochs_read_only_their_rows(real, tmp_path, monkeypatch):
    """With max_epoch_pairs, an epoch takes only its rows from the store (and validation its rows)."""
    config = TrainConfig(**{**TINY, "max_epoch_pairs": 256, "epochs": 3})
    path = real.save(tmp_path / "set.pcs", chunk_size=100)
    taken, loaded = [], []
    take, load = PoseStore.take, PoseStore.load
    monkeypatch.setattr(PoseStore, "take", lambda self, idx, columns=None: taken.append(len(np.unique(idx))) or take(self, idx, columns))
    monkeypatch.setattr(PoseStore, "load", lambda self, columns=None: loaded.append(len(self)) or load(self, columns))
    LifterTrainer(config).fit(PoseSet.open(path), out_dir=tmp_path / "run", progress=False)
    n_val = json.loads((tmp_path / "run" / "config.json").read_text())["data"]["n_val"]
    assert not loaded
    n_store = len(PoseSet.open(path))
    assert taken[0] == 1 and taken[1] == n_val  # one row (the joint count), then the validation rows once
    assert len(taken[2:]) == config.epochs and max(taken[2:]) <= 256 < n_store  # every epoch its rows alone


def test_store_helpers_equal_in_memory(real, tmp_path):
    path = real.save(tmp_path / "set.pcs", chunk_size=77)
    store = PoseSet.open(path)
    assert data_fingerprint(store) == data_fingerprint(real)
    names, inverse = np.unique(real.clip, return_inverse=True)
    assert clip_mean_poses(store, inverse, len(names)).tobytes() == clip_mean_poses(real, inverse, len(names)).tobytes()
    for cut in ("clip", "neighbourhood"):
        tr, va = split_by_clip(real, val_fraction=0.3, seed=4, cut=cut)
        str_, sva = split_by_clip(store, val_fraction=0.3, seed=4, cut=cut)
        assert isinstance(str_, PoseStore)
        assert np.array_equal(str_.column("sample_id"), tr.sample_id) and np.array_equal(sva.column("sample_id"), va.sample_id)


def test_store_refusals_and_errors_match(real, tmp_path):
    bad = real.replace(joints3d=real.joints3d.copy())
    bad.joints3d[300, 3, 1] = np.nan
    path = bad.save(tmp_path / "bad.pcs", chunk_size=60)
    with pytest.raises(DataError) as want:
        LifterTrainer(TrainConfig(**TINY)).fit(bad, out_dir=tmp_path / "a", progress=False)
    with pytest.raises(DataError) as got:
        LifterTrainer(TrainConfig(**TINY)).fit(PoseSet.open(path), out_dir=tmp_path / "b", progress=False)
    assert got.value.message == want.value.message and got.value.path == str(path)
    assert "clip 'HDM" in got.value.message and "np.str_" not in got.value.message

    good = real.save(tmp_path / "good.pcs", chunk_size=60)
    with pytest.raises(PoseCuratorError, match="sampler factory needs the training poses in memory"):
        LifterTrainer(TrainConfig(**TINY)).fit(PoseSet.open(good), out_dir=tmp_path / "c", progress=False,
                                               sampler=lambda part: range(len(part)))


def test_store_with_index_sampler_equals_in_memory(real, tmp_path):
    """A sampler of row indices (of the train part) gives the same run on a store."""
    config = TrainConfig(**{**TINY, "max_epoch_pairs": 500})
    n_train = len(split_by_clip(real, val_fraction=config.val_fraction, seed=config.seed)[0])
    order = np.random.default_rng(3).integers(0, n_train, 700)
    LifterTrainer(config).fit(real, out_dir=tmp_path / "mem", progress=False, sampler=order.tolist())
    path = real.save(tmp_path / "set.pcs", chunk_size=90)
    LifterTrainer(config).fit(PoseSet.open(path), out_dir=tmp_path / "store", progress=False, sampler=order.tolist())
    _assert_same_run(tmp_path / "mem", tmp_path / "store")


def test_module_has_no_whole_set_read_in_epochs():
    # the lazy epoch path goes through the camera layer's store sampler (reads only the taken rows)
    assert trainer_mod.sample_training_pairs_from_store.__module__ == "posecurator.camera.pairs"


@pytest.mark.parametrize("block", [1, 7, 1000, 65_536])
def test_store_pairs_blockwise_equal_in_memory(real, tmp_path, block):
    """Pairs of a store are projected block by block (cameras drawn first, noise continued): the
    same bytes as the one-block in-memory call, and the same error naming the same pose."""
    from posecurator.camera.core import RandomCameraSampler
    from posecurator.camera.pairs import sample_training_pairs, sample_training_pairs_from_store

    index = np.random.default_rng(7).integers(0, len(real), size=1_200)
    want = sample_training_pairs(real, rng=np.random.default_rng(11), sampler=RandomCameraSampler(), index=index,
                                 n_views=3, noise_px=1.5, block=10**9)  # one block: the plain reference
    store = PoseSet.open(real.save(tmp_path / "set.pcs", chunk_size=100))
    got = sample_training_pairs_from_store(store, rng=np.random.default_rng(11), sampler=RandomCameraSampler(),
                                           index=index, n_views=3, noise_px=1.5, block=block)
    in_memory = sample_training_pairs(real, rng=np.random.default_rng(11), sampler=RandomCameraSampler(), index=index,
                                      n_views=3, noise_px=1.5, block=block)  # the in-memory call is blocked too
    for a, b, c in zip(got, want, in_memory):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes() == c.tobytes()
    far = real.replace(joints3d=real.joints3d.copy())
    late = np.setdiff1d(np.arange(len(real)), index[:600])  # rows the first 600 pairs do not show
    far.joints3d[late, 3] += np.array([30_000.0, 0, 0], np.float32)  # a joint 30 m away: behind some cameras
    messages = []
    for make, poses in ((sample_training_pairs, far),
                        (sample_training_pairs_from_store, PoseSet.open(far.save(tmp_path / "far.pcs", chunk_size=100)))):
        for kwargs in ({"block": block}, {"block": 10**9}):
            with pytest.raises(DataError) as e:
                make(poses, rng=np.random.default_rng(11), sampler=RandomCameraSampler(), index=index,
                     n_views=3, **kwargs)
            messages.append(str(e.value))
    assert len(set(messages)) == 1 and "pose 0 " not in messages[0]
