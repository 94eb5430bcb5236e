"""Bone lengths of 3D poses, and two depth-aware plausibility figures built on them.

A lifter that gets a joint's depth wrong changes the length of the bones at that joint, while
its 2D (and so its reprojection error) can stay perfect. A person's bones do not change length
from frame to frame, and their left and right bones are (nearly) equally long, so two figures
that need no 3D ground truth see depth errors that the reprojection error cannot:

* :func:`bone_length_variation`: within each group of poses of one person (a clip), each bone's
  coefficient of variation (std / mean of its length over the group's poses), averaged over the
  bones, then over the groups (each group counts once). 0 = a rigid skeleton.
* :func:`bone_asymmetry`: per pose, the mean over the layout's mirrored bone pairs of
  ``|L - R| / ((L + R) / 2)``. 0 = perfectly symmetric.

Both are unitless (scale-free: a lifter's overall scale does not enter), range >= 0, lower =
more plausible. Batched over any number of poses; the ``*_reference`` functions are the plain
per-pose / per-group versions tested to agree.
"""

from __future__ import annotations

import numpy as np

from posecurator.skeleton.layouts import H36M17, Layout

_EPS = 1e-9


def bone_lengths(joints: np.ndarray, *, layout: Layout = H36M17) -> np.ndarray:
    """(..., J, 3) poses -> (..., B) lengths of the layout's bones (``layout.bones`` order)."""
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim < 2 or joints.shape[-2:] != (layout.n_joints, 3):
        raise ValueError(f"joints must be (..., {layout.n_joints}, 3), got {joints.shape}")
    b = layout.bones
    return np.linalg.norm(joints[..., b[:, 1], :] - joints[..., b[:, 0], :], axis=-1)


def mirrored_bone_pairs(layout: Layout = H36M17) -> np.ndarray:
    """(P, 2) indices into ``layout.bones`` of each left bone and its right mirror (each pair once)."""
    perm = layout.flip_permutation
    bones = layout.bones
    index = {(int(p), int(c)): i for i, (p, c) in enumerate(bones)}
    pairs = []
    for i, (p, c) in enumerate(bones):
        j = index.get((int(perm[p]), int(perm[c])))
        if j is not None and j > i:
            pairs.append((i, j))
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def bone_asymmetry(joints: np.ndarray, *, layout: Layout = H36M17) -> np.ndarray:
    """(..., J, 3) poses -> (...,) mean relative left/right length difference over the mirrored
    bone pairs (module docstring). Lower = more plausible; 0 = symmetric."""
    pairs = mirrored_bone_pairs(layout)
    if not len(pairs):
        raise ValueError(f"layout {layout.name} has no mirrored bones")
    lengths = bone_lengths(joints, layout=layout)
    a, b = lengths[..., pairs[:, 0]], lengths[..., pairs[:, 1]]
    return (np.abs(a - b) / ((a + b) / 2 + _EPS)).mean(-1)


def bone_length_variation(joints: np.ndarray, groups, *, layout: Layout = H36M17, min_poses: int = 5) -> float:
    """Mean within-group coefficient of variation of the bone lengths (module docstring).

    ``joints`` (N, J, 3); ``groups`` (N,) labels of one person each (clips). Groups with fewer
    than ``min_poses`` poses are left out; NaN when none is left (e.g. single-image annotations,
    where every pose is its own group). Lower = more plausible."""
    lengths = bone_lengths(joints, layout=layout)
    if lengths.ndim != 2:
        raise ValueError(f"joints must be (N, {layout.n_joints}, 3), got {np.shape(joints)}")
    groups = np.asarray(groups)
    if groups.shape != (len(lengths),):
        raise ValueError(f"groups must be ({len(lengths)},), got {groups.shape}")
    _, inv, count = np.unique(groups, return_inverse=True, return_counts=True)
    n_groups, n_bones = len(count), lengths.shape[1]
    # per-group sums of the lengths and of their squares, every bone at once
    flat = (inv[:, None] * n_bones + np.arange(n_bones)).ravel()
    s1 = np.bincount(flat, weights=lengths.ravel(), minlength=n_groups * n_bones).reshape(n_groups, n_bones)
    # centre on each group's mean before squaring: the one-pass sum of squares loses digits
    mean = s1 / count[:, None]
    dev = lengths - mean[inv]
    s2 = np.bincount(flat, weights=(dev * dev).ravel(), minlength=n_groups * n_bones).reshape(n_groups, n_bones)
    keep = count >= int(min_poses)
    if not keep.any():
        return float("nan")
    std = np.sqrt(s2[keep] / count[keep, None])
    return float((std / (mean[keep] + _EPS)).mean(1).mean())


def bone_length_variation_reference(joints, groups, *, layout: Layout = H36M17, min_poses: int = 5) -> float:
    """Plain per-group loop version of :func:`bone_length_variation` (for tests)."""
    groups = np.asarray(groups)
    per_group = []
    for g in np.unique(groups):
        members = np.asarray(joints, dtype=np.float64)[groups == g]
        if len(members) < min_poses:
            continue
        cvs = []
        for p, c in layout.bones:
            lengths = [np.linalg.norm(pose[c] - pose[p]) for pose in members]
            cvs.append(np.std(lengths) / (np.mean(lengths) + _EPS))
        per_group.append(np.mean(cvs))
    return float(np.mean(per_group)) if per_group else float("nan")


def bone_asymmetry_reference(joints, *, layout: Layout = H36M17) -> np.ndarray:
    """Plain per-pose loop version of :func:`bone_asymmetry` (for tests), (N, J, 3) -> (N,)."""
    perm = layout.flip_permutation
    out = []
    for pose in np.asarray(joints, dtype=np.float64):
        gaps, seen = [], set()
        for p, c in layout.bones:
            mp, mc = int(perm[p]), int(perm[c])
            if (mp, mc) == (p, c) or (min(p, mp), min(c, mc)) in seen:
                continue
            seen.add((min(p, mp), min(c, mc)))
            a = np.linalg.norm(pose[c] - pose[p])
            b = np.linalg.norm(pose[mc] - pose[mp])
            gaps.append(abs(a - b) / ((a + b) / 2 + _EPS))
        out.append(np.mean(gaps))
    return np.array(out)
