"""Plain per-pose reference implementations of the operators and of the plausibility check.

Written independently of the batched code in :mod:`posecurator.augment.operators` (explicit loops
over poses and joints, axis-angle instead of the closed-form minimal rotation) and slow on
purpose: tests check that the batched versions give the same children from the same draws, and
``benchmarks/bench_augment.py`` measures the speed-up. Never use these on a hot path.
"""

from __future__ import annotations

import math

import numpy as np

from posecurator.augment import operators as ops
from posecurator.skeleton import H36M17

PARENTS = H36M17.parents


def _norm(v) -> float:
    return math.sqrt(float(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]))


def _unit(v) -> np.ndarray:
    n = _norm(v)
    return np.asarray(v, dtype=np.float64) / max(n, 1e-12)


def rodrigues(axis, angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` radians about the unit ``axis`` (one pose)."""
    k = _unit(axis)
    K = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + math.sin(angle) * K + (1.0 - math.cos(angle)) * (K @ K)


def pose_to_bones(pose: np.ndarray) -> np.ndarray:
    """(17, 3) joints -> (17, 3) bones (row 0 = root position)."""
    bones = np.zeros((17, 3))
    for j in range(17):
        bones[j] = pose[j] if PARENTS[j] < 0 else pose[j] - pose[PARENTS[j]]
    return bones


def bones_to_pose(bones: np.ndarray) -> np.ndarray:
    """(17, 3) bones -> (17, 3) joints, walking the tree from the root."""
    pose = np.zeros((17, 3))
    for j in range(17):
        pose[j] = bones[j] if PARENTS[j] < 0 else pose[PARENTS[j]] + bones[j]
    return pose


def reground_pose(child: np.ndarray, parent: np.ndarray) -> np.ndarray:
    child = child.copy()
    child[:, 2] += parent[:, 2].min() - child[:, 2].min()
    return child


def _torso_frame(right, up) -> np.ndarray:
    x = _unit(right)
    z = _unit(up - np.dot(up, x) * x)
    y = np.cross(z, x)
    return np.array([x, y, z])


def pose_frames(bones: np.ndarray) -> list[np.ndarray]:
    """The seven (3, 3) frames of one pose (rows = axes in world), as :func:`operators.frames_from_bones`."""
    J = ops.J
    out = [
        _torso_frame(bones[J["right_hip"]] - bones[J["left_hip"]], bones[J["spine"]]),
        _torso_frame(bones[J["right_shoulder"]] - bones[J["left_shoulder"]], bones[J["thorax"]]),
    ]
    for name, base, bone in ops.FRAMES[2:]:
        B = out[base]
        u = _unit(B @ bones[bone])
        a = ops.REST_DIRECTION[name]
        # smallest rotation a -> u as an axis-angle (the batched code uses the closed form)
        axis = np.cross(a, u)
        s = _norm(axis)
        angle = math.atan2(s, float(np.dot(a, u)))
        R = np.eye(3) if s < 1e-12 else rodrigues(axis / s, angle)
        out.append(R.T @ B)
    return out


def pose_local_directions(bones: np.ndarray) -> np.ndarray:
    """(17, 3) unit bone directions of one pose in the frames they are expressed in (row 0 = 0)."""
    F = pose_frames(bones)
    out = np.zeros((17, 3))
    for j in range(1, 17):
        out[j] = F[ops.FRAME_OF_BONE[j]] @ _unit(bones[j])
    return out


def crossover_pose(a: np.ndarray, b: np.ndarray, joint: int) -> np.ndarray:
    """Bones of one crossover child: A with the subtree at ``joint`` posed as in B, at A's lengths."""
    f = ops.FRAME_OF_BONE[joint]
    Q = pose_frames(a)[f].T @ pose_frames(b)[f]
    child = a.copy()
    for k in H36M17.subtree(int(joint)):
        child[k] = _unit(Q @ b[k]) * _norm(a[k])
    return child


def limb_mutation_pose(bones: np.ndarray, joint: int, axis, angle: float) -> np.ndarray:
    R = rodrigues(axis, angle)
    child = bones.copy()
    for k in H36M17.subtree(int(joint)):
        child[k] = R @ bones[k]
    return child


def bone_length_pose(bones: np.ndarray, factor) -> np.ndarray:
    child = bones.copy()
    for k in range(1, 17):
        child[k] = bones[k] * factor[k]
    return child


def global_rotation_pose(bones: np.ndarray, yaw: float, tilt_axis, tilt: float) -> np.ndarray:
    R = rodrigues(tilt_axis, tilt) @ rodrigues([0.0, 0.0, 1.0], yaw)
    child = bones.copy()
    for k in range(1, 17):
        child[k] = R @ bones[k]
    return child


def make_children_reference(population: np.ndarray, draws: ops.GenerationDraws, *, ground: bool = True) -> np.ndarray:
    """Per-pose loop twin of :func:`operators.make_children`: same draws, same children."""
    population = np.asarray(population, dtype=np.float64)
    out = np.zeros((len(draws), 17, 3))
    for i in range(len(draws)):
        parent = population[draws.parent[i]]
        bones = pose_to_bones(parent)
        if draws.applied[i, 0]:
            partner = pose_to_bones(population[draws.crossover.partner[i]])
            bones = crossover_pose(bones, partner, int(draws.crossover.joint[i]))
        if draws.applied[i, 1]:
            bones = limb_mutation_pose(bones, int(draws.limb.joint[i]), draws.limb.axis[i], float(draws.limb.angle[i]))
        if draws.applied[i, 2]:
            bones = bone_length_pose(bones, draws.bone_length.factor[i])
        if draws.applied[i, 3]:
            g = draws.global_rotation
            bones = global_rotation_pose(bones, float(g.yaw[i]), g.tilt_axis[i], float(g.tilt[i]))
        child = bones_to_pose(bones)
        out[i] = reground_pose(child, parent) if ground else child
    return out


def cube_cell_direction(v, resolution: int) -> int:
    """Cube-map cell of one unit vector (twin of :func:`plausibility.cube_cells`)."""
    a = [abs(float(c)) for c in v]
    m = 0 if (a[0] >= a[1] and a[0] >= a[2]) else (1 if a[1] >= a[2] else 2)
    major = float(v[m])
    u = float(v[(m + 1) % 3]) / max(abs(major), 1e-12)
    w = float(v[(m + 2) % 3]) / max(abs(major), 1e-12)
    face = 2 * m + (1 if major < 0 else 0)
    iu = min(max(int((math.atan(u) * 4 / math.pi + 1.0) * resolution / 2), 0), resolution - 1)
    iw = min(max(int((math.atan(w) * 4 / math.pi + 1.0) * resolution / 2), 0), resolution - 1)
    return (face * resolution + iu) * resolution + iw


def is_valid_reference(prior, poses: np.ndarray) -> np.ndarray:
    """Per-pose loop twin of :meth:`JointAnglePrior.is_valid` (float64): (N, 17, 3) -> (N, 17) bool."""
    poses = np.asarray(poses, dtype=np.float64)
    out = np.ones((len(poses), 17), dtype=bool)
    for i, pose in enumerate(poses):
        bones = pose_to_bones(pose)
        bones[0] = 0.0
        local = pose_local_directions(bones)
        lengths = [_norm(b) for b in bones]
        total = max(sum(lengths), 1e-9)
        for j in range(1, 17):
            cell = cube_cell_direction(local[j], prior.resolution)
            ratio = lengths[j] / total
            out[i, j] = (bool(prior.valid_cells_[j, cell]) and prior.length_ratio_low_[j] <= ratio <= prior.length_ratio_high_[j]
                         and bool(np.isfinite(pose).all()))
    return out


def check_reference(prior, poses: np.ndarray, *, min_valid_limbs: int | None = None) -> np.ndarray:
    """Per-pose loop twin of :meth:`JointAnglePrior.check`."""
    from posecurator.augment.plausibility import LIMBS

    need = prior.required_limbs(min_valid_limbs)
    valid = is_valid_reference(prior, poses)
    return np.array([sum(all(row[b] for b in bones) for bones in LIMBS.values()) >= need for row in valid])
