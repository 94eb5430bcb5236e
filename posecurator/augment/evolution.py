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

Randomness: one ``np.random.Generator`` seeded by ``config.seed`` drives everything; the result
depends on the seed and on ``batch_size`` (draws are made per batch) and on nothing else.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from posecurator.augment.operators import _COMBO_NAMES, CHUNK, OPERATOR_NAMES, OperatorConfig, draw_generation, from_soa, make_children_soa
from posecurator.augment.plausibility import JointAnglePrior
from posecurator.poseset import PoseSet


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
    check (None = the prior's own setting, by default all six limbs).
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

    def to_dict(self) -> dict:
        d = asdict(self)
        d["operators"]["crossover_joints"] = list(self.operators.crossover_joints)
        d["operators"]["limb_joints"] = list(self.operators.limb_joints)
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


def evolve_generation(population: PoseSet, *, n_children: int, rng: np.random.Generator,
                      config: EvolutionConfig | None = None, prior: JointAnglePrior | None = None,
                      generation: int | None = None, next_id: int | None = None) -> tuple[PoseSet, GenerationStats]:
    """Make ``n_children`` children of ``population`` and keep those the prior accepts.

    Returns the kept children (a PoseSet with fresh sample ids from ``next_id``, default one more
    than the population's largest id; lineage filled in; ``generation`` defaults to one more than
    the population's largest) and the generation's statistics.
    """
    config = EvolutionConfig() if config is None else config
    if population.joints3d is None:
        raise ValueError("evolution needs 3D poses (joints3d)")
    if population.layout != "h36m17":
        raise ValueError(f"evolution works on h36m17 poses, got layout {population.layout!r}")
    t0 = time.perf_counter()
    generation = int(population.generation.max()) + 1 if generation is None else int(generation)
    next_id = next_sample_id(population) if next_id is None else int(next_id)
    pop_joints = population.joints3d
    joints, parent, partner, operator = [], [], [], []
    made, op_counts = 0, {}
    need = prior.required_limbs(config.min_valid_limbs) if prior is not None else 0
    for start in range(0, int(n_children), config.batch_size):
        n = min(config.batch_size, int(n_children) - start)
        draws = draw_generation(rng, len(population), n, config.operators)
        child = make_children_soa(pop_joints, draws, dtype=config.dtype)  # (3, 17, n)
        made += n
        code, counts = np.unique(draws.applied @ (1 << np.arange(len(OPERATOR_NAMES))), return_counts=True)
        for name, c in zip(_COMBO_NAMES[code].tolist(), counts.tolist()):
            op_counts[name] = op_counts.get(name, 0) + c
        ok = prior._check_soa(child, need) if prior is not None else np.ones(n, bool)
        joints.append(from_soa(child, np.float32)[ok])
        parent.append(draws.parent[ok])
        partner.append(draws.partner[ok])
        operator.append(draws.operator[ok])
    joints = np.concatenate(joints) if joints else np.zeros((0, 17, 3), np.float32)
    parent = np.concatenate(parent) if parent else np.zeros(0, np.int64)
    partner = np.concatenate(partner) if partner else np.zeros(0, np.int64)
    operator = np.concatenate(operator) if operator else np.zeros(0, str)
    k = len(joints)
    sid = population.sample_id
    children = PoseSet(
        joints3d=joints,
        source=population.source[parent],
        subject=population.subject[parent],
        activity=population.activity[parent],
        clip=np.full(k, f"aug-g{generation:03d}"),
        frame=np.arange(k, dtype=np.int32),
        sample_id=next_id + np.arange(k, dtype=np.int64),
        parents=np.stack([sid[parent], np.where(partner >= 0, sid[np.maximum(partner, 0)], -1)], axis=1),
        operator=operator,
        generation=np.full(k, generation, dtype=np.int16),
        layout=population.layout,
        fps=population.fps,
        attrs=dict(population.attrs),
    )
    kept_names, kept_counts = np.unique(operator, return_counts=True)
    stats = GenerationStats(generation=generation, population=len(population), made=made, rejected=made - k,
                            kept=k, seconds=time.perf_counter() - t0, operators=op_counts,
                            operators_kept={str(n): int(c) for n, c in zip(kept_names.tolist(), kept_counts.tolist())})
    return children, stats


def evolve(population: PoseSet, *, prior: JointAnglePrior | None, config: EvolutionConfig | None = None,
           target_size: int | None = None, progress: bool = True) -> tuple[PoseSet, list[GenerationStats]]:
    """Full augmentation: generations until original + augmented reaches ``target_size`` poses.

    ``target_size`` defaults to ``round(config.multiple * len(population))`` (T x the original).
    Returns the augmented poses only (``target_size - len(population)`` of them, fewer only when
    ``max_generations`` ran out; a warning is then recorded in the last stats' operators under
    ``"_note"``) and one :class:`GenerationStats` per generation.
    """
    config = EvolutionConfig() if config is None else config
    rng = np.random.default_rng(config.seed)
    n0 = len(population)
    target = int(round(config.multiple * n0)) if target_size is None else int(target_size)
    need = max(0, target - n0)
    kept_sets: list[PoseSet] = []
    stats: list[GenerationStats] = []
    have, acceptance = 0, 1.0
    # children carry 3D only; breed from a 3D-only view so original and children concatenate
    pop = population.replace(joints2d=None, visibility=None, camera=None)
    next_id = next_sample_id(population)
    first_gen = int(population.generation.max()) + 1
    bar = None
    if progress and need:
        from tqdm import tqdm
        bar = tqdm(total=need, desc="evolve", unit="pose", leave=False)
    for g in range(config.max_generations):
        if have >= need:
            break
        remaining = need - have
        # as many children as the population has, but in the last generation only about as many
        # as are still needed (given the previous generation's acceptance rate)
        n_children = min(math.ceil(config.offspring_ratio * len(pop)),
                         math.ceil(remaining / max(acceptance, 0.02) * 1.05) + 16)
        children, st = evolve_generation(pop, n_children=n_children, rng=rng, config=config, prior=prior,
                                         generation=first_gen + g, next_id=next_id)
        stats.append(st)
        acceptance = st.kept / st.made if st.made else 0.0
        if len(children) > remaining:
            children = children.subset(slice(0, remaining))
        next_id += st.kept
        have += len(children)
        if len(children):
            kept_sets.append(children)
            pop = PoseSet.concatenate([pop, children]) if config.population == "all" else children
        if bar is not None:
            bar.update(len(children))
            bar.set_postfix(generation=first_gen + g, rejected=f"{st.rejection_rate:.0%}")
    if bar is not None:
        bar.close()
    if have < need and stats:
        stats[-1].operators["_note"] = f"max_generations={config.max_generations} reached with {have} of {need} poses"
    if kept_sets:
        augmented = PoseSet.concatenate(kept_sets)
    else:
        augmented = population.subset(slice(0, 0))
    return augmented, stats


def operator_names() -> tuple[str, ...]:
    """The four operator names as they appear (joined with '+') in a pose set's ``operator`` column."""
    return OPERATOR_NAMES
