"""Evolutionary 2D-3D pair augmentation (TAG-Net operators) and its plausibility prior.

* :mod:`~posecurator.augment.operators`: batched crossover, limb mutation, bone-length mutation,
  global rotation on H36M17 poses (bone-vector representation, local frames).
* :mod:`~posecurator.augment.reference`: the same operators as plain per-pose loops (tests).
* :mod:`~posecurator.augment.plausibility`: :class:`JointAnglePrior`, learned from real poses.
* :mod:`~posecurator.augment.evolution`: one generation / full augmentation to T x the data.
"""

from posecurator.augment.evolution import EvolutionConfig, GenerationStats, evolve, evolve_generation, next_sample_id
from posecurator.augment.operators import OPERATOR_NAMES, OperatorConfig, draw_generation, make_children
from posecurator.augment.plausibility import LIMBS, JointAnglePrior

__all__ = [
    "OperatorConfig", "OPERATOR_NAMES", "draw_generation", "make_children",
    "JointAnglePrior", "LIMBS",
    "EvolutionConfig", "GenerationStats", "evolve", "evolve_generation", "next_sample_id",
]
