"""Cross-fitted (out-of-sample) scores of a training set: a wrapper around any :class:`PoseScorer`.

A scorer that learns from a pose set and then scores that same set gives the poses it trained on
an advantage: a pose VAE reconstructs the poses it has seen better than equally typical poses it
has not, so "hard" partly means "not trained on". Cross-fitting removes that bias the way
cleanlab's out-of-sample predicted probabilities (``cross_val_predict``) do: the poses are cut into
K folds of whole groups (clips, so neighbouring frames of one clip never sit on both sides), K
scorers are fitted, each on the other K - 1 folds, and every pose is scored by the one scorer that
never saw its group.

:class:`CrossFitScorer` is not registered (it wraps a scorer, it is not one of its own):

* ``fit(poses)`` fits the K fold scorers (and a scorer on everything when ``new="full"``) and keeps
  every pose's out-of-fold score in ``oof_scores_`` and its fold in ``fold_``;
* ``fit_score(poses)`` returns ``oof_scores_``: (N,) float64, every pose scored out of sample;
* ``score_samples(poses)`` scores *new* poses (never the training set: their out-of-sample scores
  are ``oof_scores_``) with the mean of the K fold scorers (``new="mean"``, the default) or with
  the scorer fitted on everything (``new="full"``).

Direction and range are the wrapped scorer's (by the package's convention higher = more unusual
/ harder). Cost: K fits, each on about (K - 1) / K of the poses, plus one scoring pass over the set
(each fold's poses in one batched call); ``new="full"`` adds one fit on everything.

The K folds are independent, so they can be fitted as tasks of an engine
(:mod:`posecurator.engine`): ``engine=`` or, for callers that do not pass one down (the VAE
pipeline), :func:`fold_engine` around the call. A fold's result depends on its scorer and its
poses only, so the scores are the same on every engine.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterator

import numpy as np

from posecurator.poseset import PoseSet
from posecurator.scoring.base import PoseScorer

NEW_POSE_MODES = ("mean", "full")

# The engine the folds of CrossFitScorer.fit run on when the scorer names none (see fold_engine):
# a context variable, so that a command can choose it without every layer in between passing it on.
_FOLD_ENGINE: contextvars.ContextVar = contextvars.ContextVar("posecurator_crossfit_engine", default=None)


@contextlib.contextmanager
def fold_engine(engine) -> Iterator[None]:
    """Within the block, every :class:`CrossFitScorer` without an ``engine`` of its own fits its
    folds as tasks of ``engine`` (None: one after the other, here)."""
    token = _FOLD_ENGINE.set(engine)
    try:
        yield
    finally:
        _FOLD_ENGINE.reset(token)


def fit_fold(shared: tuple, item: tuple) -> tuple:
    """One fold as an engine task (module-level: workers import it). ``shared = (poses, fold of
    every pose)``, ``item = (k, unfitted scorer)``: the scorer fitted on every fold but k, and its
    (M,) float64 scores of fold k's poses."""
    poses, fold = shared
    k, scorer = item
    held = fold == k
    est = scorer.fit(poses.subset(~held))
    return est, np.asarray(est.score_samples(poses.subset(held)), dtype=np.float64)


def assign_folds(groups, folds: int, *, seed: int = 0) -> np.ndarray:
    """(N,) int64 fold (0..folds-1) of every sample such that each group lies in one fold and the
    folds hold about equal numbers of samples.

    Seeded and deterministic: the groups are taken in an order shuffled by ``seed`` and each goes
    to the fold that holds the fewest samples so far (lowest fold index on ties), so the largest
    and the smallest fold differ by at most the largest group's size.
    ``ValueError`` when there are fewer groups than folds or fewer than 2 folds."""
    groups = np.asarray(groups)
    if groups.ndim != 1:
        raise ValueError(f"groups must be (N,), got {groups.shape}")
    folds = int(folds)
    if folds < 2:
        raise ValueError(f"cross-fitting needs at least 2 folds, got {folds}")
    names, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if len(names) < folds:
        raise ValueError(f"cannot cut {len(names)} group(s) into {folds} folds (each fold needs a whole group); "
                         "use fewer folds")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(names))
    fold_of_group = np.empty(len(names), dtype=np.int64)
    load = np.zeros(folds, dtype=np.int64)
    for g in order:
        f = int(np.argmin(load))
        fold_of_group[g] = f
        load[f] += counts[g]
    return fold_of_group[inverse.reshape(-1)]


class CrossFitScorer(PoseScorer):
    """Out-of-sample scores of a training set by K-fold cross-fitting over groups (cleanlab-style).

    Options:

    * ``make_scorer() -> PoseScorer``: a fresh, unfitted scorer; called once per fold, in fold
      order 0..K-1 (then once more for ``new="full"``);
    * ``folds`` (K >= 2): number of folds;
    * ``group``: name of the PoseSet column whose values are kept together ("clip": whole clips),
      or None for one group per pose (plain K-fold);
    * ``seed``: seeds the fold assignment (:func:`assign_folds`, balanced by pose count);
    * ``engine``: where the K folds are fitted (:mod:`posecurator.engine`; None = the engine of an
      enclosing :func:`fold_engine`, else one after the other here). With an engine the K scorers
      are made first (in fold order) and fitted as its tasks: each must not depend on which
      process fits it (a scorer seeded by its own config does not);
    * ``new``: how :meth:`score_samples` scores poses that are not the training set: "mean" (the
      default) = the mean of the K fold scorers' scores. Those are the very scorers that produced
      the training poses' out-of-fold scores, fitted on the same number of poses, so a new pose's
      score is on the same scale as the training poses' and equally out of sample: the two can
      share bins (a scorer fitted on all N poses would score everything a little lower than the
      (K - 1) / K-sized fold scorers did, a systematic shift between the two sets). "full" = one
      more scorer fitted on every pose (scikit-learn's refit): use it when only new poses are
      ranked among themselves and the best single model is wanted; it costs one more fit.

    Learned state: ``estimators_`` (K fitted fold scorers; ``estimators_[k]`` never saw fold k),
    ``fold_`` ((N,) int64, the fold of every training pose = the index of the scorer that scored
    it), ``fold_groups_`` (K arrays of the group values in each fold), ``oof_scores_`` ((N,)
    float64, every training pose's score by the scorer that did not see its group), ``n_folds_``,
    and ``full_estimator_`` (``new="full"`` only).

    Shapes: ``fit_score(poses)`` and ``score_samples(poses)`` return (N,) float64 for N poses;
    ``fold_scores(poses)`` returns (K, N). Direction and range are the wrapped scorer's: higher =
    more unusual / harder. NaN (a pose the wrapped scorer cannot score) passes through.
    """

    name = "crossfit"

    def __init__(self, make_scorer: Callable[[], PoseScorer], *, folds: int = 5, group: str | None = "clip",
                 seed: int = 0, new: str = "mean", engine=None):
        if not callable(make_scorer):
            raise TypeError("make_scorer must be a callable returning an unfitted PoseScorer")
        if int(folds) < 2:
            raise ValueError(f"folds must be >= 2, got {folds}")
        if new not in NEW_POSE_MODES:
            raise ValueError(f"new must be one of {NEW_POSE_MODES}, got {new!r}")
        self.make_scorer = make_scorer
        self.folds = int(folds)
        self.group = group
        self.seed = int(seed)
        self.new = new
        self.engine = engine

    def groups_of(self, poses: PoseSet) -> np.ndarray:
        """(N,) the group of every pose: the ``group`` column, or the row index when it is None."""
        if self.group is None:
            return np.arange(len(poses))
        col = getattr(poses, self.group, None)
        if col is None:
            raise ValueError(f"the pose set has no column {self.group!r} to group the folds by")
        return np.asarray(col)

    def fit(self, poses: PoseSet) -> "CrossFitScorer":
        """Fit the K fold scorers on ``poses`` and score every pose out of fold (``oof_scores_``)."""
        groups = self.groups_of(poses)
        fold = assign_folds(groups, self.folds, seed=self.seed)
        oof = np.full(len(poses), np.nan, dtype=np.float64)
        estimators = []
        engine = self.engine if self.engine is not None else _FOLD_ENGINE.get()
        if engine is None:
            for k in range(self.folds):
                held = fold == k
                est = self.make_scorer().fit(poses.subset(~held))
                oof[held] = np.asarray(est.score_samples(poses.subset(held)), dtype=np.float64)
                estimators.append(est)
        else:
            # every scorer made here, in fold order, as the loop makes them (a factory may name a
            # fold's folder by its call count); the workers only fit and score
            items = [(k, self.make_scorer()) for k in range(self.folds)]
            for k, (est, scores) in enumerate(engine.map(fit_fold, items, shared=(poses, fold))):
                oof[fold == k] = scores
                estimators.append(est)
        self.estimators_, self.fold_, self.oof_scores_, self.n_folds_ = estimators, fold, oof, self.folds
        self.fold_groups_ = [np.unique(groups[fold == k]) for k in range(self.folds)]
        self.higher_means = getattr(estimators[0], "higher_means", self.higher_means)
        self.score_range = getattr(estimators[0], "score_range", self.score_range)
        if self.new == "full":
            self.full_estimator_ = self.make_scorer().fit(poses)
        return self

    def fit_score(self, reference: PoseSet, poses: PoseSet | None = None) -> np.ndarray:
        """(N,) out-of-fold scores of ``reference`` (``poses`` None), or, with ``poses``, the
        scores of those new poses by :meth:`score_samples` after fitting on ``reference``."""
        self.fit(reference)
        return self.oof_scores_.copy() if poses is None else self.score_samples(poses)

    def fold_scores(self, poses: PoseSet) -> np.ndarray:
        """(K, N) float64: the scores of ``poses`` by each fold scorer."""
        self._check_fitted("estimators_")
        return np.stack([np.asarray(est.score_samples(poses), dtype=np.float64) for est in self.estimators_])

    def score_samples(self, poses: PoseSet) -> np.ndarray:
        """(N,) float64 scores of *new* poses (see ``new``); higher = harder. For the training
        poses' out-of-sample scores use :meth:`fit_score` / ``oof_scores_``: every fold scorer
        but one has seen each of them."""
        self._check_fitted("estimators_")
        if self.new == "full":
            return np.asarray(self.full_estimator_.score_samples(poses), dtype=np.float64)
        return self.fold_scores(poses).mean(axis=0)
