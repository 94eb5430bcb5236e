"""PoseSyn's Error Extraction Module (EEM): how badly an estimator's 3D prediction explains the
given 2D, per sample. ``reprojection_error``: higher = worse.

Paper (PoseSyn, Sec. 3.1, Eq. 1): the 3D prediction is projected into the image and compared
with the ground-truth 2D, root-relative, joint by joint with weights,

    Err = sum_{n >= 2} w_n | (P_n - P_root) - (G_n - G_root) |.

posecurator computes (:func:`weighted_root_relative_error`)

    Err = [ sum_{n labelled, n != root} w_n || (P_n - P_root) - (G_n - G_root) || ]
          / [ sum_{n labelled, n != root} w_n ]  /  size,

* over LABELLED joints only (in-the-wild 2D has unlabelled joints; a joint nobody labelled
  carries no evidence), as a weighted MEAN rather than a sum, so that a sample with few labelled
  joints is not made to look easy; on complete annotations it ranks like Eq. 1;
* divided by the person's size in the image (``size``: the larger side of the person's box, the
  annotation's box when the data has one, else the box around the labelled joints), so a person
  far away is not made to look easy: the result is a fraction of the person's size (0.1 = on
  average a tenth of their height off);
* ``P`` = the prediction placed in its camera by the root translation that best fits the 2D
  (:func:`posecurator.camera.placement.place_and_project`) and projected with the sample's
  intrinsics (COCO: assumed from the image size).

Default weights (the paper's: "greater weight to the arms and legs"): ankles and wrists 1, knees
and elbows 0.5, hips and shoulders 0.25, the torso and head joints 0 (:data:`DEFAULT_JOINT_WEIGHTS`;
any ``{joint name: weight}`` replaces them). The root (pelvis) must be labelled: without it there
is nothing to be root-relative to, and the sample gets NaN (counted as "no root").

3D variant (PoseSyn App. B, "replacing 2D joints with their 3D counterparts in Eq. 1"), for
sets that have 3D: ``space="3d"`` compares the prediction with the true 3D in the camera frame,
root-relative, in mm, with the same weights (no size normalisation: millimetres are already
independent of the image).

=============  ===================================================  ===========  ============
``space``      score                                                 unit         needs
=============  ===================================================  ===========  ============
``"2d"``       weighted root-relative reprojection error / size      fraction     2D, cameras
``"3d"``       weighted root-relative 3D error                       mm           3D, cameras
=============  ===================================================  ===========  ============

Direction: **higher = the estimator gets this sample more wrong**; range [0, inf). In or out of
sample: the score is out of sample exactly when the estimator never trained on the scored
poses (true for in-the-wild 2D scored by a lifter trained on mocap); :class:`ReprojectionErrorScorer`
records what the caller says in ``in_sample``.
"""

from __future__ import annotations

import numpy as np

from posecurator.camera.core import world_to_camera
from posecurator.camera.placement import place_and_project, sample_cameras
from posecurator.poseset import PoseSet
from posecurator.scoring.base import PoseScorer, register_scorer
from posecurator.skeleton.layouts import get_layout

DEFAULT_JOINT_WEIGHTS: dict[str, float] = {
    "left_ankle": 1.0, "right_ankle": 1.0, "left_wrist": 1.0, "right_wrist": 1.0,
    "left_knee": 0.5, "right_knee": 0.5, "left_elbow": 0.5, "right_elbow": 0.5,
    "left_hip": 0.25, "right_hip": 0.25, "left_shoulder": 0.25, "right_shoulder": 0.25,
}
# Why a sample has no score (the ``status`` of :meth:`ReprojectionErrorScorer.score_details`).
STATUS = {0: "scored", 1: "no root (pelvis not labelled)", 2: "no prediction", 3: "no camera intrinsics",
          4: "cannot be placed in front of the camera", 5: "no weighted joint labelled", 6: "no 3D"}


def joint_weights(layout_name: str, weights: dict[str, float] | None = None) -> np.ndarray:
    """(J,) float64 weights of ``layout_name``'s joints from ``{joint name: weight}`` (default
    :data:`DEFAULT_JOINT_WEIGHTS`; joints not named get 0). Unknown names or negative / non-finite
    weights raise ValueError naming them."""
    layout = get_layout(layout_name)
    weights = DEFAULT_JOINT_WEIGHTS if weights is None else weights
    unknown = sorted(set(weights) - set(layout.joints))
    if unknown:
        raise ValueError(f"unknown joint names in the weights: {', '.join(map(str, unknown[:5]))}; "
                         f"{layout.name} has {', '.join(layout.joints)}")
    out = np.zeros(layout.n_joints)
    for name, w in weights.items():
        try:
            w = float(w)
        except (TypeError, ValueError):
            raise ValueError(f"weight of {name} is not a number") from None
        if not np.isfinite(w) or w < 0:
            raise ValueError(f"weight of {name} must be finite and >= 0, got {w}")
        out[layout.index(name)] = w
    if out.sum() <= 0:
        raise ValueError("every joint weight is 0: nothing would be compared")
    return out


def weighted_root_relative_error(pred, target, *, weights, visibility=None, root_joint: int = 0, size=None) -> np.ndarray:
    """PoseSyn Eq. 1 as posecurator computes it (module docstring): weighted mean over labelled
    non-root joints of || (pred_n - pred_root) - (target_n - target_root) ||, divided by ``size``.

    pred, target: (..., J, D) with D = 2 (px) or 3 (mm); weights (J,); visibility (..., J) of the
    target (0 = unlabelled; None = all labelled); size (...) or scalar (None = 1).
    Returns (...) float64; NaN where the root is unlabelled, no weighted joint is labelled, or
    the inputs are not finite on the joints used. Higher = worse.
    """
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape or pred.ndim < 2 or pred.shape[-1] not in (2, 3):
        raise ValueError(f"pred {pred.shape} and target {target.shape} must both be (..., J, 2 or 3)")
    n_joints = pred.shape[-2]
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (n_joints,):
        raise ValueError(f"weights must be ({n_joints},), got {weights.shape}")
    vis = np.ones(pred.shape[:-1], bool) if visibility is None else np.asarray(visibility) > 0
    if vis.shape != pred.shape[:-1]:
        raise ValueError(f"visibility must be {pred.shape[:-1]}, got {vis.shape}")
    w = np.where(vis, weights, 0.0)
    w[..., root_joint] = 0.0
    with np.errstate(invalid="ignore"):
        d = np.linalg.norm((pred - pred[..., root_joint:root_joint + 1, :]) - (target - target[..., root_joint:root_joint + 1, :]), axis=-1)
        total = np.where(w > 0, w * d, 0.0).sum(-1)
        wsum = w.sum(-1)
        err = total / np.where(wsum > 0, wsum, np.nan)
        used_finite = np.where(w > 0, np.isfinite(d), True).all(-1)
        ok = vis[..., root_joint] & (wsum > 0) & used_finite
        if size is not None:
            err = err / np.asarray(size, dtype=np.float64)
    return np.where(ok, err, np.nan)


def weighted_root_relative_error_reference(pred, target, *, weights, visibility=None, root_joint: int = 0, size=None) -> np.ndarray:
    """Plain per-sample, per-joint version of :func:`weighted_root_relative_error` (N, J, D) -> (N,); for tests."""
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    n, j = pred.shape[:2]
    vis = np.ones((n, j)) if visibility is None else np.asarray(visibility)
    size = np.ones(n) if size is None else np.broadcast_to(np.asarray(size, dtype=np.float64), (n,))
    out = np.full(n, np.nan)
    for i in range(n):
        if vis[i, root_joint] <= 0:
            continue
        num = den = 0.0
        ok = True
        for k in range(j):
            if k == root_joint or vis[i, k] <= 0 or weights[k] <= 0:
                continue
            diff = (pred[i, k] - pred[i, root_joint]) - (target[i, k] - target[i, root_joint])
            dist = float(np.sqrt(np.sum(diff**2)))
            if not np.isfinite(dist):
                ok = False
            num += weights[k] * dist
            den += weights[k]
        if ok and den > 0:
            out[i] = num / den / size[i]
    return out


def person_size_2d(joints2d, visibility=None, bbox=None) -> np.ndarray:
    """(N,) px: the larger side of the person's box: ``bbox`` (N, 4) ``[x, y, w, h]`` where given
    and positive, else the box around the labelled joints of ``joints2d`` (N, J, 2)."""
    joints2d = np.asarray(joints2d, dtype=np.float64)
    vis = np.ones(joints2d.shape[:-1], bool) if visibility is None else np.asarray(visibility) > 0
    vis = vis & np.isfinite(joints2d).all(-1)
    lo = np.where(vis[..., None], joints2d, np.inf).min(-2)
    hi = np.where(vis[..., None], joints2d, -np.inf).max(-2)
    with np.errstate(invalid="ignore"):
        size = np.where(vis.any(-1), (hi - lo).max(-1), np.nan)
        if bbox is not None:
            box = np.asarray(bbox, dtype=np.float64)[:, 2:4].max(-1)
            size = np.where(np.isfinite(box) & (box > 0), box, size)
    return np.where(size > 0, size, np.nan)


@register_scorer("reprojection_error")
class ReprojectionErrorScorer(PoseScorer):
    """PoseSyn's EEM score of each sample for an estimator (module docstring).

    Parameters (keyword-only): ``estimator`` (a :class:`posecurator.scoring.estimator.PoseEstimator`),
    ``weights`` ({joint name: weight}, default :data:`DEFAULT_JOINT_WEIGHTS`), ``space`` ("2d" or
    "3d"), ``in_sample`` (whether the estimator trained on the scored poses; recorded, default False).

    ``score_samples(poses)`` -> (N,) float64 (NaN = not scorable, see ``score_details``).
    Learned (``fit``): ``weights_`` (J,) of the pose set's layout.
    """

    higher_means = "the estimator's prediction misses the given 2D (or true 3D) more"
    score_range = (0.0, float("inf"))

    def __init__(self, *, estimator=None, weights: dict[str, float] | None = None, space: str = "2d",
                 in_sample: bool = False):
        if estimator is None:
            raise ValueError("the reprojection-error scorer needs an estimator (a lifter run folder or a predictions file)")
        if space not in ("2d", "3d"):
            raise ValueError(f"space must be '2d' or '3d', got {space!r}")
        self.estimator, self.weights, self.space, self.in_sample = estimator, weights, space, in_sample

    def fit(self, reference: PoseSet | None = None) -> "ReprojectionErrorScorer":
        """Resolve the joint weights for the reference's layout (default H36M17); nothing is learned."""
        self.weights_ = joint_weights(reference.layout if reference is not None else "h36m17", self.weights)
        return self

    def score_samples(self, poses: PoseSet) -> np.ndarray:
        return self.score_details(poses)["error"]

    def score_details(self, poses: PoseSet) -> dict[str, np.ndarray]:
        """Everything the score is made of, per sample: ``error`` (N,) (2d: fraction of the
        person's size; 3d: mm), ``error_2d`` (N,) always (the 2D score), ``error_3d`` (N,) mm
        where the set has 3D (else NaN), ``pred3d`` (N, J, 3) root-relative camera frame mm,
        ``translation`` (N, 3) mm, ``reprojected`` (N, J, 2) px, ``size`` (N,) px, ``status`` (N,)
        int (:data:`STATUS`)."""
        if poses.joints2d is None:
            raise ValueError("the reprojection-error scorer needs 2D poses (joints2d); see posecurator hard for 3D-only sets")
        if not hasattr(self, "weights_") or len(self.weights_) != poses.n_joints:
            self.fit(poses)
        layout = get_layout(poses.layout)
        root = layout.parents.index(-1)
        n = len(poses)
        vis = np.ones((n, poses.n_joints), np.float32) if poses.visibility is None else poses.visibility
        vis = np.where(np.isfinite(poses.joints2d).all(-1), vis, 0.0)
        cams = sample_cameras(poses)
        f, c = cams["f"], cams["c"]
        pred = np.asarray(self.estimator.predict(poses), dtype=np.float64)
        if pred.shape != (n, poses.n_joints, 3):
            raise ValueError(f"the estimator returned {pred.shape}, expected {(n, poses.n_joints, 3)}")
        # intrinsics the estimator itself assumed (a predictions file may carry them) win
        ef, ec = getattr(self.estimator, "camera_f_", None), getattr(self.estimator, "camera_c_", None)
        if ef is not None and ec is not None:
            given = np.isfinite(ef).all(1) & np.isfinite(ec).all(1)
            f, c = np.where(given[:, None], ef, f), np.where(given[:, None], ec, c)
        t, _, reproj = place_and_project(pred, poses.joints2d, f, c, visibility=vis)
        size = person_size_2d(poses.joints2d, vis, poses.bbox)
        err2d = weighted_root_relative_error(reproj, poses.joints2d, weights=self.weights_, visibility=vis,
                                             root_joint=root, size=size)
        err3d = np.full(n, np.nan)
        if poses.joints3d is not None:
            true_cam = world_to_camera(poses.joints3d.astype(np.float64), cams["R"], cams["t"])
            err3d = weighted_root_relative_error(pred, true_cam, weights=self.weights_, root_joint=root)
        status = np.zeros(n, np.int8)
        status[~np.isfinite(err2d)] = 5
        status[~np.isfinite(t).all(1)] = 4
        status[~np.isfinite(f).all(1)] = 3
        status[~np.isfinite(pred).all((1, 2))] = 2
        status[vis[:, root] <= 0] = 1
        if self.space == "3d":
            if poses.joints3d is None:
                raise ValueError("space='3d' needs a pose set with 3D (joints3d) and cameras")
            status[(status == 0) & ~np.isfinite(err3d)] = 6
            error = np.where(np.isfinite(pred).all((1, 2)), err3d, np.nan)
        else:
            error = np.where(status == 0, err2d, np.nan)
        return {"error": error, "error_2d": np.where(status == 0, err2d, np.nan), "error_3d": err3d, "pred3d": pred,
                "translation": t, "reprojected": reproj, "size": size, "status": status}
