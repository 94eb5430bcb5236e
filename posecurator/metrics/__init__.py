"""Pose metrics (a leaf utility: imports only NumPy, and PyTorch inside the ``*_torch`` twins).

3D (mm, root-relative, lower is better unless said): :func:`mpjpe` (Protocol #1),
:func:`pa_mpjpe` (Protocol #2), :func:`n_mpjpe`, :func:`per_joint_errors`,
:func:`pck3d` / :func:`auc3d` (fractions, higher is better), :func:`procrustes_align`, and the
PyTorch twins :func:`mpjpe_torch`, :func:`pa_mpjpe_torch`, :func:`n_mpjpe_torch`,
:func:`procrustes_align_torch`.

2D (fractions in [0, 1], higher is better): :func:`pck2d`, :func:`pckh` and the reference lengths
:func:`bbox_size`, :func:`torso_size`, :func:`head_size_from_headbox`, :func:`head_size_coco17`.

EvalPose (paper 002, cosine similarity of joint-triplet angle vectors, [0, 1], higher = more
similar): :func:`evalpose`, :func:`evalpose_matrix`, :func:`evalpose_mean`, :func:`joint_angles`,
:func:`layout_triplets`.

Every batched function has a plain per-pose loop twin in :mod:`posecurator.metrics.reference`.
"""

from posecurator.metrics.evalpose import evalpose, evalpose_matrix, evalpose_mean, joint_angles, layout_triplets
from posecurator.metrics.pose2d import (
    bbox_size,
    head_size_coco17,
    head_size_from_headbox,
    pck2d,
    pckh,
    torso_size,
)
from posecurator.metrics.pose3d import (
    AUC3D_THRESHOLDS_MM,
    PCK3D_THRESHOLD_MM,
    auc3d,
    mpjpe,
    mpjpe_torch,
    n_mpjpe,
    n_mpjpe_torch,
    pa_mpjpe,
    pa_mpjpe_torch,
    pck3d,
    per_joint_errors,
    procrustes_align,
    procrustes_align_torch,
)

__all__ = [
    "mpjpe", "pa_mpjpe", "n_mpjpe", "per_joint_errors", "pck3d", "auc3d", "procrustes_align",
    "mpjpe_torch", "pa_mpjpe_torch", "n_mpjpe_torch", "procrustes_align_torch",
    "PCK3D_THRESHOLD_MM", "AUC3D_THRESHOLDS_MM",
    "pck2d", "pckh", "bbox_size", "torso_size", "head_size_from_headbox", "head_size_coco17",
    "evalpose", "evalpose_matrix", "evalpose_mean", "joint_angles", "layout_triplets",
]
