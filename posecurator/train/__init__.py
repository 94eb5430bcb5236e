"""Training and evaluation of the 2D-to-3D lifter.

- :mod:`~posecurator.train.pairs`: 2D-3D pairs through random training cameras and the fixed
  evaluation rig of ../shared/BENCHMARK.md;
- :mod:`~posecurator.train.trainer`: :class:`TrainConfig` (presets "fast", "default", "large") and
  :class:`LifterTrainer` (validation split by clip, best/last checkpoints, resume, sampler hook);
- :mod:`~posecurator.train.checkpoint`: run folders (safetensors + JSON), :func:`load_lifter`;
- :mod:`~posecurator.train.evaluate`: :func:`evaluate_run`, :func:`predict`.
"""

from posecurator.train.checkpoint import load_lifter, save_run
from posecurator.train.evaluate import evaluate_model, evaluate_run, predict
from posecurator.train.pairs import evaluation_pairs, make_pairs, sample_training_pairs
from posecurator.train.trainer import LifterTrainer, TrainConfig, split_by_clip

__all__ = [
    "LifterTrainer", "TrainConfig", "split_by_clip", "load_lifter", "save_run", "evaluate_run",
    "evaluate_model", "predict", "make_pairs", "sample_training_pairs", "evaluation_pairs",
]
