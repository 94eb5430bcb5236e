"""Issue 12, item 2: stages that stream over a stored set (plausibility, density fitted on the set
itself, selections from score arrays, export), each equal to its in-memory path and identical
whatever the chunk sizes (small chunks over a few real HDM05 takes)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from posecurator.poseset import PoseSet


@pytest.fixture(scope="module")
def real(shared_data):
    """Six takes of HDM05 actor bd (real mocap), ids renumbered."""
    from posecurator.io import import_path

    root = shared_data / "hdm05"
    rows = [r for r in csv.DictReader(open(root / "index.csv")) if r["actor"] == "bd"][:6]
    return PoseSet.concatenate([import_path(root / "amc" / f"{r['file']}.gz", progress=False) for r in rows], renumber=True)


@pytest.fixture(scope="module")
def aug(real):
    """Real poses plus evolved ones (some rejected by the prior when checked strictly): more than
    the density scorer's 16384-row batches, so that its blocks really are cut."""
    from posecurator.augment import EvolutionConfig, JointAnglePrior, evolve

    prior = JointAnglePrior().fit(real)
    new, _ = evolve(real, prior=prior, config=EvolutionConfig(multiple=45, seed=1), progress=False)
    return PoseSet.concatenate([real, new])


def _stored(ps, tmp_path, chunk, name="set.pcs"):
    return ps.save(tmp_path / f"{chunk}-{name}", chunk_size=chunk)


def _folder_bytes(path):
    """Every array of every chunk file and the header of a stored set (to compare two sets)."""
    meta = json.loads((path / "posecurator.json").read_text())
    arrays = []
    for c in meta["chunks"]:
        with np.load(path / c["file"], allow_pickle=False) as z:
            arrays.append({k: z[k].tobytes() for k in sorted(z.files)})
    return meta, arrays


# ----------------------------------------------------------------------------- plausibility
def test_prior_fit_stream_equals_fit(real, tmp_path):
    from posecurator.augment.plausibility import JointAnglePrior, fit_dataset

    want = JointAnglePrior().fit(real)
    for chunk in (997, 100_000):
        got = fit_dataset(JointAnglePrior(), _stored(real, tmp_path, chunk))
        for name in ("counts_", "valid_cells_", "length_ratio_low_", "length_ratio_high_"):
            assert getattr(got, name).tobytes() == getattr(want, name).tobytes(), (chunk, name)
        assert got.n_fit_ == want.n_fit_ == len(real)
    with pytest.raises(ValueError, match="zero poses"):
        JointAnglePrior().fit_stream([])


def test_check_dataset_equals_check(real, aug, tmp_path):
    from posecurator.augment.plausibility import JointAnglePrior, check_dataset

    prior = JointAnglePrior(resolution=12, dilate=0).fit(real)  # strict: a share of the children fail
    want = prior.check(aug)
    assert 0 < want.sum() < len(want)
    for chunk in (1_000, 4_099, 10 ** 6):
        path = _stored(aug, tmp_path, chunk)
        got = check_dataset(prior, path)
        assert got.dtype == bool and got.tobytes() == want.tobytes(), chunk
        assert check_dataset(prior, path, min_valid_limbs=4).tobytes() == prior.check(aug, min_valid_limbs=4).tobytes()
    # a selection of a store is checked the same way (only its rows)
    store = PoseSet.open(path).select(np.arange(0, len(aug), 3))
    assert check_dataset(prior, store).tobytes() == want[::3].tobytes()


def test_plausible_selection_writes_what_memory_writes(real, aug, tmp_path):
    from posecurator.augment.plausibility import JointAnglePrior
    from posecurator.selection.stream import plausible_selection

    prior = JointAnglePrior(resolution=12, dilate=0).fit(real)
    want_path = aug.subset(prior.check(aug)).save(tmp_path / "want.pcs", chunk_size=1_500)
    want = _folder_bytes(want_path)
    for chunk in (1_000, 7_777):
        out = tmp_path / f"got-{chunk}.pcs"
        mask = plausible_selection(prior, _stored(aug, tmp_path, chunk), out, chunk_size=1_500)
        assert mask.sum() == int(json.loads((out / "posecurator.json").read_text())["n"])
        assert _folder_bytes(out) == want, chunk


# ----------------------------------------------------------------------------- density fitted on itself
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # max_iter cut to keep the test short
@pytest.mark.parametrize("normalization", ["rank", "max"])
def test_density_self_scores_equal_in_memory(aug, tmp_path, normalization):
    from posecurator.scoring.density import DensityScorer
    from posecurator.scoring.self_fit import density_self_scores

    fit_n = 5_000  # below the set's size, so the fit sample is drawn (as in memory)
    mem = DensityScorer(seed=4, max_fit_samples=fit_n, normalization=normalization, max_iter=100).fit(aug)
    want = mem.score_samples(aug)
    assert len(aug) > 16_384
    for chunk in (900, 50_000):  # one block of 16384 rows (900 rounded up), or all in one
        path = _stored(aug, tmp_path, 3_001 if chunk == 900 else 10 ** 6)
        scorer, ids, got, info = density_self_scores(path, seed=4, max_fit_samples=fit_n, chunk_size=chunk,
                                                     normalization=normalization, max_iter=100)
        assert ids.tobytes() == aug.sample_id.tobytes()
        assert got.tobytes() == want.tobytes(), chunk
        assert scorer.reference_log_density_.tobytes() == mem.reference_log_density_.tobytes()
        assert (info.n, info.n_fit, info.in_sample) == (len(aug), fit_n, True)
        assert "seeded sample of 5000" in info.describe()


def test_cli_score_density_self_fit_streams(real, tmp_path, capsys):
    from posecurator.cli.main import main
    from posecurator.scoring.density import DensityScorer
    from posecurator.selection.bins import load_scores

    path = real.save(tmp_path / "real.pcs", chunk_size=2_000)
    out = tmp_path / "d.npz"
    assert main(["score", str(path), "--scorer", "density", "--fit-sample", "300", "-o", str(out), "-q"]) in (0, None)
    said = capsys.readouterr().out
    assert f"seeded sample of 300 of the {len(real)}" in said and "in sample" in said
    ids, got = load_scores(out)
    want = DensityScorer(seed=0, max_fit_samples=300).fit(real).score_samples(real)
    assert ids.tobytes() == real.sample_id.tobytes() and got.tobytes() == want.tobytes()


# ----------------------------------------------------------------------------- selection and export
def test_quality_distill_store_equals_distiller(real, aug, tmp_path):
    from posecurator.scoring.density import DensityScorer
    from posecurator.scoring.stream import score_dataset
    from posecurator.selection.distill import QualityDistiller
    from posecurator.selection.stream import quality_distill_store

    density = DensityScorer(seed=0, max_iter=100).fit(real)
    error = np.random.default_rng(2).gamma(2.0, 20.0, size=len(aug))  # stands in for a lifter's error (mm)

    class Fixed:  # a "rationality" scorer returning the fixed errors above
        higher_means = "error"

        def score_samples(self, poses):
            return error

    kept, want_mask = QualityDistiller(w=0.6, keep=0.7, density=density, rationality=Fixed()).fit(real).select(aug)
    want = _folder_bytes(kept.save(tmp_path / "want.pcs", chunk_size=2_000))
    for chunk in (1_234, 10 ** 6):
        path = _stored(aug, tmp_path, chunk)
        _, novelty = score_dataset(density, path, chunk_size=chunk)
        out = tmp_path / f"kept-{chunk}.pcs"
        mask = quality_distill_store(path, out, novelty, error, w=0.6, keep=0.7, chunk_size=2_000)
        assert mask.tobytes() == want_mask.tobytes()
        assert _folder_bytes(out) == want, chunk


def test_bins_mask_and_score_alignment(aug, tmp_path):
    from posecurator.selection.bins import difficulty_bins
    from posecurator.selection.stream import bins_mask, open_store, scores_for_store, write_selection

    scores = np.random.default_rng(0).random(len(aug))
    path = _stored(aug, tmp_path, 2_222)
    store = open_store(path)
    perm = np.random.default_rng(1).permutation(len(aug))  # a score file in another order
    aligned = scores_for_store(store, aug.sample_id[perm], scores[perm])
    assert aligned.tobytes() == scores.tobytes()
    mask = bins_mask(aligned, [0, 9], k=10)
    assert mask.tobytes() == np.isin(difficulty_bins(scores, 10), [0, 9]).tobytes()
    n = write_selection(store, mask, tmp_path / "hard-easy.pcs", chunk_size=999)
    back = PoseSet.load(tmp_path / "hard-easy.pcs")
    assert n == mask.sum() == len(back) and back.sample_id.tobytes() == aug.sample_id[mask].tobytes()
    assert back.joints3d.tobytes() == aug.joints3d[mask].tobytes()
    with pytest.raises(ValueError, match="bins must lie"):
        bins_mask(scores, [10], k=10)


def test_cli_export_pcs_streams_selection(real, aug, tmp_path, capsys):
    from posecurator.augment.plausibility import JointAnglePrior
    from posecurator.cli.main import main
    from posecurator.selection.bins import save_scores

    src = _stored(aug, tmp_path, 1_800)
    ref = real.save(tmp_path / "ref.pcs")
    out = tmp_path / "plausible.pcs"
    assert main(["export", str(src), "--format", "pcs", "-o", str(out), "--plausible-only", "--prior-from", str(ref), "-q"]) in (0, None)
    prior = JointAnglePrior().fit(real)
    want = aug.subset(prior.check(aug))
    got = PoseSet.load(out)
    assert got.sample_id.tobytes() == want.sample_id.tobytes() and got.joints3d.tobytes() == want.joints3d.tobytes()
    # the lowest-scoring fraction of a score file
    scores = np.random.default_rng(3).random(len(aug))
    save_scores(tmp_path / "s.npz", aug.sample_id[::-1], scores[::-1])
    out2 = tmp_path / "low.pcs"
    assert main(["export", str(src), "--format", "pcs", "-o", str(out2), "--scores", str(tmp_path / "s.npz"),
                 "--keep-lowest", "0.25", "-q"]) in (0, None)
    keep = np.zeros(len(aug), bool)
    keep[np.argsort(scores, kind="stable")[:round(0.25 * len(aug))]] = True
    assert PoseSet.load(out2).sample_id.tobytes() == aug.sample_id[keep].tobytes()
    capsys.readouterr()
    # bad input: one line, nothing written
    assert main(["export", str(src), "--format", "pcs", "-o", str(tmp_path / "x.pcs"), "--keep-lowest", "0.5", "-q"]) == 2
    assert "--keep-lowest needs --scores" in capsys.readouterr().err
    assert not (tmp_path / "x.pcs").exists()


# ----------------------------------------------------------------------------- lifter training pairs
def test_training_pairs_from_store_equal_in_memory(aug, tmp_path):
    from posecurator.camera.core import RandomCameraSampler
    from posecurator.camera.pairs import sample_training_pairs, sample_training_pairs_from_store

    index = np.random.default_rng(7).integers(0, len(aug), size=3_000)  # repeats and any order
    want = sample_training_pairs(aug, rng=np.random.default_rng(11), sampler=RandomCameraSampler(), index=index,
                                 n_views=2, noise_px=1.5)
    for chunk in (1_111, 10 ** 6):
        store = PoseSet.open(_stored(aug, tmp_path, chunk))
        got = sample_training_pairs_from_store(store, rng=np.random.default_rng(11), sampler=RandomCameraSampler(),
                                               index=index, n_views=2, noise_px=1.5)
        for a, b in zip(got, want):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), chunk
        assert store.rows_read == len(np.unique(index))  # only the rows asked for were read
