"""``vae_recon``: pose difficulty as a pose VAE's reconstruction error (paper 002, Eq. 2).

The scorer works from injected functions, so this layer never imports the model or its training
(scoring sits below models / train):

* ``fit_fn(reference) -> (model, history)`` trains a VAE on the reference poses;
* ``errors_fn(model, poses) -> (N,)`` its reconstruction errors of a pose set;
* ``save_fn(model, config, model_dir, history=...)`` (optional) writes a fitted model;
* or ``model=`` a VAE already trained (then ``fit`` is not needed).

Build it with :func:`posecurator.train.vae_trainer.make_vae_scorer` (train on ``fit``) or
:func:`posecurator.train.vae_trainer.load_vae_scorer` (a saved VAE); the CLI
(``posecurator score --scorer vae_recon``) does. With the pose VAE of
:mod:`posecurator.models.pose_vae` the score is ``sum_j ||y_j - y^_j||^2`` on normalised poses
(unit RMS size, root-relative), decoding the mean latent code, so scores are deterministic.
Higher = harder (the VAE reconstructs the pose worse: less support, more complexity in the
reference).

``space="3d"`` scores ``joints3d`` (H36M17); ``space="2d"`` scores ``joints2d`` with their
visibility (COCO17: joints with v = 0 are left out), or, for a 3D set without 2D, its projection
through one deterministic camera per sample_id. Poses with fewer than
``posecurator.models.pose_vae.MIN_VISIBLE_JOINTS`` (4) labelled joints score NaN (drop them before binning).
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from posecurator.poseset import PoseSet
from posecurator.scoring.base import PoseScorer, register_scorer

BUILD_HINT = ("build it with posecurator.train.vae_trainer.make_vae_scorer(...) (trains on fit) or "
              "load_vae_scorer(MODEL_DIR), or pass fit_fn / errors_fn / model")


@register_scorer("vae_recon")
class VAEReconstructionScorer(PoseScorer):
    """Pose VAE reconstruction error (Eq. 2) from injected functions (see the module docstring).

    Options: ``fit_fn``, ``errors_fn``, ``save_fn``, ``model`` (a trained VAE: the scorer is then
    fitted), ``config`` (the VAE's options, opaque here: passed back to ``save_fn``), ``space``
    ("3d" | "2d", what the VAE sees).

    Learned state: ``model_`` (the VAE), ``config_`` (its options), ``history_`` (training history).
    """

    higher_means = "harder (the pose VAE reconstructs it worse)"
    score_range = (0.0, float("inf"))

    def __init__(self, *, fit_fn: Callable[[PoseSet], tuple[Any, dict]] | None = None,
                 errors_fn: Callable[[Any, PoseSet], np.ndarray] | None = None,
                 save_fn: Callable[..., Any] | None = None, model: Any = None, config: Any = None,
                 space: str = "3d"):
        if space not in ("2d", "3d"):
            raise ValueError(f"space must be '2d' or '3d', got {space!r}")
        self.fit_fn = fit_fn
        self.errors_fn = errors_fn
        self.save_fn = save_fn
        self.model = model
        self.config = config
        self.space = space
        if model is not None:  # a trained VAE: fitted as constructed
            self.model_, self.config_, self.history_ = model, config, {}

    @property
    def stream_rows(self) -> int | None:
        """Rows the injected ``errors_fn`` scores at a time (its ``batch_size`` keyword, when it is
        a partial with one): a stream keeps its blocks multiples of it (posecurator.scoring.stream)."""
        size = getattr(self.errors_fn, "keywords", {}).get("batch_size")
        return int(size) if isinstance(size, int) and size > 0 else None

    def fit(self, reference: PoseSet) -> "VAEReconstructionScorer":
        """Train the VAE on ``reference`` with ``fit_fn``."""
        if self.fit_fn is None:
            raise RuntimeError(f"vae_recon scorer has no fit_fn to train a VAE; {BUILD_HINT}")
        self.model_, self.history_ = self.fit_fn(reference)
        self.config_ = self.config
        return self

    def save(self, model_dir: str | os.PathLike) -> None:
        """Write the fitted VAE to ``model_dir`` with ``save_fn``."""
        self._check_fitted("model_")
        if self.save_fn is None:
            raise RuntimeError(f"vae_recon scorer has no save_fn; {BUILD_HINT}")
        self.save_fn(self.model_, self.config_, model_dir, history=getattr(self, "history_", None))

    def score_samples(self, poses: PoseSet) -> np.ndarray:
        """(N,) float64 reconstruction errors (unitless, normalised poses); higher = harder; NaN for
        poses with too few labelled joints."""
        self._check_fitted("model_")
        if self.errors_fn is None:
            raise RuntimeError(f"vae_recon scorer has no errors_fn; {BUILD_HINT}")
        scores = np.asarray(self.errors_fn(self.model_, poses), dtype=np.float64)
        if scores.shape != (len(poses),):
            raise ValueError(f"errors_fn returned {scores.shape} for {len(poses)} poses; expected ({len(poses)},)")
        return scores
