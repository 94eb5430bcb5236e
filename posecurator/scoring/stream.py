"""Score a chunked dataset chunk by chunk, holding only the score arrays.

:func:`score_dataset` reads a pose-set folder with :func:`posecurator.poseset.iter_chunks`, cuts
(or joins) its chunks into blocks of ``chunk_size`` rows (:func:`iter_blocks`) and scores them
block by block with a fitted scorer of this package (``density``, ``vae_recon``, ``lifter_error``,
``reprojection``, ...). Memory: one on-disk chunk, one block and the two (N,) result arrays
(``sample_id`` int64 and ``score`` float64: 16 bytes per pose), whatever N is.

The scores equal those of ``scorer.score_samples(PoseSet.load(path))`` whatever ``chunk_size``:

* a scorer whose score of a pose depends on that pose alone (density, vae_recon, reprojection)
  is simply called on each block; where it scores its input in fixed batches (``stream_rows``:
  the density scorer 16384 poses, vae_recon its ``batch_size``), the blocks are made multiples of
  that batch (:func:`stream_block_size`), since a BLAS product's last bits depend on its size;
* a scorer that draws random numbers while scoring (``lifter_error``: seeded random cameras)
  implements ``score_stream(parts)``, which keeps one random stream across the blocks and cuts
  them into its own internal batches, so it draws exactly what one ``score_samples`` call on the
  whole set draws.

Engines (``engine``, a :mod:`posecurator.engine` engine): the blocks of a scorer without
``score_stream`` are scored by ``engine.map`` (each block a task, results in block order; a block's
scores depend on the block alone, so they are the same on every engine and worker count). On a
parallel engine each task reads its own block (rows ``a..b-1`` through
:meth:`posecurator.poseset.PoseStore.take`: the same rows and columns) and returns its sample ids
with its scores, so the poses never pass through this process (on a cluster the dataset must then
be on a file system every node mounts). A scorer with ``score_stream`` keeps one random stream
across the blocks and is run in this process whatever the engine.

:func:`write_scores` writes what :func:`posecurator.selection.bins.save_scores` writes for an
``.npz`` (arrays ``sample_id`` and ``score``; loadable by ``load_scores``), atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from posecurator.fileio import atomic_savez
from posecurator.poseset import PoseSet, PoseStore, iter_chunks, read_meta

DEFAULT_STREAM_CHUNK = 262_144


def iter_blocks(parts: Iterable[PoseSet], size: int) -> Iterator[PoseSet]:
    """Consecutive parts of one pose set regrouped into blocks of exactly ``size`` rows (the last
    one shorter): larger parts are cut, smaller ones joined. Holds at most one block plus one part."""
    size = int(size)
    if size < 1:
        raise ValueError(f"block size must be >= 1, got {size}")
    pending: list[PoseSet] = []
    have = 0
    for part in parts:
        start = 0
        while start < len(part):
            take = min(size - have, len(part) - start)
            pending.append(part if (start == 0 and take == len(part)) else part.subset(slice(start, start + take)))
            have += take
            start += take
            if have == size:
                yield _join(pending)
                pending, have = [], 0
    if have:
        yield _join(pending)


def _join(pieces: list[PoseSet]) -> PoseSet:
    if len(pieces) == 1:
        return pieces[0]
    out = PoseSet.concatenate(pieces)
    # pieces of one set share its camera table: keep the rows as they are (concatenate offsets them)
    out.cameras = list(pieces[0].cameras)
    out.camera = np.concatenate([p.camera for p in pieces])
    return out


def stream_block_size(scorer, chunk_size: int) -> int:
    """``chunk_size`` rounded up to a multiple of the scorer's ``stream_rows`` (the rows it scores
    at a time from the start of its input, where it says so): every internal batch is then the
    same as in one ``score_samples`` call on the whole set, and so are the last bits of the scores."""
    chunk_size = int(chunk_size)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    rows = getattr(scorer, "stream_rows", None)
    if isinstance(rows, int) and rows > 1:
        chunk_size = -(-chunk_size // rows) * rows
    return chunk_size


def score_parts(scorer, parts: Iterable[PoseSet]) -> Iterator[np.ndarray]:
    """Scores of consecutive parts of one pose set, part by part, equal to ``score_samples`` of
    the whole set (through the scorer's ``score_stream`` where it has one)."""
    stream = getattr(scorer, "score_stream", None)
    if stream is not None:
        yield from stream(parts)
        return
    for part in parts:
        yield np.asarray(scorer.score_samples(part), dtype=np.float64)


def score_block(scorer, block: PoseSet) -> np.ndarray:
    """(n,) float64 scores of one block: the task an engine runs (module level, so workers import it)."""
    return np.asarray(scorer.score_samples(block), dtype=np.float64)


def score_row_range(scorer, item: tuple) -> tuple[np.ndarray, np.ndarray]:
    """``(sample_id, scores)`` of rows ``a..b-1`` of a dataset, read here: ``item = (path, columns,
    a, b)``. The task a parallel engine runs (module level, so workers import it)."""
    path, columns, a, b = item
    block = PoseStore(path).take(np.arange(a, b, dtype=np.int64), columns=columns)
    return block.sample_id, score_block(scorer, block)


def can_distribute(scorer) -> bool:
    """Whether the blocks of ``scorer`` may be scored apart (no random stream across blocks)."""
    return getattr(scorer, "score_stream", None) is None


def score_dataset(scorer, dataset_path: str | os.PathLike, *, chunk_size: int = DEFAULT_STREAM_CHUNK,
                  columns: list[str] | None = None, output: str | os.PathLike | None = None,
                  progress: bool = False, engine=None) -> tuple[np.ndarray, np.ndarray]:
    """Score every pose of the dataset folder ``dataset_path`` with a *fitted* ``scorer``, reading
    ``chunk_size`` poses at a time. Returns ``(sample_id (N,) int64, scores (N,) float64)`` in the
    dataset's row order; with ``output`` (an ``.npz`` path) also writes them there atomically
    (:func:`write_scores`).

    ``columns``: the columns the scorer needs (default all; e.g. ``["joints3d"]`` for the density
    scorer skips reading the text columns); ``joints3d``/``joints2d`` and ``sample_id`` are always read.
    ``engine``: where the blocks are scored (None = here; see the module docstring).
    """
    path = Path(dataset_path)
    chunk_size = stream_block_size(scorer, chunk_size)
    meta = read_meta(path)
    n = int(sum(c["n"] for c in meta["chunks"]))
    sample_id = np.empty(n, dtype=np.int64)
    scores = np.empty(n, dtype=np.float64)
    wanted = None if columns is None else sorted(set(columns) | {"sample_id"})
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n, desc="score", unit="pose", leave=False)
    placed = [0]  # ids are placed as blocks are read (a scorer may hold a block before yielding its scores)

    def blocks():
        for block in iter_blocks(iter_chunks(path, columns=wanted), chunk_size):
            k = len(block)
            if placed[0] + k > n:
                raise ValueError(f"{path}: the chunks hold more rows than the header's {n}")
            sample_id[placed[0]:placed[0] + k] = block.sample_id
            placed[0] += k
            yield block

    def read_elsewhere():
        # the workers read their blocks themselves: only row ranges go out, ids and scores come back
        ranges = ((str(path), wanted, a, min(a + chunk_size, n)) for a in range(0, n, chunk_size))
        for ids, part_scores in engine.map(score_row_range, ranges, shared=scorer):
            sample_id[placed[0]:placed[0] + len(ids)] = ids
            placed[0] += len(ids)
            yield part_scores

    pos = 0
    try:
        distribute = engine is not None and can_distribute(scorer)
        parts = (read_elsewhere() if distribute and getattr(engine, "parallel", False)
                 else engine.map(score_block, blocks(), shared=scorer) if distribute
                 else score_parts(scorer, blocks()))
        for part_scores in parts:
            part_scores = np.asarray(part_scores, dtype=np.float64).reshape(-1)
            k = len(part_scores)
            if pos + k > placed[0]:
                raise ValueError(f"the scorer returned more scores than the {placed[0]} poses it was given")
            scores[pos:pos + k] = part_scores
            pos += k
            if bar is not None:
                bar.update(k)
    finally:
        if bar is not None:
            bar.close()
    if pos != n or placed[0] != n:
        raise ValueError(f"the scorer returned {pos} scores for {n} poses")
    if output is not None:
        write_scores(output, sample_id, scores)
    return sample_id, scores


def write_scores(path: str | os.PathLike, sample_id, scores) -> Path:
    """Write ``sample_id`` (int64) and ``score`` (float64) arrays to an ``.npz`` atomically (what
    ``posecurator.selection.bins.save_scores`` writes; read it back with ``load_scores``)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"{path}: the streaming scorer writes .npz score files")
    sample_id = np.asarray(sample_id, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if sample_id.shape != scores.shape or sample_id.ndim != 1:
        raise ValueError(f"sample_id {sample_id.shape} and scores {scores.shape} must be equal (N,)")
    return atomic_savez(path, sample_id=sample_id, score=scores)
