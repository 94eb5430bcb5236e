"""3D pose errors: MPJPE (Protocol #1), PA-MPJPE (Protocol #2), N-MPJPE, PCK3D and its AUC.

Conventions (../shared/BENCHMARK.md, VideoPose3D ``common/loss.py``):

* ``pred`` and ``target`` have the same shape ``(..., J, 3)``: any number of leading dimensions,
  J joints, coordinates in millimetres. Inputs are expected root-relative already (the metrics
  do not subtract a root joint). Every function also accepts 2D poses ``(..., J, 2)``.
* Errors are Euclidean distances per joint in the units of the input (mm); **lower is better**.
  PCK3D and AUC are fractions in [0, 1]; **higher is better**.
* ``reduce="mean"`` returns one Python float, the mean over every pose (and joint);
  ``reduce="none"`` returns the per-pose value with the leading shape ``(...)`` (float64).
* The NumPy functions work through the poses in chunks of ``chunk`` poses (float64 inside a
  chunk), so memory stays bounded for millions of poses; there are no per-pose Python loops.
  Plain per-pose loop versions live in :mod:`posecurator.metrics.reference` (tests only).

PyTorch twins (``*_torch``) keep the same conventions for training losses; ``mpjpe_torch`` and
``n_mpjpe_torch`` are differentiable, ``pa_mpjpe_torch`` is meant for evaluation.
"""

from __future__ import annotations

import numpy as np

DEFAULT_CHUNK = 65_536
PCK3D_THRESHOLD_MM = 150.0
AUC3D_THRESHOLDS_MM = np.linspace(0.0, 150.0, 31)


# ---------------------------------------------------------------------------------- helpers
def _check_pair(pred, target, *, what: str, dims: tuple[int, ...] = (2, 3)) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as arrays of one shape ``(..., J, D)`` with D in ``dims`` and at least one pose."""
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"{what}: pred {pred.shape} and target {target.shape} must have the same shape")
    if pred.ndim < 2 or pred.shape[-1] not in dims:
        want = " or ".join(str(d) for d in dims)
        raise ValueError(f"{what}: poses must be (..., J, {want}), got {pred.shape}")
    if pred.shape[-2] == 0 or pred.size == 0:
        raise ValueError(f"{what}: no poses or no joints in input of shape {pred.shape}")
    return pred, target


def _check_reduce(reduce: str, what: str) -> None:
    if reduce not in ("mean", "none"):
        raise ValueError(f"{what}: reduce must be 'mean' or 'none', got {reduce!r}")


def _check_chunk(chunk: int, what: str) -> None:
    if int(chunk) < 1:
        raise ValueError(f"{what}: chunk must be a positive number of poses, got {chunk}")


def _per_pose(fn, pred: np.ndarray, target: np.ndarray, chunk: int) -> np.ndarray:
    """Apply ``fn(pred64, target64) -> (n, ...)`` to chunks of the flattened poses.

    Returns an array of shape ``lead + trailing`` where ``lead`` is the leading shape of the input
    and ``trailing`` whatever ``fn`` appends per pose (``()`` for one value per pose).
    """
    lead = pred.shape[:-2]
    flat_p = pred.reshape(-1, *pred.shape[-2:])
    flat_t = target.reshape(-1, *target.shape[-2:])
    n = flat_p.shape[0]
    out = None
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        part = fn(flat_p[start:stop].astype(np.float64, copy=False), flat_t[start:stop].astype(np.float64, copy=False))
        if out is None:
            out = np.empty((n, *part.shape[1:]), dtype=np.float64)
        out[start:stop] = part
    return out.reshape(*lead, *out.shape[1:])


def _reduce(values: np.ndarray, reduce: str):
    return float(values.mean()) if reduce == "mean" else values


# --------------------------------------------------------------------------- batched cores
def _joint_errors(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(n, J, D) x2 -> (n, J) Euclidean distances."""
    diff = pred - target
    return np.sqrt(np.einsum("njd,njd->nj", diff, diff))


def _det(m: np.ndarray) -> np.ndarray:
    """Determinants of (n, D, D) matrices, D = 2 or 3, in closed form (much faster than LAPACK)."""
    if m.shape[-1] == 2:
        return m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]
    return (m[:, 0, 0] * (m[:, 1, 1] * m[:, 2, 2] - m[:, 1, 2] * m[:, 2, 1])
            - m[:, 0, 1] * (m[:, 1, 0] * m[:, 2, 2] - m[:, 1, 2] * m[:, 2, 0])
            + m[:, 0, 2] * (m[:, 1, 0] * m[:, 2, 1] - m[:, 1, 1] * m[:, 2, 0]))


def _procrustes_transform(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Similarity transform taking each ``pred`` pose onto its ``target`` (least squares).

    pred, target: (n, J, D) float64. Returns ``(M, shift)`` with M (n, D, D) = scale * rotation and
    shift (n, D), so that the aligned pose is ``pred @ M + shift[:, None]``.

    Same solution as VideoPose3D ``p_mpjpe`` (Umeyama 1991): with the centred poses t0, p0 and the
    cross-covariance H = t0^T p0 (D x D) = U S V^T (one batched ``np.linalg.svd`` on (n, D, D)),
    R = V U^T; when det(R) < 0 the last column of V and the last singular value change sign so R
    is a proper rotation (no mirror image); scale = trace(S) / |p0|^2. H and |p0|^2 are formed from
    raw sums minus the centroid terms, which avoids broadcasting over (n, J, D) in float64.
    """
    n_joints = pred.shape[1]
    weights = np.full(n_joints, 1.0 / n_joints)
    mu_t = np.matmul(weights, target)  # (n, D)
    mu_p = np.matmul(weights, pred)
    H = np.matmul(target.transpose(0, 2, 1), pred) - n_joints * mu_t[:, :, None] * mu_p[:, None, :]
    var_p = np.einsum("njd,njd->n", pred, pred) - n_joints * np.einsum("nd,nd->n", mu_p, mu_p)
    U, s, Vt = np.linalg.svd(H)
    V = Vt.transpose(0, 2, 1)
    sign = np.where(_det(U) * _det(V) < 0, -1.0, 1.0)  # det(V U^T), each factor is +-1
    V[:, :, -1] *= sign[:, None]
    s[:, -1] *= sign
    R = np.matmul(V, U.transpose(0, 2, 1))
    # A pose whose joints all coincide (spread lost in rounding) has no orientation: scale 0 moves
    # it onto the target's centroid.
    tiny = 1e-12 * (1.0 + n_joints * np.einsum("nd,nd->n", mu_p, mu_p))
    scale = s.sum(axis=1) / np.where(var_p > tiny, var_p, np.inf)
    M = scale[:, None, None] * R
    shift = mu_t - np.einsum("nd,nde->ne", mu_p, M)
    return M, shift


def _procrustes_core(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(n, J, D) float64 -> pred aligned to target (rotation with reflection fix, scale, shift)."""
    M, shift = _procrustes_transform(pred, target)
    aligned = np.matmul(pred, M)
    aligned += shift[:, None, :]
    return aligned


def _pa_errors(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    M, shift = _procrustes_transform(pred, target)
    diff = np.matmul(pred, M)
    diff -= target
    diff += shift[:, None, :]
    return np.sqrt(np.einsum("njd,njd->nj", diff, diff)).mean(axis=1)


def _n_errors(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    # VideoPose3D n_mpjpe: the scale s minimising |s * pred - target|^2, per pose.
    num = (pred * target).sum(axis=(1, 2))
    den = np.square(pred).sum(axis=(1, 2))
    scale = num / np.where(den > 0, den, 1.0)
    return _joint_errors(scale[:, None, None] * pred, target).mean(axis=1)


# ------------------------------------------------------------------------------ NumPy API
def per_joint_errors(pred, target, *, reduce: str = "none", chunk: int = DEFAULT_CHUNK):
    """Euclidean error of every joint, without alignment.

    pred, target: (..., J, D) with D = 2 or 3, same shape, any units (mm for 3D).
    reduce="none": (..., J) float64 errors; reduce="mean": (J,) float64, the MPJPE of each joint
    averaged over all poses. Lower is better.
    """
    pred, target = _check_pair(pred, target, what="per_joint_errors")
    if reduce not in ("mean", "none"):
        raise ValueError(f"per_joint_errors: reduce must be 'mean' or 'none', got {reduce!r}")
    _check_chunk(chunk, "per_joint_errors")
    errors = _per_pose(_joint_errors, pred, target, int(chunk))
    if reduce == "mean":
        return errors.reshape(-1, errors.shape[-1]).mean(axis=0)
    return errors


def mpjpe(pred, target, *, reduce: str = "mean", chunk: int = DEFAULT_CHUNK):
    """MPJPE, Protocol #1: mean Euclidean joint error without any alignment.

    pred, target: (..., J, 3) (or (..., J, 2)) root-relative poses in mm, same shape.
    Returns a float (reduce="mean", mean over all poses and joints) or the per-pose errors of shape
    (...) (reduce="none"), in the input units (mm). Lower is better.
    """
    pred, target = _check_pair(pred, target, what="mpjpe")
    _check_reduce(reduce, "mpjpe")
    _check_chunk(chunk, "mpjpe")
    return _reduce(_per_pose(lambda p, t: _joint_errors(p, t).mean(axis=1), pred, target, int(chunk)), reduce)


def procrustes_align(pred, target, *, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """``pred`` moved onto ``target`` by the best similarity transform (Procrustes / Umeyama).

    pred, target: (..., J, D), D = 2 or 3, same shape. Each pose gets its own rotation (a proper
    rotation: reflections are not allowed), uniform scale and translation minimising the summed
    squared joint distance to ``target``. Returns an array of pred's shape in pred's float dtype
    (float64 for integer input).
    """
    pred, target = _check_pair(pred, target, what="procrustes_align")
    _check_chunk(chunk, "procrustes_align")
    out_dtype = pred.dtype if np.issubdtype(pred.dtype, np.floating) else np.float64
    return _per_pose(_procrustes_core, pred, target, int(chunk)).astype(out_dtype, copy=False)


def pa_mpjpe(pred, target, *, reduce: str = "mean", chunk: int = DEFAULT_CHUNK):
    """PA-MPJPE, Protocol #2: MPJPE after aligning each predicted pose to its target with a
    rotation, a uniform scale and a translation (Procrustes, batched SVD, reflection fix).

    pred, target: (..., J, 3) poses in mm, same shape. Returns a float (reduce="mean") or per-pose
    errors (...) (reduce="none") in mm. Lower is better. (The alignment minimises the squared
    error, so PA-MPJPE is almost always, but not provably, below :func:`mpjpe`.)
    A mirror image of the target is *not* aligned away (the rotation must have det +1).
    """
    pred, target = _check_pair(pred, target, what="pa_mpjpe", dims=(2, 3))
    _check_reduce(reduce, "pa_mpjpe")
    _check_chunk(chunk, "pa_mpjpe")
    return _reduce(_per_pose(_pa_errors, pred, target, int(chunk)), reduce)


def n_mpjpe(pred, target, *, reduce: str = "mean", chunk: int = DEFAULT_CHUNK):
    """N-MPJPE (VideoPose3D): MPJPE after scaling each predicted pose by the one factor that best
    matches its target in the least-squares sense (no rotation, no translation).

    pred, target: (..., J, 3) root-relative poses in mm, same shape. Returns a float or per-pose
    errors (...) in mm. Lower is better.
    """
    pred, target = _check_pair(pred, target, what="n_mpjpe")
    _check_reduce(reduce, "n_mpjpe")
    _check_chunk(chunk, "n_mpjpe")
    return _reduce(_per_pose(_n_errors, pred, target, int(chunk)), reduce)


def pck3d(pred, target, *, threshold: float = PCK3D_THRESHOLD_MM, reduce: str = "mean",
          chunk: int = DEFAULT_CHUNK):
    """PCK3D: fraction of joints whose Euclidean error is at most ``threshold`` mm (error <=
    threshold counts as correct), without alignment (MPI-INF-3DHP convention, 150 mm).

    pred, target: (..., J, 3) in mm. Returns a float in [0, 1] (reduce="mean": over all joints of
    all poses) or the per-pose fractions (...). Higher is better.
    """
    pred, target = _check_pair(pred, target, what="pck3d")
    _check_reduce(reduce, "pck3d")
    _check_chunk(chunk, "pck3d")
    threshold = float(threshold)
    return _reduce(
        _per_pose(lambda p, t: (_joint_errors(p, t) <= threshold).mean(axis=1), pred, target, int(chunk)), reduce
    )


def auc3d(pred, target, *, thresholds=AUC3D_THRESHOLDS_MM, reduce: str = "mean", chunk: int = DEFAULT_CHUNK):
    """AUC of the PCK3D curve: the mean of :func:`pck3d` over ``thresholds`` (mm; default 0, 5, ...,
    150 mm, 31 values, the MPI-INF-3DHP convention).

    pred, target: (..., J, 3) in mm. Returns a float in [0, 1] or per-pose values (...).
    Higher is better.
    """
    pred, target = _check_pair(pred, target, what="auc3d")
    _check_reduce(reduce, "auc3d")
    _check_chunk(chunk, "auc3d")
    sorted_thr = np.sort(np.asarray(thresholds, dtype=np.float64).ravel())
    if sorted_thr.size == 0:
        raise ValueError("auc3d: thresholds must not be empty")

    def per_pose(p, t):
        # number of thresholds >= error, for every joint, without an (n, J, T) array
        n_below = np.searchsorted(sorted_thr, _joint_errors(p, t), side="left")
        return (sorted_thr.size - n_below).mean(axis=1) / sorted_thr.size

    return _reduce(_per_pose(per_pose, pred, target, int(chunk)), reduce)


# ---------------------------------------------------------------------------- PyTorch twins
def _check_pair_torch(pred, target, *, what: str, dims: tuple[int, ...] = (2, 3)) -> None:
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(f"{what}: pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    if pred.dim() < 2 or pred.shape[-1] not in dims:
        want = " or ".join(str(d) for d in dims)
        raise ValueError(f"{what}: poses must be (..., J, {want}), got {tuple(pred.shape)}")


def mpjpe_torch(pred, target, *, reduce: str = "mean"):
    """PyTorch twin of :func:`mpjpe` (Protocol #1), differentiable; a training loss.

    pred, target: (..., J, 3) tensors in mm. Returns a 0-d tensor (reduce="mean") or per-pose
    errors (...) in mm. Lower is better.
    """
    _check_pair_torch(pred, target, what="mpjpe_torch")
    _check_reduce(reduce, "mpjpe_torch")
    per_pose = (pred - target).norm(dim=-1).mean(dim=-1)
    return per_pose.mean() if reduce == "mean" else per_pose


def n_mpjpe_torch(pred, target, *, reduce: str = "mean"):
    """PyTorch twin of :func:`n_mpjpe` (scale-only alignment, VideoPose3D), differentiable.

    pred, target: (..., J, 3) tensors in mm. Returns a 0-d tensor or per-pose errors (...) in mm.
    """
    _check_pair_torch(pred, target, what="n_mpjpe_torch")
    _check_reduce(reduce, "n_mpjpe_torch")
    num = (pred * target).sum(dim=(-2, -1), keepdim=True)
    den = pred.square().sum(dim=(-2, -1), keepdim=True)
    scale = num / den.clamp_min(1e-12)
    return mpjpe_torch(scale * pred, target, reduce=reduce)


def _det_torch(m):
    """Determinants of (n, D, D) tensors, D = 2 or 3, in closed form (torch.linalg.det is slow
    for many tiny matrices on CPU)."""
    if m.shape[-1] == 2:
        return m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]
    return (m[:, 0, 0] * (m[:, 1, 1] * m[:, 2, 2] - m[:, 1, 2] * m[:, 2, 1])
            - m[:, 0, 1] * (m[:, 1, 0] * m[:, 2, 2] - m[:, 1, 2] * m[:, 2, 0])
            + m[:, 0, 2] * (m[:, 1, 0] * m[:, 2, 1] - m[:, 1, 1] * m[:, 2, 0]))


def procrustes_align_torch(pred, target):
    """PyTorch twin of :func:`procrustes_align`: (..., J, D) -> pred aligned to target (rotation
    with reflection fix, uniform scale, translation), computed in float64, returned in pred's dtype.
    Same algebra as the NumPy version (one batched ``torch.linalg.svd`` of the D x D
    cross-covariances); no in-place edits, so autograd can run through it where the SVD allows.
    """
    import torch

    _check_pair_torch(pred, target, what="procrustes_align_torch")
    lead = pred.shape[:-2]
    p = pred.reshape(-1, *pred.shape[-2:]).double()
    t = target.reshape(-1, *target.shape[-2:]).double()
    n_joints = p.shape[1]
    mu_t = t.mean(dim=1)
    mu_p = p.mean(dim=1)
    H = t.transpose(1, 2) @ p - n_joints * mu_t[:, :, None] * mu_p[:, None, :]
    var_p = p.square().sum(dim=(1, 2)) - n_joints * mu_p.square().sum(dim=1)
    U, s, Vh = torch.linalg.svd(H)
    V = Vh.transpose(1, 2)
    sign = torch.where(_det_torch(U) * _det_torch(V) < 0, -1.0, 1.0).to(p.dtype)
    fix = torch.cat([torch.ones_like(s[:, :-1]), sign[:, None]], dim=1)  # diag(1, .., 1, det(V U^T))
    R = (V * fix[:, None, :]) @ U.transpose(1, 2)
    tiny = 1e-12 * (1.0 + n_joints * mu_p.square().sum(dim=1))
    scale = (s * fix).sum(dim=1) / torch.where(var_p > tiny, var_p, torch.full_like(var_p, float("inf")))
    M = scale[:, None, None] * R
    shift = mu_t - (mu_p[:, None, :] @ M)[:, 0]
    aligned = p @ M + shift[:, None, :]
    return aligned.to(pred.dtype).reshape(*lead, *pred.shape[-2:])


def pa_mpjpe_torch(pred, target, *, reduce: str = "mean"):
    """PyTorch twin of :func:`pa_mpjpe` (Protocol #2, batched SVD with reflection fix), in float64
    internally. For evaluation; gradients are not guaranteed (SVD of degenerate poses).

    pred, target: (..., J, 3) tensors in mm. Returns a 0-d tensor or per-pose errors (...) in mm,
    in pred's dtype.
    """
    _check_pair_torch(pred, target, what="pa_mpjpe_torch")
    _check_reduce(reduce, "pa_mpjpe_torch")
    aligned = procrustes_align_torch(pred, target)
    per_pose = (aligned.double() - target.double()).norm(dim=-1).mean(dim=-1).to(pred.dtype)
    return per_pose.mean() if reduce == "mean" else per_pose
