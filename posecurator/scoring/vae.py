"""``vae_recon``: pose difficulty as a pose VAE's reconstruction error (paper 002, Eq. 2).

``fit(reference)`` trains a :class:`posecurator.models.pose_vae.PoseVAE` on the reference poses
(or :meth:`VAEReconstructionScorer.from_pretrained` loads one); ``score_samples(poses)`` returns
``sum_j ||y_j - y^_j||^2`` on normalised poses (unit RMS size, root-relative; see the model
module), decoding the mean latent code, so scores are deterministic. Higher = harder (the VAE
reconstructs the pose worse: less support, more complexity in the reference).

``space="3d"`` scores ``joints3d`` (H36M17); ``space="2d"`` scores ``joints2d`` with their
visibility (COCO17: joints with v = 0 are left out), or, for a 3D set without 2D, its projection
through one deterministic camera per sample_id. Poses with fewer than
``posecurator.models.pose_vae.MIN_VISIBLE_JOINTS`` (4) labelled joints score NaN (drop them before binning).
"""

from __future__ import annotations

import os

import numpy as np

from posecurator.poseset import PoseSet
from posecurator.scoring.base import PoseScorer, register_scorer


def _trainer():
    # imported on use: registering the scorer must not pull in the whole training package
    from posecurator.train import vae_trainer

    return vae_trainer


@register_scorer("vae_recon")
class VAEReconstructionScorer(PoseScorer):
    """Pose VAE reconstruction error (Eq. 2). Options: ``space`` ("3d" | "2d"), ``config`` (a
    :class:`VAEConfig` or dict) and/or any VAEConfig field as a keyword (``epochs=10``, ...).

    Learned state: ``model_`` (PoseVAE), ``config_`` (VAEConfig), ``history_`` (training history).
    """

    higher_means = "harder (the pose VAE reconstructs it worse)"
    score_range = (0.0, float("inf"))

    def __init__(self, *, space: str = "3d", config=None, progress: bool = False,
                 out_dir: str | os.PathLike | None = None, batch_size: int = 8192, **config_fields):
        self.space = space
        self.config = config
        self.progress = progress
        self.out_dir = out_dir
        self.batch_size = batch_size
        self.config_fields = config_fields
        self._resolved_config()  # fail early on unknown options

    def _resolved_config(self):
        VAEConfig = _trainer().VAEConfig
        base = self.config
        d = base.to_dict() if isinstance(base, VAEConfig) else dict(base or {})
        d["space"] = self.space
        unknown = set(self.config_fields) - set(VAEConfig.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown vae_recon option(s): {', '.join(sorted(unknown))}")
        d.update(self.config_fields)
        return VAEConfig.from_dict(d)

    def fit(self, reference: PoseSet) -> "VAEReconstructionScorer":
        """Train the VAE on ``reference`` (and save it to ``out_dir`` when given)."""
        self.config_ = self._resolved_config()
        self.model_, self.history_ = _trainer().train_vae(reference, self.config_, out_dir=self.out_dir, progress=self.progress)
        return self

    @classmethod
    def from_pretrained(cls, model_dir: str | os.PathLike, **options) -> "VAEReconstructionScorer":
        """A fitted scorer from a folder written by ``train_vae(out_dir=...)`` or :meth:`save`."""
        model, config = _trainer().load_vae(model_dir)
        scorer = cls(space=config.space, config=config, **options)
        scorer.model_, scorer.config_, scorer.history_ = model, config, {}
        return scorer

    def save(self, model_dir: str | os.PathLike) -> None:
        self._check_fitted("model_")
        _trainer().save_vae(self.model_, self.config_, model_dir, history=getattr(self, "history_", None))

    def score_samples(self, poses: PoseSet) -> np.ndarray:
        """(N,) float64 reconstruction errors (unitless, normalised poses); higher = harder; NaN for
        poses with too few labelled joints."""
        self._check_fitted("model_", "config_")
        return _trainer().score_poses(self.model_, poses, projection_seed=self.config_.projection_seed,
                                          batch_size=self.batch_size, num_threads=self.config_.num_threads)
