"""Motion representation of PoseSyn's motion model: fixed-length windows of 17-joint motion as
per-frame feature vectors (a HumanML3D-style representation adapted to the H36M17 layout).

Input: joints (..., T, 17, 3) in the world frame (mm, Z up, floor at Z = 0, 30 fps). Per frame
``t`` the heading ``theta_t`` is the direction the person faces on the ground plane (the
horizontal perpendicular to the hip line, pointing forward: ``up x (right_hip - left_hip)``), and
the features are (:data:`FEATURES`):

======================  ====  ===============================================================
feature                 size  meaning
======================  ====  ===============================================================
``root_height``         1     pelvis height above the floor (mm)
``root_velocity``       2     pelvis displacement to the next frame, in the heading frame of
                              frame t (forward, left), mm per frame
``heading_velocity``    1     heading change to the next frame (radians, wrapped to [-pi, pi))
``local_joints``        48    the 16 non-root joints minus the pelvis, turned into the heading
                              frame of frame t (forward, left, up), mm
``foot_contact``        2     1 where the right / left ankle is within ``contact_height`` of the
                              floor and moves less than ``contact_speed`` (mm per frame)
======================  ====  ===============================================================

D = 54 per frame. The last frame's velocities repeat the previous frame's (there is no next
frame). :func:`motion_to_joints` inverts it: heading and position are integrated from frame 0,
which starts at the origin facing +X (the representation does not keep where a window stood
or which way it faced: the motion model learns motion, not places), so
``motion_to_joints(joints_to_motion(x))`` gives ``x`` moved to the origin and turned to face +X
(exactly, up to float rounding). Foot contacts are outputs only (the model learns them; the
inverse does not use them).

A single pose (PoseSyn's mis-predicted pose) becomes a motion by repeating it over T frames
(:func:`static_motion`), after turning a camera-frame prediction into this Z-up world
(:func:`camera_to_upright`).

Windows: :func:`motion_windows` cuts every clip of a pose set into windows of ``length`` frames
every ``stride`` frames (clips shorter than ``length`` are left out, counted). Normalisation:
:class:`MotionNormalizer` (per-feature mean and std of the training windows, stored beside the
model as npz).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posecurator.poseset import PoseSet
from posecurator.skeleton.layouts import H36M17

ROOT = H36M17.index("pelvis")
RIGHT_HIP, LEFT_HIP = H36M17.index("right_hip"), H36M17.index("left_hip")
RIGHT_ANKLE, LEFT_ANKLE = H36M17.index("right_ankle"), H36M17.index("left_ankle")
NON_ROOT = np.array([j for j in range(H36M17.n_joints) if j != ROOT])
N_JOINTS = H36M17.n_joints
FEATURES = {"root_height": slice(0, 1), "root_velocity": slice(1, 3), "heading_velocity": slice(3, 4),
            "local_joints": slice(4, 4 + 3 * (N_JOINTS - 1)), "foot_contact": slice(4 + 3 * (N_JOINTS - 1), 6 + 3 * (N_JOINTS - 1))}
DIM = 6 + 3 * (N_JOINTS - 1)  # 54
CONTACT_HEIGHT_MM = 110.0  # ankle joint height: 10th percentile 83 mm, median 124 mm over HDM05
CONTACT_SPEED_MM = 15.0  # per frame at 30 fps: 0.45 m/s


def heading(joints: np.ndarray) -> np.ndarray:
    """(..., 17, 3) world mm -> (...) heading angle (radians) of the direction the person faces:
    up x (right_hip - left_hip), projected on the ground."""
    across = joints[..., RIGHT_HIP, :2] - joints[..., LEFT_HIP, :2]
    # up x across = (-across_y, across_x)
    return np.arctan2(across[..., 0], -across[..., 1])


def _rotate_z(xy: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate (..., 2) vectors by ``angle`` (...) radians about the vertical."""
    c, s = np.cos(angle)[..., None], np.sin(angle)[..., None]
    return np.concatenate([c * xy[..., :1] - s * xy[..., 1:2], s * xy[..., :1] + c * xy[..., 1:2]], axis=-1)


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def joints_to_motion(joints, *, contact_height: float = CONTACT_HEIGHT_MM, contact_speed: float = CONTACT_SPEED_MM) -> np.ndarray:
    """(..., T, 17, 3) world mm (T >= 2) -> (..., T, 54) features (module docstring), float32."""
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim < 3 or joints.shape[-2:] != (N_JOINTS, 3) or joints.shape[-3] < 2:
        raise ValueError(f"joints must be (..., T >= 2, {N_JOINTS}, 3), got {joints.shape}")
    theta = heading(joints)                                   # (..., T)
    root = joints[..., ROOT, :]                               # (..., T, 3)
    step = np.diff(root, axis=-2)
    step = np.concatenate([step, step[..., -1:, :]], axis=-2)
    vel = _rotate_z(step[..., :2], -theta)                    # into the heading frame of frame t
    dtheta = _wrap(np.diff(theta, axis=-1))
    dtheta = np.concatenate([dtheta, dtheta[..., -1:]], axis=-1)
    rel = joints[..., NON_ROOT, :] - root[..., None, :]
    local = np.concatenate([_rotate_z(rel[..., :2], -theta[..., None]), rel[..., 2:3]], axis=-1)
    ankles = joints[..., [RIGHT_ANKLE, LEFT_ANKLE], :]
    speed = np.linalg.norm(np.diff(ankles, axis=-3), axis=-1)
    speed = np.concatenate([speed, speed[..., -1:, :]], axis=-2)
    contact = ((ankles[..., 2] < contact_height) & (speed < contact_speed)).astype(np.float64)
    lead = joints.shape[:-2]
    out = np.concatenate([root[..., 2:3], vel, dtheta[..., None], local.reshape(lead + (-1,)), contact], axis=-1)
    return out.astype(np.float32)


def motion_to_joints(features) -> np.ndarray:
    """(..., T, 54) features -> (..., T, 17, 3) world mm, frame 0 at the origin facing +X."""
    f = np.asarray(features, dtype=np.float64)
    if f.shape[-1] != DIM:
        raise ValueError(f"motion features must be (..., T, {DIM}), got {f.shape}")
    dtheta = f[..., FEATURES["heading_velocity"]][..., 0]
    theta = np.concatenate([np.zeros_like(dtheta[..., :1]), np.cumsum(dtheta[..., :-1], axis=-1)], axis=-1)
    vel = _rotate_z(f[..., FEATURES["root_velocity"]], theta)
    xy = np.concatenate([np.zeros_like(vel[..., :1, :]), np.cumsum(vel[..., :-1, :], axis=-2)], axis=-2)
    root = np.concatenate([xy, f[..., FEATURES["root_height"]]], axis=-1)
    local = f[..., FEATURES["local_joints"]].reshape(f.shape[:-1] + (N_JOINTS - 1, 3))
    world_rel = np.concatenate([_rotate_z(local[..., :2], theta[..., None]), local[..., 2:3]], axis=-1)
    out = np.empty(f.shape[:-1] + (N_JOINTS, 3))
    out[..., ROOT, :] = root
    out[..., NON_ROOT, :] = world_rel + root[..., None, :]
    return out


def motion_to_joints_reference(features) -> np.ndarray:
    """Plain per-frame version of :func:`motion_to_joints` for one (T, 54) motion (tests)."""
    f = np.asarray(features, dtype=np.float64)
    out = np.zeros((len(f), N_JOINTS, 3))
    theta, x, y = 0.0, 0.0, 0.0
    for t in range(len(f)):
        c, s = np.cos(theta), np.sin(theta)
        out[t, ROOT] = (x, y, f[t, 0])
        for k, j in enumerate(NON_ROOT):
            lx, ly, lz = f[t, 4 + 3 * k: 7 + 3 * k]
            out[t, j] = (x + c * lx - s * ly, y + s * lx + c * ly, f[t, 0] + lz)
        vx, vy = f[t, 1], f[t, 2]
        x, y = x + c * vx - s * vy, y + s * vx + c * vy
        theta += f[t, 3]
    return out


def canonicalize(joints) -> np.ndarray:
    """(..., T, 17, 3) world mm -> the same motion moved so frame 0's pelvis is over the origin
    (height kept) and turned so frame 0 faces +X (what a round trip through the features gives)."""
    joints = np.asarray(joints, dtype=np.float64)
    theta0 = heading(joints[..., 0, :, :])
    origin = joints[..., 0, ROOT, :].copy()
    origin[..., 2] = 0.0
    moved = joints - origin[..., None, None, :]
    xy = _rotate_z(moved[..., :2], -theta0[..., None, None])
    return np.concatenate([xy, moved[..., 2:3]], axis=-1)


def camera_to_upright(joints_cam, *, up_cam=(0.0, -1.0, 0.0)) -> np.ndarray:
    """(..., 17, 3) camera-frame mm (root-relative or not) -> a Z-up world frame: the camera's
    ``up_cam`` direction (default -y: a level camera, OpenCV axes) becomes +Z, the viewing
    direction's horizontal part +Y, and the pose is lifted so its lowest joint stands on the
    floor (Z = 0; a prediction from 2D has no floor of its own)."""
    x = np.asarray(joints_cam, dtype=np.float64)
    up = np.asarray(up_cam, dtype=np.float64)
    up = up / np.linalg.norm(up)
    fwd = np.array([0.0, 0.0, 1.0]) - up * up[2]  # the optical axis made horizontal
    if np.linalg.norm(fwd) < 1e-6:
        fwd = np.array([1.0, 0.0, 0.0]) - up * up[0]
    fwd = fwd / np.linalg.norm(fwd)
    right = np.cross(fwd, up)
    basis = np.stack([right, fwd, up])  # rows: world X, Y, Z in camera coordinates
    world = x @ basis.T
    return world - np.array([0.0, 0.0, 1.0]) * np.nanmin(world[..., 2], axis=-1, keepdims=True)[..., None]


def static_motion(pose_world, length: int) -> np.ndarray:
    """(..., 17, 3) world poses -> (..., length, 17, 3): each pose held still (PoseSyn's
    ``J_C (x) T``, Eq. 4)."""
    pose_world = np.asarray(pose_world, dtype=np.float64)
    return np.broadcast_to(pose_world[..., None, :, :], pose_world.shape[:-2] + (length,) + pose_world.shape[-2:]).copy()


@dataclass
class MotionWindows:
    """``joints`` (W, T, 17, 3) world mm; ``clip`` (W,) str; ``start`` (W,) first frame; ``rows``
    (W, T) rows of the source pose set; ``skipped_clips`` clips shorter than T."""

    joints: np.ndarray
    clip: np.ndarray
    start: np.ndarray
    rows: np.ndarray
    skipped_clips: int


def motion_windows(poses: PoseSet, *, length: int = 64, stride: int = 16) -> MotionWindows:
    """Windows of ``length`` consecutive frames (by ``frame`` within each clip) every ``stride``
    frames, batched (no per-window loops over frames). Clips with gaps in ``frame`` are cut at
    the gaps (a window never spans a jump)."""
    if poses.joints3d is None:
        raise ValueError("motion windows need 3D poses (joints3d)")
    if length < 2 or stride < 1:
        raise ValueError(f"length must be >= 2 and stride >= 1, got {length}, {stride}")
    names, clip_idx = np.unique(poses.clip, return_inverse=True)
    clip_idx = clip_idx.reshape(-1)
    order = np.lexsort((poses.frame, clip_idx))
    c, f = clip_idx[order], poses.frame[order].astype(np.int64)
    # a run = consecutive frames of one clip
    brk = np.r_[True, (c[1:] != c[:-1]) | (f[1:] != f[:-1] + 1)]
    run_start = np.flatnonzero(brk)
    run_len = np.diff(np.r_[run_start, len(order)])
    n_win = np.where(run_len >= length, (run_len - length) // stride + 1, 0)
    skipped = int(len(names) - len(np.unique(c[run_start[n_win > 0]])))
    starts = np.repeat(run_start, n_win) + stride * (np.arange(n_win.sum()) - np.repeat(np.cumsum(n_win) - n_win, n_win))
    rows = order[starts[:, None] + np.arange(length)[None, :]] if len(starts) else np.zeros((0, length), np.int64)
    return MotionWindows(joints=poses.joints3d[rows].astype(np.float32), clip=poses.clip[rows[:, 0]] if len(rows) else np.zeros(0, str),
                         start=poses.frame[rows[:, 0]] if len(rows) else np.zeros(0, np.int32), rows=rows, skipped_clips=skipped)


class MotionNormalizer:
    """Per-feature mean and std of training motions (scikit-learn-like: ``fit`` / ``transform`` /
    ``inverse_transform``); ``mean_``, ``std_`` (D,) float32, std floored at ``min_std`` so
    near-constant features (the contacts of a set that never lifts a foot) do not blow up."""

    def __init__(self, *, min_std: float = 1e-2):
        self.min_std = min_std

    def fit(self, motions) -> "MotionNormalizer":
        m = np.asarray(motions, dtype=np.float64).reshape(-1, DIM)
        self.mean_ = m.mean(0).astype(np.float32)
        std = m.std(0)
        self.std_ = np.maximum(std, self.min_std).astype(np.float32)
        return self

    def transform(self, motions) -> np.ndarray:
        return ((np.asarray(motions, dtype=np.float32) - self.mean_) / self.std_).astype(np.float32)

    def inverse_transform(self, z) -> np.ndarray:
        return (np.asarray(z, dtype=np.float32) * self.std_ + self.mean_).astype(np.float32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean_, "std": self.std_}

    @classmethod
    def from_arrays(cls, arrays: dict) -> "MotionNormalizer":
        out = cls()
        out.mean_, out.std_ = np.asarray(arrays["mean"], np.float32), np.asarray(arrays["std"], np.float32)
        if out.mean_.shape != (DIM,) or out.std_.shape != (DIM,):
            raise ValueError(f"normalisation statistics must be ({DIM},), got {out.mean_.shape}, {out.std_.shape}")
        return out
