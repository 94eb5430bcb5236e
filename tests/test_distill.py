"""ADD's scorers (density, lifter error), quality and scale distillation and the multiplier searches,
on real HDM05 poses of actor bd."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from posecurator.augment import EvolutionConfig, JointAnglePrior, evolve
from posecurator.augment import operators as ops
from posecurator.poseset import PoseSet
from posecurator.scoring import PoseScorer, get_scorer
from posecurator.scoring.density import DensityScorer, score_samples_reference
from posecurator.selection import (
    QualityDistiller,
    ScaleDistiller,
    combine_scores,
    lowest_fraction_mask,
    multiplier_objective,
    multiscale_multiplier_search,
    normalize_errors,
    optuna_search,
)

# clip prefix -> (first take index, number of takes)
CLIPS = {"HDM_bd_squat1Reps": (0, 6), "HDM_bd_kickLFront1Reps": (0, 4), "HDM_bd_grabHighR": (0, 3),
         "HDM_bd_sneak2StepsLStart": (0, 2), "HDM_bd_throwBasketball": (0, 2)}
HELD_OUT = {"HDM_bd_squat1Reps": (6, 1), "HDM_bd_kickLFront1Reps": (4, 1)}


def _import(shared_data, clips):
    from posecurator.io import import_path

    amc = shared_data / "hdm05" / "amc"
    files = [f for prefix, (a, n) in clips.items() for f in sorted(amc.glob(f"{prefix}_*.amc.gz"))[a:a + n]]
    assert len(files) == sum(n for _, n in clips.values()), f"expected HDM05 files missing in {amc}"
    return PoseSet.concatenate([import_path(f, progress=False) for f in files], renumber=True)


@pytest.fixture(scope="module")
def original(shared_data):
    return _import(shared_data, CLIPS)


@pytest.fixture(scope="module")
def held_out(shared_data):
    return _import(shared_data, HELD_OUT)


@pytest.fixture(scope="module")
def prior(original):
    return JointAnglePrior().fit(original)


@pytest.fixture(scope="module")
def density(original):
    return DensityScorer(seed=0).fit(original)


@pytest.fixture(scope="module")
def augmented(original, prior):
    aug, _ = evolve(original, prior=prior, config=EvolutionConfig(multiple=2.0, seed=0), progress=False)
    return aug


class PelvisHeightScorer(PoseScorer):
    """A stand-in rationality score computed from the real poses (pelvis height, mm)."""

    def score_samples(self, poses):
        return poses.joints3d[:, 0, 2].astype(np.float64)


# ---------------------------------------------------------------------- density
def test_density_scorer_is_registered_and_bounded(density, held_out, augmented):
    assert isinstance(get_scorer("density"), DensityScorer)
    for poses in (held_out, augmented):
        s = density.score_samples(poses)
        assert s.shape == (len(poses),) and np.all((s >= 0) & (s <= 1))


def test_density_rank_normalisation_spreads_the_reference_uniformly(density, original):
    s = density.score_samples(original)
    assert abs(s.mean() - 0.5) < 0.02
    assert density.gmm_.weight_concentration_prior_type == "dirichlet_process"
    assert density.embed(original).shape == (len(original), 2)


def test_density_direction_higher_is_less_probable(density, held_out):
    """Poses turned upside down (real joints, mirrored in Z about the pelvis) are far less probable."""
    flipped = held_out.joints3d.copy()
    flipped[:, :, 2] = 2 * flipped[:, :1, 2] - flipped[:, :, 2]
    s_real = density.score_samples(held_out)
    s_flip = density.score_samples(flipped)
    assert np.median(s_flip) > np.median(s_real) + 0.3
    np.testing.assert_allclose(density.probability(held_out), 1 - s_real, atol=1e-12)


@pytest.mark.parametrize("normalization", ["rank", "max"])
def test_density_matches_its_reference(density, held_out, normalization):
    d = copy.copy(density)
    d.normalization = normalization  # only used when scoring
    np.testing.assert_allclose(d.score_samples(held_out), score_samples_reference(d, held_out), atol=1e-9)


def test_density_is_unchanged_by_turning_the_person(density, held_out):
    draws = ops.draw_global_rotation(np.random.default_rng(0), len(held_out), yaw_deg=180.0, tilt_deg=0.0)
    turned = ops.global_rotation(held_out.joints3d, draws)
    np.testing.assert_allclose(density.log_density(turned), density.log_density(held_out), atol=1e-6)


# ---------------------------------------------------------------------- score arithmetic
def test_normalize_errors():
    e = np.array([10.0, 20.0, 30.0, 50.0])
    np.testing.assert_allclose(normalize_errors(e), [0.0, 0.25, 0.5, 1.0])
    np.testing.assert_allclose(normalize_errors(e, method="rank"), [0.0, 1 / 3, 2 / 3, 1.0])
    np.testing.assert_allclose(normalize_errors(np.full(3, 7.0)), 0.0)
    np.testing.assert_allclose(normalize_errors(np.array([1.0, np.inf, 3.0])), [0.0, 1.0, 1.0])
    r = normalize_errors(np.r_[np.arange(100.0), 1e6], method="robust")
    assert r[-1] == 1.0 and r[50] > 0.4
    with pytest.raises(ValueError):
        normalize_errors(e, method="zscore")


def test_combine_scores_is_the_paper_formula():
    novelty, err = np.array([0.2, 0.9]), np.array([0.5, 0.1])
    np.testing.assert_allclose(combine_scores(novelty, err, w=0.3), 0.3 * novelty + 0.7 * err)
    np.testing.assert_allclose(combine_scores(novelty, None, w=0.3), novelty)
    mask = lowest_fraction_mask(np.array([0.5, 0.1, 0.9, 0.3, 0.7]), keep=0.6)
    np.testing.assert_array_equal(mask, [True, True, False, True, False])


# ---------------------------------------------------------------------- quality distillation
def test_quality_distiller_keeps_the_fraction_and_the_probable_poses(original, augmented, density):
    qd = QualityDistiller(w=1.0, keep=0.8, density=density).fit(original)
    kept, mask = qd.select(augmented)
    assert len(kept) == round(0.8 * len(augmented)) == mask.sum()
    novelty = density.score_samples(augmented)
    # the paper keeps LOW scores: the kept poses are the more probable ones (lower 1 - prob)
    assert novelty[mask].max() <= novelty[~mask].min()
    np.testing.assert_array_equal(kept.sample_id, augmented.sample_id[mask])


def test_quality_distiller_weights_the_rationality_term(original, augmented, density):
    rationality = PelvisHeightScorer()
    only_error = QualityDistiller(w=0.0, keep=0.5, density=density, rationality=rationality).fit(original)
    _, mask = only_error.select(augmented)
    height = augmented.joints3d[:, 0, 2]
    assert height[mask].max() <= height[~mask].min()  # lowest error kept
    mixed = QualityDistiller(w=0.5, keep=0.5, density=density, rationality=rationality).fit(original)
    score = mixed.score_samples(augmented)
    expected = 0.5 * density.score_samples(augmented) + 0.5 * normalize_errors(height.astype(np.float64))
    np.testing.assert_allclose(score, expected)
    assert mixed.last_error_ is not None and np.all((mixed.last_score_ >= 0) & (mixed.last_score_ <= 1))
    with pytest.raises(ValueError):
        QualityDistiller(keep=0.0)
    with pytest.raises(RuntimeError):
        QualityDistiller().score_samples(augmented)


# ---------------------------------------------------------------------- scale distillation
def test_scale_distiller_reaches_the_multiplier(original, prior, density):
    qd = QualityDistiller(w=1.0, keep=0.8, density=density).fit(original)
    sd = ScaleDistiller(multiplier=1.6, distiller=qd, prior=prior, evolution=EvolutionConfig(seed=0))
    aug, steps = sd.run(original)
    n = len(original)
    assert len(aug) == round(1.6 * n) - n
    assert steps and steps[0].made >= steps[0].kept and steps[0].distilled <= steps[0].made - steps[0].rejected
    assert steps[0].score_kept_mean <= steps[0].score_dropped_mean
    assert len(np.unique(aug.sample_id)) == len(aug) and aug.sample_id.min() > original.sample_id.max()
    big, steps3 = sd.with_params(multiplier=3.0).run(original)
    assert len(big) == 2 * n and len(steps3) >= 2
    assert steps3[1].population > n  # the distilled set joins the next generation's population
    again, _ = sd.run(original)
    np.testing.assert_array_equal(again.joints3d, aug.joints3d)


def test_multiscale_search_follows_the_paper():
    calls = []

    def evaluate(m):
        calls.append(m)
        return (m - 1.63) ** 2

    res = multiscale_multiplier_search(evaluate, levels=3)
    assert calls[:10] == [float(m) for m in range(1, 11)]
    # paper: tenths and hundredths ABOVE the best so far -> 2.0 is best of the whole numbers, and
    # nothing above it beats it
    assert res.best == 2.0 and len(calls) == 10 + 9 + 9
    two = multiscale_multiplier_search(lambda m: (m - 1.63) ** 2, levels=3, two_sided=True)
    assert two.best == pytest.approx(1.63)
    assert multiscale_multiplier_search(lambda m: (m - 1.63) ** 2, whole=(1, 2, 3), levels=3).best == 2.0
    # whole best 1 -> tenths above it -> 1.4 -> hundredths above it -> 1.43
    found = multiscale_multiplier_search(lambda m: (m - 1.43) ** 2, whole=(1, 2), levels=3)
    assert found.best == pytest.approx(1.43) and [h["multiplier"] for h in found.history][:3] == [1.0, 2.0, 1.1]


def test_multiplier_objective_runs_the_distiller(original, prior, density):
    qd = QualityDistiller(w=1.0, keep=0.8, density=density).fit(original)
    sd = ScaleDistiller(distiller=qd, prior=prior, evolution=EvolutionConfig(seed=0))
    sizes = []
    evaluate = multiplier_objective(sd, original, lambda aug: sizes.append(len(aug)) or float(len(aug)))
    assert evaluate(1.2) == round(1.2 * len(original)) - len(original) == sizes[0]


def test_optuna_search_is_seeded_and_stays_in_range():
    pytest.importorskip("optuna")

    def objective(p):
        return (p["keep"] - 0.8) ** 2 + (p["multiplier"] - 1.6) ** 2 + (p["w"] - 0.3) ** 2

    a = optuna_search(objective, n_trials=12, seed=0)
    b = optuna_search(objective, n_trials=12, seed=0)
    assert a.best == b.best and len(a.history) == 12
    assert 0.5 <= a.best["keep"] <= 1.0 and 1.0 <= a.best["multiplier"] <= 5.0 and 0.0 <= a.best["w"] <= 1.0
    fixed = optuna_search(objective, n_trials=3, w=0.3, seed=0)
    assert fixed.best["w"] == 0.3


# ---------------------------------------------------------------------- lifter error (needs the trainer)
@pytest.fixture(scope="module")
def tiny_run(original, tmp_path_factory):
    trainer_mod = pytest.importorskip("posecurator.train.trainer")
    out = tmp_path_factory.mktemp("reference_lifter")
    cfg = trainer_mod.TrainConfig(width=64, blocks=1, dropout=0.0, lr=3e-3, lr_decay=0.95, batch_size=64, epochs=3,
                                  val_fraction=0.2, num_threads=1)
    trainer = trainer_mod.LifterTrainer(cfg)
    trainer.fit(original, out_dir=out, progress=False)
    return out, trainer


def test_lifter_error_scorer(tiny_run, held_out, augmented):
    from posecurator.pipelines.add import lifter_error_scorer
    from posecurator.scoring.lifter_error import LifterErrorScorer

    run_dir, trainer = tiny_run
    scorer = lifter_error_scorer(run_dir, seed=0)
    err = scorer.score_samples(held_out)
    assert err.shape == (len(held_out),) and np.all(np.isfinite(err)) and np.all(err > 0)
    assert np.median(err) < 400  # a lifter trained on these people, not noise
    np.testing.assert_array_equal(err, scorer.score_samples(held_out))  # seeded cameras: reproducible
    from_model = LifterErrorScorer(model=trainer.model_, seed=0).fit().score_samples(held_out)
    np.testing.assert_allclose(from_model, err, rtol=1e-5)
    two_views = lifter_error_scorer(run_dir, n_views=2, seed=0).score_samples(held_out)
    assert not np.allclose(two_views, err)
    # the distiller with both terms
    qd = QualityDistiller(w=0.5, keep=0.8, rationality=scorer).fit(held_out)
    kept, mask = qd.select(augmented)
    assert len(kept) == round(0.8 * len(augmented))
    assert qd.last_error_.shape == (len(augmented),)
    with pytest.raises(ValueError):
        LifterErrorScorer()


# ---------------------------------------------------------------------- scale distillation, streamed
def _same_folder(a, b) -> bool:
    import filecmp

    names = sorted(p.name for p in a.iterdir())
    return names == sorted(p.name for p in b.iterdir()) and all(filecmp.cmp(a / f, b / f, shallow=False) for f in names)


def _steps(steps):
    return [{k: v for k, v in s.to_dict().items() if not k.endswith("_seconds")} for s in steps]


@pytest.mark.parametrize("shard_size,population", [(None, "all"), (None, "last"), (500, "all")])
def test_scale_distillation_streamed_writes_the_files_of_the_in_memory_run(original, prior, density, tiny_run, tmp_path,
                                                                          shard_size, population):
    """distil_to_store = run + save, byte for byte, whatever the block size (one random stream for the
    lifter error's cameras across blocks, the density's fixed batches, chunks cut as one save)."""
    from posecurator.pipelines.add import lifter_error_scorer
    from posecurator.selection.scale_stream import distil_to_store

    qd = QualityDistiller(w=0.5, keep=0.8, density=density, rationality=lifter_error_scorer(tiny_run[0], seed=0)).fit(original)
    sd = ScaleDistiller(multiplier=2.5, distiller=qd, prior=prior, evolution=EvolutionConfig(seed=3, shard_size=shard_size),
                        population=population, record=True)
    aug, steps = sd.run(original)
    aug.save(tmp_path / "mem.pcs", chunk_size=256)
    sd.dropped_.save(tmp_path / "mem-dropped.pcs", chunk_size=256)
    expected = {k: copy.deepcopy(getattr(sd, k)) for k in ("kept_score_", "dropped_score_", "kept_components_", "dropped_components_")}
    for block in (100, 1 << 20):
        out = tmp_path / f"b{block}"
        n, steps2, rec = distil_to_store(sd, original, out / "aug.pcs", dropped_path=out / "dropped.pcs", chunk_size=256,
                                         block_size=block)
        assert n == len(aug) == round(2.5 * len(original)) - len(original)
        assert _same_folder(tmp_path / "mem.pcs", out / "aug.pcs")
        assert _same_folder(tmp_path / "mem-dropped.pcs", out / "dropped.pcs")
        assert _steps(steps2) == _steps(steps) and len(steps) >= 2
        np.testing.assert_array_equal(rec["kept_score"], expected["kept_score_"])
        np.testing.assert_array_equal(rec["dropped_components"]["error"], expected["dropped_components_"]["error"])
        np.testing.assert_array_equal(rec["kept_components"]["novelty"], expected["kept_components_"]["novelty"])
        assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no scratch or temporary folder left
    # the original read lazily from a stored set: the same files
    from posecurator.poseset import PoseStore

    original.save(tmp_path / "original.pcs", chunk_size=700)
    n, _, _ = distil_to_store(sd, PoseStore(tmp_path / "original.pcs"), tmp_path / "lazy" / "aug.pcs", chunk_size=256,
                              block_size=100)
    assert n == len(aug) and _same_folder(tmp_path / "mem.pcs", tmp_path / "lazy" / "aug.pcs")
