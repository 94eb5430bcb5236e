"""The estimator interface: 2D pose set in -> 3D joints out.

Every 3D pose estimator posecurator scores (PoseSyn's "target pose estimator") is seen through
one small protocol, :class:`PoseEstimator`:

    predict(poses: PoseSet) -> (N, J, 3) float64

2D poses in (``poses.joints2d`` in pixels, NaN where unlabelled, with ``visibility`` and the
camera table giving each sample's image size and intrinsics), 3D joints out: in the camera
frame (OpenCV: x right, y down, z forward), relative to the root joint (pelvis, row exactly 0),
in millimetres, in the pose set's layout (H36M17). A row of NaN means "no prediction" (for
example a root joint that is not labelled). Placing the prediction in front of its camera (the
root translation) is not the estimator's job: :func:`posecurator.camera.placement.place_and_project`
does it from the 2D, so every estimator is compared the same way.

Implementations:

================================  ==========================================================
``LifterEstimator``               posecurator's own lifter from a run folder
                                  (:mod:`posecurator.train.estimator`; the training layer
                                  loads it, this layer only calls ``predict``)
:class:`PredictionsFileEstimator` predictions a user made elsewhere with any image model
                                  (:mod:`posecurator.io.predictions` documents the file)
:class:`FunctionEstimator`        any function of a PoseSet (tests, notebooks)
================================  ==========================================================
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import numpy as np

from posecurator.errors import DataError
from posecurator.poseset import PoseSet


@runtime_checkable
class PoseEstimator(Protocol):
    """2D pose set in -> (N, J, 3) root-relative camera-frame mm out (see the module docstring)."""

    name: str

    def predict(self, poses: PoseSet) -> np.ndarray:
        ...


def root_relative(joints3d: np.ndarray, root_joint: int = 0) -> np.ndarray:
    """(..., J, 3) -> the same minus the root joint (the root row becomes exactly 0)."""
    joints3d = np.asarray(joints3d, dtype=np.float64)
    return joints3d - joints3d[..., root_joint:root_joint + 1, :]


class FunctionEstimator:
    """An estimator from a function ``fn(poses: PoseSet) -> (N, J, 3)`` (made root-relative here)."""

    def __init__(self, fn: Callable[[PoseSet], np.ndarray], *, name: str = "function", root_joint: int = 0):
        self.fn, self.name, self.root_joint = fn, name, root_joint

    def predict(self, poses: PoseSet) -> np.ndarray:
        out = np.asarray(self.fn(poses), dtype=np.float64)
        if out.shape != (len(poses), poses.n_joints, 3):
            raise ValueError(f"estimator {self.name} returned {out.shape}, expected {(len(poses), poses.n_joints, 3)}")
        return root_relative(out, self.root_joint)


class PredictionsFileEstimator:
    """Predictions read from a file (npz or JSON, :mod:`posecurator.io.predictions`), matched to
    the pose set by ``sample_id``.

    Every sample of the pose set must have a prediction (a file made for other samples is an
    error naming the file and the first missing ids); predictions of samples not in the set are
    ignored. ``camera_f_`` and ``camera_c_`` hold the intrinsics the file gives for the last
    predicted set ((N, 2) px, NaN where the file gives none): the placement step prefers them to
    the data's own.
    """

    def __init__(self, path, *, root_joint: int = 0):
        from posecurator.io.predictions import read_predictions

        self.path = path
        self.name = f"predictions file {path}"
        self.root_joint = root_joint
        self.file_ = read_predictions(path)
        order = np.argsort(self.file_["sample_id"], kind="stable")
        self._ids = self.file_["sample_id"][order]
        self._order = order

    def predict(self, poses: PoseSet) -> np.ndarray:
        if poses.layout != self.file_["layout"] and poses.layout != "h36m17":
            raise DataError(self.path, f"predictions are in layout {self.file_['layout']}, the data in {poses.layout}")
        pos = np.searchsorted(self._ids, poses.sample_id)
        pos = np.clip(pos, 0, len(self._ids) - 1)
        found = self._ids[pos] == poses.sample_id
        if not found.all():
            missing = poses.sample_id[~found]
            raise DataError(self.path, f"no prediction for {len(missing)} of the {len(poses)} samples "
                                       f"(first sample ids: {', '.join(str(int(i)) for i in missing[:5])}): "
                                       "a predictions file for other samples?")
        rows = self._order[pos]
        self.camera_f_ = self.file_["f"][rows]
        self.camera_c_ = self.file_["c"][rows]
        return root_relative(self.file_["joints3d"][rows], self.root_joint)
