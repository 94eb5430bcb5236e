"""Target-aware scorers (posecurator.scoring.target2d) on real data: agreement with the plain-loop
reference, direction, invariance to the target's 2D translation and scale, bounded-memory chunking,
the CLI, and one-line errors on bad input. Small subsets, one torch thread."""

from __future__ import annotations

import numpy as np
import pytest

from posecurator.errors import DataError
from posecurator.poseset import PoseSet
from posecurator.scoring import get_scorer, target2d
from posecurator.scoring.target2d import (
    TargetCoverageScorer,
    TargetNoveltyScorer,
    pose2d_distance_reference,
    pose2d_features,
    target_scores_reference,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _import(paths) -> PoseSet:
    from posecurator.io import import_path

    return PoseSet.concatenate([import_path(p, progress=False) for p in paths], renumber=True)


@pytest.fixture(scope="module")
def hdm05(shared_data) -> PoseSet:
    from posecurator.io import import_path

    return import_path(shared_data / "hdm05", progress=False)  # ~3 s, 11k poses


@pytest.fixture(scope="module")
def uda_target(shared_data, hdm05, tmp_path_factory) -> PoseSet:
    """HDM05 bd + bk 2D through the split's seeded random training cameras (no 3D)."""
    from posecurator.pipelines.splits import load_target_2d, resolve_split

    cache = tmp_path_factory.mktemp("cache")
    split = resolve_split("bandai-to-hdm05-uda", shared_data)
    hdm05.save(cache / f"import-{split.target.key()}.pcs")  # the import cache: not imported twice
    return load_target_2d(split, cache_dir=cache, progress=False)


@pytest.fixture(scope="module")
def coco_target(shared_data) -> PoseSet:
    from posecurator.pipelines.splits import load_target_2d, resolve_split

    return load_target_2d(resolve_split("hdm05-to-coco", shared_data), progress=False)


@pytest.fixture(scope="module")
def coco_val(shared_data) -> PoseSet:
    from posecurator.io import import_path
    from posecurator.pipelines.splits import COCO_VAL_FILE

    return import_path(shared_data / "coco" / COCO_VAL_FILE, progress=False)  # coco17: the scorer maps it


@pytest.fixture(scope="module")
def bandai(shared_data) -> PoseSet:
    """15 seeded clips of each Bandai data set (~4,500 poses)."""
    rng = np.random.default_rng(0)
    files = []
    for ds in ("dataset-1", "dataset-2"):
        all_files = sorted((shared_data / "bandai" / ds / "data").glob("*.bvh.gz"))
        files += [all_files[i] for i in sorted(rng.choice(len(all_files), 15, replace=False))]
    return _import(files)


def _dg(hdm05):
    return hdm05.subset(hdm05.subject == "dg")


def _auc_lower(a, b) -> float:
    """P(a < b) for independent draws (ties count half): 1 = every a below every b."""
    a, b = np.sort(np.asarray(a)), np.asarray(b)
    below = np.searchsorted(a, b, side="left")
    equal = np.searchsorted(a, b, side="right") - below
    return float((below + 0.5 * equal).sum() / (len(a) * len(b)))


# ---------------------------------------------------------------------- definition
def test_pairwise_distance_is_the_documented_one():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(12, 2)), rng.normal(size=(12, 2))
    ma = np.ones(12, bool)
    ma[[0, 5]] = False
    mb = np.ones(12, bool)
    mb[7] = False
    common = ma & mb
    fa, _ = pose2d_features(a[common])
    fb, _ = pose2d_features(b[common])
    expected = np.sqrt(((fa - fb) ** 2).sum(-1).mean())
    cos = (fa * fb).sum() / np.sqrt((fa ** 2).sum() * (fb ** 2).sum())
    d = pose2d_distance_reference(a, ma, b, mb, min_joints=8)
    assert d == pytest.approx(expected, abs=1e-12) and d == pytest.approx(np.sqrt(2 - 2 * cos), abs=1e-12)
    # translation and scale of either pose do not matter; too few common joints: not neighbours
    assert pose2d_distance_reference(3 * a + 7, ma, 0.1 * b - 2, mb, min_joints=8) == pytest.approx(d, abs=1e-12)
    assert pose2d_distance_reference(a, ma, b, mb, min_joints=10) == np.inf
    assert pose2d_distance_reference(a, ma, a, ma, min_joints=8) == pytest.approx(0.0, abs=1e-7)


def test_registered_with_direction_and_range():
    cov, nov = get_scorer("target_coverage"), get_scorer("target_novelty")
    assert isinstance(cov, TargetCoverageScorer) and isinstance(nov, TargetNoveltyScorer)
    assert cov.score_range == (0.0, 2.0) and nov.score_range == (-2.0, 2.0)
    assert "farther" in cov.higher_means and "keep the lowest" in nov.higher_means


# ---------------------------------------------------------------------- reference agreement
@pytest.mark.parametrize("dtype,atol", [("float64", 1e-9), ("float32", 1e-4)])
def test_batched_scores_agree_with_the_plain_reference(dtype, atol, hdm05, uda_target, coco_target, coco_val):
    cands_3d = _dg(hdm05).subset(slice(0, None, 150))    # 23 poses x 8 views
    cands_2d = coco_val.subset(slice(0, None, 60))        # 23 annotations, some with missing joints
    for target in (uda_target.subset(slice(0, None, 40)), coco_target.subset(slice(0, None, 8))):
        scorer = TargetCoverageScorer(dtype=dtype).fit(target)
        for cands in (cands_3d, cands_2d):
            batched, ref = scorer.score_samples(cands), target_scores_reference(scorer, cands)
            assert np.array_equal(np.isnan(batched), np.isnan(ref))
            assert np.isfinite(batched).sum() >= 10
            np.testing.assert_allclose(batched, ref, atol=atol, rtol=0)
            assert (batched[np.isfinite(batched)] >= 0).all() and (batched[np.isfinite(batched)] <= 2).all()
    # novelty, with the source's own clips excluded (the candidates come from the source)
    source = hdm05.subset(hdm05.subject == "bd").subset(slice(0, None, 15))
    scorer = TargetNoveltyScorer(dtype=dtype, k=3).fit(uda_target.subset(slice(0, None, 40)), source=source)
    cands = source.subset(slice(0, None, 9))
    np.testing.assert_allclose(scorer.score_samples(cands), target_scores_reference(scorer, cands, source=source),
                               atol=2 * atol, rtol=0)


def test_chunked_blocks_give_the_same_scores(monkeypatch, hdm05, coco_target):
    cands = _dg(hdm05).subset(slice(0, None, 20))
    default = TargetCoverageScorer().fit(coco_target).score_samples(cands)
    monkeypatch.setattr(target2d, "_COL_BLOCK", 97)  # top-k merged across many column blocks
    small = TargetCoverageScorer(chunk=13, block_elems=500).fit(coco_target).score_samples(cands)
    np.testing.assert_allclose(small, default, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------- direction on real data
def test_hdm05_poses_are_closer_to_the_hdm05_target_than_bandai_poses(hdm05, uda_target, bandai):
    """A new HDM05 actor (dg) doing the target's activities is nearer the target's 2D (bd + bk)
    than Bandai's poses are, and the novelty score separates them much more sharply: D_S is
    measured against Bandai itself (own clips excluded), so Bandai poses are "already common"."""
    dg = _dg(hdm05).subset(slice(0, None, 2))
    cov = TargetCoverageScorer().fit(uda_target)
    s_dg, s_bandai = cov.score_samples(dg), cov.score_samples(bandai)
    assert np.isfinite(s_dg).all() and np.isfinite(s_bandai).all()
    assert s_dg.mean() < s_bandai.mean()
    assert _auc_lower(s_dg, s_bandai) > 0.6  # measured 0.70
    nov = TargetNoveltyScorer().fit(uda_target, source=bandai)
    n_dg, n_bandai = nov.score_samples(dg), nov.score_samples(bandai)
    assert n_dg.mean() < 0 < n_bandai.mean()
    assert _auc_lower(n_dg, n_bandai) > 0.9  # measured 0.9997
    # keeping as many of the pooled candidates as there are dg poses, lowest first, keeps dg poses
    pooled = np.concatenate([n_dg, n_bandai])
    kept = np.argsort(pooled)[: len(n_dg)]
    assert (kept < len(n_dg)).mean() > 0.9


def test_the_target_scored_against_itself_is_closest(uda_target, bandai):
    """Target 2D poses scored as 2D candidates (own clip excluded) lie nearer the target than Bandai;
    without the exclusion each finds itself (distance 0)."""
    cands = uda_target.subset(slice(0, None, 10))
    own = TargetCoverageScorer().fit(uda_target).score_samples(cands)
    assert np.median(own) < np.median(TargetCoverageScorer().fit(uda_target).score_samples(bandai))
    nearest_other_clip = TargetCoverageScorer(k=1).fit(uda_target).score_samples(cands)
    itself = TargetCoverageScorer(k=1, exclude_own_clip=False).fit(uda_target).score_samples(cands)
    assert np.abs(itself).max() < 2e-3 and (nearest_other_clip > 0.01).mean() > 0.95


# ---------------------------------------------------------------------- invariance
def test_scores_do_not_change_with_2d_translation_and_scale_of_the_target(hdm05, coco_target, uda_target):
    cands = _dg(hdm05).subset(slice(0, None, 25))
    rng = np.random.default_rng(1)
    for target in (coco_target, uda_target.subset(slice(0, None, 3))):
        base = TargetCoverageScorer(dtype="float64").fit(target).score_samples(cands)
        n = len(target)
        scale = rng.uniform(0.05, 20.0, (n, 1, 1))          # per pose: any image size / distance / zoom
        shift = rng.uniform(-5000.0, 5000.0, (n, 1, 2))      # per pose: anywhere in the image
        moved = target.replace(joints2d=(target.joints2d.astype(np.float64) * scale + shift))
        # (a pose set stores 2D as float32: the moved 2D is rounded, so agreement to ~1e-6)
        np.testing.assert_allclose(TargetCoverageScorer(dtype="float64").fit(moved).score_samples(cands), base,
                                   atol=1e-5, rtol=0)
        # a rotation in the image is a different pose (upright vs lying): scores change
        rot = target.replace(joints2d=target.joints2d[..., ::-1].copy())
        assert not np.allclose(TargetCoverageScorer().fit(rot).score_samples(cands), base, atol=1e-3)


# ---------------------------------------------------------------------- bad input
def test_bad_input_is_one_line_error(hdm05, uda_target):
    three_d_only = hdm05.subset(slice(0, 50)).replace(joints2d=None, visibility=None)
    with pytest.raises(DataError, match="no 2D joints") as e:
        TargetCoverageScorer().fit(three_d_only)
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="needs the source"):
        TargetNoveltyScorer().fit(uda_target)
    with pytest.raises(DataError, match="3D joints"):
        TargetNoveltyScorer().fit(uda_target, source=uda_target)
    few = uda_target.subset(slice(0, 5)).replace(visibility=np.zeros((5, 17), np.float32))
    with pytest.raises(DataError, match="labelled compared joints"):
        TargetCoverageScorer().fit(few)
    with pytest.raises(ValueError, match="unknown joint names"):
        TargetCoverageScorer(joints=["left_knee", "tail"])
    with pytest.raises(RuntimeError, match="not fitted"):
        TargetCoverageScorer().score_samples(hdm05.subset(slice(0, 3)))


def test_cli_score_with_target(tmp_path, capsys, shared_data):
    from posecurator.cli.main import main
    from posecurator.pipelines.splits import COCO_TRAIN_FILE
    from posecurator.selection.bins import load_scores

    clip = min((shared_data / "hdm05" / "amc").glob("HDM_dg_*"))
    target = shared_data / "coco" / COCO_TRAIN_FILE
    out = tmp_path / "cov.npz"
    code = main(["score", str(clip), "--scorer", "target_coverage", "--target", str(target), "-o", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "target_coverage" in captured.out and "higher = farther" in captured.out
    sample_id, score = load_scores(out)
    from posecurator.io import import_path

    poses = import_path(clip, progress=False)
    expected = TargetCoverageScorer().fit(import_path(target, progress=False)).score_samples(poses)
    np.testing.assert_allclose(score, expected, atol=1e-6)
    assert (sample_id == poses.sample_id).all()
    # a split name as the target; novelty against the dataset itself as the source
    source = min((shared_data / "hdm05" / "amc").glob("HDM_bd_*"))
    code = main(["score", str(clip), "--scorer", "target_novelty", "--target", "hdm05-to-coco", "--reference", str(source),
                 "--views", "4", "--k", "3", "--quiet", "-o", str(tmp_path / "nov.json")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    _, novelty = load_scores(tmp_path / "nov.json")
    assert len(novelty) == len(poses) and np.isfinite(novelty).all() and (np.abs(novelty) <= 2).all()
    # one-line errors: no --target; a target without 2D
    for argv, message in ((["--scorer", "target_coverage"], "needs --target"),
                          (["--scorer", "target_coverage", "--target", str(clip)], "has no 2D joints")):
        code = main(["score", str(clip), *argv, "-o", str(tmp_path / "x.npz"), "--quiet"])
        err = capsys.readouterr().err.strip()
        assert code != 0 and message in err and len(err.splitlines()) == 1, err
