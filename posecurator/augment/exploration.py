"""How far augmentation explores: the distance of every child from its first parent, per operator.

TAG-Net-style augmentation helps a lifter only with poses it has not seen; children that barely
move from their parents add copies, children the plausibility prior rejects add nothing. These
measures say which of the two limits a setting (operator magnitudes, the prior's strictness).

=====================  =====================================================  ==============  =====
measure                what it is                                             unit            range
=====================  =====================================================  ==============  =====
``joint_angle_deg``    the largest over the 16 bones of the angle between     degrees         0-180
                       the child and parent bone directions, each in the
                       local frame it is expressed in (the prior's space:
                       global rotation and bone-length changes give 0; the
                       largest, because an operator turns one or a few
                       joints and a mean over 16 bones would hide it)
``pose_mm``            root-relative MPJPE after turning each pose about the  mm              >= 0
                       vertical so its hips face +Y (pose change without the
                       facing direction; bone-length changes count)
``view_2d``            mean joint distance between the child's and the        parent's 2D     >= 0
                       parent's orthographic 2D through the same seeded views  RMS radius
                       (root-centred, divided by the parent's 2D RMS radius):
                       what the lifter's input sees change, global rotation
                       included
=====================  =====================================================  ==============  =====

Higher = the child is farther from its parent (more exploration). All functions are batched over
any number of poses (no per-pose Python loops); the per-pose reference lives in the tests.
"""

from __future__ import annotations

import numpy as np

from posecurator.augment.operators import N_JOINTS, local_directions, to_bones
from posecurator.poseset import PoseSet
from posecurator.skeleton.canonical import pose_features

MEASURES = ("joint_angle_deg", "pose_mm", "view_2d")
DEFAULT_VIEWS = 4
# view elevations are drawn in [0, 20] degrees: the range of the training cameras' pitch
MAX_ELEVATION_DEG = 20.0
_CHUNK = 65536


def _check_pairs(children, parents) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(children, dtype=np.float64)
    b = np.asarray(parents, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 3 or a.shape[1:] != (N_JOINTS, 3):
        raise ValueError(f"children and parents must both be (N, {N_JOINTS}, 3), got {a.shape} and {b.shape}")
    return a, b


def view_directions(n_views: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_views`` seeded orthographic views: (V,) yaw and (V,) elevation in radians. Yaws are
    evenly spaced from a random start (every side of the body is seen), elevations uniform in
    [0, MAX_ELEVATION_DEG]."""
    rng = np.random.default_rng([int(seed), 71])
    yaw = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(n_views) / n_views
    elevation = np.radians(rng.uniform(0.0, MAX_ELEVATION_DEG, size=n_views))
    return yaw, elevation


def orthographic_2d(joints: np.ndarray, yaw: np.ndarray, elevation: np.ndarray) -> np.ndarray:
    """(..., J, 3) world joints (Z up) -> (..., V, J, 2) image-plane coordinates of ``V`` views
    looking at the pose horizontally from azimuth ``yaw`` and down by ``elevation``
    (u = right, v = up in the image)."""
    x, y, z = joints[..., 0], joints[..., 1], joints[..., 2]
    cy, sy = np.cos(yaw), np.sin(yaw)
    ce, se = np.cos(elevation), np.sin(elevation)
    x, y, z = x[..., None, :], y[..., None, :], z[..., None, :]  # (..., 1, J) against (V, 1)
    cy, sy, ce, se = cy[:, None], sy[:, None], ce[:, None], se[:, None]
    u = -sy * x + cy * y                     # the camera's right axis
    depth = cy * x + sy * y                  # horizontal distance along the viewing direction
    v = ce * z - se * depth                  # up in the image after tilting down
    return np.stack([u, v], axis=-1)


def joint_angle_change_deg(children: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """(N,) largest angle (degrees) between child and parent local bone directions (16 bones)."""
    a, b = _check_pairs(children, parents)
    da = local_directions(to_bones(a))[:, 1:]
    db = local_directions(to_bones(b))[:, 1:]
    # atan2(|a x b|, a . b): accurate near 0 and 180 degrees, where arccos of the dot is not
    angle = np.arctan2(np.linalg.norm(np.cross(da, db), axis=-1), np.sum(da * db, axis=-1))
    return np.degrees(angle).max(axis=1)


def pose_change_mm(children: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """(N,) root-relative MPJPE (mm) between the yaw-canonical child and parent."""
    a, b = _check_pairs(children, parents)
    fa = pose_features(a).reshape(len(a), N_JOINTS, 3)
    fb = pose_features(b).reshape(len(b), N_JOINTS, 3)
    return np.linalg.norm(fa - fb, axis=-1).mean(axis=1)


def view_change_2d(children: np.ndarray, parents: np.ndarray, *, n_views: int = DEFAULT_VIEWS, seed: int = 0) -> np.ndarray:
    """(N,) mean over the views of the mean joint distance between the root-centred orthographic
    2D of child and parent, in units of the parent's 2D RMS radius in that view."""
    a, b = _check_pairs(children, parents)
    yaw, elev = view_directions(n_views, seed)
    pa = orthographic_2d(a - a[:, :1], yaw, elev)  # (N, V, J, 2)
    pb = orthographic_2d(b - b[:, :1], yaw, elev)
    radius = np.sqrt(np.mean(np.sum(pb ** 2, axis=-1), axis=-1))  # (N, V)
    dist = np.linalg.norm(pa - pb, axis=-1).mean(axis=-1)
    return (dist / np.maximum(radius, 1e-9)).mean(axis=-1)


def child_parent_distances(children, parents, *, n_views: int = DEFAULT_VIEWS, seed: int = 0) -> dict[str, np.ndarray]:
    """Every measure of the module table for (N, 17, 3) children against their (N, 17, 3) first
    parents (world mm, Z up): {measure: (N,) float64}. Chunked, so memory stays bounded."""
    a, b = _check_pairs(children, parents)
    out = {m: np.empty(len(a)) for m in MEASURES}
    for s in range(0, len(a), _CHUNK):
        sl = slice(s, s + _CHUNK)
        out["joint_angle_deg"][sl] = joint_angle_change_deg(a[sl], b[sl])
        out["pose_mm"][sl] = pose_change_mm(a[sl], b[sl])
        out["view_2d"][sl] = view_change_2d(a[sl], b[sl], n_views=n_views, seed=seed)
    return out


def first_parents_of(augmented: PoseSet, *pools: PoseSet) -> np.ndarray:
    """(N, 17, 3) joints of each augmented pose's first parent, looked up by sample id in
    ``pools`` and in ``augmented`` itself (a child of a child has an earlier child as parent)."""
    if augmented.parents is None:
        raise ValueError("the augmented set carries no lineage (parents column)")
    sets = [p for p in pools if p is not None and len(p)] + [augmented]
    ids = np.concatenate([s.sample_id for s in sets])
    joints = np.concatenate([s.joints3d for s in sets])
    order = np.argsort(ids, kind="stable")
    want = augmented.parents[:, 0]
    pos = np.searchsorted(ids[order], want)
    pos = np.minimum(pos, len(order) - 1)
    found = ids[order][pos] == want
    if not found.all():
        raise ValueError(f"{int((~found).sum())} augmented poses name a parent that is in none of the given sets")
    return joints[order[pos]]


def _quantiles(x: np.ndarray) -> dict:
    if len(x) == 0:
        return {"n": 0}
    q = np.percentile(x, [10, 50, 90])
    return {"n": int(len(x)), "mean": float(x.mean()), "p10": float(q[0]), "median": float(q[1]), "p90": float(q[2])}


def exploration_summary(augmented: PoseSet, population: PoseSet, stats=None, *, n_views: int = DEFAULT_VIEWS,
                        seed: int = 0) -> dict:
    """Per operator combination (the children's ``operator`` column) and in all: children made and
    rejected by the prior (from the generations' ``stats``, when given), and the quantiles of
    every distance of the kept children from their first parents. JSON-ready."""
    parents = first_parents_of(augmented, population)
    dist = child_parent_distances(augmented.joints3d, parents, n_views=n_views, seed=seed)
    made: dict[str, int] = {}
    kept: dict[str, int] = {}
    for st in stats or []:
        for name, count in st.operators.items():
            if not name.startswith("_"):
                made[name] = made.get(name, 0) + int(count)
        for name, count in getattr(st, "operators_kept", {}).items():
            kept[name] = kept.get(name, 0) + int(count)
    ops = np.asarray(augmented.operator).astype(str)
    rows = {}
    for name in sorted(set(np.unique(ops).tolist()) | set(made)):
        sel = ops == name
        row = {"kept": int(sel.sum()), **{m: _quantiles(dist[m][sel]) for m in MEASURES}}
        if name in made:
            row["made"] = made[name]
            row["rejection_rate"] = 1.0 - kept.get(name, int(sel.sum())) / made[name] if made[name] else 0.0
        rows[name] = row
    total_made = sum(made.values())
    overall = {"kept": len(augmented), **{m: _quantiles(dist[m]) for m in MEASURES}}
    if total_made:
        overall["made"] = total_made
        overall["rejection_rate"] = 1.0 - sum(kept.values()) / total_made if kept else None
    return {"measures": list(MEASURES), "n_views": n_views, "seed": seed, "all": overall, "by_operator": rows}
