"""AugData Distillation (ADD): quality distillation, scale distillation and their hyper-parameter searches.

Quality distillation (paper Sec. 3.2, "Score")
----------------------------------------------
For every augmented pose i::

    score_i = w * (1 - prob_i) + (1 - w) * error'_i

``prob_i``: probability under the reference distribution of the original poses
(:class:`posecurator.scoring.density.DensityScorer`, whose ``score_samples`` is already
``1 - prob``); ``error'_i``: the reference lifter's error on the augmented 2D-3D pair
(:class:`posecurator.scoring.lifter_error.LifterErrorScorer`, mm) normalised to [0, 1] over the
set being distilled (min-max by default, as "a normalized value between 0 and 1"). The paper:
"The high score value means there is a high probability that it is meaningless data ... we select
80% of augmented data with **low** scores." So ADD keeps the poses that are *probable* under the
original data and that the reference lifter gets *right*, and drops the improbable, novel ones
(its Fig. 8: dropped poses are handstands and extreme deformations). :class:`QualityDistiller`
does exactly that: ``select`` keeps the ``keep`` fraction with the lowest scores.

Scale distillation (Sec. 3.3)
-----------------------------
Generate -> quality-distil -> the distilled set joins the next generation's population, until
original + kept reaches ``multiplier`` x the original size (1.6 by default; the paper's best).
Each generation makes only about as many children as the remaining quota needs at the ``keep``
fraction, so ``keep`` is the quality ratio and ``multiplier`` the amount, independently; the small
surplus of the last generation is cut by score (lowest kept).

Searches
--------
:func:`multiscale_multiplier_search` is the paper's multi-scale search (whole multipliers 1..10,
then tenths above the best, then hundredths), judged by a callback ``evaluate(multiplier) ->
validation error`` that the pipeline supplies (training on a validation split cut from the
training data, never on a test split). :func:`optuna_search` is the joint Bayesian optimisation
of keep, multiplier and w the paper names as future work (Optuna TPE; optional dependency).
:func:`multiplier_objective` and :func:`params_objective` turn a ``train_eval(augmented) ->
validation error`` callback into the callables these searches take.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from posecurator.augment.evolution import (
    EvolutionConfig,
    GenerationStats,
    evolve_generation,
    next_sample_id,
    shard_rng,
    shard_sizes,
)
from posecurator.augment.plausibility import JointAnglePrior
from posecurator.poseset import PoseSet
from posecurator.scoring.base import PoseScorer
from posecurator.scoring.density import DensityScorer


# ---------------------------------------------------------------------- score arithmetic
def normalize_errors(error: np.ndarray, *, method: str = "minmax") -> np.ndarray:
    """(N,) errors -> (N,) values in [0, 1], higher = larger error.

    "minmax": (e - min) / (max - min) over the given set (the paper's "normalized value between
    0 and 1"); "rank": rank / (N - 1); "robust": min-max between the 1st and 99th percentiles,
    clipped (one wild error does not squash everybody else to 0). All zeros when every error is equal.
    """
    e = np.asarray(error, dtype=np.float64)
    if e.ndim != 1:
        raise ValueError(f"errors must be (N,), got {e.shape}")
    if len(e) == 0:
        return e.copy()
    bad = ~np.isfinite(e)
    if bad.any():  # a non-finite error (pose behind the camera, ...) counts as the worst one
        worst = e[~bad].max() if (~bad).any() else 0.0
        e = np.where(bad, worst, e)
    if method == "rank":
        if len(e) == 1:
            return np.zeros(1)
        order = np.argsort(e, kind="stable")
        out = np.empty(len(e))
        out[order] = np.arange(len(e)) / (len(e) - 1)
        return out
    if method == "minmax":
        lo, hi = e.min(), e.max()
    elif method == "robust":
        lo, hi = np.percentile(e, [1.0, 99.0])
    else:
        raise ValueError(f"unknown error normalization {method!r}; use 'minmax', 'rank' or 'robust'")
    if hi <= lo:
        return np.zeros(len(e))
    return np.clip((e - lo) / (hi - lo), 0.0, 1.0)


def combine_scores(novelty: np.ndarray, error_normalized: np.ndarray | None, *, w: float) -> np.ndarray:
    """score = w * (1 - prob) + (1 - w) * error' (paper Sec. 3.2); higher = more likely meaningless.

    ``novelty`` is 1 - prob (N,), ``error_normalized`` error' (N,) in [0, 1] or None (then the
    score is 1 - prob alone).
    """
    novelty = np.asarray(novelty, dtype=np.float64)
    if error_normalized is None:
        return novelty.copy()
    return w * novelty + (1.0 - w) * np.asarray(error_normalized, dtype=np.float64)


def lowest_fraction_mask(score: np.ndarray, *, keep: float | None = None, n_keep: int | None = None) -> np.ndarray:
    """(N,) bool mask of the ``n_keep`` (or ``round(keep * N)``) lowest scores; ties broken by position."""
    score = np.asarray(score, dtype=np.float64)
    n = len(score)
    if n_keep is None:
        if keep is None or not 0.0 <= keep <= 1.0:
            raise ValueError(f"keep must be a fraction in [0, 1], got {keep}")
        n_keep = int(round(keep * n))
    n_keep = max(0, min(int(n_keep), n))
    mask = np.zeros(n, dtype=bool)
    mask[np.argsort(np.nan_to_num(score, nan=np.inf), kind="stable")[:n_keep]] = True
    return mask


# ---------------------------------------------------------------------- quality distillation
def _is_fitted(scorer) -> bool:
    """scikit-learn's convention: a fitted estimator has learned attributes ending in '_'."""
    return any(k.endswith("_") and not k.startswith("__") for k in vars(scorer))


class UnitIntervalScore:
    """A fitted scorer's scores mapped linearly from its ``score_range`` onto [0, 1], so that it can
    stand in for ADD's diversity term 1 - prob (also in [0, 1]) in :func:`combine_scores`.

    For example a target-aware score (:mod:`posecurator.scoring.target2d`; ``target_novelty``
    D_T - D_S in [-2, 2] -> (D + 2) / 4): quality distillation then keeps the children the target's
    2D shows and the source lacks, instead of the typical ones. The map is fixed (not the min and
    max of each generation), so a child's term does not depend on the other children. NaN stays
    NaN (dropped first). Higher = dropped first, as the scorer's own direction.
    """

    def __init__(self, scorer):
        rng = getattr(scorer, "score_range", None)
        if rng is None or len(rng) != 2 or not np.all(np.isfinite(rng)) or rng[1] <= rng[0]:
            raise ValueError(f"{type(scorer).__name__} has no finite score_range to map onto [0, 1]")
        self.scorer = scorer
        self.range_ = (float(rng[0]), float(rng[1]))

    def score_samples(self, poses: PoseSet) -> np.ndarray:
        lo, hi = self.range_
        return np.clip((np.asarray(self.scorer.score_samples(poses), dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)


class QualityDistiller:
    """Keep the ``keep`` fraction of augmented poses with the lowest ADD score (paper Sec. 3.2).

    Parameters: ``w`` weight of the diversity term 1 - prob (1 - w goes to the normalised lifter
    error); ``keep`` fraction kept (0.8 in the paper); ``density`` a :class:`DensityScorer` (a
    default one when None); ``rationality`` a fitted-or-fittable :class:`PoseScorer` giving the
    reference lifter's error per pose (``LifterErrorScorer``), or None to use 1 - prob alone;
    ``error_normalization`` see :func:`normalize_errors`; a fitted scorer with scores in [0, 1]
    may replace the density as the diversity term (:class:`UnitIntervalScore` of a target-aware
    score: ``posecurator add --target``); ``fit_rationality`` whether ``fit``
    also fits the rationality scorer on the original data (a lifter-error scorer built from a run
    directory needs no fit).

    In or out of sample: both terms score the *augmented* poses, which neither the density (fitted
    on the original poses) nor the reference lifter (trained on the original train part) has seen,
    so the scores are out of sample. A child is close to its parents, which they did see, so the
    error of a child that barely moved is partly an in-sample error; that is ADD's method as
    published (the reference lifter is the one the paper fine-tunes), not a leak of test data.

    After ``score_samples``/``select`` the last components are kept for reports:
    ``last_novelty_`` (1 - prob), ``last_error_`` (mm or None), ``last_error_normalized_``,
    ``last_score_``.
    """

    def __init__(self, *, w: float = 0.5, keep: float = 0.8, density: DensityScorer | None = None,
                 rationality: PoseScorer | None = None, error_normalization: str = "minmax",
                 fit_rationality: bool = False):
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"w must lie in [0, 1], got {w}")
        if not 0.0 < keep <= 1.0:
            raise ValueError(f"keep must lie in (0, 1], got {keep}")
        self.w = w
        self.keep = keep
        self.density = density
        self.rationality = rationality
        self.error_normalization = error_normalization
        self.fit_rationality = fit_rationality

    def fit(self, original: PoseSet) -> "QualityDistiller":
        """Fit the reference distribution on the original training poses (once; never updated).

        A ``density`` scorer that is already fitted is used as it is (the paper's reference
        distribution is built once; the pipeline may share one across distillers).
        """
        self.density_ = self.density if self.density is not None else DensityScorer()
        if not _is_fitted(self.density_):
            self.density_.fit(original)
        if self.rationality is not None and self.fit_rationality:
            self.rationality.fit(original)
        return self

    def score_components(self, augmented: PoseSet) -> dict:
        """{"novelty": 1 - prob (N,), "error": lifter error mm (N,) or None, "error_normalized": (N,) or None}."""
        if not hasattr(self, "density_"):
            raise RuntimeError("QualityDistiller is not fitted; call fit(original) first")
        novelty = self.density_.score_samples(augmented)
        error = err_n = None
        if self.rationality is not None and self.w < 1.0:
            error = np.asarray(self.rationality.score_samples(augmented), dtype=np.float64)
            err_n = normalize_errors(error, method=self.error_normalization)
        return {"novelty": novelty, "error": error, "error_normalized": err_n}

    def score_samples(self, augmented: PoseSet) -> np.ndarray:
        """(N,) ADD score in [0, 1]; higher = more likely meaningless (dropped first)."""
        c = self.score_components(augmented)
        score = combine_scores(c["novelty"], c["error_normalized"], w=self.w)
        self.last_novelty_, self.last_error_ = c["novelty"], c["error"]
        self.last_error_normalized_, self.last_score_ = c["error_normalized"], score
        return score

    def select(self, augmented: PoseSet, *, keep: float | None = None, n_keep: int | None = None) -> tuple[PoseSet, np.ndarray]:
        """Keep the lowest-scoring ``keep`` fraction (or ``n_keep`` poses): (kept PoseSet, (N,) bool mask)."""
        score = self.score_samples(augmented)
        mask = lowest_fraction_mask(score, keep=self.keep if keep is None and n_keep is None else keep, n_keep=n_keep)
        return augmented.subset(mask), mask


# ---------------------------------------------------------------------- scale distillation
@dataclass
class ScaleStep:
    """One generation of scale distillation: children made, rejected by the prior, kept by the
    quality distiller (and after the final cut), seconds, mean scores of kept and dropped."""

    generation: int
    population: int
    made: int
    rejected: int
    distilled: int
    kept: int
    generation_seconds: float
    scoring_seconds: float
    score_kept_mean: float = float("nan")
    score_dropped_mean: float = float("nan")
    operators: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dict(vars(self))
        d["rejection_rate"] = self.rejected / self.made if self.made else 0.0
        return d


class ScaleDistiller:
    """Generate -> quality-distil -> grow the population, until the total is ``multiplier`` x original.

    Parameters: ``multiplier`` (1.6: total = original + augmented = 1.6 N); ``distiller`` a
    :class:`QualityDistiller` (fitted here on the original when not yet fitted); ``prior`` the
    plausibility prior (None = no plausibility check); ``evolution`` an :class:`EvolutionConfig`
    (seed, operators, batch size, max generations, offspring ratio; its ``multiple`` is ignored);
    ``population``: "all" = original + every distilled child so far breeds the next generation
    (the distilled set is the next "initial distribution"), "last" = only the last distilled set.
    ``record``: keep, after :meth:`run`, the poses dropped by score and every pose's score
    components, for reports: ``kept_score_`` (M,) aligned with the returned augmentation,
    ``dropped_`` (PoseSet of the children dropped by score, incl. the last generation's surplus),
    ``dropped_score_``, and ``kept_components_`` / ``dropped_components_`` (dicts of "novelty",
    "error" (mm; None without a rationality scorer), aligned likewise).

    Randomness: with ``evolution.shard_size`` None (the default) every generation's children come
    from one stream seeded by ``evolution.seed``; with a shard size, generation ``g`` (0, 1, ...
    of this run) is bred in shards of that many children, shard ``k`` from its own generator
    (:func:`~posecurator.augment.evolution.shard_rng` of seed, g, k), as tasks of ``engine``
    (:mod:`posecurator.engine`; None = here), put together in shard order: the same on every engine.
    """

    def __init__(self, *, multiplier: float = 1.6, distiller: QualityDistiller | None = None,
                 prior: JointAnglePrior | None = None, evolution: EvolutionConfig | None = None,
                 population: str = "all", progress: bool = False, record: bool = False, engine=None):
        if multiplier < 1.0:
            raise ValueError(f"multiplier must be >= 1 (the original counts), got {multiplier}")
        if population not in ("all", "last"):
            raise ValueError(f"population must be 'all' or 'last', got {population!r}")
        self.multiplier = multiplier
        self.distiller = distiller
        self.prior = prior
        self.evolution = evolution
        self.population = population
        self.progress = progress
        self.record = record
        self.engine = engine

    def run(self, original: PoseSet) -> tuple[PoseSet, list[ScaleStep]]:
        """The distilled augmentation (``round(multiplier * N) - N`` poses unless ``max_generations``
        ran out) and one :class:`ScaleStep` per generation."""
        config = self.evolution if self.evolution is not None else EvolutionConfig()
        distiller = self.distiller if self.distiller is not None else QualityDistiller()
        if not hasattr(distiller, "density_"):
            distiller.fit(original)
        rng = np.random.default_rng(config.seed)
        n0 = len(original)
        need = max(0, int(round(self.multiplier * n0)) - n0)
        pop = original.replace(joints2d=None, visibility=None, camera=None)
        next_id = next_sample_id(original)
        generation = int(original.generation.max()) + 1
        kept_sets, steps = [], []
        rec = {k: [] for k in ("kept_score", "dropped_score", "dropped", "kept_novelty", "dropped_novelty",
                               "kept_error", "dropped_error")}
        have, acceptance = 0, 1.0
        bar = None
        if self.progress and need:
            from tqdm import tqdm
            bar = tqdm(total=need, desc="ADD", unit="pose", leave=False)
        for g in range(config.max_generations):
            if have >= need:
                break
            remaining = need - have
            n_children = min(math.ceil(config.offspring_ratio * len(pop)),
                             math.ceil(remaining / (max(acceptance, 0.02) * distiller.keep) * 1.05) + 16)
            if config.shard_size is None:
                children, st = evolve_generation(pop, n_children=n_children, rng=rng, config=config, prior=self.prior,
                                                 generation=generation, next_id=next_id)
            else:
                children, st = self._sharded_generation(pop, n_children, config, g, generation, next_id)
            acceptance = st.kept / st.made if st.made else 0.0
            t0 = time.perf_counter()
            if len(children):
                score = distiller.score_samples(children)
                mask = lowest_fraction_mask(score, keep=distiller.keep)
                n_distilled = int(mask.sum())
                if n_distilled > remaining:  # the last generation's surplus is cut by score
                    mask = lowest_fraction_mask(score, n_keep=remaining)
                kept = children.subset(mask)
                s_kept = float(score[mask].mean()) if mask.any() else float("nan")
                s_drop = float(score[~mask].mean()) if (~mask).any() else float("nan")
                if self.record:
                    rec["kept_score"].append(score[mask])
                    rec["dropped_score"].append(score[~mask])
                    rec["dropped"].append(children.subset(~mask))
                    for part, sel in (("kept", mask), ("dropped", ~mask)):
                        rec[part + "_novelty"].append(distiller.last_novelty_[sel])
                        err = distiller.last_error_
                        rec[part + "_error"].append(None if err is None else err[sel])
            else:
                kept, n_distilled, s_kept, s_drop = children, 0, float("nan"), float("nan")
            steps.append(ScaleStep(generation=generation, population=len(pop), made=st.made, rejected=st.rejected,
                                   distilled=n_distilled, kept=len(kept), generation_seconds=st.seconds,
                                   scoring_seconds=time.perf_counter() - t0, score_kept_mean=s_kept,
                                   score_dropped_mean=s_drop, operators=st.operators))
            next_id += st.kept
            generation += 1
            if len(kept):
                kept_sets.append(kept)
                have += len(kept)
                pop = PoseSet.concatenate([pop, kept]) if self.population == "all" else kept
            if bar is not None:
                bar.update(len(kept))
        if bar is not None:
            bar.close()
        augmented = PoseSet.concatenate(kept_sets) if kept_sets else pop.subset(slice(0, 0))
        if self.record:
            self._store_record(rec, pop)
        return augmented, steps

    def _sharded_generation(self, pop: PoseSet, n_children: int, config: EvolutionConfig, g: int, generation: int,
                            next_id: int) -> tuple[PoseSet, GenerationStats]:
        """One generation bred in shards (see the class docstring): the kept children in shard
        order with ids ``next_id, next_id + 1, ...`` and frames 0, 1, ..., and the summed statistics."""
        from posecurator.engine import LocalEngine

        t0 = time.perf_counter()
        sizes = shard_sizes(n_children, config.shard_size)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        # a shard's ids start at next_id + the children before it: unique before the renumbering below
        tasks = [((config.seed, g, k), m, next_id + int(starts[k])) for k, m in enumerate(sizes)]
        engine = LocalEngine() if self.engine is None else self.engine
        parts, made, operators, operators_kept = [], 0, {}, {}
        for children, st in engine.map(breed_generation_shard, tasks, shared=(pop, config, self.prior, generation)):
            parts.append(children)
            made += st.made
            for total, counts in ((operators, st.operators), (operators_kept, st.operators_kept)):
                for name, c in counts.items():
                    total[name] = total.get(name, 0) + c
        children = PoseSet.concatenate(parts)
        k = len(children)
        children = children.replace(sample_id=next_id + np.arange(k, dtype=np.int64), frame=np.arange(k, dtype=np.int32))
        stats = GenerationStats(generation=generation, population=len(pop), made=made, rejected=made - k, kept=k,
                                seconds=time.perf_counter() - t0, operators=operators,
                                operators_kept=dict(sorted(operators_kept.items())))
        return children, stats

    def _store_record(self, rec: dict, pop: PoseSet) -> None:
        def cat(parts):
            return np.concatenate(parts) if parts else np.zeros(0)

        def cat_err(parts):
            return None if not parts or any(p is None for p in parts) else np.concatenate(parts)

        self.kept_score_ = cat(rec["kept_score"])
        self.dropped_score_ = cat(rec["dropped_score"])
        self.dropped_ = PoseSet.concatenate(rec["dropped"]) if rec["dropped"] else pop.subset(slice(0, 0))
        self.kept_components_ = {"novelty": cat(rec["kept_novelty"]), "error": cat_err(rec["kept_error"])}
        self.dropped_components_ = {"novelty": cat(rec["dropped_novelty"]), "error": cat_err(rec["dropped_error"])}

    def with_params(self, **changes) -> "ScaleDistiller":
        """A copy with ``multiplier``, ``keep`` and/or ``w`` changed (the fitted reference is shared)."""
        out = copy.copy(self)
        if "multiplier" in changes:
            out.multiplier = float(changes.pop("multiplier"))
        if changes:
            d = copy.copy(self.distiller if self.distiller is not None else QualityDistiller())
            for k in ("keep", "w"):
                if k in changes:
                    setattr(d, k, float(changes.pop(k)))
            out.distiller = d
        if changes:
            raise ValueError(f"unknown parameters {sorted(changes)}; use multiplier, keep, w")
        return out


def breed_generation_shard(shared: tuple, task: tuple) -> tuple[PoseSet, GenerationStats]:
    """One shard of a sharded ADD generation as an engine task (module-level: workers import it).
    ``shared = (population, evolution config, prior, generation)``; ``task = (shard key, children,
    first id)``: the shard's kept children bred from its own generator."""
    pop, config, prior, generation = shared
    key, n, first_id = task
    return evolve_generation(pop, n_children=n, rng=shard_rng(*key), config=config, prior=prior,
                             generation=generation, next_id=first_id)


# ---------------------------------------------------------------------- searches
@dataclass
class SearchResult:
    """Best value found, its validation error, and every (params, error) evaluated in order."""

    best: float | dict
    best_error: float
    history: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"best": self.best, "best_error": self.best_error, "history": self.history}


def multiscale_multiplier_search(evaluate: Callable[[float], float], *, whole=tuple(range(1, 11)), levels: int = 3,
                                 two_sided: bool = False) -> SearchResult:
    """The paper's multi-scale search of the multiplier (Sec. 3.3).

    Level 0 evaluates the whole multipliers ``whole`` (1.0 ... 10.0); level 1 the tenths above
    the best (best + 0.1 ... best + 0.9), level 2 the hundredths above the new best, and so on
    for ``levels`` levels. ``two_sided`` also tries the steps below the best (not in the paper).
    ``evaluate(multiplier) -> validation error`` (lower is better) is called once per value.
    """
    if levels < 1:
        raise ValueError("levels must be >= 1")
    cache: dict[float, float] = {}
    history: list = []

    def ev(m: float) -> float:
        m = round(float(m), levels - 1)
        if m not in cache:
            cache[m] = float(evaluate(m))
            history.append({"multiplier": m, "error": cache[m]})
        return cache[m]

    floor = min(whole)
    best = min((round(float(m), levels - 1) for m in whole), key=ev)
    step = 1.0
    for _ in range(1, levels):
        step /= 10.0
        candidates = [best + k * step for k in range(1, 10)]
        if two_sided:
            candidates += [best - k * step for k in range(1, 10) if best - k * step >= floor]
        best = min([best] + [round(c, levels - 1) for c in candidates], key=ev)
    return SearchResult(best=best, best_error=cache[best], history=history)


def optuna_search(objective: Callable[[dict], float] | None, *, n_trials: int = 20, keep=(0.5, 1.0), multiplier=(1.0, 5.0),
                  w=(0.0, 1.0), seed: int = 0, timeout: float | None = None, batch: int = 1,
                  evaluate_batch: Callable[[list], list] | None = None) -> SearchResult:
    """Joint Bayesian optimisation (Optuna TPE) of keep fraction, multiplier (hundredths) and w.

    ``objective({"keep": k, "multiplier": m, "w": w}) -> validation error`` (lower is better).
    A range given as a single number fixes that parameter. Needs Optuna (``pip install optuna``
    or ``posecurator[search]``).

    ``batch``: trials asked of the sampler at once (Optuna's ask / tell), then evaluated, then
    told; 1 (the default) = one after the other, as ``study.optimize``. TPE suggests the trials of
    a batch without each other's results, so the width changes the search (its first
    ``n_startup_trials``, 10, are random draws either way and come out the same): the result depends
    on the seed and the width, never on who evaluates. ``evaluate_batch(list of params) -> errors``
    (in order) evaluates a batch, e.g. as tasks of an engine; default: ``objective`` on each in turn.
    ``timeout`` (s): no new batch is asked after it.
    """
    try:
        import optuna
    except ImportError:
        from posecurator.errors import PoseCuratorError

        raise PoseCuratorError("the Bayesian search needs Optuna; install it with `pip install optuna` "
                               "(or `pip install posecurator[search]`)") from None
    if int(batch) < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if objective is None and evaluate_batch is None:
        raise ValueError("give objective or evaluate_batch")
    if evaluate_batch is None:
        def evaluate_batch(params_list):
            return [objective(p) for p in params_list]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    history: list = []

    def suggest(trial, name, rng_, step=None):
        if np.isscalar(rng_):
            return float(rng_)
        return trial.suggest_float(name, float(rng_[0]), float(rng_[1]), step=step)

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    t0 = time.perf_counter()
    done = 0
    while done < n_trials and (timeout is None or time.perf_counter() - t0 < timeout):
        trials = [study.ask() for _ in range(min(int(batch), n_trials - done))]
        params = [{"keep": suggest(t, "keep", keep, 0.01), "multiplier": suggest(t, "multiplier", multiplier, 0.01),
                   "w": suggest(t, "w", w, 0.01)} for t in trials]
        try:
            errors = [float(e) for e in evaluate_batch(params)]
        except BaseException:
            for t in trials:  # as study.optimize leaves a trial whose objective raised
                study.tell(t, state=optuna.trial.TrialState.FAIL)
            raise
        if len(errors) != len(trials):
            raise ValueError(f"evaluate_batch returned {len(errors)} errors for {len(trials)} trials")
        for t, p, err in zip(trials, params, errors):
            study.tell(t, err)
            history.append({**p, "error": err})
        done += len(trials)
    best = min(history, key=lambda h: h["error"])
    return SearchResult(best={k: best[k] for k in ("keep", "multiplier", "w")}, best_error=best["error"], history=history)


def multiplier_objective(scale: ScaleDistiller, original: PoseSet,
                         train_eval: Callable[[PoseSet], float]) -> Callable[[float], float]:
    """``evaluate(multiplier)`` for :func:`multiscale_multiplier_search`: distil at that multiplier,
    then ``train_eval(augmented) -> validation error`` (the pipeline trains on original + augmented)."""

    def evaluate(m: float) -> float:
        augmented, _ = scale.with_params(multiplier=m).run(original)
        return float(train_eval(augmented))

    return evaluate


def params_objective(scale: ScaleDistiller, original: PoseSet,
                     train_eval: Callable[[PoseSet], float]) -> Callable[[dict], float]:
    """``objective(params)`` for :func:`optuna_search` (params: keep, multiplier, w)."""

    def objective(params: dict) -> float:
        augmented, _ = scale.with_params(**params).run(original)
        return float(train_eval(augmented))

    return objective
