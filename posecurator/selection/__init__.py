"""Choosing which samples to train on: ADD's quality and scale distillation (:mod:`.distill`)."""

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

__all__ = [
    "QualityDistiller", "ScaleDistiller", "ScaleStep", "SearchResult", "combine_scores",
    "lowest_fraction_mask", "normalize_errors", "multiscale_multiplier_search", "optuna_search",
    "multiplier_objective", "params_objective",
]
