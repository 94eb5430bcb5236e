"""2D keypoint accuracy: PCK (threshold as a fraction of a reference length) and PCKh.

Conventions:

* ``pred`` and ``target`` have the same shape ``(..., J, 2)`` (pixels, or any consistent unit);
  ``visibility`` is ``(..., J)`` for the *target* (COCO flags 0/1/2 or 0/1 floats): joints with
  v == 0 (not labelled) are excluded from every count; v > 0 counts.
* A joint is correct when its distance to the target is **at most** ``threshold * reference``
  (``<=``, as the MPII evaluation code does). Results are fractions in [0, 1]; higher is better.
* ``reduce="mean"``: correct joints / valid joints over the whole input (joint-weighted, like the
  MPII and mmpose evaluations); ``reduce="none"``: per-pose fraction ``(...)`` (NaN for a pose with
  no valid joint); ``reduce="joint"``: per-joint fraction ``(J,)`` over all poses (NaN for a joint
  never valid), as in per-joint PCK tables.
* A pose whose reference length is zero or not finite (e.g. fewer than two labelled joints for
  ``normalize="bbox"``, a missing torso joint) has no valid joint.
"""

from __future__ import annotations

import numpy as np

PCK_THRESHOLD = 0.05  # PCK@0.05 of the reference length (paper 002: 5% of the size)
PCKH_THRESHOLD = 0.5  # PCKh@0.5 (MPII)
MPII_HEAD_SIZE_FACTOR = 0.6  # MPII: head size = 0.6 * diagonal of the annotated head box
TORSO_JOINTS = ("left_shoulder", "right_hip")  # torso diameter, as in LSP / Yang & Ramanan
COCO17_FACE_JOINTS = (0, 1, 2, 3, 4)  # nose, left/right eye, left/right ear


def _check_2d_pair(pred, target, visibility, *, what: str):
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"{what}: pred {pred.shape} and target {target.shape} must have the same shape")
    if pred.ndim < 2 or pred.shape[-1] != 2 or pred.shape[-2] == 0:
        raise ValueError(f"{what}: keypoints must be (..., J, 2), got {pred.shape}")
    if visibility is None:
        valid = np.ones(pred.shape[:-1], dtype=bool)
    else:
        visibility = np.asarray(visibility)
        if visibility.shape != pred.shape[:-1]:
            raise ValueError(f"{what}: visibility must be {pred.shape[:-1]} (..., J), got {visibility.shape}")
        valid = visibility > 0
    return pred, target, valid


def _per_pose_reference(values, lead_shape: tuple, *, what: str, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    try:
        return np.broadcast_to(values, lead_shape)
    except ValueError:
        raise ValueError(f"{what}: {name} must be a scalar or of the leading shape {lead_shape}, "
                         f"got {values.shape}") from None


def bbox_size(keypoints, visibility=None) -> np.ndarray:
    """Reference length for PCK: max(width, height) of the box around the labelled joints.

    keypoints: (..., J, 2); visibility: (..., J) or None (all labelled). Returns (...) float64,
    NaN for a pose without labelled joints.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim < 2 or keypoints.shape[-1] != 2:
        raise ValueError(f"bbox_size: keypoints must be (..., J, 2), got {keypoints.shape}")
    valid = np.ones(keypoints.shape[:-1], bool) if visibility is None else np.asarray(visibility) > 0
    if valid.shape != keypoints.shape[:-1]:
        raise ValueError(f"bbox_size: visibility must be {keypoints.shape[:-1]}, got {valid.shape}")
    lo = np.where(valid[..., None], keypoints, np.inf).min(axis=-2)
    hi = np.where(valid[..., None], keypoints, -np.inf).max(axis=-2)
    with np.errstate(invalid="ignore"):
        size = (hi - lo).max(axis=-1)
    return np.where(valid.any(axis=-1), size, np.nan)


def torso_size(keypoints, visibility=None, *, layout, joints: tuple[str, str] = TORSO_JOINTS) -> np.ndarray:
    """Reference length for PCK: distance between two torso joints of ``layout`` (default left
    shoulder to right hip, the LSP torso diameter). keypoints (..., J, 2 or 3) -> (...) float64,
    NaN where either joint is not labelled.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    a, b = (layout.joints.index(name) for name in joints)
    size = np.linalg.norm(keypoints[..., a, :] - keypoints[..., b, :], axis=-1)
    if visibility is not None:
        visibility = np.asarray(visibility)
        size = np.where((visibility[..., a] > 0) & (visibility[..., b] > 0), size, np.nan)
    return size


def head_size_from_headbox(headbox) -> np.ndarray:
    """MPII head size: 0.6 * the diagonal of the annotated head rectangle.

    headbox: (..., 2, 2) as ((x1, y1), (x2, y2)) in pixels. Returns (...) float64.
    """
    headbox = np.asarray(headbox, dtype=np.float64)
    if headbox.ndim < 2 or headbox.shape[-2:] != (2, 2):
        raise ValueError(f"head_size_from_headbox: head boxes must be (..., 2, 2), got {headbox.shape}")
    return MPII_HEAD_SIZE_FACTOR * np.linalg.norm(headbox[..., 1, :] - headbox[..., 0, :], axis=-1)


def head_size_coco17(keypoints, visibility=None) -> np.ndarray:
    """Head size for PCKh on COCO-17 keypoints, which have no head box.

    Project convention (COCO defines no head segment): the diagonal of the box around the labelled
    face keypoints (nose, eyes, ears; COCO-17 indices 0-4). Seen from the front this is about the
    ear-to-ear width, from the side about the nose-to-ear distance, i.e. close to MPII's
    0.6 x head-box diagonal. keypoints: (..., 17, 2); visibility: (..., 17) or None.
    Returns (...) float64, NaN where fewer than two face keypoints are labelled.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim < 2 or keypoints.shape[-2:] != (17, 2):
        raise ValueError(f"head_size_coco17: keypoints must be (..., 17, 2), got {keypoints.shape}")
    face = keypoints[..., COCO17_FACE_JOINTS, :]
    valid = (np.ones(face.shape[:-1], bool) if visibility is None
             else np.asarray(visibility)[..., COCO17_FACE_JOINTS] > 0)
    lo = np.where(valid[..., None], face, np.inf).min(axis=-2)
    hi = np.where(valid[..., None], face, -np.inf).max(axis=-2)
    with np.errstate(invalid="ignore"):
        size = np.linalg.norm(hi - lo, axis=-1)
    return np.where(valid.sum(axis=-1) >= 2, size, np.nan)


def _pck_from_radius(pred, target, valid, radius, *, reduce: str, what: str):
    """Shared tail of pck2d/pckh: radius (...) per pose in the keypoint units."""
    if reduce not in ("mean", "none", "joint"):
        raise ValueError(f"{what}: reduce must be 'mean', 'none' or 'joint', got {reduce!r}")
    with np.errstate(invalid="ignore"):
        pose_ok = np.isfinite(radius) & (radius > 0)
    valid = valid & pose_ok[..., None]
    dist = np.sqrt(np.square(pred - target).sum(axis=-1))
    with np.errstate(invalid="ignore"):
        correct = (dist <= np.where(pose_ok, radius, 0.0)[..., None]) & valid
    with np.errstate(invalid="ignore", divide="ignore"):
        if reduce == "none":
            return correct.sum(axis=-1) / np.where(valid.any(axis=-1), valid.sum(axis=-1), np.nan)
        n_joints = valid.shape[-1]
        if reduce == "joint":
            hits = correct.reshape(-1, n_joints).sum(axis=0)
            counts = valid.reshape(-1, n_joints).sum(axis=0)
            return hits / np.where(counts > 0, counts, np.nan)
    total = int(valid.sum())
    return float(correct.sum() / total) if total else float("nan")


def pck2d(pred, target, *, visibility=None, threshold: float = PCK_THRESHOLD, normalize="bbox",
          layout=None, reduce: str = "mean"):
    """PCK: fraction of labelled joints predicted within ``threshold`` x a per-pose reference length.

    pred, target: (..., J, 2) keypoints (pixels); visibility: (..., J) target flags (v == 0 excluded).
    normalize: the reference length of each pose,
      * ``"bbox"`` (default): max(width, height) of the box around the target's labelled joints
        (PCK@0.05 of paper 002: 5% of the person's size),
      * ``"torso"``: distance left shoulder - right hip of the target (needs ``layout`` naming them),
      * ``"none"``: 1, i.e. ``threshold`` is in pixels,
      * an array of shape (...) or a scalar: given reference lengths.
    Returns a float / (...) / (J,) fraction in [0, 1] (see module docstring for ``reduce``).
    Higher is better.
    """
    pred, target, valid = _check_2d_pair(pred, target, visibility, what="pck2d")
    lead = pred.shape[:-2]
    if isinstance(normalize, str):
        if normalize == "bbox":
            reference = bbox_size(target, valid)
        elif normalize == "torso":
            if layout is None:
                raise ValueError("pck2d: normalize='torso' needs layout= to find the shoulder and hip joints")
            reference = torso_size(target, valid, layout=layout)
        elif normalize == "none":
            reference = np.ones(lead)
        else:
            raise ValueError(f"pck2d: normalize must be 'bbox', 'torso', 'none' or an array, got {normalize!r}")
    else:
        reference = _per_pose_reference(normalize, lead, what="pck2d", name="normalize")
    return _pck_from_radius(pred, target, valid, float(threshold) * reference, reduce=reduce, what="pck2d")


def pckh(pred, target, *, head_size, visibility=None, threshold: float = PCKH_THRESHOLD, reduce: str = "mean"):
    """PCKh (MPII): fraction of labelled joints within ``threshold`` x the head size of the pose.

    pred, target: (..., J, 2) keypoints (pixels); visibility: (..., J) target flags (v == 0 excluded).
    head_size: (...) or scalar, per-pose head segment length in the keypoint units. For MPII use
    :func:`head_size_from_headbox` (0.6 x head-box diagonal); for COCO-17, which has no head box,
    :func:`head_size_coco17` (diagonal of the labelled face keypoints), or pass your own.
    Returns a float / (...) / (J,) fraction in [0, 1]. Higher is better.
    """
    pred, target, valid = _check_2d_pair(pred, target, visibility, what="pckh")
    reference = _per_pose_reference(head_size, pred.shape[:-2], what="pckh", name="head_size")
    return _pck_from_radius(pred, target, valid, float(threshold) * reference, reduce=reduce, what="pckh")
