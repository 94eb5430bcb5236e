"""Difficulty samplers (paper 002, Sec. 3): ``torch.utils.data.Sampler`` classes for any DataLoader.

=========================  ==================================================================
sampler                    what each epoch yields (indices into the training set, seeded)
=========================  ==================================================================
:class:`HardMiningSampler`    VAE-HM: the hardest ``round(fraction * N)`` samples (whole top bins
                              first, then the hardest of the next bin), shuffled per epoch
:class:`CurriculumSampler`    VAE-CL: the samples of the bins admitted at this epoch (easy ->
                              medium -> hard, cumulative), shuffled per epoch
:class:`RandomSubsetSampler`  baseline: a fixed random ``round(fraction * N)`` subset (``all``:
                              fraction 1, i.e. plain shuffling)
=========================  ==================================================================

Epochs: call ``set_epoch(e)`` before iterating epoch ``e`` (as with DistributedSampler); a sampler
that is iterated again without it moves to the next epoch by itself. ``len(sampler)`` is the size
of the current epoch (curriculum epochs grow). Every epoch's order is a pure function of
``(seed, epoch)``: ``indices_for_epoch(e)`` gives it without iterating.

``round`` is round-half-up: ``floor(fraction * N + 0.5)``.

The paper says only that VAE-CL "progressively integrates easy, medium, and hard" data; the
default curriculum follows that literally: the 25 bins are cut into thirds, the first third of the
epochs trains on the easy bins, the second on easy + medium, the last on all of them.
``schedule="linear"`` instead grows the admitted bins linearly from the easy end.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Callable, Sequence

import numpy as np
from torch.utils.data import Sampler

from posecurator.selection.bins import align_scores, difficulty_bins, load_scores


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _check_fraction(fraction: float) -> float:
    fraction = float(fraction)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return fraction


class _EpochSampler(Sampler[int]):
    """Shared epoch bookkeeping: subclasses implement ``indices_for_epoch``."""

    def __init__(self, *, seed: int, shuffle: bool):
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.epoch = 0
        self._iterated = False
        self._epoch_set = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._epoch_set = True

    def indices_for_epoch(self, epoch: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(epoch)])

    def _order(self, pool: np.ndarray, epoch: int) -> np.ndarray:
        return self._rng(epoch).permutation(pool) if self.shuffle else np.sort(pool)

    def __iter__(self):
        if self._iterated and not self._epoch_set:
            self.epoch += 1
        self._iterated, self._epoch_set = True, False
        return iter(self.indices_for_epoch(self.epoch).tolist())

    def __len__(self) -> int:
        return int(len(self.indices_for_epoch(self.epoch)))

    def total_length(self, epochs: int) -> int:
        """Indices yielded over epochs 0..epochs-1 (curriculum epochs differ in length)."""
        return int(sum(len(self.indices_for_epoch(e)) for e in range(int(epochs))))


class HardMiningSampler(_EpochSampler):
    """VAE-HM: exactly ``round(fraction * N)`` hardest samples, taking whole bins from the hardest
    down and then the hardest samples of the boundary bin (by score; seeded at random when only
    bins are given).

    scores: (N,) difficulty (higher = harder), or None when ``bins`` are given. bins: (N,) bin
    index (0 = easiest), default ``difficulty_bins(scores, k)``. ``selected_``: sorted chosen indices.
    """

    def __init__(self, scores=None, *, bins=None, fraction: float = 0.33, k: int = 25, shuffle: bool = True,
                 seed: int = 0):
        super().__init__(seed=seed, shuffle=shuffle)
        if scores is None and bins is None:
            raise ValueError("HardMiningSampler needs scores or bins")
        self.fraction, self.k = _check_fraction(fraction), int(k)
        scores = None if scores is None else np.asarray(scores, dtype=np.float64)
        bins = difficulty_bins(scores, self.k) if bins is None else np.asarray(bins, dtype=np.int64)
        if scores is not None and scores.shape != bins.shape:
            raise ValueError(f"scores {scores.shape} and bins {bins.shape} differ")
        n = len(bins)
        # within a bin: by score when known, else a seeded random order
        tie = scores if scores is not None else np.random.default_rng([self.seed, 0x4D]).random(n)
        ranked = np.lexsort((-tie, -bins))  # hardest bin first, hardest within it first
        self.n_selected = _round_half_up(self.fraction * n)
        self.selected_ = np.sort(ranked[: self.n_selected])
        self.bins_ = bins

    def indices_for_epoch(self, epoch: int) -> np.ndarray:
        return self._order(self.selected_, epoch)


class RandomSubsetSampler(_EpochSampler):
    """Baseline: a fixed random subset of ``round(fraction * n)`` of ``n`` samples (chosen once
    from ``seed``), shuffled every epoch. ``fraction=1`` is plain per-epoch shuffling."""

    def __init__(self, n: int, fraction: float = 0.33, *, shuffle: bool = True, seed: int = 0):
        super().__init__(seed=seed, shuffle=shuffle)
        self.n, self.fraction = int(n), _check_fraction(fraction)
        m = _round_half_up(self.fraction * self.n)
        self.selected_ = np.sort(np.random.default_rng([self.seed, 0x52]).permutation(self.n)[:m])

    def indices_for_epoch(self, epoch: int) -> np.ndarray:
        return self._order(self.selected_, epoch)


Stage = tuple[float, tuple[int, int]]


def default_stages(k: int) -> list[Stage]:
    """The paper's easy -> easy+medium -> all curriculum over thirds of the epochs and the bins:
    ``[(0, (0, k/3)), (1/3, (0, 2k/3)), (2/3, (0, k))]`` (bin ranges half-open, rounded)."""
    t1, t2 = max(1, _round_half_up(k / 3)), max(1, _round_half_up(2 * k / 3))
    return [(0.0, (0, t1)), (1 / 3, (0, t2)), (2 / 3, (0, k))]


class CurriculumSampler(_EpochSampler):
    """VAE-CL: each epoch yields the samples whose bins are admitted at that epoch.

    scores: (N,) difficulty (or pass ``bins``). schedule:

    * ``"stages"`` (default) or a list of ``(epoch_fraction, (lo_bin, hi_bin))`` stages: from epoch
      ``floor(epoch_fraction * epochs)`` on, bins ``lo..hi-1`` are admitted (the last stage whose
      start has passed wins); see :func:`default_stages`;
    * ``"linear"``: bins ``0 .. ceil(k * p(e)) - 1`` with the pacing
      ``p(e) = min(1, start + (1 - start) * (e / epochs) / full_at)`` (all bins from epoch
      ``full_at * epochs`` on);
    * a callable ``(epoch, epochs, k) -> (lo_bin, hi_bin)``.

    Epochs past ``epochs`` keep the last schedule entry. ``samples_per_epoch``: None = each
    admitted sample once per epoch (early epochs are shorter); an int = that many draws per epoch,
    cycling through shuffled passes over the admitted pool (constant epoch length).
    """

    def __init__(self, scores=None, *, bins=None, k: int = 25, schedule: str | Sequence[Stage] | Callable = "stages",
                 epochs: int = 30, start: float = 0.2, full_at: float = 0.8, samples_per_epoch: int | None = None,
                 shuffle: bool = True, seed: int = 0):
        super().__init__(seed=seed, shuffle=shuffle)
        if scores is None and bins is None:
            raise ValueError("CurriculumSampler needs scores or bins")
        self.k, self.epochs = int(k), int(epochs)
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        self.bins_ = difficulty_bins(scores, self.k) if bins is None else np.asarray(bins, dtype=np.int64)
        if self.bins_.size and (self.bins_.min() < 0 or self.bins_.max() >= self.k):
            raise ValueError(f"bins must lie in 0..{self.k - 1}")
        self.start, self.full_at, self.samples_per_epoch = float(start), float(full_at), samples_per_epoch
        if not (0 < self.start <= 1 and 0 < self.full_at <= 1):
            raise ValueError("start and full_at must be in (0, 1]")
        if isinstance(schedule, str):
            if schedule not in ("stages", "linear"):
                raise ValueError(f"unknown curriculum schedule {schedule!r}; use 'stages', 'linear', a stage list or a callable")
            self.schedule = default_stages(self.k) if schedule == "stages" else "linear"
        elif callable(schedule):
            self.schedule = schedule
        else:
            stages = sorted((float(f), (int(lo), int(hi))) for f, (lo, hi) in schedule)
            if not stages or stages[0][0] > 0:
                raise ValueError("the first curriculum stage must start at epoch fraction 0")
            for _, (lo, hi) in stages:
                if not 0 <= lo < hi <= self.k:
                    raise ValueError(f"stage bin range ({lo}, {hi}) is not within 0..{self.k}")
            self.schedule = stages
        self._order_by_bin = np.argsort(self.bins_, kind="stable")
        self._bin_starts = np.searchsorted(self.bins_[self._order_by_bin], np.arange(self.k + 1))

    def admitted_bins(self, epoch: int) -> tuple[int, int]:
        """Half-open range (lo, hi) of the bins admitted at ``epoch``."""
        e = max(0, int(epoch))
        if self.schedule == "linear":
            p = min(1.0, self.start + (1.0 - self.start) * (min(e, self.epochs) / self.epochs) / self.full_at)
            return 0, max(1, min(self.k, math.ceil(self.k * p - 1e-9)))
        if callable(self.schedule):
            lo, hi = self.schedule(e, self.epochs, self.k)
            return int(lo), int(hi)
        current = self.schedule[0][1]
        for frac, rng in self.schedule:
            if e >= math.floor(frac * self.epochs + 1e-9):
                current = rng
        return current

    def indices_for_epoch(self, epoch: int) -> np.ndarray:
        lo, hi = self.admitted_bins(epoch)
        pool = self._order_by_bin[self._bin_starts[lo]:self._bin_starts[hi]]
        if self.samples_per_epoch is None or len(pool) == 0:
            return self._order(pool, epoch)
        rng = self._rng(epoch)
        reps = -(-int(self.samples_per_epoch) // len(pool))
        passes = [rng.permutation(pool) if self.shuffle else np.sort(pool) for _ in range(reps)]
        return np.concatenate(passes)[: int(self.samples_per_epoch)]


# ---------------------------------------------------------------------- specs for the trainer / CLI
SAMPLER_SPECS = ("all | random[:FRACTION] | hard[:FRACTION] | easy[:FRACTION] | curriculum[:stages|linear], then options "
                 "',k=25' (bins), ',seed=0'; curriculum also ',epochs=N,start=0.2,full_at=0.8,samples_per_epoch=M'")
_INT_OPTIONS, _FLOAT_OPTIONS = ("k", "seed", "epochs", "samples_per_epoch"), ("start", "full_at")


class EqualLengthSampler(_EpochSampler):
    """Stretch (or keep) every epoch of an epoch sampler to ``length`` indices, so a subset method
    makes as many optimisation steps as training on every pose.

    base: a sampler with ``indices_for_epoch(e)`` (those of :mod:`posecurator.selection.samplers`).
    Epoch e yields the base's epoch e, followed by seeded reshuffles of the same pool until
    ``length`` indices (an epoch at least ``length`` long is returned unchanged). Same epoch
    protocol as the base: ``set_epoch``, ``indices_for_epoch``, ``total_length``.
    """

    def __init__(self, base, length: int, *, seed: int = 0):
        if not hasattr(base, "indices_for_epoch"):
            raise TypeError("EqualLengthSampler needs a base sampler with indices_for_epoch(epoch)")
        super().__init__(seed=seed, shuffle=True)
        self.base, self.length = base, int(length)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def indices_for_epoch(self, epoch: int) -> np.ndarray:
        first = np.asarray(self.base.indices_for_epoch(epoch), dtype=np.int64)
        if len(first) == 0 or len(first) >= self.length:
            return first
        reps = -(-(self.length - len(first)) // len(first))
        rng = np.random.default_rng([self.seed, int(epoch), 0x45])
        more = [rng.permutation(first) for _ in range(reps)]
        return np.concatenate([first, *more])[: self.length]

    def distinct_indices(self, epochs: int) -> int:
        """Number of distinct training rows yielded over epochs 0..epochs-1."""
        if hasattr(self.base, "selected_"):  # a fixed subset: the same rows every epoch
            return int(len(self.base.selected_))
        seen = np.zeros(0, dtype=np.int64)
        for e in range(int(epochs)):
            seen = np.union1d(seen, self.base.indices_for_epoch(e))
        return int(len(seen))


NO_SCORES_HINT = ("no difficulty scores for the difficulty sampler: pass scores (a score file from `posecurator "
                  "difficulty` keyed by sample_id, an (N,) array or a {sample_id: score} dict), or a "
                  "score_fn(train_poses) -> scores, e.g. posecurator.train.vae_trainer.vae_score_fn() to train a "
                  "pose VAE on the training rows")


def resolve_scores(train_poses, scores=None, *, score_fn: Callable | None = None) -> np.ndarray:
    """(N,) difficulty scores for the rows of ``train_poses`` (higher = harder).

    scores: an (N,) array aligned with the rows; a dict ``{sample_id: score}``; a path to a score
    file (:func:`posecurator.selection.bins.load_scores`, e.g. the output of ``posecurator
    difficulty``), looked up by sample_id; or None: ``score_fn(train_poses)`` computes them (the
    caller injects it, e.g. :func:`posecurator.train.vae_trainer.vae_score_fn`, which trains a pose
    VAE on the rows themselves; this layer does not train models). Neither given: ValueError.
    """
    n = len(train_poses)
    if scores is None:
        if score_fn is None:
            raise ValueError(NO_SCORES_HINT)
        out = np.asarray(score_fn(train_poses), dtype=np.float64)
        if out.shape != (n,):
            raise ValueError(f"score_fn returned {out.shape} for {n} training rows; expected ({n},)")
    elif isinstance(scores, (str, os.PathLike)):
        ids, sc = load_scores(scores)
        out = align_scores(train_poses.sample_id, ids, sc, path=scores)
    elif isinstance(scores, dict):
        ids = np.fromiter((int(i) for i in scores), dtype=np.int64, count=len(scores))
        out = align_scores(train_poses.sample_id, ids, np.fromiter(scores.values(), dtype=np.float64, count=len(scores)))
    else:
        out = np.asarray(scores, dtype=np.float64)
        if out.shape != (n,):
            raise ValueError(f"scores must be ({n},) aligned with the training rows, got {out.shape}")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{int((~np.isfinite(out)).sum())} training samples have no finite difficulty score "
                         "(too few labelled joints?); drop them before building a difficulty sampler")
    return out


def parse_sampler_spec(spec: str, *, scores=None, score_fn: Callable | None = None):
    """Parse ``spec`` (see ``SAMPLER_SPECS``) into ``factory(train_poses, scores=None, *, epochs=None,
    seed=None) -> Sampler``.

    The factory is called with the training rows (after the trainer's validation split) and, for
    the curriculum, the trainer's number of epochs (``epochs=``; else the spec's ``epochs=``
    option; else 30 with a warning) and its seed (``seed=``; else the spec's; else 0).
    Difficulty scores come from the factory's ``scores`` argument, else from ``scores`` given
    here, else ``score_fn(train_rows)`` (see :func:`resolve_scores`; the CLI passes
    :func:`posecurator.train.vae_trainer.vae_score_fn`, a VAE trained on the training rows), else
    a ValueError saying so. ``easy`` keeps the lowest scores (the hard sampler on negated scores:
    for scores whose low end is wanted, such as ``target_coverage``). Examples: ``"hard:0.33"``,
    ``"easy:0.33"``, ``"curriculum"``,
    ``"curriculum:linear,full_at=0.5"``, ``"random:0.33"``, ``"all"``.
    """
    head, *opts = [p.strip() for p in str(spec).split(",")]
    name, _, arg = head.partition(":")
    name = name.strip().lower()
    options = {}
    for o in opts:
        key, eq, value = (p.strip() for p in o.partition("="))
        if not eq or key not in _INT_OPTIONS + _FLOAT_OPTIONS:
            raise ValueError(f"bad sampler option {o!r} in {spec!r}; expected {SAMPLER_SPECS}")
        try:
            options[key] = float(value) if key in _FLOAT_OPTIONS else int(value)
        except ValueError:
            raise ValueError(f"bad value in sampler option {o!r} of {spec!r}") from None
    k = int(options.pop("k", 25))
    spec_seed = options.pop("seed", None)
    spec_epochs = options.pop("epochs", None)
    if name in ("hard", "easy", "random", "all"):
        if options or spec_epochs is not None:
            raise ValueError(f"options epochs/start/full_at/samples_per_epoch apply to the curriculum only ({spec!r})")
        if name == "all" and arg:
            raise ValueError(f"'all' takes no fraction ({spec!r}); use random:FRACTION")
        try:
            fraction = 1.0 if name == "all" else _check_fraction(float(arg) if arg else 0.33)
        except ValueError:
            raise ValueError(f"bad fraction {arg!r} in sampler spec {spec!r}") from None
    elif name == "curriculum":
        schedule = arg or "stages"
        if schedule not in ("stages", "linear"):
            raise ValueError(f"unknown curriculum schedule {schedule!r} in {spec!r}; use stages or linear")
    else:
        raise ValueError(f"unknown sampler {spec!r}; expected {SAMPLER_SPECS}")
    default_scores = scores

    def factory(train_poses, scores=None, *, epochs: int | None = None, seed: int | None = None) -> Sampler:
        n = len(train_poses)
        seed = (spec_seed if spec_seed is not None else 0) if seed is None else seed
        epochs = spec_epochs if epochs is None else epochs
        if name in ("all", "random"):
            return RandomSubsetSampler(n, fraction, seed=seed)
        sc = resolve_scores(train_poses, scores if scores is not None else default_scores, score_fn=score_fn)
        if name == "hard":
            return HardMiningSampler(sc, fraction=fraction, k=k, seed=seed)
        if name == "easy":  # the lowest scores: e.g. the poses nearest a target (scoring.target2d)
            return HardMiningSampler(-sc, fraction=fraction, k=k, seed=seed)
        if epochs is None:
            warnings.warn("curriculum sampler built without the trainer's epochs; assuming 30", stacklevel=2)
            epochs = 30
        return CurriculumSampler(sc, k=k, schedule=schedule, epochs=epochs, seed=seed, **options)

    factory.spec = spec
    factory.needs_scores = name in ("hard", "easy", "curriculum")
    factory.accepts_epochs = True  # trainers may pass epochs= and seed= (see the docstring)
    return factory
