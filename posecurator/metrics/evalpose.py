"""EvalPose: geometric similarity of two poses (paper 002, "Towards Effective Synthetic Data
Sampling for Domain Adaptive Pose Estimation", Section 2.4, Eq. 3).

Definition, as the paper gives it: for a chosen set of keypoint triplets of the kinematic graph,
each pose gets the vector of angles Theta = [theta_1 ... theta_T] with
``theta = arccos(v1 . v2 / (|v1| |v2|))``, v1 and v2 being the connection vectors of the triplet;
the similarity of two poses is the cosine similarity of their angle vectors::

    EvalPose = Theta_1 . Theta_2 / (|Theta_1| |Theta_2|)

The paper shows its triplets only in a figure, so they are derived from the layout's kinematic
tree: for every joint j that has a parent p and a child c, the angle at j between v1 = x_p - x_j
and v2 = x_c - x_j (one triplet per child; the root has no parent and gives none).
:func:`layout_triplets` lists them; any (T, 3) list of (end, vertex, end) joint indices can be
passed instead.

Properties: works for 2D and 3D poses alike; invariant to translation, rotation and uniform scale
of either pose. Angles lie in [0, pi] (radians), so EvalPose lies in [0, 1]; **higher = more
similar**, 1 (up to rounding) when the two angle vectors are proportional, e.g. identical
angles. Because all angles are non-negative, even unrelated poses score far above 0 (real mocap
in H36M17: about 0.89-1, mean 0.98 over pairs of different frames); compare values relative to
each other. Conventions for degenerate input: a triplet with a
zero-length connection vector has theta = pi/2; with ``visibility`` a triplet counts only where
its three joints are labelled (v > 0) in *both* poses; a pair with no common triplet gives NaN.
"""

from __future__ import annotations

import numpy as np

DEFAULT_CHUNK = 4096


def layout_triplets(layout) -> np.ndarray:
    """(T, 3) int64 joint triplets (parent, joint, child) of a layout's kinematic tree, ordered by
    joint then child index: the angle is measured at the middle joint.

    ``layout`` is any object with a ``parents`` sequence (-1 for the root), e.g.
    :data:`posecurator.skeleton.H36M17` (13 triplets) or ``COCO17``.
    """
    parents = [int(p) for p in layout.parents]
    triplets = [
        (p, j, c)
        for j, p in enumerate(parents)
        if p >= 0
        for c, pc in enumerate(parents)
        if pc == j
    ]
    if not triplets:
        raise ValueError(f"layout {getattr(layout, 'name', '?')}: no joint has both a parent and a child")
    return np.asarray(triplets, dtype=np.int64)


def _resolve_triplets(layout, triplets, n_joints: int, what: str) -> np.ndarray:
    if triplets is None:
        if layout is None:
            raise ValueError(f"{what}: give layout= (or triplets=)")
        if len(layout.parents) != n_joints:
            raise ValueError(f"{what}: layout {getattr(layout, 'name', '?')} has {len(layout.parents)} joints, "
                             f"poses have {n_joints}")
        return layout_triplets(layout)
    triplets = np.asarray(triplets, dtype=np.int64)
    if triplets.ndim != 2 or triplets.shape[1] != 3 or len(triplets) == 0:
        raise ValueError(f"{what}: triplets must be (T, 3) joint indices, got {triplets.shape}")
    if triplets.min() < 0 or triplets.max() >= n_joints:
        raise ValueError(f"{what}: triplet joint index out of range for {n_joints} joints")
    return triplets


def _check_poses(poses, what: str) -> np.ndarray:
    poses = np.asarray(poses)
    if poses.ndim < 2 or poses.shape[-1] not in (2, 3) or poses.shape[-2] == 0:
        raise ValueError(f"{what}: poses must be (..., J, 2) or (..., J, 3), got {poses.shape}")
    return poses


def _check_visibility(visibility, poses: np.ndarray, what: str):
    if visibility is None:
        return None
    visibility = np.asarray(visibility)
    if visibility.shape != poses.shape[:-1]:
        raise ValueError(f"{what}: visibility must be {poses.shape[:-1]} (..., J), got {visibility.shape}")
    return visibility > 0


def _angles(poses: np.ndarray, triplets: np.ndarray) -> np.ndarray:
    """(..., J, D) -> (..., T) float64 angles in radians, by the paper's arccos formula."""
    poses = poses.astype(np.float64, copy=False)
    vertex = poses[..., triplets[:, 1], :]
    v1 = poses[..., triplets[:, 0], :] - vertex
    v2 = poses[..., triplets[:, 2], :] - vertex
    dot = np.einsum("...d,...d->...", v1, v2)
    norms = np.sqrt(np.einsum("...d,...d->...", v1, v1) * np.einsum("...d,...d->...", v2, v2))
    # zero-length connection vector: cosine 0 by convention (theta = pi/2)
    cos = np.divide(dot, norms, out=np.zeros_like(dot), where=norms > 0)
    return np.arccos(np.clip(cos, -1.0, 1.0))


def joint_angles(poses, *, layout=None, triplets=None) -> np.ndarray:
    """EvalPose's angle vector Theta of each pose: (..., J, 2|3) -> (..., T) radians in [0, pi]."""
    poses = _check_poses(poses, "joint_angles")
    triplets = _resolve_triplets(layout, triplets, poses.shape[-2], "joint_angles")
    return _angles(poses, triplets)


def _triplet_mask(valid: np.ndarray | None, triplets: np.ndarray) -> np.ndarray | None:
    if valid is None:
        return None
    return valid[..., triplets[:, 0]] & valid[..., triplets[:, 1]] & valid[..., triplets[:, 2]]


def evalpose(a, b, *, layout=None, triplets=None, visibility_a=None, visibility_b=None):
    """EvalPose of pose pairs: cosine similarity of their joint-triplet angle vectors (paper 002, Eq. 3).

    a, b: (..., J, D) poses, D = 2 or 3, leading shapes broadcast against each other (units do not
    matter); layout: the joints' kinematic tree (triplets derived by :func:`layout_triplets`) or
    triplets: (T, 3) indices. visibility_a/b: optional (..., J) flags, v == 0 excludes the joint.
    Returns (...) float64 in [0, 1]; higher = more similar; NaN where no triplet is valid in both.
    """
    a = _check_poses(a, "evalpose")
    b = _check_poses(b, "evalpose")
    if a.shape[-2:] != b.shape[-2:]:
        raise ValueError(f"evalpose: poses must have the same joints and dimension, got {a.shape} and {b.shape}")
    triplets = _resolve_triplets(layout, triplets, a.shape[-2], "evalpose")
    theta_a = _angles(a, triplets)
    theta_b = _angles(b, triplets)
    mask_a = _triplet_mask(_check_visibility(visibility_a, a, "evalpose"), triplets)
    mask_b = _triplet_mask(_check_visibility(visibility_b, b, "evalpose"), triplets)
    if mask_a is not None or mask_b is not None:
        both = np.ones((), bool)
        for mask in (mask_a, mask_b):
            if mask is not None:
                both = both & mask
        theta_a = np.where(both, theta_a, 0.0)
        theta_b = np.where(both, theta_b, 0.0)
    dot = np.einsum("...t,...t->...", theta_a, theta_b)
    norm = np.sqrt(np.einsum("...t,...t->...", theta_a, theta_a) * np.einsum("...t,...t->...", theta_b, theta_b))
    return np.divide(dot, norm, out=np.full(np.shape(dot), np.nan), where=norm > 0)


def _angles_chunked(poses: np.ndarray, triplets: np.ndarray, chunk: int) -> np.ndarray:
    out = np.empty((len(poses), len(triplets)), dtype=np.float64)
    for start in range(0, len(poses), chunk):
        out[start:start + chunk] = _angles(poses[start:start + chunk], triplets)
    return out


def _matrix_inputs(A, B, layout, triplets, visibility_a, visibility_b, chunk, what):
    A = _check_poses(A, what)
    B = _check_poses(B, what)
    if A.ndim != 3 or B.ndim != 3 or A.shape[1:] != B.shape[1:]:
        raise ValueError(f"{what}: A and B must be (N, J, D) and (M, J, D), got {A.shape} and {B.shape}")
    if int(chunk) < 1:
        raise ValueError(f"{what}: chunk must be positive, got {chunk}")
    triplets = _resolve_triplets(layout, triplets, A.shape[1], what)
    theta_a = _angles_chunked(A, triplets, int(chunk))
    theta_b = _angles_chunked(B, triplets, int(chunk))
    mask_a = _triplet_mask(_check_visibility(visibility_a, A, what), triplets)
    mask_b = _triplet_mask(_check_visibility(visibility_b, B, what), triplets)
    return theta_a, theta_b, mask_a, mask_b


def _matrix_blocks(theta_a, theta_b, mask_a, mask_b, chunk: int):
    """Yield (row slice, block of the N x M EvalPose matrix) for ``chunk`` rows of A at a time."""
    if mask_a is None and mask_b is None:
        unit_a = _unit_rows(theta_a)
        unit_b_t = _unit_rows(theta_b).T
        for start in range(0, len(unit_a), chunk):
            yield slice(start, start + chunk), unit_a[start:start + chunk] @ unit_b_t
        return
    ma = np.ones(theta_a.shape) if mask_a is None else mask_a.astype(np.float64)
    mb = np.ones(theta_b.shape) if mask_b is None else mask_b.astype(np.float64)
    ta, tb = theta_a * ma, theta_b * mb
    for start in range(0, len(ta), chunk):
        rows = slice(start, start + chunk)
        dot = ta[rows] @ tb.T
        norm_a2 = (ta[rows] ** 2) @ mb.T  # |theta_a|^2 over the triplets also valid in b
        norm_b2 = ma[rows] @ (tb ** 2).T
        norm = np.sqrt(norm_a2 * norm_b2)
        yield rows, np.divide(dot, norm, out=np.full(dot.shape, np.nan), where=norm > 0)


def _unit_rows(theta: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(theta, axis=1, keepdims=True)
    return np.divide(theta, norm, out=np.full(theta.shape, np.nan), where=norm > 0)


def evalpose_matrix(A, B, *, layout=None, triplets=None, visibility_a=None, visibility_b=None,
                    chunk: int = DEFAULT_CHUNK, dtype=np.float64) -> np.ndarray:
    """EvalPose of every pose in A against every pose in B: (N, J, D), (M, J, D) -> (N, M).

    Same definition and options as :func:`evalpose` (entry [i, k] equals ``evalpose(A[i], B[k])``);
    computed as matrix products of unit angle vectors, ``chunk`` rows of A at a time. With
    visibility the norms are restricted to the triplets valid in both poses of each pair (three
    matrix products). ``dtype`` of the result (float32 halves its memory for large N x M).
    For bin-to-bin heatmaps of large bins, :func:`evalpose_mean` gives the mean without the matrix.
    """
    theta_a, theta_b, mask_a, mask_b = _matrix_inputs(A, B, layout, triplets, visibility_a, visibility_b,
                                                      chunk, "evalpose_matrix")
    out = np.empty((len(theta_a), len(theta_b)), dtype=dtype)
    for rows, block in _matrix_blocks(theta_a, theta_b, mask_a, mask_b, int(chunk)):
        out[rows] = block
    return out


def evalpose_mean(A, B, *, layout=None, triplets=None, visibility_a=None, visibility_b=None,
                  chunk: int = DEFAULT_CHUNK) -> float:
    """Mean EvalPose over all N x M pairs of A (N, J, D) and B (M, J, D): one cell of a bin-to-bin
    similarity heatmap. Without visibility it is exact in O((N + M) T): the mean of dot products of
    unit vectors is the dot product of their means. With visibility it averages the
    :func:`evalpose_matrix` blocks without keeping them (NaN pairs skipped). Higher = more similar.
    """
    theta_a, theta_b, mask_a, mask_b = _matrix_inputs(A, B, layout, triplets, visibility_a, visibility_b,
                                                      chunk, "evalpose_mean")
    if mask_a is None and mask_b is None:
        # rows with a zero angle vector are NaN and are skipped, exactly as NaN pairs would be
        return float(np.nanmean(_unit_rows(theta_a), axis=0) @ np.nanmean(_unit_rows(theta_b), axis=0))
    total, count = 0.0, 0
    for _, block in _matrix_blocks(theta_a, theta_b, mask_a, mask_b, int(chunk)):
        total += float(np.nansum(block))
        count += int(np.isfinite(block).sum())
    return total / count if count else float("nan")
