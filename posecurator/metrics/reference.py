"""Plain per-pose loop versions of the metrics, for tests and benchmarks only (slow on purpose).

Each function takes the same inputs as its batched twin but flattened to ``(N, J, D)`` (2D
metrics: ``(N, J, 2)`` and visibility ``(N, J)``) and loops over poses and joints in Python, written
from the textbook formulas rather than from the batched code, so that agreement between the two
is a real check. Procrustes follows Umeyama (1991) in its covariance form.
"""

from __future__ import annotations

import math

import numpy as np


def _dist(a, b) -> float:
    return math.sqrt(sum((float(x) - float(y)) ** 2 for x, y in zip(a, b)))


def mpjpe_loop(pred, target) -> np.ndarray:
    """(N, J, D) -> (N,) mean joint distance per pose."""
    out = np.empty(len(pred))
    for i in range(len(pred)):
        out[i] = sum(_dist(pred[i][j], target[i][j]) for j in range(len(pred[i]))) / len(pred[i])
    return out


def umeyama_align_one(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """One pose (J, D): the similarity transform (rotation det +1, scale, translation) of Umeyama
    (1991) applied to ``pred`` so that it best matches ``target``."""
    x = np.asarray(pred, dtype=np.float64)  # source
    y = np.asarray(target, dtype=np.float64)  # destination
    n, dim = x.shape
    mu_x = x.sum(axis=0) / n
    mu_y = y.sum(axis=0) / n
    var_x = sum(float(np.dot(x[j] - mu_x, x[j] - mu_x)) for j in range(n)) / n
    cov = np.zeros((dim, dim))
    for j in range(n):
        cov += np.outer(y[j] - mu_y, x[j] - mu_x)
    cov /= n
    U, d, Vt = np.linalg.svd(cov)
    S = np.eye(dim)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[-1, -1] = -1.0
    R = U @ S @ Vt
    c = float(np.trace(np.diag(d) @ S)) / var_x if var_x > 0 else 0.0
    t = mu_y - c * R @ mu_x
    return np.array([c * R @ x[j] + t for j in range(n)])


def pa_mpjpe_loop(pred, target) -> np.ndarray:
    """(N, J, 3) -> (N,) MPJPE after Umeyama alignment of each pose."""
    out = np.empty(len(pred))
    for i in range(len(pred)):
        aligned = umeyama_align_one(pred[i], target[i])
        out[i] = sum(_dist(aligned[j], target[i][j]) for j in range(len(aligned))) / len(aligned)
    return out


def n_mpjpe_loop(pred, target) -> np.ndarray:
    """(N, J, 3) -> (N,) MPJPE after the least-squares scale s = <pred, target> / <pred, pred>."""
    out = np.empty(len(pred))
    for i in range(len(pred)):
        p = np.asarray(pred[i], dtype=np.float64)
        t = np.asarray(target[i], dtype=np.float64)
        s = float(np.sum(p * t) / np.sum(p * p))
        out[i] = sum(_dist(s * p[j], t[j]) for j in range(len(p))) / len(p)
    return out


def pck3d_loop(pred, target, threshold: float) -> np.ndarray:
    """(N, J, 3) -> (N,) fraction of joints with distance <= threshold."""
    out = np.empty(len(pred))
    for i in range(len(pred)):
        hits = [_dist(pred[i][j], target[i][j]) <= threshold for j in range(len(pred[i]))]
        out[i] = sum(hits) / len(hits)
    return out


def auc3d_loop(pred, target, thresholds) -> np.ndarray:
    """(N, J, 3) -> (N,) mean of pck3d over the thresholds."""
    per_threshold = [pck3d_loop(pred, target, float(t)) for t in thresholds]
    return np.mean(per_threshold, axis=0)


def pck2d_loop(pred, target, visibility, reference, threshold: float) -> tuple[int, int]:
    """(N, J, 2), visibility (N, J), reference length (N,) -> (correct joints, valid joints)."""
    correct = valid = 0
    for i in range(len(pred)):
        ref = float(reference[i])
        if not (math.isfinite(ref) and ref > 0):
            continue
        for j in range(len(pred[i])):
            if visibility is not None and visibility[i][j] <= 0:
                continue
            valid += 1
            correct += _dist(pred[i][j], target[i][j]) <= threshold * ref
    return correct, valid


def bbox_size_loop(target, visibility) -> np.ndarray:
    """(N, J, 2) -> (N,) max(width, height) of the labelled joints (NaN if none)."""
    out = np.full(len(target), np.nan)
    for i in range(len(target)):
        pts = [target[i][j] for j in range(len(target[i])) if visibility is None or visibility[i][j] > 0]
        if pts:
            xs = [float(p[0]) for p in pts]
            ys = [float(p[1]) for p in pts]
            out[i] = max(max(xs) - min(xs), max(ys) - min(ys))
    return out


def triplets_loop(parents) -> list[tuple[int, int, int]]:
    """(parent, joint, child) for every joint with a parent, one per child."""
    out = []
    for j in range(len(parents)):
        if parents[j] < 0:
            continue
        for c in range(len(parents)):
            if parents[c] == j:
                out.append((parents[j], j, c))
    return out


def evalpose_loop(a, b, triplets, visibility_a=None, visibility_b=None) -> float:
    """One pair of poses (J, D): cosine similarity of the arccos angle vectors (paper 002, Eq. 3)."""
    theta_a, theta_b = [], []
    for p, j, c in triplets:
        if visibility_a is not None and min(visibility_a[p], visibility_a[j], visibility_a[c]) <= 0:
            continue
        if visibility_b is not None and min(visibility_b[p], visibility_b[j], visibility_b[c]) <= 0:
            continue
        for pose, thetas in ((a, theta_a), (b, theta_b)):
            v1 = [float(pose[p][k]) - float(pose[j][k]) for k in range(len(pose[j]))]
            v2 = [float(pose[c][k]) - float(pose[j][k]) for k in range(len(pose[j]))]
            n1 = math.sqrt(sum(x * x for x in v1))
            n2 = math.sqrt(sum(x * x for x in v2))
            cos = sum(x * y for x, y in zip(v1, v2)) / (n1 * n2) if n1 * n2 > 0 else 0.0
            thetas.append(math.acos(max(-1.0, min(1.0, cos))))
    na = math.sqrt(sum(x * x for x in theta_a))
    nb = math.sqrt(sum(x * x for x in theta_b))
    if na == 0 or nb == 0:
        return float("nan")
    return sum(x * y for x, y in zip(theta_a, theta_b)) / (na * nb)
