"""ADD's rationality term: the error of a reference lifter on each augmented 2D-3D pair.

The paper (AugData Distillation, Sec. 3.2, Eq. 2): a lifter trained on the original data (the
*reference model*, trained once and never updated) lifts the augmented 2D pose; its error against
the augmented 3D pose, ``error_i = |f(X_i^2d, theta_M) - X_i^3d|``, says how reasonable the pair is
from a lifter's point of view. Here the augmented 3D pose (world frame, mm) is seen through seeded
random *training* cameras (:class:`posecurator.camera.RandomCameraSampler`, the ranges the
reference run was trained with when it is loaded from a run directory), projected and normalised
exactly as the trainer does (:func:`posecurator.train.pairs.sample_training_pairs`), lifted, and
compared in the camera frame, root-relative: the score is the per-pose MPJPE in mm, averaged over
``n_views`` cameras. Scores are reproducible: every call draws its cameras from ``seed`` afresh.

Direction: **higher = the reference lifter errs more = less reasonable pair**. Range [0, inf) mm.

Layering note: the pairs and the lifter live in :mod:`posecurator.train`, a higher layer than
scoring; they are imported lazily, only when a run directory is loaded or pairs are made, so
importing :mod:`posecurator.scoring` never pulls in torch.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from posecurator.poseset import PoseSet
from posecurator.scoring.base import PoseScorer, register_scorer


@register_scorer("lifter_error")
class LifterErrorScorer(PoseScorer):
    """Per-pose MPJPE (mm) of a reference lifter on the pose seen through seeded random cameras.

    Give either ``run_dir`` (a trained lifter run: ``posecurator.train.checkpoint.load_lifter``;
    its ``camera`` ranges are used unless ``camera`` is given) or ``model`` (a torch lifter, run
    with ``posecurator.train.evaluate.predict``) or ``predict_fn`` ((M, 17, 2) normalised 2D ->
    (M, 17, 3) mm, camera frame, root-relative). ``camera``: keyword arguments of
    :class:`RandomCameraSampler` or a sampler; ``n_views`` cameras per pose; ``noise_px`` pixel
    noise added to the 2D (0 = exact projection); ``seed``; ``chunk`` poses per batch.
    """

    higher_means = "the reference lifter errs more on the pose's 2D-3D pair (MPJPE, mm)"
    score_range = (0.0, float("inf"))

    def __init__(self, *, run_dir: str | os.PathLike | None = None, model=None,
                 predict_fn: Callable[[np.ndarray], np.ndarray] | None = None, camera=None, n_views: int = 1,
                 noise_px: float = 0.0, seed: int = 0, which: str = "best", chunk: int = 65536):
        if sum(x is not None for x in (run_dir, model, predict_fn)) != 1:
            raise ValueError("give exactly one of run_dir, model or predict_fn")
        if n_views < 1:
            raise ValueError(f"n_views must be >= 1, got {n_views}")
        self.run_dir = run_dir
        self.model = model
        self.predict_fn = predict_fn
        self.camera = camera
        self.n_views = n_views
        self.noise_px = noise_px
        self.seed = seed
        self.which = which
        self.chunk = chunk

    def fit(self, reference: PoseSet | None = None) -> "LifterErrorScorer":
        """Load the reference lifter (the reference poses are not needed: the lifter is trained already)."""
        from posecurator.camera import RandomCameraSampler

        camera = self.camera
        if self.run_dir is not None:
            from posecurator.train.checkpoint import load_lifter
            from posecurator.train.evaluate import predict

            model, config = load_lifter(self.run_dir, which=self.which)
            self.predict_ = lambda x2d: predict(model, x2d)
            if camera is None:
                camera = config.get("camera")
        elif self.model is not None:
            from posecurator.train.evaluate import predict

            model = self.model
            self.predict_ = lambda x2d: predict(model, x2d)
        else:
            self.predict_ = self.predict_fn
        if isinstance(camera, RandomCameraSampler):
            self.sampler_ = camera
        else:
            kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in (camera or {}).items()}
            self.sampler_ = RandomCameraSampler(**kwargs)
        return self

    def score_samples(self, poses: PoseSet) -> np.ndarray:
        """(N,) MPJPE in mm of the reference lifter per pose (mean over ``n_views`` cameras); higher = worse."""
        from posecurator.train.pairs import sample_training_pairs

        if not hasattr(self, "predict_"):
            self.fit()
        if poses.joints3d is None:
            raise ValueError("the lifter-error scorer needs 3D poses (joints3d)")
        rng = np.random.default_rng(self.seed)
        out = np.empty(len(poses), dtype=np.float64)
        for start in range(0, len(poses), self.chunk):
            part = poses.subset(slice(start, start + self.chunk))
            x2d, y3d, index = sample_training_pairs(part, rng=rng, sampler=self.sampler_, n_views=self.n_views,
                                                    noise_px=self.noise_px)
            pred = np.asarray(self.predict_(x2d), dtype=np.float64)
            if pred.shape != y3d.shape:
                raise ValueError(f"the lifter returned {pred.shape}, expected {y3d.shape}")
            err = np.linalg.norm(pred - y3d, axis=-1).mean(axis=-1)
            out[start:start + len(part)] = np.bincount(index, weights=err, minlength=len(part)) / self.n_views
        return out
