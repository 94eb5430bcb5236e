"""Placing a root-relative 3D prediction in its camera from the 2D it was lifted from.

A lifter (or any 3D pose estimator) predicts joints relative to the root, in the camera frame,
in mm; to compare the prediction with the given 2D in pixels it must first be placed in front of
the camera: ``X_j = P_j + T`` with one root translation ``T`` (3,) per pose, then projected.

``T`` is the linear least-squares solution of the projection equations multiplied through by
depth (the algebraic error, as in the perspective-n-point DLT): with the normalised image
coordinates ``u_j = (x_j - c_x) / f_x``, ``v_j = (y_j - c_y) / f_y`` of the given 2D,

    T_x - u_j T_z = u_j P_jz - P_jx
    T_y - v_j T_z = v_j P_jz - P_jy          for every labelled joint j,

solved by the 3 x 3 normal equations of all labelled joints (per-joint ``weights`` optional).
When that solution puts a joint at or behind the camera (a prediction far from the 2D can do
this), the weak-perspective placement is used instead: depth = the RMS spread of the
prediction's x, y over the RMS spread of the normalised 2D, x and y so the centroids line up.
The solution is exact when the 2D is an exact projection of the prediction, and the algebraic
error is close to the pixel error for people far from the camera relative to their depth
extent (here several metres vs. under one metre). A pose with fewer than two labelled joints,
or for which neither placement puts every joint in front of the camera, gets NaN.

Intrinsics, when the data carries none (COCO, MPII): the focal length is the larger image side
and the principal point the image centre (:func:`default_intrinsics`, ../shared/BENCHMARK.md's
2D-only protocol): a field of view of about 53 degrees along the larger side, typical of
phone and consumer cameras. A wrong focal length mostly changes the solved depth, not the
reprojected root-relative 2D shape the error extraction compares.

All functions take any number of leading dimensions and are batched (no per-pose loops);
:func:`solve_root_translation_reference` is the plain per-pose version the tests compare with.
"""

from __future__ import annotations

import numpy as np

from posecurator.camera.core import project_points

MIN_DEPTH_MM = 1.0


def default_intrinsics(width, height) -> tuple[np.ndarray, np.ndarray]:
    """Intrinsics assumed from the image size: f = max(width, height) px for both axes, principal
    point at the image centre. width, height (...) px -> f (..., 2), c (..., 2) float64."""
    width = np.asarray(width, dtype=np.float64)
    height = np.asarray(height, dtype=np.float64)
    f = np.maximum(width, height)
    return np.stack([f, f], axis=-1), np.stack([width / 2.0, height / 2.0], axis=-1)


def _check(rel3d, x2d, visibility):
    rel3d = np.asarray(rel3d, dtype=np.float64)
    x2d = np.asarray(x2d, dtype=np.float64)
    if rel3d.ndim < 2 or rel3d.shape[-1] != 3:
        raise ValueError(f"3D joints must be (..., J, 3), got {rel3d.shape}")
    if x2d.shape != rel3d.shape[:-1] + (2,):
        raise ValueError(f"2D joints must be {rel3d.shape[:-1] + (2,)} to match the 3D {rel3d.shape}, got {x2d.shape}")
    if visibility is None:
        visibility = np.ones(rel3d.shape[:-1])
    visibility = np.asarray(visibility, dtype=np.float64)
    if visibility.shape != rel3d.shape[:-1]:
        raise ValueError(f"visibility must be {rel3d.shape[:-1]}, got {visibility.shape}")
    return rel3d, x2d, visibility


def solve_root_translation(rel3d, x2d, f, c, *, visibility=None, weights=None) -> np.ndarray:
    """Root translation (..., 3) mm that places root-relative camera-frame joints ``rel3d``
    (..., J, 3) mm onto the 2D ``x2d`` (..., J, 2) px seen with focal lengths ``f`` (..., 2) and
    principal point ``c`` (..., 2) px; see the module docstring for the equations.

    visibility (..., J): joints with 0 (or non-finite 2D or 3D) are left out; weights (J,) or
    (..., J) optional per-joint weights. Poses with fewer than two usable joints, a singular
    system, or a joint at or behind the camera after placement get NaN.
    """
    rel3d, x2d, vis = _check(rel3d, x2d, visibility)
    f = np.asarray(f, dtype=np.float64)[..., None, :]
    c = np.asarray(c, dtype=np.float64)[..., None, :]
    usable = (vis > 0) & np.isfinite(x2d).all(-1) & np.isfinite(rel3d).all(-1)
    w = usable.astype(np.float64)
    if weights is not None:
        w = w * np.broadcast_to(np.asarray(weights, dtype=np.float64), w.shape)
    uv = np.where(usable[..., None], (x2d - c) / f, 0.0)  # normalised image coordinates
    p = np.where(usable[..., None], rel3d, 0.0)
    u, v = uv[..., 0], uv[..., 1]
    px, py, pz = p[..., 0], p[..., 1], p[..., 2]
    s = lambda a: (w * a).sum(-1)  # noqa: E731  (weighted sum over joints)
    # normal equations A^T W A T = A^T W b of the rows [1, 0, -u] and [0, 1, -v]
    ata = np.empty(rel3d.shape[:-2] + (3, 3))
    ata[..., 0, 0] = s(np.ones_like(u))
    ata[..., 0, 1] = ata[..., 1, 0] = 0.0
    ata[..., 0, 2] = ata[..., 2, 0] = -s(u)
    ata[..., 1, 1] = ata[..., 0, 0]
    ata[..., 1, 2] = ata[..., 2, 1] = -s(v)
    ata[..., 2, 2] = s(u * u + v * v)
    bx, by = u * pz - px, v * pz - py
    atb = np.stack([s(bx), s(by), -s(u * bx + v * by)], axis=-1)
    enough = (usable.sum(-1) >= 2) & (np.abs(np.linalg.det(ata)) > 1e-12)
    safe = np.where(enough[..., None, None], ata, np.eye(3))
    t = np.linalg.solve(safe, atb[..., None])[..., 0]
    pz_all = np.where(np.isfinite(rel3d[..., 2]), rel3d[..., 2], 0.0)
    in_front = enough & (pz_all + t[..., None, 2] > MIN_DEPTH_MM).all(-1)
    # A prediction far from the 2D can make the algebraic solution put the body at or behind
    # the camera; such a pose still gets a place, the weak-perspective one, so that a bad
    # prediction is scored as bad rather than dropped.
    weak = _weak_perspective_translation(p, uv, w, usable)
    weak_ok = (usable.sum(-1) >= 2) & np.isfinite(weak).all(-1) & (pz_all + weak[..., None, 2] > MIN_DEPTH_MM).all(-1)
    t = np.where(in_front[..., None], t, weak)
    return np.where((in_front | weak_ok)[..., None], t, np.nan)


def _weak_perspective_translation(p, uv, w, usable):
    """Translation from the sizes alone: depth = (RMS spread of the prediction's x, y) / (RMS
    spread of the normalised 2D), then x, y so that the weighted centroids line up. p (..., J, 3),
    uv (..., J, 2) normalised image coordinates, w (..., J) weights (0 where unusable)."""
    wsum = w.sum(-1, keepdims=True)
    safe = np.where(wsum > 0, wsum, 1.0)
    mean_uv = (w[..., None] * uv).sum(-2) / safe
    mean_p = (w[..., None] * p).sum(-2) / safe
    spread_uv = np.sqrt((w * ((uv - mean_uv[..., None, :]) ** 2).sum(-1)).sum(-1) / safe[..., 0])
    spread_p = np.sqrt((w * ((p[..., :2] - mean_p[..., None, :2]) ** 2).sum(-1)).sum(-1) / safe[..., 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        z = spread_p / spread_uv  # depth of the centroid
    tz = z - mean_p[..., 2]
    txy = mean_uv * z[..., None] - mean_p[..., :2]
    out = np.concatenate([txy, tz[..., None]], axis=-1)
    return np.where((spread_uv > 0)[..., None] & (wsum > 0), out, np.nan)


def solve_root_translation_reference(rel3d, x2d, f, c, *, visibility=None, weights=None) -> np.ndarray:
    """Plain per-pose version of :func:`solve_root_translation` (``np.linalg.lstsq`` on the
    stacked rows of every usable joint; for tests). Shapes (N, J, 3), (N, J, 2), (N, 2), (N, 2)."""
    rel3d, x2d, vis = _check(rel3d, x2d, visibility)
    n, j = rel3d.shape[:2]
    f = np.broadcast_to(np.asarray(f, dtype=np.float64), (n, 2))
    c = np.broadcast_to(np.asarray(c, dtype=np.float64), (n, 2))
    wts = np.ones((n, j)) if weights is None else np.broadcast_to(np.asarray(weights, dtype=np.float64), (n, j))
    out = np.full((n, 3), np.nan)
    for i in range(n):
        rows, rhs = [], []
        for k in range(j):
            if vis[i, k] <= 0 or not np.isfinite(x2d[i, k]).all() or not np.isfinite(rel3d[i, k]).all() or wts[i, k] == 0:
                continue
            u = (x2d[i, k, 0] - c[i, 0]) / f[i, 0]
            v = (x2d[i, k, 1] - c[i, 1]) / f[i, 1]
            sw = np.sqrt(wts[i, k])
            rows += [sw * np.array([1.0, 0.0, -u]), sw * np.array([0.0, 1.0, -v])]
            rhs += [sw * (u * rel3d[i, k, 2] - rel3d[i, k, 0]), sw * (v * rel3d[i, k, 2] - rel3d[i, k, 1])]
        if len(rows) < 4:
            continue
        t, *_ = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)
        if not np.all(np.nan_to_num(rel3d[i, :, 2]) + t[2] > MIN_DEPTH_MM):
            # weak perspective: depth from the ratio of the 3D to the 2D spread, x, y from the centroids
            use = [k for k in range(j) if vis[i, k] > 0 and np.isfinite(x2d[i, k]).all() and np.isfinite(rel3d[i, k]).all()
                   and wts[i, k] > 0]
            ww = wts[i, use]
            uv = (x2d[i, use] - c[i]) / f[i]
            pp = rel3d[i, use]
            muv, mp = np.average(uv, axis=0, weights=ww), np.average(pp, axis=0, weights=ww)
            z = np.sqrt(np.average(((pp[:, :2] - mp[:2]) ** 2).sum(1), weights=ww)) / np.sqrt(
                np.average(((uv - muv) ** 2).sum(1), weights=ww))
            t = np.array([muv[0] * z - mp[0], muv[1] * z - mp[1], z - mp[2]])
            if not np.all(np.nan_to_num(rel3d[i, :, 2]) + t[2] > MIN_DEPTH_MM):
                continue
        out[i] = t
    return out


def place_and_project(rel3d, x2d, f, c, *, visibility=None, weights=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Place root-relative predictions in their cameras and project them back.

    rel3d (..., J, 3) mm root-relative camera frame; x2d (..., J, 2) px the given 2D;
    f, c (..., 2) px intrinsics; visibility (..., J) of the given 2D.
    Returns (translation (..., 3) mm, joints in the camera frame (..., J, 3) mm, reprojected
    2D (..., J, 2) px); NaN for poses that cannot be placed.
    """
    t = solve_root_translation(rel3d, x2d, f, c, visibility=visibility, weights=weights)
    cam = np.asarray(rel3d, dtype=np.float64) + t[..., None, :]
    with np.errstate(invalid="ignore"):
        px = project_points(cam, np.asarray(f, dtype=np.float64), np.asarray(c, dtype=np.float64))
    return t, cam, px


def sample_cameras(poses) -> dict[str, np.ndarray]:
    """Per-sample camera arrays of a pose set (from the camera table row each sample names in
    ``poses.camera``): ``R`` (N, 3, 3), ``t`` (N, 3) mm, ``f`` (N, 2), ``c`` (N, 2) px,
    ``width``, ``height`` (N,) px. Samples without a camera (camera = -1, or a table row whose
    focal length is not positive, e.g. an image without a size) get NaN in every array: the
    caller decides what that means (a 2D-only set needs cameras: COCO's come from the image sizes).
    """
    n = len(poses)
    out = {"R": np.full((n, 3, 3), np.nan), "t": np.full((n, 3), np.nan), "f": np.full((n, 2), np.nan),
           "c": np.full((n, 2), np.nan), "width": np.full(n, np.nan), "height": np.full(n, np.nan)}
    table = poses.cameras or []
    if not table:
        return out
    tab = {
        "R": np.array([np.asarray(cam.get("R", np.eye(3)), dtype=np.float64).reshape(3, 3) for cam in table]),
        "t": np.array([np.asarray(cam.get("t", (0.0, 0.0, 0.0)), dtype=np.float64).reshape(3) for cam in table]),
        "f": np.array([np.broadcast_to(np.asarray(cam.get("f", np.nan), dtype=np.float64), (2,)) for cam in table]),
        "c": np.array([np.asarray(cam.get("c", (np.nan, np.nan)), dtype=np.float64).reshape(2) for cam in table]),
        "width": np.array([float(cam.get("width") or np.nan) for cam in table]),
        "height": np.array([float(cam.get("height") or np.nan) for cam in table]),
    }
    idx = np.asarray(poses.camera, dtype=np.int64)
    has = (idx >= 0) & (idx < len(table))
    with np.errstate(invalid="ignore"):
        has &= (tab["f"][np.clip(idx, 0, len(table) - 1)] > 0).all(axis=1)
    for key, arr in tab.items():
        out[key][has] = arr[idx[has]]
    return out
