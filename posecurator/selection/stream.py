"""Selections of a stored set made from score arrays, written chunk by chunk (issue 12).

The selection methods need nothing of a pose set but its score arrays: quality distillation ranks
the combined ADD score (:mod:`posecurator.selection.distill`), bins rank one score
(:mod:`posecurator.selection.bins`), the plausibility prior gives one verdict per pose. So a set
of any size is selected here holding only (N,) arrays (scores, a mask: 8 + 1 bytes per pose), and
the kept rows are copied from the stored set to a new one through a :class:`PoseStore` selection
(indices only), one block at a time, into a :class:`PoseSetWriter` (atomic: nothing half-written).

What is written equals ``PoseSet.load(src).subset(mask).save(out, chunk_size=...)`` file for file
(the blocks are regrouped to the writer's chunk size, so chunking does not depend on where the
kept rows fall), whatever the stored set's own chunks (tested).
"""

from __future__ import annotations

import os

import numpy as np

from posecurator.augment.plausibility import JointAnglePrior, check_dataset
from posecurator.poseset import DEFAULT_CHUNK, PoseSetWriter, PoseStore
from posecurator.scoring.stream import iter_blocks
from posecurator.selection.bins import align_scores, difficulty_bins
from posecurator.selection.distill import combine_scores, lowest_fraction_mask, normalize_errors


def open_store(dataset) -> PoseStore:
    """A folder path or an open :class:`PoseStore` (returned as it is)."""
    return dataset if isinstance(dataset, PoseStore) else PoseStore(os.fspath(dataset))


def write_selection(dataset, index, output, *, chunk_size: int = DEFAULT_CHUNK, overwrite: bool = True,
                    attrs: dict | None = None, columns: list[str] | None = None) -> int:
    """Write the rows of a stored set picked by ``index`` (a boolean mask over its rows, or row
    indices; None = every row) to a new pose-set folder ``output``, block by block. Rows keep the
    set's order (each once), their columns, lineage and camera table. Returns the rows written."""
    store = open_store(dataset)
    picked = store if index is None else store.select(index)
    with PoseSetWriter(output, layout=store.layout, fps=store.fps, chunk_size=chunk_size, overwrite=overwrite,
                       attrs=store.attrs if attrs is None else attrs) as w:
        w.cameras = list(store.cameras)
        for block in iter_blocks(picked.iter_chunks(columns=columns), chunk_size):
            w.append(block)
    return len(picked)


def scores_for_store(store: PoseStore, score_ids, scores, *, path=None) -> np.ndarray:
    """(N,) scores in the store's row order, looked up by sample_id (:func:`align_scores`; a
    score file from another set names its first missing sample). Reads the sample_id column only."""
    return align_scores(store.column("sample_id"), score_ids, scores, path=path)


# ---------------------------------------------------------------------- masks from score arrays
def quality_mask(novelty, error=None, *, w: float = 0.5, keep: float | None = 0.8, n_keep: int | None = None,
                 error_normalization: str = "minmax") -> np.ndarray:
    """(N,) bool: what :meth:`QualityDistiller.select` keeps, from its two score arrays (``novelty``
    = the density scorer's 1 - prob, ``error`` = the lifter error in mm, or None for novelty alone)."""
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"w must lie in [0, 1], got {w}")
    err_n = None
    if error is not None and w < 1.0:
        err_n = normalize_errors(np.asarray(error, dtype=np.float64), method=error_normalization)
    return lowest_fraction_mask(combine_scores(novelty, err_n, w=w), keep=keep, n_keep=n_keep)


def bins_mask(scores, bins, *, k: int = 25) -> np.ndarray:
    """(N,) bool: the samples whose difficulty bin (:func:`difficulty_bins`, 0 = easiest) is in ``bins``."""
    wanted = np.asarray(list(bins), dtype=np.int64)
    if wanted.size and (wanted.min() < 0 or wanted.max() >= k):
        raise ValueError(f"bins must lie in 0..{k - 1}, got {wanted.tolist()}")
    return np.isin(difficulty_bins(scores, k), wanted)


# ---------------------------------------------------------------------- stored set -> stored set
def plausible_selection(prior: JointAnglePrior, dataset, output, *, min_valid_limbs: int | None = None,
                        chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
    """Check every pose of a stored set with a fitted prior (streamed) and write the plausible
    ones to ``output``. Returns the (N,) mask."""
    store = open_store(dataset)
    mask = check_dataset(prior, store, min_valid_limbs=min_valid_limbs)
    write_selection(store, mask, output, chunk_size=chunk_size)
    return mask


def quality_distill_store(dataset, output, novelty, error=None, *, w: float = 0.5, keep: float = 0.8,
                          error_normalization: str = "minmax", chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
    """Quality distillation of a stored augmented set (ADD Sec. 3.2) from its score arrays (in
    the store's row order; e.g. from :func:`posecurator.scoring.stream.score_dataset`): the kept
    rows are written to ``output``. Returns the (N,) mask; equals ``QualityDistiller.select`` of
    the loaded set with the same scores."""
    store = open_store(dataset)
    novelty = np.asarray(novelty, dtype=np.float64)
    if novelty.shape != (len(store),) or (error is not None and np.shape(error) != (len(store),)):
        raise ValueError(f"score arrays must have one value per pose of the set ({len(store)})")
    mask = quality_mask(novelty, error, w=w, keep=keep, error_normalization=error_normalization)
    write_selection(store, mask, output, chunk_size=chunk_size)
    return mask
