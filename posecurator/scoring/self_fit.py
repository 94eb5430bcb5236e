"""A stored set scored by a scorer fitted on that same set, without loading it (issue 12).

:func:`density_self_scores` is ``posecurator score SET --scorer density`` (no ``--reference``: the
set is its own reference) over a stored set, holding only what the method needs globally:

1. the fit sample: the same seeded rows :class:`~posecurator.scoring.density.DensityScorer` picks
   from a set in memory (``max_fit_samples`` of them, drawn by ``default_rng(seed)``; every row
   when the set is smaller), read through :meth:`PoseStore.take` (those rows only);
2. PCA and mixture fitted on them, exactly as the in-memory fit does;
3. one pass over the set, block by block (blocks a multiple of the scorer's ``stream_rows``, so
   every BLAS product has the size it has in memory): each pose's log density;
4. the rank table = those N log densities sorted (the in-memory fit's ``reference_log_density_``
   over every reference pose), and each pose's score = 1 - its rank in it.

Memory: one stored chunk, one block and about 40 bytes per pose (ids, log densities, their sorted
copy, ranks, scores). The scores equal ``DensityScorer(seed=..).fit(S).score_samples(S)`` of the
loaded set ``S`` byte for byte, whatever ``chunk_size`` (tested).

In sample or out of sample: the density scorer's existing policy is kept, not changed. In memory
a set that is its own reference is scored *in sample* for every pose: the rank table holds every
pose, and the mixture is fitted on a seeded sample of ``max_fit_samples`` poses (50,000 by
default) of it. This module does the same, so the fit-sample rows are scored by a mixture that saw
them, as they are in memory. What keeps that fair is the model's size: a 2-d PCA and at most
``n_components`` Gaussians (about 60 numbers) fitted on tens of thousands of poses do not bend
towards the poses they saw, unlike a VAE (whose scores the ``difficulty`` command cross-fits,
:mod:`posecurator.scoring.crossfit`). Scorers that learn that much (``vae_recon``) are not
scored this way; the CLI loads the set for them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from posecurator.poseset import PoseStore
from posecurator.scoring.density import DensityScorer
from posecurator.scoring.stream import DEFAULT_STREAM_CHUNK, iter_blocks, stream_block_size


@dataclass
class SelfFitInfo:
    """What a self-fitted stream did: ``n`` poses scored, ``n_fit`` poses the model was fitted on
    (a seeded sample of the set when smaller than ``n``), ``in_sample`` (every pose is scored by a
    model fitted on its own set)."""

    n: int
    n_fit: int
    in_sample: bool = True

    def describe(self) -> str:
        fit = (f"fitted on a seeded sample of {self.n_fit} of the {self.n} poses" if self.n_fit < self.n
               else f"fitted on all {self.n} poses")
        return f"{fit}; the set is its own reference, so every pose is scored in sample (as in memory)"


def fit_sample_rows(n: int, max_fit_samples: int, seed: int) -> np.ndarray:
    """The sorted rows (of ``n``) the density scorer fits on: what :class:`DensityScorer` draws
    from ``n`` poses in memory (``default_rng(seed).choice(n, max_fit_samples)``; all rows when
    ``n <= max_fit_samples``)."""
    if n > max_fit_samples:
        return np.sort(np.random.default_rng(seed).choice(n, max_fit_samples, replace=False))
    return np.arange(n, dtype=np.int64)


def density_self_scores(dataset, *, seed: int = 0, max_fit_samples: int = 50_000,
                        chunk_size: int = DEFAULT_STREAM_CHUNK, progress: bool = False, **options
                        ) -> tuple[DensityScorer, np.ndarray, np.ndarray, SelfFitInfo]:
    """Fit the density scorer on a stored set (a folder path or a :class:`PoseStore`, e.g. a
    selection) and score every pose of it, streamed (module docstring). ``options``: the other
    :class:`DensityScorer` options (``n_components``, ``normalization``, ...).

    Returns ``(scorer, sample_id (N,) int64, scores (N,) float64, info)``; the scorer is the one
    the in-memory fit gives (its rank table holds every pose of the set)."""
    store = dataset if isinstance(dataset, PoseStore) else PoseStore(os.fspath(dataset))
    n = len(store)
    if max_fit_samples < 3:
        raise ValueError(f"the density fit needs a sample of at least 3 poses, got {max_fit_samples}")
    scorer = DensityScorer(seed=seed, max_fit_samples=max_fit_samples, **options)
    rows = fit_sample_rows(n, max_fit_samples, seed)
    sample = store.take(rows, columns=["joints3d"])
    if sample.joints3d is None or sample.joints3d.shape[1:] != (17, 3):
        raise ValueError("the density scorer needs h36m17 3D poses (joints3d)")
    # the in-memory fit on the sample alone, told to use all of it: the PCA and the mixture then
    # see exactly the rows (and row order) the fit on the whole set draws
    scorer.max_fit_samples = max(len(sample), 3)
    try:
        scorer.fit(sample)
    finally:
        scorer.max_fit_samples = max_fit_samples
    sample_id = np.empty(n, dtype=np.int64)
    logp = np.empty(n, dtype=np.float64)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n, desc="score", unit="pose", leave=False)
    pos = 0
    try:
        parts = store.iter_chunks(columns=["joints3d", "sample_id"])
        for block in iter_blocks(parts, stream_block_size(scorer, chunk_size)):
            k = len(block)
            if pos + k > n:
                raise ValueError(f"{store.path}: the chunks hold more rows than the header's {n}")
            sample_id[pos:pos + k] = block.sample_id
            logp[pos:pos + k] = scorer.log_density(block)
            pos += k
            if bar is not None:
                bar.update(k)
    finally:
        if bar is not None:
            bar.close()
    if pos != n:
        raise ValueError(f"{store.path}: the chunks hold {pos} rows, the header says {n}")
    scorer.reference_log_density_ = np.sort(logp)
    scorer.max_log_density_ = float(scorer.reference_log_density_[-1])
    scores = 1.0 - probability_from_log_density(scorer, logp)
    return scorer, sample_id, scores, SelfFitInfo(n=n, n_fit=len(rows))


def probability_from_log_density(scorer: DensityScorer, logp: np.ndarray) -> np.ndarray:
    """:meth:`DensityScorer.probability` of poses whose log densities are already known (the
    same arithmetic, without computing them again)."""
    if scorer.normalization == "max":
        return np.exp(np.minimum(logp - scorer.max_log_density_, 0.0))
    ref = scorer.reference_log_density_
    return np.searchsorted(ref, logp, side="right") / len(ref)
