"""Scale distillation written to disk generation by generation, in memory that does not grow with N.

:func:`distil_to_store` runs the loop of :meth:`~posecurator.selection.distill.ScaleDistiller.run`
(breed -> quality-distil -> grow the population, until original + kept reaches ``multiplier`` x
the original) with nothing of size N in memory but per-pose arrays (scores, the population's
sample ids) and the original set:

* the population (original, then every kept child; or only the last kept set) lives in the
  scratch files of :class:`~posecurator.augment.streaming.FilePopulation` and is bred from in
  windows, as ``posecurator augment`` does;
* a generation's children go to a scratch file as they are bred (raw arrays: joints, parent and
  partner rows, operator code), in pieces of about ``GATHER_CHILDREN``;
* two passes over them: the first scores them block by block (the diversity term through the
  scorer's fixed batches, the lifter error through its one random stream: ``score_parts``), the
  lifter error is normalised over the whole generation and the lowest-score mask taken, as in
  memory; the second writes the kept children to the output (and the dropped ones to
  ``dropped_path``) and the kept ones to the population.

The output is the same, byte for byte, as ``run`` followed by ``PoseSet.save`` of its
augmentation (and of ``dropped_``), and the same whatever ``block_size`` (tested): children are
appended in exact multiples of the writer's chunk size, blocks are multiples of each scorer's
fixed batch, and the random streams are those of the in-memory loop.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Iterator

import numpy as np

from posecurator.augment.evolution import (
    EvolutionConfig,
    Lineage,
    ShardResult,
    ShardTask,
    breed_shard_pieces,
    children_piece,
    run_shard,
    shard_sizes,
)
from posecurator.augment.streaming import CHILD_ARRAYS, FilePopulation, Rechunker
from posecurator.poseset import DEFAULT_CHUNK, PoseSet, PoseSetWriter, PoseStore
from posecurator.scoring.stream import DEFAULT_STREAM_CHUNK, score_parts, stream_block_size
from posecurator.selection.distill import (
    QualityDistiller,
    ScaleDistiller,
    ScaleStep,
    combine_scores,
    lowest_fraction_mask,
    normalize_errors,
)

class ChildFile:
    """The children of one generation, appended to raw scratch files as they are bred (one file
    per array of ``CHILD_ARRAYS``) and read back in row ranges (the resident set holds one range,
    never the generation)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.paths = {name: folder / f"children-{name}.bin" for name, _, _ in CHILD_ARRAYS}
        self.files = {name: open(path, "wb") for name, path in self.paths.items()}
        self.rows = 0

    def append(self, r: ShardResult) -> None:
        for name, dtype, _ in CHILD_ARRAYS:
            self.files[name].write(memoryview(np.ascontiguousarray(getattr(r, name), dtype).reshape(-1)).cast("B"))
        self.rows += len(r)

    def finish(self) -> None:
        for f in self.files.values():
            f.close()

    def read(self, a: int, b: int) -> ShardResult:
        """Children ``a..b-1`` (``made`` and ``operators`` are the breeding's, not kept here)."""
        out = {}
        for name, dtype, shape in CHILD_ARRAYS:
            size = np.dtype(dtype).itemsize * int(np.prod(shape, dtype=np.int64))
            count = (b - a) * int(np.prod(shape, dtype=np.int64))
            arr = np.fromfile(self.paths[name], dtype=dtype, count=count, offset=a * size)
            if arr.size != count:
                raise ValueError(f"{self.paths[name]}: scratch children file is short")
            out[name] = arr.reshape(b - a, *shape)
        return ShardResult(**out, made=0, operators={})

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        for path in self.paths.values():
            path.unlink(missing_ok=True)


class _Generation:
    """One generation's children as pose sets, block by block: what ``evolve_generation`` would
    have made of them (the same columns, ids, lineage and metadata)."""

    def __init__(self, children: ChildFile, lineage: Lineage, store: FilePopulation, pop_ids: np.ndarray, lo: int,
                 generation: int, next_id: int):
        self.children, self.lineage, self.store = children, lineage, store
        self.pop_ids, self.lo, self.generation, self.next_id = pop_ids, lo, generation, next_id

    def __len__(self) -> int:
        return self.children.rows

    def block(self, a: int, b: int) -> tuple[PoseSet, np.ndarray]:
        """Children ``a..b-1`` as a PoseSet, and each one's original root row (for the population)."""
        r = self.children.read(a, b)
        root = self.store.roots(self.lo + r.parent)
        ps = children_piece(self.lineage, r, b - a, lo=self.lo, root=root, generation=self.generation, frame0=a,
                            first_id=self.next_id + a, sid=self.pop_ids.__getitem__)
        return ps, root

    def blocks(self, size: int) -> Iterator[PoseSet]:
        for a in range(0, len(self), size):
            yield self.block(a, min(a + size, len(self)))[0]


def _scores_of(scorer, gen: _Generation, block_size: int) -> np.ndarray:
    out = np.empty(len(gen), dtype=np.float64)
    pos = 0
    for part in score_parts(scorer, gen.blocks(stream_block_size(scorer, block_size))):
        out[pos:pos + len(part)] = part
        pos += len(part)
    if pos != len(gen):
        raise ValueError(f"the scorer returned {pos} scores for {len(gen)} poses")
    return out


def quality_components(distiller: QualityDistiller, gen: _Generation, block_size: int) -> dict:
    """:meth:`QualityDistiller.score_components` of a generation read block by block."""
    novelty = _scores_of(distiller.density_, gen, block_size)
    error = err_n = None
    if distiller.rationality is not None and distiller.w < 1.0:
        error = _scores_of(distiller.rationality, gen, block_size)
        err_n = normalize_errors(error, method=distiller.error_normalization)
    return {"novelty": novelty, "error": error, "error_normalized": err_n}


def distil_to_store(scale: ScaleDistiller, original: PoseSet | PoseStore, augmented_path: str | os.PathLike, *,
                    dropped_path: str | os.PathLike | None = None, chunk_size: int = DEFAULT_CHUNK,
                    block_size: int = DEFAULT_STREAM_CHUNK) -> tuple[int, list[ScaleStep], dict]:
    """:meth:`ScaleDistiller.run` of ``original`` (in memory, or a stored set read chunk by chunk:
    its joints go to the population file, its lineage columns are read alone) with its
    augmentation written to the pose-set folder ``augmented_path`` as it is made (and, given
    ``dropped_path``, the children dropped by score there; see the module docstring).

    Returns ``(poses written, steps, record)``; ``record`` holds what ``run`` with ``record=True``
    keeps besides the dropped poses (empty arrays unless ``scale.record``): ``kept_score``,
    ``dropped_score``, ``kept_components`` and ``dropped_components`` (dicts of "novelty",
    "error"). Outputs are replaced atomically on success, untouched on failure; an empty one is
    removed (nothing to read back).

    ``scale.engine`` (with ``evolution.shard_size``) breeds the shards of each generation as in
    ``run``; their children come back to this process, which writes them.
    """
    config = scale.evolution if scale.evolution is not None else EvolutionConfig()
    distiller = scale.distiller if scale.distiller is not None else QualityDistiller()
    stored = isinstance(original, PoseStore)
    if not hasattr(distiller, "density_"):
        distiller.fit(original.load(columns=["joints3d"]) if stored else original)
    if (stored and "joints3d" not in original.columns) or (not stored and original.joints3d is None):
        raise ValueError("scale distillation needs 3D poses (joints3d)")
    rng = np.random.default_rng(config.seed)
    n0 = len(original)
    if n0 < 1:
        raise ValueError("the population is empty")
    need = max(0, int(round(scale.multiplier * n0)) - n0)
    lineage = _lineage(original)
    next_id = lineage.next_id
    generation = int((original.column("generation") if stored else original.generation).max()) + 1
    pop_ids = np.asarray(lineage.sample_id, dtype=np.int64)
    lo, hi = 0, n0
    steps: list[ScaleStep] = []
    rec = {k: [] for k in ("kept_score", "dropped_score", "kept_novelty", "dropped_novelty", "kept_error", "dropped_error")}
    have, acceptance = 0, 1.0
    bar = None
    if scale.progress and need:
        from tqdm import tqdm
        bar = tqdm(total=need, desc="ADD", unit="pose", leave=False)
    writers = [PoseSetWriter(augmented_path, layout=lineage.layout, fps=lineage.fps, chunk_size=chunk_size,
                             attrs=dict(lineage.attrs))]
    if dropped_path is not None:
        writers.append(PoseSetWriter(dropped_path, layout=lineage.layout, fps=lineage.fps, chunk_size=chunk_size,
                                     attrs=dict(lineage.attrs)))
    with writers[0] as w_kept, (writers[1] if dropped_path is not None else nullcontext()) as w_dropped:
        out_kept = Rechunker(w_kept, chunk_size)
        out_dropped = Rechunker(w_dropped, chunk_size) if dropped_path is not None else None
        store = FilePopulation(w_kept.scratch_dir("scratch-population"), original if stored else original.joints3d, n0 + need)
        children = None
        try:
            for g in range(config.max_generations):
                if have >= need:
                    break
                remaining = need - have
                size = hi - lo
                n_children = min(math.ceil(config.offspring_ratio * size),
                                 math.ceil(remaining / (max(acceptance, 0.02) * distiller.keep) * 1.05) + 16)
                t0 = time.perf_counter()
                children = ChildFile(store.folder)
                made, operators = 0, {}
                for r in _breed(scale, store, lo, hi, rng, n_children, config, g):
                    children.append(r)
                    made += r.made
                    for name, c in r.operators.items():
                        operators[name] = operators.get(name, 0) + c
                children.finish()
                k = children.rows
                gen_s = time.perf_counter() - t0
                acceptance = k / made if made else 0.0
                t0 = time.perf_counter()
                gen = _Generation(children, lineage, store, pop_ids, lo, generation, next_id)
                n_distilled = n_kept = 0
                s_kept = s_drop = float("nan")
                kept_ids = np.zeros(0, np.int64)
                if k:
                    comp = quality_components(distiller, gen, block_size)
                    score = combine_scores(comp["novelty"], comp["error_normalized"], w=distiller.w)
                    mask = lowest_fraction_mask(score, keep=distiller.keep)
                    n_distilled = int(mask.sum())
                    if n_distilled > remaining:  # the last generation's surplus is cut by score
                        mask = lowest_fraction_mask(score, n_keep=remaining)
                    n_kept = int(mask.sum())
                    s_kept = float(score[mask].mean()) if mask.any() else float("nan")
                    s_drop = float(score[~mask].mean()) if (~mask).any() else float("nan")
                    for part, sel in ((("kept", mask), ("dropped", ~mask)) if scale.record else ()):
                        rec[part + "_score"].append(score[sel])
                        rec[part + "_novelty"].append(comp["novelty"][sel])
                        rec[part + "_error"].append(None if comp["error"] is None else comp["error"][sel])
                    kept_ids = next_id + np.flatnonzero(mask).astype(np.int64)
                    for a in range(0, k, block_size):  # the second pass: write
                        b = min(a + block_size, k)
                        block, root = gen.block(a, b)
                        m = mask[a:b]
                        out_kept.add(block.subset(m))
                        if out_dropped is not None:
                            out_dropped.add(block.subset(~m))
                        store.append(block.joints3d[m], root[m])
                children.close()
                children = None
                steps.append(ScaleStep(generation=generation, population=size, made=made, rejected=made - k,
                                       distilled=n_distilled, kept=n_kept, generation_seconds=gen_s,
                                       scoring_seconds=time.perf_counter() - t0, score_kept_mean=s_kept,
                                       score_dropped_mean=s_drop, operators=operators))
                next_id += k
                generation += 1
                if n_kept:
                    have += n_kept
                    pop_ids = np.concatenate([pop_ids, kept_ids])
                    lo, hi = (lo, hi + n_kept) if scale.population == "all" else (hi, hi + n_kept)
                if bar is not None:
                    bar.update(n_kept)
            out_kept.flush()
            if out_dropped is not None:
                out_dropped.flush()
        finally:
            if children is not None:
                children.close()
            store.close()  # before the writer renames its folder into place
            if bar is not None:
                bar.close()
    for path, written in ((augmented_path, out_kept.written), (dropped_path, 0 if out_dropped is None else out_dropped.written)):
        if path is not None and not written:  # an empty set has no chunk; none is read back either
            shutil.rmtree(path, ignore_errors=True)
    return out_kept.written, steps, _record(rec)


def _lineage(original: PoseSet | PoseStore) -> Lineage:
    """What the children inherit from the original (a stored set's columns read alone)."""
    if not isinstance(original, PoseStore):
        return Lineage.of(original)
    sample_id = np.asarray(original.column("sample_id"), dtype=np.int64)
    return Lineage(original.column("source"), original.column("subject"), original.column("activity"), sample_id,
                   int(sample_id.max()) + 1, original.layout, original.fps, dict(original.attrs))


def _breed(scale: ScaleDistiller, store: FilePopulation, lo: int, hi: int, rng, n_children: int,
           config: EvolutionConfig, g: int) -> Iterator[ShardResult]:
    """A generation's children in pieces: from the one stream ``rng`` (``shard_size`` None), or
    shard by shard on ``scale.engine``, each shard from its own generator, in shard order."""
    pop = store.population(lo, hi)
    if config.shard_size is None:
        yield from breed_shard_pieces(pop, rng, n_children, config, scale.prior)
        return
    from posecurator.engine import LocalEngine

    engine = LocalEngine() if scale.engine is None else scale.engine
    tasks = (ShardTask(pop, (config.seed, g, k), m) for k, m in enumerate(shard_sizes(n_children, config.shard_size)))
    yield from engine.map(run_shard, tasks, shared=(config, scale.prior))


def _record(rec: dict) -> dict:
    def cat(parts):
        return np.concatenate(parts) if parts else np.zeros(0)

    def cat_err(parts):
        return None if not parts or any(p is None for p in parts) else np.concatenate(parts)

    return {"kept_score": cat(rec["kept_score"]), "dropped_score": cat(rec["dropped_score"]),
            "kept_components": {"novelty": cat(rec["kept_novelty"]), "error": cat_err(rec["kept_error"])},
            "dropped_components": {"novelty": cat(rec["dropped_novelty"]), "error": cat_err(rec["dropped_error"])}}
