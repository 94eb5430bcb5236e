"""Evolutionary augmentation of a pose set (TAG-Net's "evolutionary training data").

One generation (:func:`evolve_generation`): draw parents from the population, make children with
the operators of :mod:`posecurator.augment.operators` (batched, ``batch_size`` children at a
time), drop the children the plausibility prior rejects, and give the survivors fresh sample ids
and their lineage (``parents`` = sample ids of parent A and B (-1 = none), ``operator`` = the
operators applied joined with '+', ``generation``).

Full augmentation (:func:`evolve`): generations until the original set plus its augmentation
reaches ``multiple`` (T = 5, as TAG-Net) times the original size; the last generation is cut so
the total is exactly ``round(T * N)``. By default every generation breeds from the whole current
set (original + every child kept so far) and makes as many children as that set has poses
(``offspring_ratio``), so the set roughly doubles per generation (3 generations for T = 5); the
last generation only makes about as many children as are still needed.
:func:`posecurator.augment.streaming.evolve_to_store` runs the same loop (:func:`evolve_parts`)
and writes the children to disk as they come, holding the population in a scratch file.

Randomness, two schemes (``EvolutionConfig.shard_size``):

* ``shard_size = None`` (one stream: the scheme of earlier versions, and still this config's
  default, so ADD runs and figures made before reproduce byte for byte): one
  ``np.random.Generator`` seeded by ``config.seed`` drives every generation; the result depends on
  the seed and on ``batch_size`` (draws are made per batch). One process makes everything.
* ``shard_size = S`` (sharded): generation ``g`` (0, 1, ... counted within the run) makes its
  children in shards of ``S`` (the last one shorter); shard ``k`` draws from its own generator
  ``np.random.default_rng(np.random.SeedSequence([seed, g, k]))`` (:func:`shard_rng`) and breeds
  from the population as it was at the start of the generation. Shards are independent, so any
  engine may make them in any order on any number of workers (:func:`breed_shard` is the pure
  function they call); the kept children are put together in shard order. The result depends on
  the seed, ``shard_size`` and ``batch_size`` only.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Iterable, Iterator

import numpy as np

from posecurator.augment.operators import (_COMBO_NAMES, CHUNK, OPERATOR_NAMES, GenerationDraws, OperatorConfig, draw_generation,
                                           from_soa, make_children_soa)
from posecurator.augment.plausibility import JointAnglePrior
from posecurator.poseset import PoseSet, TextColumn

# Children per shard where a caller asks for sharded evolution without choosing a size (the
# `augment` command): large enough that a shard's fixed costs (its task, its gather of parents from
# a population file) stay small against its work, small enough that a 10^6-pose generation still
# splits into 16 shards for the workers.
DEFAULT_SHARD_SIZE = 65_536
# Children whose parents are gathered at once from a population held in a file (see breed_shard).
GATHER_CHILDREN = 65_536
_CODE_WEIGHTS = 1 << np.arange(len(OPERATOR_NAMES))


@dataclass
class EvolutionConfig:
    """Options of the evolutionary augmentation.

    ``multiple``: T, target total size as a multiple of the original size (original included).
    ``offspring_ratio``: children made per generation, as a fraction of the population size.
    ``population``: "all" breeds from original + every kept child so far (TAG-Net); "last"
    breeds from the previous generation's kept children only.
    ``max_generations``: stop here even when the target is not reached (a prior that rejects
    nearly everything must not loop forever). ``batch_size``: children made per batched call
    (a few thousand keeps the work in cache; see :mod:`posecurator.augment.operators`).
    ``dtype``: working precision of the operators ("float32": about 2x faster, bone lengths kept
    to ~1e-4 mm; "float64" for bit-level checks). ``min_valid_limbs``: passed to the prior's
    check (None = the prior's own setting, by default all six limbs). ``shard_size``: None = one
    random stream for the whole run (the scheme of earlier versions); a number = children per
    independently seeded shard (see the module docstring; required by parallel engines).
    """

    operators: OperatorConfig = field(default_factory=OperatorConfig)
    multiple: float = 5.0
    offspring_ratio: float = 1.0
    population: str = "all"
    max_generations: int = 50
    batch_size: int = CHUNK
    seed: int = 0
    dtype: str = "float32"
    min_valid_limbs: int | None = None
    shard_size: int | None = None

    def __post_init__(self):
        if isinstance(self.operators, dict):
            self.operators = OperatorConfig(**self.operators)
        if self.multiple < 1:
            raise ValueError(f"multiple must be >= 1 (the original set counts), got {self.multiple}")
        if self.offspring_ratio <= 0:
            raise ValueError(f"offspring_ratio must be > 0, got {self.offspring_ratio}")
        if self.population not in ("all", "last"):
            raise ValueError(f"population must be 'all' or 'last', got {self.population!r}")
        if self.batch_size < 1 or self.max_generations < 1:
            raise ValueError("batch_size and max_generations must be >= 1")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.shard_size is not None and (isinstance(self.shard_size, bool) or int(self.shard_size) < 1):
            raise ValueError(f"shard_size must be >= 1 or null (one random stream), got {self.shard_size!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["operators"]["crossover_joints"] = list(self.operators.crossover_joints)
        d["operators"]["limb_joints"] = list(self.operators.limb_joints)
        if d["shard_size"] is None:
            # added later: left out while it holds its default, so the config files and the cache
            # keys of runs made before it existed stay byte for byte the same
            del d["shard_size"]
        return d


@dataclass
class GenerationStats:
    """What one generation did: children ``made``, ``rejected`` by the prior, ``kept``, seconds; per
    operator combination the children made (``operators``) and kept (``operators_kept``)."""

    generation: int
    population: int
    made: int
    rejected: int
    kept: int
    seconds: float
    operators: dict = field(default_factory=dict)  # operator -> children made with it (before the prior)
    operators_kept: dict = field(default_factory=dict)  # operator -> children the prior kept

    @property
    def rejection_rate(self) -> float:
        return self.rejected / self.made if self.made else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rejection_rate"] = self.rejection_rate
        return d


def next_sample_id(*sets: PoseSet) -> int:
    """One more than the largest sample id in the given sets (0 for empty sets)."""
    ids = [int(s.sample_id.max()) for s in sets if s is not None and len(s)]
    return max(ids) + 1 if ids else 0


# ------------------------------------------------------------------------------- one shard
def shard_rng(seed: int, generation_index: int, shard_index: int) -> np.random.Generator:
    """The generator of shard ``shard_index`` of generation ``generation_index`` (0 = the first
    generation of the run) of a run seeded ``seed``: independent of every other shard's, and the
    same whichever process makes the shard."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(generation_index), int(shard_index)]))


@dataclass
class ShardResult:
    """The children of one shard that the prior kept, in draw order: ``joints`` (k, 17, 3) float32
    mm; ``parent`` / ``partner`` (k,) int64 rows of the population the shard bred from (partner -1
    = no crossover); ``code`` (k,) uint8 operator combination (bit i = OPERATOR_NAMES[i] applied);
    ``made`` children made before the prior; ``operators`` combination name -> children made."""

    joints: np.ndarray
    parent: np.ndarray
    partner: np.ndarray
    code: np.ndarray
    made: int
    operators: dict

    def __len__(self) -> int:
        return len(self.joints)

    def code_counts(self) -> np.ndarray:
        """Kept children per operator combination (index = code)."""
        return np.bincount(self.code, minlength=len(_COMBO_NAMES))


def _localise(population, draws: list[GenerationDraws]) -> tuple[np.ndarray, list[GenerationDraws]]:
    """Gather once the population rows that ``draws`` use (from a population held in a file: one
    pass over it in windows) and renumber the draws into that small local array. The children are
    bit for bit those of the whole population: make_children_soa only reads the rows it indexes."""
    parts = []
    for d in draws:
        parts += [d.parent, d.crossover.partner[d.applied[:, 0]]]
    rows, inverse = np.unique(np.concatenate(parts), return_inverse=True)
    local = population.gather(rows)
    out, pos = [], 0
    for d in draws:
        n, c = len(d), int(d.applied[:, 0].sum())
        parent = inverse[pos:pos + n]
        partner = np.zeros(n, np.int64)
        partner[d.applied[:, 0]] = inverse[pos + n:pos + n + c]
        pos += n + c
        out.append(dataclasses.replace(d, parent=parent, crossover=dataclasses.replace(d.crossover, partner=partner)))
    return local, out


def breed_shard(population, rng: np.random.Generator, n: int, config: EvolutionConfig,
                prior: JointAnglePrior | None) -> ShardResult:
    """Make ``n`` children of ``population`` with ``rng`` and keep those ``prior`` accepts.

    ``population``: (P, 17, 3) joints in mm, or an object with ``len()`` and ``gather(sorted rows)
    -> (k, 17, 3) float32`` (:class:`posecurator.augment.streaming.PopulationFile`: a population in
    a file, read ``GATHER_CHILDREN`` children's parents at a time). Draws are made per batch of
    ``config.batch_size`` children in order, so the result depends on the generator's state, ``n``
    and the batch size only. Pure: the same arguments give the same children in any process.
    The children of :func:`breed_shard_pieces` put together.
    """
    pieces = list(breed_shard_pieces(population, rng, n, config, prior))
    if not pieces:
        return ShardResult(np.zeros((0, 17, 3), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64),
                           np.zeros(0, np.uint8), 0, {})
    if len(pieces) == 1:
        return pieces[0]
    operators: dict = {}
    for r in pieces:
        for name, c in r.operators.items():
            operators[name] = operators.get(name, 0) + c
    return ShardResult(np.concatenate([r.joints for r in pieces]), np.concatenate([r.parent for r in pieces]),
                       np.concatenate([r.partner for r in pieces]), np.concatenate([r.code for r in pieces]),
                       sum(r.made for r in pieces), operators)


def breed_shard_pieces(population, rng: np.random.Generator, n: int, config: EvolutionConfig,
                       prior: JointAnglePrior | None) -> Iterator[ShardResult]:
    """:func:`breed_shard` in pieces of about ``GATHER_CHILDREN`` children made (consecutive, in
    draw order; each with its own ``made`` and ``operators``): what a caller that writes the
    children away as they come holds at a time (ADD's streamed scale distillation)."""
    n = int(n)
    size = len(population)
    need = prior.required_limbs(config.min_valid_limbs) if prior is not None else 0
    in_memory = isinstance(population, np.ndarray)
    starts = list(range(0, n, config.batch_size))
    group = max(1, GATHER_CHILDREN // config.batch_size)
    for g0 in range(0, len(starts), group):
        # draw a group of batches, then make them: the generator is used in the same order as when
        # drawing and making batch by batch (making children draws nothing)
        draws = [draw_generation(rng, size, min(config.batch_size, n - s), config.operators) for s in starts[g0:g0 + group]]
        local, local_draws = (population, draws) if in_memory else _localise(population, draws)
        joints, parent, partner, code = [], [], [], []
        made, op_counts = 0, {}
        for d, ld in zip(draws, local_draws):
            child = make_children_soa(local, ld, dtype=config.dtype)  # (3, 17, m)
            m = len(d)
            made += m
            c = (d.applied @ _CODE_WEIGHTS).astype(np.uint8)
            uniq, counts = np.unique(c, return_counts=True)
            for name, k in zip(_COMBO_NAMES[uniq].tolist(), counts.tolist()):
                op_counts[name] = op_counts.get(name, 0) + k
            ok = prior._check_soa(child, need) if prior is not None else np.ones(m, bool)
            joints.append(from_soa(child, np.float32)[ok])
            parent.append(d.parent[ok])
            partner.append(d.partner[ok])
            code.append(c[ok])
        yield ShardResult(np.concatenate(joints), np.concatenate(parent).astype(np.int64),
                          np.concatenate(partner).astype(np.int64), np.concatenate(code), made, op_counts)


@dataclass
class ShardTask:
    """What one shard needs besides the config and the prior (which every shard shares): the
    population (an array, or a :class:`~posecurator.augment.streaming.PopulationFile` a worker
    opens itself), the key ``(seed, generation index, shard index)`` of its generator, ``n`` children."""

    population: object
    key: tuple
    n: int


def run_shard(shared: tuple, task: ShardTask) -> ShardResult:
    """``breed_shard`` of one task; ``shared = (config, prior)``. What every engine maps over the
    shards of a generation (a module-level function, so a worker process can import it)."""
    config, prior = shared
    return breed_shard(task.population, shard_rng(*task.key), task.n, config, prior)


def shard_sizes(n_children: int, shard_size: int) -> list[int]:
    """Children per shard: ``shard_size`` each, the last one shorter."""
    n_children, shard_size = int(n_children), int(shard_size)
    return [min(shard_size, n_children - s) for s in range(0, n_children, shard_size)]


# ------------------------------------------------------------------------------- one generation
def _operator_column(code: np.ndarray) -> TextColumn:
    return TextColumn.from_codes(code, _COMBO_NAMES)


def _kept_operators(kept_codes: np.ndarray) -> dict:
    """Combination name -> children kept, sorted by name (as np.unique of the names sorts them)."""
    present = np.flatnonzero(kept_codes)
    names = _COMBO_NAMES[present]
    order = np.argsort(names, kind="stable")
    return {str(names[i]): int(kept_codes[present[i]]) for i in order}


def evolve_generation(population: PoseSet, *, n_children: int, rng: np.random.Generator,
                      config: EvolutionConfig | None = None, prior: JointAnglePrior | None = None,
                      generation: int | None = None, next_id: int | None = None) -> tuple[PoseSet, GenerationStats]:
    """Make ``n_children`` children of ``population`` and keep those the prior accepts.

    Returns the kept children (a PoseSet with fresh sample ids from ``next_id``, default one more
    than the population's largest id; lineage filled in; ``generation`` defaults to one more than
    the population's largest) and the generation's statistics. One stream: every child is drawn
    from ``rng`` (as a single shard of :func:`breed_shard`).
    """
    config = EvolutionConfig() if config is None else config
    if population.joints3d is None:
        raise ValueError("evolution needs 3D poses (joints3d)")
    if population.layout != "h36m17":
        raise ValueError(f"evolution works on h36m17 poses, got layout {population.layout!r}")
    t0 = time.perf_counter()
    generation = int(population.generation.max()) + 1 if generation is None else int(generation)
    next_id = next_sample_id(population) if next_id is None else int(next_id)
    if len(population) < 1:
        raise ValueError("the population is empty")
    r = breed_shard(population.joints3d, rng, n_children, config, prior)
    k = len(r)
    sid = population.sample_id
    children = PoseSet(
        joints3d=r.joints,
        source=population.source[r.parent],
        subject=population.subject[r.parent],
        activity=population.activity[r.parent],
        clip=TextColumn.full(k, f"aug-g{generation:03d}"),
        frame=np.arange(k, dtype=np.int32),
        sample_id=next_id + np.arange(k, dtype=np.int64),
        parents=np.stack([sid[r.parent], np.where(r.partner >= 0, sid[np.maximum(r.partner, 0)], -1)], axis=1),
        operator=_operator_column(r.code),
        generation=np.full(k, generation, dtype=np.int16),
        layout=population.layout,
        fps=population.fps,
        attrs=dict(population.attrs),
    )
    stats = GenerationStats(generation=generation, population=len(population), made=r.made, rejected=r.made - k,
                            kept=k, seconds=time.perf_counter() - t0, operators=r.operators,
                            operators_kept=_kept_operators(np.bincount(r.code, minlength=len(_COMBO_NAMES))))
    return children, stats


# ------------------------------------------------------------------------------- full augmentation
@dataclass
class Lineage:
    """What children inherit from the original set of a full augmentation, light enough to send to
    workers: its text columns, sample ids and metadata (not its joints). Children's sample ids
    follow from their population rows: ``next_id + row - len(original)`` for rows past the original
    (rows are appended in output order, and the only generation whose children are cut is the
    last), so parents' ids are computed, never stored."""

    source: TextColumn
    subject: TextColumn
    activity: TextColumn
    sample_id: np.ndarray
    next_id: int
    layout: str
    fps: float
    attrs: dict

    @classmethod
    def of(cls, original: PoseSet) -> "Lineage":
        return cls(original.source, original.subject, original.activity, original.sample_id, next_sample_id(original),
                   original.layout, original.fps, dict(original.attrs))

    def __len__(self) -> int:
        return len(self.sample_id)

    def sid(self, rows: np.ndarray) -> np.ndarray:
        """Sample ids of population rows."""
        n0 = len(self.sample_id)
        return np.where(rows < n0, self.sample_id[np.minimum(rows, max(n0 - 1, 0))], self.next_id + rows - n0)


def children_piece(lineage: Lineage, r: ShardResult, take: int, *, lo: int, root: np.ndarray, generation: int,
                   frame0: int, first_row: int | None = None, first_id: int | None = None, sid=None) -> PoseSet:
    """The first ``take`` kept children of shard result ``r`` as a pose set: bred from population
    rows ``lo + r.parent`` (``root``: the original row each one's first-parent line goes back to);
    ``frame0`` children of their generation come before them.

    Sample ids: placed at population rows ``first_row, first_row + 1, ...`` (ids follow from rows:
    :class:`Lineage`), or ``first_id, first_id + 1, ...`` with ``sid(rows) -> ids`` naming the
    population's ids where they do not follow from rows (ADD's scale distillation drops children
    after numbering them)."""
    if (first_row is None) == (first_id is None):
        raise ValueError("give exactly one of first_row and first_id")
    if first_id is None:
        first_id = lineage.next_id + (first_row - len(lineage))
    sid = lineage.sid if sid is None else sid
    parent = lo + r.parent[:take]
    partner = r.partner[:take]
    return PoseSet(
        joints3d=r.joints[:take],
        source=lineage.source[root], subject=lineage.subject[root], activity=lineage.activity[root],
        clip=TextColumn.full(take, clip_name(generation)),
        frame=frame0 + np.arange(take, dtype=np.int32),
        sample_id=first_id + np.arange(take, dtype=np.int64),
        parents=np.stack([sid(parent), np.where(partner >= 0, sid(lo + np.maximum(partner, 0)), -1)], axis=1),
        operator=_operator_column(r.code[:take]),
        generation=np.full(take, generation, dtype=np.int16),
        layout=lineage.layout, fps=lineage.fps, attrs=dict(lineage.attrs))


def clip_name(generation: int) -> str:
    """The ``clip`` of the children of generation ``generation``."""
    return f"aug-g{int(generation):03d}"


class ArrayPopulation:
    """The evolving population in memory: joints (capacity, 17, 3) float32 of the original then of
    every kept child in order, and per row its *root*, the original row its first-parent line goes
    back to (children inherit source, subject and activity from it). :func:`evolve_parts` breeds
    from ``population(lo, hi)``; the streaming variant keeps the same two arrays in files."""

    def __init__(self, joints0: np.ndarray, capacity: int):
        n0 = len(joints0)
        self.joints = np.empty((max(capacity, n0), 17, 3), np.float32)
        self.joints[:n0] = joints0
        self.root = np.empty(max(capacity, n0), np.int64)
        self.root[:n0] = np.arange(n0)
        self.rows = n0

    def population(self, lo: int, hi: int):
        return self.joints[lo:hi]

    def append(self, joints: np.ndarray, root: np.ndarray) -> None:
        k = len(joints)
        self.joints[self.rows:self.rows + k] = joints
        self.root[self.rows:self.rows + k] = root
        self.rows += k

    def roots(self, rows: np.ndarray) -> np.ndarray:
        return self.root[rows]

    def end_generation(self) -> None:
        pass

    def close(self) -> None:
        pass


def _local_map(fn, items: Iterable, *, shared=None) -> Iterator:
    for item in items:
        yield fn(shared, item)


def evolve_parts(original: PoseSet, store, *, prior: JointAnglePrior | None, config: EvolutionConfig, need: int,
                 engine=None, progress: bool = False, placer=None) -> Iterator[tuple[str, object]]:
    """The loop of a full augmentation, as a stream: yields ``("children", PoseSet)`` pieces of the
    kept children in their final order (a shard's worth or less at a time) and ``("stats",
    GenerationStats)`` after each generation, until ``need`` children are out.

    ``original``: the 3D-only original set (its text columns and sample ids are what children
    inherit); ``store``: the population (:class:`ArrayPopulation`, or the streaming module's file
    store) holding the original's joints in rows ``0..len(original)-1``; ``engine``: anything with
    ``map(fn, items, shared=...)`` yielding results in order (None = in this process).

    ``placer`` (sharded evolution only; :mod:`posecurator.augment.streaming`): makes the shards
    (``placer.breed(tasks, shared)``, results in order, maybe only their summaries) and puts each
    shard's first ``take`` kept children in place itself (``placer.place(...)``, writing the
    population rows and the output); ``placer.end_generation()`` returns once the generation's
    children are all in place. Nothing is yielded for the children then, only the stats.
    Children's sample ids: see :class:`Lineage`.
    """
    n0 = len(original)
    if n0 < 1 and need > 0:
        raise ValueError("the population is empty")
    lineage = Lineage.of(original)
    first_gen = int(original.generation.max()) + 1 if n0 else 1
    sharded = config.shard_size is not None
    if placer is not None and not sharded:
        raise ValueError("a placer needs sharded evolution (shard_size)")
    rng = None if sharded else np.random.default_rng(config.seed)
    shared = (config, prior)

    lo, hi = 0, n0
    have, acceptance = 0, 1.0
    bar = None
    if progress and need:
        from tqdm import tqdm
        bar = tqdm(total=need, desc="evolve", unit="pose", leave=False)
    try:
        for g in range(config.max_generations):
            if have >= need:
                break
            t0 = time.perf_counter()
            size, remaining = hi - lo, need - have
            gen = first_gen + g
            # as many children as the population has, but in the last generation only about as many
            # as are still needed (given the previous generation's acceptance rate)
            n_children = min(math.ceil(config.offspring_ratio * size), math.ceil(remaining / max(acceptance, 0.02) * 1.05) + 16)
            pop = store.population(lo, hi)
            if sharded:
                tasks = (ShardTask(pop, (config.seed, g, k), m) for k, m in enumerate(shard_sizes(n_children, config.shard_size)))
                results = (placer.breed(tasks, shared, generation=gen) if placer is not None
                           else engine.map(run_shard, tasks, shared=shared) if engine is not None
                           else _local_map(run_shard, tasks, shared=shared))
            else:
                results = iter([breed_shard(pop, rng, n_children, config, prior)])
            made, kept, written, op_counts = 0, 0, 0, {}
            kept_codes = np.zeros(len(_COMBO_NAMES), np.int64)
            first_row = n0 + have  # the population row of the generation's first child
            for r in results:
                made += r.made
                for name, c in r.operators.items():
                    op_counts[name] = op_counts.get(name, 0) + c
                kept_codes += r.code_counts()
                take = max(0, min(len(r), remaining - written))
                if placer is not None:
                    placer.place(r, take, lo=lo, first_row=first_row + written, generation=gen, frame0=kept)
                elif take > 0:
                    root = store.roots(lo + r.parent[:take])
                    piece = children_piece(lineage, r, take, lo=lo, root=root, first_row=first_row + written,
                                           generation=gen, frame0=kept)
                    store.append(r.joints[:take], root)
                    yield "children", piece
                written += take
                if bar is not None and take:
                    bar.update(take)
                kept += len(r)
            if placer is not None:
                placer.end_generation()
            st = GenerationStats(generation=gen, population=size, made=made, rejected=made - kept, kept=kept,
                                 seconds=time.perf_counter() - t0, operators=op_counts,
                                 operators_kept=_kept_operators(kept_codes))
            acceptance = kept / made if made else 0.0
            have += written
            if written:
                lo, hi = (lo, hi + written) if config.population == "all" else (hi, hi + written)
                store.end_generation()
            if bar is not None:
                bar.set_postfix(generation=gen, rejected=f"{st.rejection_rate:.0%}")
            if have < need and g == config.max_generations - 1:
                st.operators["_note"] = f"max_generations={config.max_generations} reached with {have} of {need} poses"
            yield "stats", st
    finally:
        if bar is not None:
            bar.close()


def evolve(population: PoseSet, *, prior: JointAnglePrior | None, config: EvolutionConfig | None = None,
           target_size: int | None = None, progress: bool = True) -> tuple[PoseSet, list[GenerationStats]]:
    """Full augmentation: generations until original + augmented reaches ``target_size`` poses.

    ``target_size`` defaults to ``round(config.multiple * len(population))`` (T x the original).
    Returns the augmented poses only (``target_size - len(population)`` of them, fewer only when
    ``max_generations`` ran out; a warning is then recorded in the last stats' operators under
    ``"_note"``) and one :class:`GenerationStats` per generation. In memory; see
    :func:`posecurator.augment.streaming.evolve_to_store` for sets larger than memory.
    """
    config = EvolutionConfig() if config is None else config
    if population.joints3d is None:
        raise ValueError("evolution needs 3D poses (joints3d)")
    if population.layout != "h36m17":
        raise ValueError(f"evolution works on h36m17 poses, got layout {population.layout!r}")
    n0 = len(population)
    target = int(round(config.multiple * n0)) if target_size is None else int(target_size)
    need = max(0, target - n0)
    # children carry 3D only; breed from a 3D-only view so original and children concatenate
    original = population.replace(joints2d=None, visibility=None, camera=None, bbox=None)
    store = ArrayPopulation(original.joints3d, n0 + need)
    pieces, stats = [], []
    for kind, item in evolve_parts(original, store, prior=prior, config=config, need=need, progress=progress):
        (pieces if kind == "children" else stats).append(item)
    if pieces:
        augmented = PoseSet.concatenate(pieces)
    else:
        augmented = population.subset(slice(0, 0))
    return augmented, stats


def operator_names() -> tuple[str, ...]:
    """The four operator names as they appear (joined with '+') in a pose set's ``operator`` column."""
    return OPERATOR_NAMES
