"""ADD's rationality term: the error of a reference lifter on each augmented 2D-3D pair.

The paper (AugData Distillation, Sec. 3.2, Eq. 2): a lifter trained on the original data (the
*reference model*, trained once and never updated) lifts the augmented 2D pose; its error against
the augmented 3D pose, ``error_i = |f(X_i^2d, theta_M) - X_i^3d|``, says how reasonable the pair is
from a lifter's point of view. Here the augmented 3D pose (world frame, mm) is seen through seeded
random *training* cameras (:class:`posecurator.camera.RandomCameraSampler`; give the ranges the
reference lifter was trained with), projected and normalised exactly as the trainer does
(:func:`posecurator.camera.pairs.sample_training_pairs`, the same draws as the trainer's), lifted,
and compared in the camera frame, root-relative: the score is the per-pose MPJPE in mm, averaged
over ``n_views`` cameras. Scores are reproducible: every call draws its cameras from ``seed`` afresh.

Direction: **higher = the reference lifter errs more = less reasonable pair**. Range [0, inf) mm.

Layering: scoring sits below the training layer, so the scorer never imports
:mod:`posecurator.train` or :mod:`posecurator.models`. It takes the lifter as a function
``predict_fn(x2d_norm (M, J, 2)) -> (M, J, 3) mm`` (or as any torch module, run in eval mode
here). Higher layers build one from a run folder:
:func:`posecurator.pipelines.add.lifter_error_scorer` (``load_lifter`` + ``predict`` + the run's
camera ranges).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from posecurator.poseset import PoseSet
from posecurator.scoring.base import PoseScorer, register_scorer


def torch_module_predict_fn(model, *, batch_size: int = 8192) -> Callable[[np.ndarray], np.ndarray]:
    """``predict_fn`` of a torch module mapping (B, J, 2) float32 -> (B, J, 3): eval mode, no grad,
    batches of ``batch_size``, on the module's device; its train/eval mode is restored after."""
    import torch  # only when a module is given: importing the scorer must not need torch

    def predict_fn(x2d: np.ndarray) -> np.ndarray:
        x2d = np.asarray(x2d, dtype=np.float32)
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        try:
            out = []
            with torch.no_grad():
                for start in range(0, len(x2d), batch_size):
                    out.append(model(torch.from_numpy(x2d[start:start + batch_size]).to(device)).cpu().numpy())
            return np.concatenate(out) if out else np.zeros((0, x2d.shape[1], 3), np.float32)
        finally:
            model.train(was_training)

    return predict_fn


@register_scorer("lifter_error")
class LifterErrorScorer(PoseScorer):
    """Per-pose MPJPE (mm) of a reference lifter on the pose seen through seeded random cameras.

    Give either ``predict_fn`` ((M, J, 2) normalised 2D -> (M, J, 3) mm, camera frame,
    root-relative) or ``model`` (a torch module with that signature, e.g. a
    ``SimpleBaselineLifter``; see :func:`torch_module_predict_fn`). From a run folder use
    :func:`posecurator.pipelines.add.lifter_error_scorer`. ``camera``: keyword arguments of
    :class:`RandomCameraSampler` (the ranges the lifter was trained with) or a sampler;
    ``n_views`` cameras per pose; ``noise_px`` pixel noise added to the 2D (0 = exact
    projection; use the lifter's training noise); ``seed``; ``chunk`` poses per batch.

    Learned (``fit``): ``predict_`` the prediction function, ``sampler_`` the camera sampler.
    """

    higher_means = "the reference lifter errs more on the pose's 2D-3D pair (MPJPE, mm)"
    score_range = (0.0, float("inf"))

    def __init__(self, *, predict_fn: Callable[[np.ndarray], np.ndarray] | None = None, model=None, camera=None,
                 n_views: int = 1, noise_px: float = 0.0, seed: int = 0, chunk: int = 65536):
        if sum(x is not None for x in (model, predict_fn)) != 1:
            raise ValueError("give exactly one of predict_fn or model (from a run folder: "
                             "posecurator.pipelines.add.lifter_error_scorer(run_dir))")
        if n_views < 1:
            raise ValueError(f"n_views must be >= 1, got {n_views}")
        self.model = model
        self.predict_fn = predict_fn
        self.camera = camera
        self.n_views = n_views
        self.noise_px = noise_px
        self.seed = seed
        self.chunk = chunk

    def fit(self, reference: PoseSet | None = None) -> "LifterErrorScorer":
        """Set up the prediction function and the camera sampler (the reference poses are not
        needed: the lifter is trained already)."""
        from posecurator.camera import RandomCameraSampler

        camera = self.camera
        self.predict_ = torch_module_predict_fn(self.model) if self.model is not None else self.predict_fn
        if isinstance(camera, RandomCameraSampler):
            self.sampler_ = camera
        else:
            kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in (camera or {}).items()}
            self.sampler_ = RandomCameraSampler(**kwargs)
        return self

    def score_samples(self, poses: PoseSet) -> np.ndarray:
        """(N,) MPJPE in mm of the reference lifter per pose (mean over ``n_views`` cameras); higher = worse."""
        if poses.joints3d is None:
            raise ValueError("the lifter-error scorer needs 3D poses (joints3d)")
        out = np.empty(len(poses), dtype=np.float64)
        pos = 0
        for part in self.score_stream([poses]):
            out[pos:pos + len(part)] = part
            pos += len(part)
        return out

    def score_stream(self, parts):
        """Scores of consecutive parts of one pose set (an iterable of PoseSets), yielded per batch
        of ``chunk`` poses: one random stream over all parts, cut into the same batches as one
        :meth:`score_samples` call on the whole set, so the scores are the same whatever the parts
        (:func:`posecurator.scoring.stream.score_dataset`)."""
        from posecurator.camera.pairs import sample_training_pairs
        from posecurator.scoring.stream import iter_blocks

        if not hasattr(self, "predict_"):
            self.fit()
        rng = np.random.default_rng(self.seed)
        for part in iter_blocks(parts, self.chunk):
            if part.joints3d is None:
                raise ValueError("the lifter-error scorer needs 3D poses (joints3d)")
            x2d, y3d, index = sample_training_pairs(part, rng=rng, sampler=self.sampler_, n_views=self.n_views,
                                                    noise_px=self.noise_px)
            pred = np.asarray(self.predict_(x2d), dtype=np.float64)
            if pred.shape != y3d.shape:
                raise ValueError(f"the lifter returned {pred.shape}, expected {y3d.shape}")
            err = np.linalg.norm(pred - y3d, axis=-1).mean(axis=-1)
            yield np.bincount(index, weights=err, minlength=len(part)) / self.n_views
