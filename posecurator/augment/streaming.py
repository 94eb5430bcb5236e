"""Evolutionary augmentation written to disk shard by shard, in memory that does not grow with N.

:func:`evolve_to_store` runs the loop of :func:`posecurator.augment.evolution.evolve_parts` and
appends the kept children to a :class:`~posecurator.poseset.PoseSetWriter` as they come. What
breeding needs of the population (every pose bred from so far: the original, then each kept
child) is held in two scratch ``.npy`` files inside the writer's temporary folder:

* ``population-joints3d.npy`` (capacity, 17, 3) float32, rows in output order;
* ``population-root.npy`` (capacity,) int64, per row the original row its first-parent line goes
  back to (children inherit source, subject and activity from it; sample ids follow from the row).

Rows are appended with ``pwrite`` (no mapping in the writing process) and read by
:class:`PopulationFile` in windows of ``WINDOW_BYTES``: each window is memory-mapped, its rows
gathered and the mapping dropped, so a reader's resident set holds one window, never the file
(reading rows at random through one mapping of the whole file makes the kernel map nearly all of
it: 1.9 GB resident for 16k random rows of a 2 GB file, measured here). The scratch files go with
the temporary folder: deleted at the end, removed with it on failure (nothing half-written is
left), and by the next writer of the output if this process was killed.

One random stream (``shard_size`` None): the output is the same, byte for byte, as ``evolve``
followed by ``PoseSet.save`` (tested): the children are appended in exact multiples of the
writer's chunk size. Sharded: the same poses, columns and lineage as ``evolve`` (tested), but each
shard's children are one chunk, written by the process that made them (see the comment above
:class:`ShardFile`), so the chunks follow the shards; the output is the same, byte for byte,
on every engine and number of workers (tested).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posecurator.augment import evolution
from posecurator.augment.evolution import (_COMBO_NAMES, EvolutionConfig, GenerationStats, Lineage, ShardResult, children_piece,
                                           clip_name, evolve_parts)
from posecurator.augment.plausibility import JointAnglePrior
from posecurator.poseset import DEFAULT_CHUNK, PoseSet, PoseSetWriter, PoseStore, write_chunk_file

# bytes mapped at a time when gathering rows from a population file (the reader's resident set)
WINDOW_BYTES = 32 << 20


def read_rows(path: str | os.PathLike, offset: int, dtype, row_shape: tuple, n_rows: int, rows: np.ndarray,
              *, window_bytes: int = WINDOW_BYTES) -> np.ndarray:
    """Rows ``rows`` (sorted, int64) of an array of ``n_rows`` rows stored at ``offset`` of a file,
    gathered one mapped window at a time (see the module docstring)."""
    dtype = np.dtype(dtype)
    row_bytes = dtype.itemsize * int(np.prod(row_shape, dtype=np.int64))
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((len(rows), *row_shape), dtype)
    if not len(rows):
        return out
    per = max(1, window_bytes // row_bytes)
    window = rows // per
    cuts = np.concatenate([[0], np.flatnonzero(np.diff(window)) + 1, [len(rows)]])
    for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist()):
        first = int(window[a]) * per
        last = min(first + per, n_rows)
        mm = np.memmap(path, dtype=dtype, mode="r", offset=offset + first * row_bytes, shape=(last - first, *row_shape))
        out[a:b] = mm[rows[a:b] - first]
        del mm  # unmapped: the window leaves the resident set
    return out


@dataclass
class PopulationFile:
    """Rows ``lo..hi-1`` of a population joints file (what a shard breeds from): small and plain,
    so it travels to worker processes, which open the file themselves (on a cluster the scratch
    folder must then be on a file system every node sees)."""

    path: str
    offset: int
    n_rows: int  # rows the file holds (its capacity)
    lo: int
    hi: int

    def __len__(self) -> int:
        return self.hi - self.lo

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """(k, 17, 3) float32 joints of population rows ``rows`` (sorted, relative to ``lo``)."""
        return read_rows(self.path, self.offset, np.float32, (17, 3), self.n_rows, np.asarray(rows, np.int64) + self.lo)


class FilePopulation:
    """The population of :func:`evolve_to_store` in two scratch files (see the module docstring);
    the same interface as :class:`posecurator.augment.evolution.ArrayPopulation`."""

    def __init__(self, folder: Path, joints0, capacity: int, *, block: int = 65_536, sync: bool = False):
        """``joints0``: the original's (n0, 17, 3) joints, or a stored set
        (:class:`~posecurator.poseset.PoseStore`) whose joints are copied in chunk by chunk."""
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        n0 = len(joints0)
        capacity = max(int(capacity), n0, 1)
        self.capacity = capacity
        self.joints_path = folder / "population-joints3d.npy"
        self.root_path = folder / "population-root.npy"
        # open_memmap writes the header and sizes the (sparse) file; the rows are then written
        # with pwrite, so no mapping of the whole file ever enters this process's resident set
        offsets = []
        for path, dtype, shape in ((self.joints_path, np.float32, (capacity, 17, 3)), (self.root_path, np.int64, (capacity,))):
            mm = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
            offsets.append(int(mm.offset))
            del mm
        self.joints_offset, self.root_offset = offsets
        self._fd_joints = os.open(self.joints_path, os.O_RDWR)
        self._fd_root = os.open(self.root_path, os.O_RDWR)
        self.rows = 0
        self.sync = sync
        if isinstance(joints0, PoseStore):
            for part in joints0.iter_chunks(columns=["joints3d"]):
                self.append(part.joints3d, np.arange(self.rows, self.rows + len(part), dtype=np.int64))
            return
        for start in range(0, n0, block):
            stop = min(start + block, n0)
            self.append(joints0[start:stop], np.arange(start, stop, dtype=np.int64))

    def population(self, lo: int, hi: int) -> PopulationFile:
        return PopulationFile(str(self.joints_path), self.joints_offset, self.capacity, lo, hi)

    def append(self, joints: np.ndarray, root: np.ndarray) -> None:
        k = len(joints)
        if self.rows + k > self.capacity:
            raise ValueError(f"population file full ({self.capacity} rows)")
        _pwrite_all(self._fd_joints, np.ascontiguousarray(joints, np.float32), self.joints_offset + self.rows * 17 * 3 * 4)
        _pwrite_all(self._fd_root, np.ascontiguousarray(root, np.int64), self.root_offset + self.rows * 8)
        self.rows += k

    def advance(self, k: int) -> None:
        """Count ``k`` rows appended by another process (:func:`place_children`)."""
        if self.rows + k > self.capacity:
            raise ValueError(f"population file full ({self.capacity} rows)")
        self.rows += int(k)

    def files(self) -> "PopulationFiles":
        return PopulationFiles(str(self.joints_path), self.joints_offset, str(self.root_path), self.root_offset,
                               self.capacity, self.sync)

    def end_generation(self) -> None:
        """The rows appended so far are bred from next: with ``sync`` (workers in other processes,
        maybe on other nodes of a shared file system) they are flushed to the file first; on one
        machine every process sees them through the page cache anyway."""
        if self.sync:
            os.fdatasync(self._fd_joints)

    def roots(self, rows: np.ndarray) -> np.ndarray:
        return self.files().roots(rows)

    def close(self) -> None:
        for name in ("_fd_joints", "_fd_root"):
            fd = getattr(self, name, None)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class PopulationFiles:
    """Where a :class:`FilePopulation` keeps its rows, for processes that write or read them."""

    joints_path: str
    joints_offset: int
    root_path: str
    root_offset: int
    capacity: int
    sync: bool

    def roots(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        order = np.argsort(rows, kind="stable")
        out = np.empty(len(rows), np.int64)
        out[order] = read_rows(self.root_path, self.root_offset, np.int64, (), self.capacity, rows[order])
        return out

    def write(self, first_row: int, joints: np.ndarray, root: np.ndarray) -> None:
        """Rows ``first_row...`` (a range no other process writes)."""
        if first_row + len(joints) > self.capacity:
            raise ValueError(f"population file full ({self.capacity} rows)")
        for path, offset, arr in ((self.joints_path, self.joints_offset + first_row * 17 * 3 * 4, np.ascontiguousarray(joints, np.float32)),
                                  (self.root_path, self.root_offset + first_row * 8, np.ascontiguousarray(root, np.int64))):
            fd = os.open(path, os.O_RDWR)
            try:
                _pwrite_all(fd, arr, offset)
                if self.sync:  # read next by workers on other nodes of a shared file system
                    os.fdatasync(fd)
            finally:
                os.close(fd)


def _pwrite_all(fd: int, arr: np.ndarray, offset: int) -> None:
    view = memoryview(arr.reshape(-1)).cast("B")
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)


class Rechunker:
    """Appends pose sets to a writer in exact multiples of its chunk size, so the chunks on disk are
    those of one ``save`` of everything, however the parts were cut."""

    def __init__(self, writer: PoseSetWriter, chunk_size: int):
        self.writer, self.chunk_size = writer, int(chunk_size)
        self.pending: list[PoseSet] = []
        self.count = 0
        self.written = 0

    def add(self, ps: PoseSet) -> None:
        if not len(ps):
            return
        self.pending.append(ps)
        self.count += len(ps)
        if self.count >= self.chunk_size:
            joined = self.pending[0] if len(self.pending) == 1 else PoseSet.concatenate(self.pending)
            m = (self.count // self.chunk_size) * self.chunk_size
            self._append(joined.subset(slice(0, m)) if m < len(joined) else joined)
            self.pending = [joined.subset(slice(m, None))] if m < len(joined) else []
            self.count -= m

    def flush(self) -> None:
        if self.pending:
            self._append(self.pending[0] if len(self.pending) == 1 else PoseSet.concatenate(self.pending))
            self.pending, self.count = [], 0

    def _append(self, ps: PoseSet) -> None:
        self.writer.append(ps)
        self.written += len(ps)


# ----------------------------------------------------------------------------- children placed by workers
# Sharded evolution writes each shard's kept children as one chunk of the output, in two steps per
# shard: breed (a shard's children, kept in the process that made them) and place (once the rows
# before it are known, in shard order: the children's chunk file with their sample ids, lineage and
# text codes, and their rows of the population file). On a parallel engine both steps are tasks, so
# the children never pass through the driver, which only claims chunk names, counts and renames:
# breeding writes the children to a scratch file and returns a summary; placing reads that file.
# In this process both steps run one after the other with the children in memory. Either way the
# same `place_children` writes the same bytes, so the output does not depend on the engine.
@dataclass
class ShardFile:
    """A shard's kept children left in a scratch file by :func:`breed_shard_to_file` (raw arrays:
    see ``CHILD_ARRAYS``): what the loop needs of them (counts) without the children themselves."""

    path: str
    made: int
    operators: dict
    kept: int
    counts: np.ndarray

    def __len__(self) -> int:
        return self.kept

    def code_counts(self) -> np.ndarray:
        return self.counts


# a scratch shard file: the raw bytes of these arrays one after the other (k rows each; k is in
# the ShardFile that names the file), read back by the process that places them; the fields of
# ShardResult that hold the children (ADD's streamed distillation keeps them in the same layout)
CHILD_ARRAYS = (("joints", np.float32, (17, 3)), ("parent", np.int64, ()), ("partner", np.int64, ()), ("code", np.uint8, ()))


def breed_shard_to_file(shared: tuple, item: tuple) -> ShardFile:
    """``run_shard`` of ``item = (task, scratch path)``, the kept children written to the path."""
    task, path = item
    r = evolution.run_shard(shared, task)
    with open(path, "wb") as f:
        for name, dtype, _ in CHILD_ARRAYS:
            f.write(memoryview(np.ascontiguousarray(getattr(r, name), dtype).reshape(-1)).cast("B"))
    return ShardFile(path, r.made, r.operators, len(r), r.code_counts())


def _read_shard_file(path: str, k: int) -> ShardResult:
    arrays = {}
    with open(path, "rb") as f:
        for name, dtype, shape in CHILD_ARRAYS:
            count = k * int(np.prod(shape, dtype=np.int64))
            arrays[name] = np.fromfile(f, dtype=dtype, count=count).reshape(k, *shape)
            if arrays[name].size != count:
                raise ValueError(f"{path}: scratch shard file is short")
    return ShardResult(**arrays, made=0, operators={})


@dataclass
class ChildTarget:
    """Where :func:`place_children` puts children: the output's temporary folder and its text
    tables (frozen: every string a child can hold reserved), the lineage of the original set,
    and the population files."""

    folder: str
    tables: dict
    lineage: Lineage
    population: PopulationFiles


@dataclass
class PlaceTask:
    """One shard's placing: its result (in memory, or a :class:`ShardFile`), how many of
    its children go out (``take``; 0 = none: past the end of the augmentation), and where."""

    shard: object
    take: int
    lo: int
    first_row: int
    generation: int
    frame0: int
    chunk: str | None


def place_children(target: ChildTarget, task: PlaceTask) -> tuple[int, int]:
    """Write a shard's first ``take`` kept children as chunk ``task.chunk`` of the output and as
    population rows ``first_row...``; remove its scratch file. Returns ``(rows, format version)``."""
    if isinstance(task.shard, ShardFile):
        r = _read_shard_file(task.shard.path, task.shard.kept)
        os.remove(task.shard.path)
    else:
        r = task.shard
    if task.take <= 0:
        return 0, 1
    root = target.population.roots(task.lo + r.parent[:task.take])
    piece = children_piece(target.lineage, r, task.take, lo=task.lo, root=root, first_row=task.first_row,
                           generation=task.generation, frame0=task.frame0)
    version = write_chunk_file(Path(target.folder) / task.chunk, piece, target.tables, frozen=True)
    target.population.write(task.first_row, r.joints[:task.take], root)
    return task.take, version


class _ChildPlacer:
    """The placer of :func:`~posecurator.augment.evolution.evolve_parts` for sharded evolution
    into a :class:`PoseSetWriter` (see the comment above :class:`ShardFile`). ``engine``: a
    parallel engine (both steps as its tasks, children through scratch files in ``scratch``), or
    None (both steps here)."""

    def __init__(self, writer: PoseSetWriter, store: FilePopulation, lineage: Lineage, *, engine=None,
                 scratch: Path | None = None):
        self.writer, self.store, self.lineage = writer, store, lineage
        self.engine, self.scratch = engine, scratch
        self.children = 0
        self.queue: list[PlaceTask] = []
        # every string a child can hold, coded before any child is written (the same codes on
        # every engine); each generation's clip name is added when it starts
        for name in ("source", "subject", "activity"):
            writer.reserve_strings(name, getattr(lineage, name).table.tolist())
        writer.reserve_strings("operator", _COMBO_NAMES.tolist())
        self._target: ChildTarget | None = None

    def _start(self, generation: int) -> None:
        self.writer.reserve_strings("clip", [clip_name(generation)])
        self._target = ChildTarget(str(self.writer.folder), self.writer.frozen_tables(), self.lineage, self.store.files())

    def breed(self, tasks, shared, *, generation: int):
        self._start(generation)
        if self.engine is None:
            return (evolution.run_shard(shared, t) for t in tasks)
        items = ((t, str(self.scratch / f"shard-g{generation:03d}-{t.key[2]:06d}.bin")) for t in tasks)
        return self.engine.map(breed_shard_to_file, items, shared=shared)

    def place(self, r, take: int, *, lo: int, first_row: int, generation: int, frame0: int) -> None:
        chunk = self.writer.claim_chunk() if take > 0 else None
        task = PlaceTask(r, take, lo, first_row, generation, frame0, chunk)
        self.store.advance(take)
        self.children += take
        if self.engine is None:
            if take > 0:
                self.writer.register_chunk(chunk, *place_children(self._target, task))
        else:
            self.queue.append(task)

    def end_generation(self) -> None:
        if self.engine is None or not self.queue:
            return
        queue, self.queue = self.queue, []
        for task, (n, version) in zip(queue, self.engine.map(place_children, queue, shared=self._target)):
            if task.chunk is not None:
                self.writer.register_chunk(task.chunk, n, version)


def evolve_to_store(population: PoseSet, output_path: str | os.PathLike, *, prior: JointAnglePrior | None,
                    config: EvolutionConfig | None = None, target_size: int | None = None, include_original: bool = True,
                    engine=None, chunk_size: int = DEFAULT_CHUNK, overwrite: bool = True,
                    progress: bool = False) -> tuple[int, int, list[GenerationStats]]:
    """Full augmentation of ``population`` (as :func:`~posecurator.augment.evolution.evolve`)
    written to the pose-set folder ``output_path``: the original's 3D poses first (unless
    ``include_original`` is False), then the kept children in order. Returns ``(rows written,
    children written, stats per generation)``.

    ``engine``: a :mod:`posecurator.engine` engine that makes the shards of each generation
    (sharded evolution, ``config.shard_size`` set, only; None = in this process). Memory: the
    original set, one shard's children per task in flight, one chunk of output and one window of
    the population file, whatever the size of the output. The output is replaced atomically on
    success and untouched on failure.
    """
    config = EvolutionConfig() if config is None else config
    if population.joints3d is None:
        raise ValueError("evolution needs 3D poses (joints3d)")
    if population.layout != "h36m17":
        raise ValueError(f"evolution works on h36m17 poses, got layout {population.layout!r}")
    if engine is not None and config.shard_size is None and getattr(engine, "parallel", False):
        raise ValueError("a parallel engine needs sharded evolution (shard_size); one random stream runs in one process")
    n0 = len(population)
    target = int(round(config.multiple * n0)) if target_size is None else int(target_size)
    need = max(0, target - n0)
    # children carry 3D only (what `evolve` + concatenate keep of the original: no 2D, cameras or boxes)
    original = population.replace(joints2d=None, visibility=None, camera=None, bbox=None)
    stats: list[GenerationStats] = []
    children = 0
    sharded = config.shard_size is not None
    with PoseSetWriter(output_path, layout=original.layout, fps=original.fps, chunk_size=chunk_size, overwrite=overwrite,
                       attrs=dict(original.attrs)) as writer:
        if include_original:
            writer.cameras = list(population.cameras)
        out = Rechunker(writer, chunk_size)
        if include_original:
            out.add(original)
            if sharded:
                out.flush()  # the children's chunks follow, one per shard
        # scratch inside the writer's temporary folder: it goes with that folder on failure or kill
        # (absolute: workers of a parallel engine may run in another folder)
        store = FilePopulation(writer.scratch_dir("scratch-population"), original.joints3d, n0 + need,
                               sync=bool(getattr(engine, "address", None)))
        placer = None
        if sharded:
            parallel = engine is not None and getattr(engine, "parallel", False)
            placer = _ChildPlacer(writer, store, Lineage.of(original), engine=engine if parallel else None,
                                  scratch=store.folder if parallel else None)
        try:
            for kind, item in evolve_parts(original, store, prior=prior, config=config, need=need,
                                           engine=None if sharded else engine, progress=progress, placer=placer):
                if kind == "children":
                    out.add(item)
                    children += len(item)
                else:
                    stats.append(item)
        finally:
            store.close()  # before the writer renames its folder into place
        out.flush()
        if placer is not None:
            children = placer.children
    return out.written + children if placer is not None else out.written, children, stats
