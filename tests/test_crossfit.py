"""Cross-fitted (out-of-sample) VAE difficulty on real HDM05 mocap: ``posecurator.scoring.crossfit``
and its use by the VAE pipelines (``source_scores``, ``run_difficulty``, ``--crossfit``).

Small on purpose: a few HDM05 clips of actors bd and bk, tiny VAEs of a few epochs, torch on one
thread."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from posecurator.poseset import PoseSet
from posecurator.scoring.base import PoseScorer
from posecurator.scoring.crossfit import CrossFitScorer, assign_folds

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HDM = DATA / "hdm05" / "amc"
pytestmark = pytest.mark.skipif(not HDM.is_dir(), reason=f"real HDM05 data not found under {DATA}")

MOTIONS = ("jogLeftCircle4StepsRstart", "sneak2StepsLStart", "grabHighR", "rotateArmsBothBackward1Reps", "squat1Reps",
           "kickLFront1Reps")
MORE_MOTIONS = MOTIONS + ("depositFloorR", "hopBothLegs1hops", "elbowToKnee1RepsLelbowStart")
TINY = {"hidden": (32,), "latent_dim": 4, "epochs": 4, "batch_size": 128, "num_threads": 1}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _read(actors, motions, takes) -> PoseSet:
    from posecurator.io import import_path

    files = [f for a in actors for m in motions for f in sorted(HDM.glob(f"HDM_{a}_{m}_*.amc*"))[:takes]]
    return PoseSet.concatenate([import_path(f, progress=False) for f in files], renumber=True)


@pytest.fixture(scope="module")
def hdm() -> PoseSet:
    """12 clips (632 poses): one take of six motions by bd and by bk."""
    return _read(("bd", "bk"), MOTIONS, 1)


@pytest.fixture(scope="module")
def target() -> PoseSet:
    return _read(("dg",), MOTIONS[:2], 1)


def _vae(**fields):
    from posecurator.train.vae_trainer import make_vae_scorer

    # config= (make_vae_scorer's own batch_size keyword is the scoring batch, not the training one)
    return make_vae_scorer(config={**TINY, **fields})


class Recording(PoseScorer):
    """Wraps a VAE scorer and records the sample ids it was fitted on and those it scored."""

    def __init__(self, log: list):
        self.inner, self.log = _vae(), log
        self.index = len(log)
        log.append({"fit": None, "scored": []})

    def fit(self, reference):
        self.log[self.index]["fit"] = reference.sample_id.copy()
        self.inner.fit(reference)
        return self

    def score_samples(self, poses):
        self.log[self.index]["scored"].append(poses.sample_id.copy())
        return self.inner.score_samples(poses)


# ------------------------------------------------------------------------------ fold assignment
def _assign_folds_reference(groups, folds, seed):
    """Plain loop: groups in an order shuffled by the seed, each to the emptiest fold."""
    names, counts = np.unique(groups, return_counts=True)
    perm = np.random.default_rng(seed).permutation(len(names))
    load, where = [0] * folds, {}
    for count, name in ((int(counts[g]), names[g]) for g in perm):
        f = min(range(folds), key=lambda j: (load[j], j))
        where[name] = f
        load[f] += count
    return np.array([where[g] for g in groups], dtype=np.int64)


def test_folds_are_whole_clips_balanced_and_seeded(hdm):
    clip = hdm.clip
    _, sizes = np.unique(clip, return_counts=True)
    for folds in (2, 3, 5):
        for seed in (0, 1, 7):
            fold = assign_folds(clip, folds, seed=seed)
            assert fold.dtype == np.int64 and fold.shape == (len(hdm),) and set(fold.tolist()) == set(range(folds))
            for c in np.unique(clip):  # a clip lies in one fold
                assert len(np.unique(fold[clip == c])) == 1
            load = np.bincount(fold, minlength=folds)
            assert load.max() - load.min() <= sizes.max()  # balanced by pose count
            np.testing.assert_array_equal(fold, assign_folds(clip, folds, seed=seed))
            np.testing.assert_array_equal(fold, _assign_folds_reference(clip, folds, seed))
    assert not np.array_equal(assign_folds(clip, 3, seed=0), assign_folds(clip, 3, seed=1))
    with pytest.raises(ValueError, match="folds"):
        assign_folds(clip, 13, seed=0)  # 12 clips
    with pytest.raises(ValueError):
        assign_folds(clip, 1, seed=0)


# ------------------------------------------------------------------------------ the cross-fit
def test_no_pose_is_scored_by_a_model_that_saw_its_clip(hdm):
    log: list = []
    cf = CrossFitScorer(lambda: Recording(log), folds=4, seed=3)
    scores = cf.fit_score(hdm)
    assert scores.shape == (len(hdm),) and scores.dtype == np.float64 and np.isfinite(scores).all()
    assert len(log) == 4 == len(cf.estimators_)
    clip_of = dict(zip(hdm.sample_id.tolist(), hdm.clip.tolist()))
    scored_by = np.full(len(hdm), -1)
    pos = {int(s): i for i, s in enumerate(hdm.sample_id)}
    for k, rec in enumerate(log):
        seen_clips = {clip_of[int(s)] for s in rec["fit"]}
        (scored,) = rec["scored"]  # each fold's poses in one batched call
        assert not seen_clips & {clip_of[int(s)] for s in scored}
        assert seen_clips | {clip_of[int(s)] for s in scored} == set(hdm.clip.tolist())
        for s in scored:
            assert scored_by[pos[int(s)]] == -1
            scored_by[pos[int(s)]] = k
    np.testing.assert_array_equal(scored_by, cf.fold_)  # fold_ records which model scored each pose
    for k in range(4):
        np.testing.assert_array_equal(np.sort(cf.fold_groups_[k]), np.unique(hdm.clip[cf.fold_ == k]))


def test_crossfit_matches_a_plain_loop_and_is_reproducible(hdm, target):
    from posecurator.train.vae_trainer import VAEConfig, score_poses, train_vae

    cf = CrossFitScorer(_vae, folds=3, seed=5).fit(hdm)
    again = CrossFitScorer(_vae, folds=3, seed=5).fit_score(hdm)
    assert cf.oof_scores_.tobytes() == again.tobytes()  # byte for byte
    # reference: a simple loop over folds with the trainer and the scorer of the VAE
    cfg = VAEConfig.from_dict({**TINY, "space": "3d"})
    fold = _assign_folds_reference(hdm.clip, 3, 5)
    np.testing.assert_array_equal(fold, cf.fold_)
    ref = np.empty(len(hdm))
    per_fold_target = []
    for k in range(3):
        model, _ = train_vae(hdm.subset(fold != k), cfg, progress=False)
        idx = np.flatnonzero(fold == k)
        for i in idx[:: max(1, len(idx) // 40)]:  # pose by pose, a sample of each fold
            one = score_poses(model, hdm.subset(np.array([i])))[0]
            assert one == pytest.approx(cf.oof_scores_[i], rel=1e-5, abs=1e-7)
        ref[idx] = score_poses(model, hdm.subset(idx))
        per_fold_target.append(score_poses(model, target))
    np.testing.assert_array_equal(ref, cf.oof_scores_)
    # new poses: the mean of the fold models (default), or one model fitted on everything
    np.testing.assert_allclose(cf.score_samples(target), np.mean(per_fold_target, axis=0), rtol=1e-12)
    assert cf.fold_scores(target).shape == (3, len(target))
    full = CrossFitScorer(_vae, folds=3, seed=5, new="full").fit(hdm)
    np.testing.assert_array_equal(full.oof_scores_, cf.oof_scores_)
    np.testing.assert_array_equal(full.score_samples(target), _vae().fit(hdm).score_samples(target))
    assert cf.fit_score(hdm, target).shape == (len(target),)


def test_options_are_checked(hdm):
    with pytest.raises(ValueError):
        CrossFitScorer(_vae, folds=1)
    with pytest.raises(ValueError):
        CrossFitScorer(_vae, new="median")
    with pytest.raises(RuntimeError, match="not fitted"):
        CrossFitScorer(_vae).score_samples(hdm)
    with pytest.raises(ValueError, match="column"):
        CrossFitScorer(_vae, group="nope").fit(hdm)
    # group=None: plain K-fold over poses
    fold = CrossFitScorer(lambda: Recording([]), folds=3, group=None, seed=0).fit(hdm).fold_
    assert np.ptp(np.bincount(fold)) <= 1


def test_in_sample_skew_exists_and_shrinks_with_crossfit():
    """The VAE trainer's own validation clips (never trained on) land in the hard third more often
    than a third when one VAE scores the set it trained on; cross-fitted, those poses are scored
    like every other pose (all out of sample), and the excess shrinks. Five trainer seeds (five
    sets of validation clips), one cross-fit."""
    from posecurator.train.vae_trainer import make_vae_scorer, split_by_clip

    ps = _read(("bd", "bk"), MORE_MOTIONS, 2)  # 36 clips, ~1,900 poses
    cfg = dict(hidden=(128, 128), latent_dim=8, epochs=60, val_fraction=0.2, num_threads=1)
    oof = CrossFitScorer(lambda: make_vae_scorer(**cfg), folds=5, seed=0).fit_score(ps)
    hard_cf = oof >= np.quantile(oof, 2 / 3)
    ins, cfs = [], []
    for seed in range(5):
        s = make_vae_scorer(**cfg, seed=seed).fit_score(ps)
        val = split_by_clip(ps.clip, cfg["val_fraction"], seed=seed)  # the clips the in-sample VAE never saw
        ins.append(np.mean(s[val] >= np.quantile(s, 2 / 3)))
        cfs.append(np.mean(hard_cf[val]))
    print(f"validation-clip poses in the hard third: in sample {np.round(ins, 3)}, cross-fit {np.round(cfs, 3)}")
    assert all(a > b for a, b in zip(ins, cfs))
    assert np.mean(ins) > 0.42 and np.mean(ins) - np.mean(cfs) > 0.07


# ------------------------------------------------------------------------------ the VAE pipelines
def _old_key(train, cfg) -> str:
    """The cache key of source_scores before cross-fitting existed."""
    from posecurator.pipelines.vae_sampling import _poses_fingerprint

    text = _poses_fingerprint(train) + json.dumps(cfg.to_dict(), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def test_source_scores_crossfit_and_in_sample(tmp_path, hdm, target):
    from posecurator.pipelines.vae_sampling import bench_vae_config, score_with_source_vae, source_scores
    from posecurator.train.vae_trainer import load_vae, score_poses

    opts = {**TINY}
    # in sample: the cache folder of earlier versions (key unchanged), scoring recorded
    s_in, d_in = source_scores(hdm, cache_dir=tmp_path, seed=2, vae_config=opts, progress=False, crossfit=None)
    assert d_in.name == f"vae-seed2-{_old_key(hdm, bench_vae_config(len(hdm), seed=2, **opts))}"
    with np.load(d_in / "scores.npz", allow_pickle=False) as z:
        assert str(z["scoring"]) == "in_sample" and "fold" not in z.files
    model, _ = load_vae(d_in)
    np.testing.assert_array_equal(s_in, score_poses(model, hdm))
    np.testing.assert_array_equal(score_with_source_vae(d_in, target), score_poses(model, target))
    # cross-fitted: another folder, folds recorded, each pose scored by the VAE of its fold
    s_cf, d_cf = source_scores(hdm, cache_dir=tmp_path, seed=2, vae_config=opts, progress=False, crossfit=3)
    assert d_cf != d_in and d_cf.name.startswith("vae-seed2-cf3-")
    with np.load(d_cf / "scores.npz", allow_pickle=False) as z:
        assert str(z["scoring"]) == "crossfit 3"
        fold = z["fold"]
        np.testing.assert_array_equal(z["score"], s_cf)
    doc = json.loads((d_cf / "crossfit.json").read_text())
    assert doc["folds"] == 3 and doc["fold_dirs"] == ["fold0", "fold1", "fold2"] and sum(doc["fold_poses"]) == len(hdm)
    fold_scores = []
    for k in range(3):
        m, cfg = load_vae(d_cf / f"fold{k}")
        # the fold VAE's config is sized on its training poses: as many pose passes as one VAE would make
        assert cfg.epochs == TINY["epochs"] and set(doc["fold_clips"][k]) == set(hdm.clip[fold == k])
        np.testing.assert_array_equal(score_poses(m, hdm.subset(fold == k)), s_cf[fold == k])
        fold_scores.append(score_poses(m, target))
    np.testing.assert_allclose(score_with_source_vae(d_cf, target), np.mean(fold_scores, axis=0), rtol=1e-12)
    # cached: the second call trains nothing and returns the same bytes
    again, d2 = source_scores(hdm, cache_dir=tmp_path, seed=2, vae_config=opts, progress=False, crossfit=3)
    assert d2 == d_cf and again.tobytes() == s_cf.tobytes()
    # crossfit 0 / 1 mean in sample
    for off in (0, 1):
        assert source_scores(hdm, cache_dir=tmp_path, seed=2, vae_config=opts, progress=False, crossfit=off)[1] == d_in


def test_bench_vae_config_is_sized_per_fold(hdm):
    from posecurator.pipelines.vae_sampling import bench_vae_config, crossfit_train_size

    assert crossfit_train_size(1000, None) == 1000 and crossfit_train_size(1000, 5) == 800
    # a small set: the fold VAE gets more epochs, so that it makes as many pose passes as the single VAE
    one = bench_vae_config(crossfit_train_size(50_000, None), seed=0)
    fold = bench_vae_config(crossfit_train_size(50_000, 5), seed=0)
    assert one.epochs * 50_000 == pytest.approx(fold.epochs * 40_000, rel=0.05)
    # a large set: both train on the 100k-pose subset for the same epochs
    assert bench_vae_config(crossfit_train_size(400_000, 5), seed=0).epochs == bench_vae_config(400_000, seed=0).epochs


def test_difficulty_writes_the_scoring(tmp_path, hdm, target, capsys):
    from posecurator.cli.main import main

    ds, held = tmp_path / "hdm.pcs", tmp_path / "dg.pcs"
    hdm.save(ds)
    target.save(held)
    cfg = tmp_path / "vae.json"
    cfg.write_text(json.dumps({"hidden": [32], "latent_dim": 4, "batch_size": 128}))
    runs = {"cf": ["--crossfit", "3"], "in": ["--crossfit", "0"]}
    for name, extra in runs.items():
        out = tmp_path / name
        code = main(["difficulty", str(ds), "-o", str(out), "--bins", "4", "--epochs", "3", "--config", str(cfg),
                     "--heldout", str(held), "--gallery", "2", "-q", *extra])
        assert code == 0, capsys.readouterr().err
    out_cf, out_in = tmp_path / "cf", tmp_path / "in"
    assert json.loads((out_cf / "bins.json").read_text())["scoring"] == "crossfit 3"
    assert json.loads((out_in / "bins.json").read_text())["scoring"] == "in_sample"
    summary = json.loads((out_cf / "summary.json").read_text())
    assert summary["scoring"] == "crossfit 3" and len(summary["vae"]["folds"]) == 3
    assert summary["heldout"]["scoring"].startswith("out_of_sample: mean of the 3 fold VAEs")
    with np.load(out_cf / "scores.npz", allow_pickle=False) as z:
        assert str(z["scoring"]) == "crossfit 3"
        np.testing.assert_array_equal(z["sample_id"], hdm.sample_id)
        fold = z["fold"]
    for c in np.unique(hdm.clip):
        assert len(np.unique(fold[hdm.clip == c])) == 1
    assert (out_cf / "vae" / "fold2" / "vae.safetensors").is_file() and (out_in / "vae" / "vae.safetensors").is_file()
    with np.load(out_in / "scores.npz", allow_pickle=False) as z:
        assert str(z["scoring"]) == "in_sample" and "fold" not in z.files
    # a rerun reuses every stage: the same bytes
    before = (out_cf / "scores.npz").read_bytes()
    assert main(["difficulty", str(ds), "-o", str(out_cf), "--bins", "4", "--epochs", "3", "--config", str(cfg),
                 "--heldout", str(held), "--gallery", "2", "-q", "--crossfit", "3"]) == 0
    assert (out_cf / "scores.npz").read_bytes() == before
    # too few clips for the folds, and a negative K: one-line errors
    code = main(["difficulty", str(ds), "-o", str(tmp_path / "x"), "--crossfit", "13", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "13" in err and len(err.strip().splitlines()) == 1
    assert main(["difficulty", str(ds), "-o", str(tmp_path / "y"), "--crossfit", "-1", "-q"]) == 2
