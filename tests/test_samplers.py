"""Difficulty bins, the Fig. 3(b) bin-similarity heatmap and the VAE-HM / VAE-CL / random samplers,
on difficulty scores of real HDM05 poses from a real pose VAE."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from posecurator.errors import DataError
from posecurator.poseset import PoseSet
from posecurator.selection.bins import (align_scores, assign_bins, bin_edges, bin_similarity_matrix,
                                        bin_similarity_matrix_reference, bin_statistics, difficulty_bins, per_bin_mean,
                                        difficulty_bins_reference, load_scores, save_scores)
from posecurator.selection.samplers import (CurriculumSampler, HardMiningSampler, RandomSubsetSampler,
                                            default_stages, parse_sampler_spec, resolve_scores)
from posecurator.train.vae_trainer import VAEConfig, vae_score_fn

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HDM = DATA / "hdm05" / "amc"
pytestmark = pytest.mark.skipif(not HDM.is_dir(), reason=f"HDM05 mocap not found under {DATA}")

FAST_VAE = VAEConfig(epochs=8, seed=0)


@pytest.fixture(scope="module")
def poses() -> PoseSet:
    """A mixed real set: two takes of each HDM05 activity by actor bd (about 1,400 poses)."""
    from posecurator.io import import_path

    files = []
    for motion in ("jogLeftCircle", "squat1Reps", "grabHighR", "lieDownFloor", "kickLFront", "hopBothLegs",
                   "elbowToKnee", "throwBasketball", "depositFloorR", "rotateArms", "sneak2Steps"):
        files += sorted(HDM.glob(f"HDM_bd_{motion}*.amc*"))[:2]
    return PoseSet.concatenate([import_path(f, progress=False) for f in files], renumber=True)


@pytest.fixture(scope="module")
def scores(poses) -> np.ndarray:
    return resolve_scores(poses, None, score_fn=vae_score_fn(FAST_VAE))


# ---------------------------------------------------------------------- bins
def test_bins_equal_size_monotone_and_match_reference(scores):
    for k in (25, 7, 1):
        bins = difficulty_bins(scores, k)
        counts = np.bincount(bins, minlength=k)
        assert len(counts) == k and counts.max() - counts.min() <= 1 and counts.sum() == len(scores)
        for b in range(k - 1):
            assert scores[bins == b].max() <= scores[bins == b + 1].min()
        np.testing.assert_array_equal(bins, difficulty_bins_reference(scores, k))
    # heavy ties (scores rounded) still give equal sizes, deterministically
    tied = np.round(scores, 0)
    bins = difficulty_bins(tied, 25)
    assert np.ptp(np.bincount(bins)) <= 1
    np.testing.assert_array_equal(bins, difficulty_bins_reference(tied, 25))


def test_bins_reject_bad_input(scores):
    with pytest.raises(ValueError, match="non-empty bins"):
        difficulty_bins(scores[:10], 25)
    bad = scores.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        difficulty_bins(bad, 5)


def test_bin_statistics(poses, scores):
    bins = difficulty_bins(scores, 25)
    stats = bin_statistics(scores, bins, activity=poses.activity, frame=poses.frame)
    assert [s["bin"] for s in stats] == list(range(25))
    assert sum(s["count"] for s in stats) == len(scores)
    means = [s["score_mean"] for s in stats]
    assert means == sorted(means)
    assert all(s["score_min"] <= s["score_median"] <= s["score_max"] for s in stats)
    assert all(sum(c for _, c in s["activity_top"][:s["activity_unique"]]) <= s["count"] for s in stats)
    assert "frame_mean" in stats[0]
    # the hardest bin is dominated by unusual activities, the easiest by upright ones
    assert stats[-1]["activity_top"][0][0] in ("lieDownFloor", "kickLFront1Reps", "elbowToKnee1RepsLelbowStart",
                                               "depositFloorR", "hopBothLegs1hops", "throwBasketball")


def test_edges_assign_new_scores_to_source_bins(scores):
    bins = difficulty_bins(scores, 10)
    edges = bin_edges(scores, bins)
    np.testing.assert_array_equal(assign_bins(scores, edges), bins)
    assert assign_bins(np.array([-1.0, 1e9]), edges).tolist() == [0, 9]


def test_per_bin_mean_matches_a_loop(poses, scores):
    bins = difficulty_bins(scores, 8)
    values = np.stack([scores, poses.frame.astype(float)], axis=1)
    values[5, 1] = np.nan
    means, counts = per_bin_mean(values, bins)
    for b in range(8):
        sel = bins == b
        assert counts[b] == sel.sum()
        assert means[b, 0] == pytest.approx(scores[sel].mean())
        assert means[b, 1] == pytest.approx(np.nanmean(values[sel, 1]))
    assert np.all(np.diff(means[:, 0]) > 0)


def test_bin_similarity_heatmap(poses, scores):
    """Fig. 3(b): EvalPose between bins; the paper's observation: the hard bins vary more."""
    bins = difficulty_bins(scores, 10)
    sim = bin_similarity_matrix(poses.joints3d, bins, layout="h36m17", n_per_bin=30, seed=0)
    assert sim.shape == (10, 10)
    np.testing.assert_allclose(sim, sim.T, atol=1e-12)
    assert np.all((sim > 0) & (sim <= 1))
    within = np.diag(sim)
    assert within[:3].mean() > within[-3:].mean()  # easy poses resemble each other more than hard ones
    np.testing.assert_array_equal(sim, bin_similarity_matrix(poses.joints3d, bins, layout="h36m17", n_per_bin=30, seed=0))
    small = bin_similarity_matrix(poses.joints3d, difficulty_bins(scores, 4), n_per_bin=5, seed=2)
    ref = bin_similarity_matrix_reference(poses.joints3d, difficulty_bins(scores, 4), n_per_bin=5, seed=2)
    np.testing.assert_allclose(small, ref, atol=1e-12)


# ---------------------------------------------------------------------- samplers
def _epoch_indices(sampler) -> list[int]:
    loader = DataLoader(TensorDataset(torch.arange(len(sampler.bins_) if hasattr(sampler, "bins_") else sampler.n)),
                        sampler=sampler, batch_size=64)
    return [int(i) for (batch,) in loader for i in batch]


def test_hard_mining_takes_exactly_the_hardest_fraction(scores):
    n = len(scores)
    s = HardMiningSampler(scores, fraction=0.33, k=25, seed=1)
    want = int(np.floor(0.33 * n + 0.5))
    assert len(s) == want
    got = np.array(_epoch_indices(s))
    assert len(got) == want and len(set(got.tolist())) == want
    rest = np.setdiff1d(np.arange(n), got)
    assert scores[got].min() >= scores[rest].max()  # nothing easier was taken before something harder
    bins = difficulty_bins(scores, 25)
    for b in range(25 - int(want // (n / 25)), 25):  # whole top bins are in
        assert np.isin(np.flatnonzero(bins == b), got).all()


def test_easy_spec_takes_exactly_the_lowest_fraction(scores):
    from posecurator.selection.samplers import parse_sampler_spec

    class Rows:  # the factory only needs len() and sample ids for aligned scores
        def __init__(self, n):
            self.n = n

        def __len__(self):
            return self.n

    s = parse_sampler_spec("easy:0.25")(Rows(len(scores)), scores, seed=3)
    got = np.array(_epoch_indices(s))
    rest = np.setdiff1d(np.arange(len(scores)), got)
    assert len(got) == int(np.floor(0.25 * len(scores) + 0.5)) and scores[got].max() <= scores[rest].min()


def test_hard_mining_from_bins_only_takes_whole_bins_first(scores):
    bins = difficulty_bins(scores, 25)
    s = HardMiningSampler(bins=bins, fraction=0.3, seed=4)
    assert len(s.selected_) == int(np.floor(0.3 * len(bins) + 0.5))
    taken = np.bincount(bins[s.selected_], minlength=25)
    full = np.bincount(bins, minlength=25)
    partial = np.flatnonzero((taken > 0) & (taken < full))
    assert len(partial) <= 1
    lowest = bins[s.selected_].min()
    assert np.array_equal(taken[lowest + 1:], full[lowest + 1:])
    np.testing.assert_array_equal(s.selected_, HardMiningSampler(bins=bins, fraction=0.3, seed=4).selected_)


def test_samplers_are_seeded_and_shuffle_per_epoch(scores):
    a, b = HardMiningSampler(scores, seed=3), HardMiningSampler(scores, seed=3)
    e0a, e0b = _epoch_indices(a), _epoch_indices(b)
    assert e0a == e0b
    e1a = _epoch_indices(a)  # iterating again moves to epoch 1 by itself
    assert sorted(e1a) == sorted(e0a) and e1a != e0a
    b.set_epoch(1)
    assert _epoch_indices(b) == e1a
    assert _epoch_indices(HardMiningSampler(scores, seed=4)) != e0a
    assert list(HardMiningSampler(scores, shuffle=False)) == sorted(e0a)


def test_random_subset_baseline(scores):
    n = len(scores)
    s = RandomSubsetSampler(n, 0.33, seed=5)
    got = _epoch_indices(s)
    assert len(got) == len(s) == int(np.floor(0.33 * n + 0.5)) and len(set(got)) == len(got)
    assert sorted(got) == sorted(_epoch_indices(s))  # same subset every epoch
    assert sorted(got) != sorted(_epoch_indices(RandomSubsetSampler(n, 0.33, seed=6)))
    assert sorted(_epoch_indices(RandomSubsetSampler(n, 1.0))) == list(range(n))
    with pytest.raises(ValueError):
        RandomSubsetSampler(n, 0.0)


def test_curriculum_stages_easy_first_all_at_the_end(scores):
    k, epochs = 25, 9
    bins = difficulty_bins(scores, k)
    s = CurriculumSampler(scores, k=k, epochs=epochs, seed=0)
    assert s.schedule == default_stages(k) == [(0.0, (0, 8)), (1 / 3, (0, 17)), (2 / 3, (0, 25))]
    sizes, admitted = [], []
    for e in range(epochs + 2):
        s.set_epoch(e)
        idx = np.array(_epoch_indices(s))
        assert len(idx) == len(s) and len(set(idx.tolist())) == len(idx)
        sizes.append(len(idx))
        admitted.append(int(bins[idx].max()))
    assert admitted[:3] == [7] * 3 and admitted[3:6] == [16] * 3 and admitted[6:] == [24] * 5
    assert sizes == sorted(sizes) and sizes[-1] == len(scores)
    s.set_epoch(0)
    assert scores[np.array(list(s))].max() <= np.sort(scores)[sizes[0] - 1]  # epoch 0 = the easiest third


def test_curriculum_linear_and_custom_schedules(scores):
    k, epochs = 25, 10
    lin = CurriculumSampler(scores, k=k, epochs=epochs, schedule="linear", start=0.2, full_at=0.8)
    ranges = [lin.admitted_bins(e) for e in range(epochs)]
    assert ranges[0] == (0, 5) and ranges[-1] == (0, 25) and ranges[8] == (0, 25)
    his = [hi for _, hi in ranges]
    assert his == sorted(his) and len(set(his)) >= 5
    stages = CurriculumSampler(scores, k=k, epochs=4, schedule=[(0, (0, 5)), (0.5, (20, 25))])
    bins = difficulty_bins(scores, k)
    stages.set_epoch(3)
    assert set(bins[list(stages)].tolist()) == set(range(20, 25))
    const = CurriculumSampler(scores, k=k, epochs=3, samples_per_epoch=500, seed=2)
    assert all(len(const.indices_for_epoch(e)) == 500 for e in range(3))
    with pytest.raises(ValueError):
        CurriculumSampler(scores, k=k, schedule=[(0.2, (0, 5))])
    with pytest.raises(ValueError):
        CurriculumSampler(scores, k=k, schedule="cosine")


# ---------------------------------------------------------------------- specs and score files
def test_parse_sampler_spec_with_precomputed_scores(tmp_path, poses, scores):
    save_scores(tmp_path / "d.npz", poses.sample_id, scores, difficulty_bins(scores, 25))
    save_scores(tmp_path / "d.json", poses.sample_id, scores)
    ids, sc = load_scores(tmp_path / "d.json")
    np.testing.assert_array_equal(sc, scores)
    train = poses.subset(np.arange(0, len(poses), 2))  # as after the trainer's validation split
    want = HardMiningSampler(scores[::2], fraction=0.33, seed=0).selected_
    for given in (scores[::2], tmp_path / "d.npz", str(tmp_path / "d.json"),
                  dict(zip(poses.sample_id.tolist(), scores.tolist()))):
        sampler = parse_sampler_spec("hard:0.33")(train, given)
        np.testing.assert_array_equal(sampler.selected_, want)
    at_parse = parse_sampler_spec("hard", scores=tmp_path / "d.npz")(train)
    np.testing.assert_array_equal(at_parse.selected_, want)
    cur = parse_sampler_spec("curriculum:linear,full_at=0.5")(train, scores[::2], epochs=6, seed=1)
    assert isinstance(cur, CurriculumSampler) and cur.schedule == "linear" and cur.admitted_bins(3) == (0, 25)
    assert isinstance(parse_sampler_spec("curriculum")(train, scores[::2], epochs=3), CurriculumSampler)
    rnd = parse_sampler_spec("random:0.5")(train, seed=2)
    assert isinstance(rnd, RandomSubsetSampler) and len(rnd) == int(np.floor(0.5 * len(train) + 0.5))
    assert len(parse_sampler_spec("all")(train)) == len(train)
    via_spec = parse_sampler_spec("curriculum,epochs=9,seed=3,k=10")(train, scores[::2])
    assert via_spec.epochs == 9 and via_spec.seed == 3 and via_spec.k == 10
    assert via_spec.total_length(9) == sum(len(via_spec.indices_for_epoch(e)) for e in range(9))
    with pytest.warns(UserWarning, match="without the trainer's epochs"):
        assert parse_sampler_spec("curriculum")(train, scores[::2]).epochs == 30


def test_parse_sampler_spec_trains_a_vae_when_no_scores(poses):
    train = poses.subset(np.arange(0, len(poses), 3))
    sampler = parse_sampler_spec("hard:0.25", score_fn=vae_score_fn(VAEConfig(epochs=3, seed=0)))(train)
    assert len(sampler) == int(np.floor(0.25 * len(train) + 0.5))
    # the selection layer trains nothing itself: no scores and no score_fn is a clear error
    with pytest.raises(ValueError, match="score_fn"):
        parse_sampler_spec("hard:0.25")(train)
    with pytest.raises(ValueError, match="score_fn returned"):
        resolve_scores(train, None, score_fn=lambda ps: np.zeros(3))


def test_bad_specs_and_missing_scores(tmp_path, poses, scores):
    for bad in ("hardest", "hard:x", "hard:1.5", "curriculum:cosine", "hard:0.3,q=1", "random:0.3,start=0.1",
                "all:0.5", "curriculum,epochs=x", "hard,epochs=3"):
        with pytest.raises(ValueError):
            parse_sampler_spec(bad)
    save_scores(tmp_path / "part.npz", poses.sample_id[:10], scores[:10])
    with pytest.raises(DataError, match="no score for"):
        parse_sampler_spec("hard")(poses, tmp_path / "part.npz")
    (tmp_path / "bad.json").write_text(json.dumps([1, 2]))
    with pytest.raises(DataError, match="score JSON must be an object"):
        load_scores(tmp_path / "bad.json")
    with pytest.raises(DataError, match="no score for"):
        align_scores(np.array([5, 99999]), np.array([5]), np.array([1.0]))
