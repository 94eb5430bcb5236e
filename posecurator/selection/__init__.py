"""Choosing which samples to train on: ADD's quality and scale distillation (:mod:`.distill`),
PoseSyn's hard and easy top-K sets (:mod:`.topk`) and its 3D-error filter (:mod:`.filter3d`)."""

from posecurator.selection.distill import (
    QualityDistiller,
    ScaleDistiller,
    ScaleStep,
    SearchResult,
    combine_scores,
    lowest_fraction_mask,
    multiplier_objective,
    multiscale_multiplier_search,
    normalize_errors,
    optuna_search,
    params_objective,
)
from posecurator.selection.filter3d import filter_by_3d_error, tau_sweep
from posecurator.selection.topk import HardEasySelection, select_hard_easy

__all__ = [
    "QualityDistiller", "ScaleDistiller", "ScaleStep", "SearchResult", "combine_scores",
    "lowest_fraction_mask", "normalize_errors", "multiscale_multiplier_search", "optuna_search",
    "multiplier_objective", "params_objective", "HardEasySelection", "select_hard_easy", "filter_by_3d_error", "tau_sweep",
]
