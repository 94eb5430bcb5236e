"""The evaluation protocol of ../shared/BENCHMARK.md for a trained lifter.

Every test pose is seen through the four fixed evaluation cameras of its clip
(:func:`posecurator.train.pairs.evaluation_pairs`), GT 2D or with seeded Gaussian pixel noise;
the lifter's root-relative camera-frame predictions are scored with MPJPE (Protocol #1),
PA-MPJPE (Protocol #2), PCK3D at 150 mm and its AUC over 0-150 mm, averaged over all test poses
and all four cameras, and per activity.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from posecurator.errors import DataError
from posecurator.metrics import auc3d, mpjpe, pa_mpjpe, pck3d
from posecurator.poseset import PoseSet
from posecurator.train.pairs import evaluation_pairs

METRIC_KEYS = ("mpjpe", "pa_mpjpe", "pck3d", "auc")
DEFAULT_BATCH = 8192


@torch.no_grad()
def predict(model: torch.nn.Module, x2d_norm: np.ndarray, *, batch_size: int = DEFAULT_BATCH, device=None) -> np.ndarray:
    """Run the lifter in eval mode over (N, J, 2) normalised 2D in batches -> (N, J, 3) float32 mm.

    The model's train/eval mode is restored afterwards. ``device`` defaults to the model's.
    """
    x2d_norm = np.asarray(x2d_norm, dtype=np.float32)
    if x2d_norm.ndim != 3 or x2d_norm.shape[-1] != 2:
        raise ValueError(f"x2d_norm must be (N, J, 2), got {x2d_norm.shape}")
    if device is None:
        device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = np.empty((len(x2d_norm), x2d_norm.shape[1], 3), dtype=np.float32)
        for start in range(0, len(x2d_norm), batch_size):
            xb = torch.from_numpy(x2d_norm[start:start + batch_size]).to(device)
            out[start:start + len(xb)] = model(xb).cpu().numpy()
        return out
    finally:
        model.train(was_training)


def _means(values: dict[str, np.ndarray], group: np.ndarray, n_groups: int) -> dict[str, np.ndarray]:
    counts = np.bincount(group, minlength=n_groups)
    return {k: np.bincount(group, weights=v, minlength=n_groups) / np.maximum(counts, 1) for k, v in values.items()}


def score_pairs(pred: np.ndarray, target: np.ndarray, *, activity: np.ndarray | None = None) -> tuple[dict, dict]:
    """Metrics of (M, J, 3) predictions against targets (mm, root-relative), overall and per activity.

    Returns (summary, per_pose). summary: ``{"mpjpe", "pa_mpjpe", "pck3d", "auc", "n_poses",
    "per_activity"}``, errors in mm, PCK3D and AUC as fractions in [0, 1]; ``activity`` (M,)
    labels each pair (None: empty breakdown). per_pose: the same four metrics per pair, (M,).
    """
    per_pose = {
        "mpjpe": mpjpe(pred, target, reduce="none"),
        "pa_mpjpe": pa_mpjpe(pred, target, reduce="none"),
        "pck3d": pck3d(pred, target, threshold=150.0, reduce="none"),
        "auc": auc3d(pred, target, reduce="none"),
    }
    # every pose has the same number of joints, so the mean of per-pose values is the overall value
    result = {k: float(v.mean()) for k, v in per_pose.items()}
    result["n_poses"] = int(len(pred))
    result["per_activity"] = {}
    if activity is not None:
        names, group = np.unique(np.asarray(activity).astype(str), return_inverse=True)
        group = group.reshape(-1)
        means = _means(per_pose, group, len(names))
        counts = np.bincount(group, minlength=len(names))
        for a, name in enumerate(names.tolist()):
            result["per_activity"][name] = {**{k: float(means[k][a]) for k in METRIC_KEYS}, "n_poses": int(counts[a])}
    return result, per_pose


def evaluate_model(model: torch.nn.Module, test: PoseSet, *, noise_px: float = 0.0, seed: int = 0,
                   batch_size: int = DEFAULT_BATCH, return_per_pose: bool = False) -> dict:
    """The benchmark metrics of ``model`` on ``test`` (3D poses), see :func:`evaluate_run`."""
    if test.joints3d is None or len(test) == 0:
        raise DataError(None, "the test set is empty or has no 3D poses")
    if test.n_joints != getattr(model, "n_joints", test.n_joints):
        raise DataError(None, f"the test set has {test.n_joints} joints, the lifter {model.n_joints}")
    test.check_finite()
    pairs = evaluation_pairs(test, noise_px=noise_px, seed=seed)
    pred = predict(model, pairs.x2d, batch_size=batch_size)
    result, per_pose = score_pairs(pred, pairs.y3d, activity=test.activity[pairs.pose_index])
    if return_per_pose:
        result["per_pose"] = {"mpjpe": per_pose["mpjpe"], "pa_mpjpe": per_pose["pa_mpjpe"],
                              "pose_index": pairs.pose_index, "camera_index": pairs.camera_index}
    return result


def evaluate_run(run_dir: str | os.PathLike, test: PoseSet, *, noise_px: float = 0.0, seed: int = 0,
                 batch_size: int = DEFAULT_BATCH, which: str = "best", return_per_pose: bool = False) -> dict:
    """Evaluate a run's lifter (``which`` = "best" or "last") on ``test`` by ../shared/BENCHMARK.md.

    Each test pose is seen by the four evaluation cameras of its clip; ``noise_px`` > 0 is the
    noisy-2D setting (the benchmark uses 5 px), seeded by ``seed``. Returns a dict with keys
    ``mpjpe``, ``pa_mpjpe`` (mm, lower is better), ``pck3d`` (PCK at 150 mm), ``auc`` (AUC of
    PCK over 0-150 mm; both fractions in [0, 1], higher is better), ``n_poses`` (2D-3D pairs =
    test poses x 4 cameras) and ``per_activity`` (activity -> the same keys). With
    ``return_per_pose`` also ``per_pose``: arrays ``mpjpe``, ``pa_mpjpe`` (4N,) mm with the
    ``pose_index`` (row of ``test``) and ``camera_index`` (0..3) of every pair.

    A ``test`` set without 3D (COCO, MPII) is evaluated by :func:`evaluate_2d` instead (keys
    ``pck_0.05``, ``pck_0.1``, ``n_poses``, ``pckh_0.5`` where the data has a head segment).
    """
    from posecurator.train.checkpoint import load_lifter

    if test.joints3d is None:  # 2D-only data (COCO, MPII): PCK of the reprojected predictions
        from posecurator.train.estimator import LifterEstimator

        return evaluate_2d(LifterEstimator(run_dir, which=which, batch_size=batch_size), test)
    model, config = load_lifter(run_dir, which=which)
    if config.get("layout") not in (None, test.layout):
        raise DataError(run_dir, f"the lifter was trained on layout {config['layout']}, the test set is {test.layout}")
    return evaluate_model(model, test, noise_px=noise_px, seed=seed, batch_size=batch_size, return_per_pose=return_per_pose)


# ------------------------------------------------------------------------------ 2D-only data
LIMB_JOINTS = ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
               "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")
MIN_KEYPOINTS_2D = 8  # ../shared/BENCHMARK.md: COCO annotations with fewer labelled keypoints are left out


def evaluate_2d(estimator, test: PoseSet, *, min_keypoints: int | None = MIN_KEYPOINTS_2D) -> dict:
    """The 2D-only protocol of ../shared/BENCHMARK.md for any estimator (``predict(PoseSet)`` ->
    root-relative camera-frame mm, :mod:`posecurator.scoring.estimator`).

    The 2D set is brought into the estimator's layout (COCO-17 / MPII-16 -> H36M17,
    :func:`posecurator.skeleton.keypoints2d.to_target_layout`); annotations with fewer than
    ``min_keypoints`` labelled keypoints (counted in the ORIGINAL layout, as the protocol says)
    are left out. Each prediction is placed in its camera by the root translation that best fits
    the given 2D (intrinsics of the data; COCO: focal length = larger image side, principal point
    = centre) and projected back. Returns ``pck_0.05``, ``pck_0.1`` (fractions in [0, 1], higher
    is better: labelled limb joints, among the 12 of :data:`LIMB_JOINTS`, within 0.05 / 0.1 of the
    larger side of the person's box), ``pckh_0.5`` (only where the data has a real head segment,
    MPII-style head top and upper neck: within half its length), ``n_poses`` (people counted),
    ``n_left_out`` {reason: count} and ``per_joint`` PCK@0.05.
    """
    from posecurator.camera.placement import place_and_project, sample_cameras
    from posecurator.metrics import pck2d, pckh
    from posecurator.scoring.reprojection import person_size_2d
    from posecurator.skeleton.keypoints2d import to_target_layout
    from posecurator.skeleton.layouts import get_layout

    if test.joints2d is None or len(test) == 0:
        raise DataError(None, "the test set is empty or has no 2D poses")
    left_out = {}
    if min_keypoints:
        labelled = (test.visibility > 0).sum(1) if test.visibility is not None else np.full(len(test), test.n_joints)
        keep = labelled >= min_keypoints
        # annotations the reader already dropped (COCO: no labelled keypoint at all) count too
        dropped = int(test.attrs.get("dropped_few_keypoints", 0) or 0) if min_keypoints >= int(test.attrs.get("min_keypoints", 1) or 1) else 0
        if (~keep).any() or dropped:
            left_out[f"fewer than {min_keypoints} labelled keypoints"] = int((~keep).sum()) + dropped
            test = test.subset(keep)
        if len(test) == 0:
            raise DataError(None, f"no 2D pose of the test set has {min_keypoints} or more labelled keypoints")
    target = to_target_layout(test)
    layout = get_layout(target.layout)
    root = layout.parents.index(-1)
    vis = np.ones((len(target), target.n_joints), np.float32) if target.visibility is None else target.visibility
    pred = np.asarray(estimator.predict(target), dtype=np.float64)
    cams = sample_cameras(target)
    _, _, reproj = place_and_project(pred, target.joints2d, cams["f"], cams["c"], visibility=vis)
    ok = np.isfinite(reproj[:, root]).all(-1)
    # why a pose could not be scored: the first reason that applies, in this order
    reasons = [(vis[:, root] <= 0, "root (pelvis) not labelled"), (~np.isfinite(cams["f"]).all(1), "no camera intrinsics"),
               (~np.isfinite(pred).all((1, 2)), "no prediction"), (np.ones(len(ok), bool), "cannot be placed in front of the camera")]
    unexplained = ~ok
    for mask, why in reasons:
        hit = unexplained & mask
        if hit.any():
            left_out[why] = int(hit.sum())
        unexplained &= ~mask
    if not ok.any():
        raise DataError(None, "no 2D pose of the test set could be lifted and placed (root joint or image size missing?)")
    limb = np.zeros(target.n_joints, bool)
    limb[[layout.index(j) for j in LIMB_JOINTS if j in layout.joints]] = True
    eval_vis = np.where(limb, vis, 0.0)[ok]
    size = person_size_2d(target.joints2d, vis, target.bbox)[ok]
    gt, pr = target.joints2d[ok].astype(np.float64), reproj[ok]
    result = {"pck_0.05": pck2d(pr, gt, visibility=eval_vis, threshold=0.05, normalize=size),
              "pck_0.1": pck2d(pr, gt, visibility=eval_vis, threshold=0.1, normalize=size),
              "n_poses": int(ok.sum()), "n_left_out": left_out,
              "per_joint": {layout.joints[j]: float(v) for j, v in enumerate(
                  pck2d(pr, gt, visibility=eval_vis, threshold=0.05, normalize=size, reduce="joint")) if limb[j]}}
    conversion = target.attrs.get("layout_conversion") or {}
    if conversion.get("head_segment") or (test.layout == target.layout and target.attrs.get("head_segment")):
        neck, head = layout.index("neck"), layout.index("head")
        seg = np.linalg.norm(gt[:, head] - gt[:, neck], axis=-1)
        seg = np.where((vis[ok][:, head] > 0) & (vis[ok][:, neck] > 0), seg, np.nan)
        result["pckh_0.5"] = pckh(pr, gt, head_size=seg, visibility=eval_vis, threshold=0.5)
    return result
