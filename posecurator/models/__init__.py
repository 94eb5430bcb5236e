"""Neural networks: the 2D-to-3D lifter (:mod:`posecurator.models.lifter`) and the pose VAE
(:mod:`posecurator.models.pose_vae`, used by the VAE scorer)."""

from posecurator.models.lifter import SimpleBaselineLifter

__all__ = ["SimpleBaselineLifter"]
