"""posecurator's own lifter as a :class:`posecurator.scoring.estimator.PoseEstimator`.

The lifter of a run folder (``posecurator train``) lifts each sample's 2D: pixels are normalised
with the sample's image width and height (from the pose set's camera table, VideoPose3D's
``x / w * 2 - [1, h / w]``), unlabelled joints are passed as NaN. A lifter trained with
``input_mode="root_scale"`` lifts any image (its input does not depend on image size, focal
length or distance) and copes with unlabelled joints (``joint_dropout``); a lifter of the default
``"absolute"`` mode expects the benchmark's 1000 x 1000 px cameras and every joint labelled: it
returns NaN for a sample with an unlabelled joint, and its predictions on other images are
off-protocol (a warning says so).
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from posecurator.camera import normalize_screen_coordinates
from posecurator.camera.placement import sample_cameras
from posecurator.errors import DataError
from posecurator.poseset import PoseSet
from posecurator.train.checkpoint import load_lifter
from posecurator.train.evaluate import predict


class LifterEstimator:
    """The lifter of ``run_dir`` (``which`` = "best" or "last") as an estimator.

    ``predict(poses)`` -> (N, J, 3) float64, camera frame, root-relative, mm (NaN rows where the
    lifter cannot lift: no camera size, the root unlabelled, or, in absolute mode, any joint
    unlabelled). Attributes: ``model_``, ``config_`` (the run's config.json), ``input_mode_``.
    """

    def __init__(self, run_dir: str | os.PathLike, *, which: str = "best", batch_size: int = 8192):
        self.run_dir = run_dir
        self.name = f"lifter {run_dir}"
        self.batch_size = batch_size
        self.model_, self.config_ = load_lifter(run_dir, which=which)
        self.input_mode_ = getattr(self.model_, "input_mode", "absolute")

    def predict(self, poses: PoseSet) -> np.ndarray:
        if poses.joints2d is None:
            raise DataError(None, "the lifter needs 2D poses (joints2d)")
        layout = self.config_.get("layout")
        if layout not in (None, poses.layout):
            raise DataError(self.run_dir, f"the lifter was trained on layout {layout}, the data is {poses.layout}")
        cams = sample_cameras(poses)
        width, height = cams["width"], cams["height"]
        x = np.asarray(poses.joints2d, dtype=np.float64)
        if poses.visibility is not None:
            x = np.where(poses.visibility[..., None] > 0, x, np.nan)
        if self.input_mode_ == "absolute":
            odd = np.isfinite(width) & ((width != 1000) | (height != 1000))
            if odd.any():
                warnings.warn(f"{self.run_dir}: an absolute-input lifter lifts images of other sizes than its "
                              "training cameras; train with --input-mode root_scale for in-the-wild 2D", stacklevel=2)
        # root-scale lifters ignore the normalisation (it is a similarity); it still keeps numbers small
        w = np.where(np.isfinite(width), width, 1000.0)
        h = np.where(np.isfinite(height), height, 1000.0)
        xn = normalize_screen_coordinates(x, w, h).astype(np.float32)
        out = predict(self.model_, xn, batch_size=self.batch_size).astype(np.float64)
        if self.input_mode_ == "absolute":
            out[~np.isfinite(width)] = np.nan
        return out
