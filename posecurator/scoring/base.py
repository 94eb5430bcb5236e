"""The one interface every per-sample score uses, so any pipeline can use any score.

A scorer feels like a scikit-learn estimator: options in ``__init__`` (keyword-only), ``fit`` on a
reference pose set learns state (attributes with a trailing underscore), ``score_samples`` returns
one float per sample. Every scorer states its direction in ``higher_means``: by convention
**higher = more unusual / harder / worse for the reference** (so "keep the lowest" keeps the most
typical and "take the top bins" takes the hardest), and its range in ``score_range``.

=====================  ======================================  ===========================  ==========
name                   class                                   higher means                 layer user
=====================  ======================================  ===========================  ==========
``density``            scoring.density.DensityScorer           less probable under the      ADD
                                                               reference (1 - prob)
``lifter_error``       scoring.lifter_error.LifterErrorScorer  reference lifter errs more   ADD
``vae_recon``          scoring.vae.VAEReconstructionScorer     harder (VAE reconstructs     VAE
                                                               it worse)
``reprojection_error`` scoring.reprojection                    the estimator's prediction   PoseSyn
                                                               fits the 2D worse (EEM)
``target_coverage``    scoring.target2d                        farther from anything the    target-aware
                                                               target's unlabeled 2D shows  selection
``target_novelty``     scoring.target2d                        less shown by the target     target-aware
                                                               than by the source           selection
=====================  ======================================  ===========================  ==========

Out-of-sample scores of a training set (each pose scored by a model that never saw its clip):
:class:`posecurator.scoring.crossfit.CrossFitScorer` wraps any of them.

Scorers that need a trained model (``lifter_error``, ``vae_recon``) take it by injection
(``predict_fn`` / ``fit_fn`` + ``errors_fn``): the scoring layer sits below models and train and never
imports them. Build those with the higher layers' helpers
(:func:`posecurator.pipelines.add.lifter_error_scorer`,
:func:`posecurator.train.vae_trainer.make_vae_scorer` / ``load_vae_scorer``), as the CLI does.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from posecurator.poseset import PoseSet


class PoseScorer:
    """Base class. Subclasses implement ``fit`` and ``score_samples``."""

    name: str = "base"
    higher_means: str = "more unusual / harder"
    score_range: tuple[float, float] = (0.0, float("inf"))

    def fit(self, reference: PoseSet) -> "PoseScorer":
        return self

    def score_samples(self, poses: PoseSet) -> np.ndarray:
        """(N,) float64 scores, higher = more unusual / harder / worse (see ``higher_means``)."""
        raise NotImplementedError

    def fit_score(self, reference: PoseSet, poses: PoseSet | None = None) -> np.ndarray:
        return self.fit(reference).score_samples(reference if poses is None else poses)

    def _check_fitted(self, *attrs: str) -> None:
        missing = [a for a in attrs if not hasattr(self, a)]
        if missing:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")


SCORERS: dict[str, Callable[..., PoseScorer]] = {}


def register_scorer(name: str):
    """Class decorator: make a scorer available by name (CLI `posecurator score --scorer NAME`)."""

    def deco(cls):
        cls.name = name
        SCORERS[name] = cls
        return cls

    return deco


def get_scorer(name: str, **options) -> PoseScorer:
    if name not in SCORERS:
        # scorers register themselves on import
        import posecurator.scoring.registry  # noqa: F401
    if name not in SCORERS:
        raise ValueError(f"unknown scorer {name!r}; known: {', '.join(sorted(SCORERS))}")
    return SCORERS[name](**options)
