"""DeepMimic reference motions (pybullet's ``pybullet_data/data/motions/humanoid3d_*.txt``) -> pose sets.

A motion file is JSON with ``"Loop"`` and ``"Frames"``; each frame is 44 numbers (order verified
against ``pybullet_envs/deep_mimic/env/humanoid_pose_interpolator.py``, see :data:`MOTION_COLUMNS`)::

    duration (s) | root position (3, metres) | root quaternion (w, x, y, z) | chest quat | neck quat |
    right hip quat | right knee angle | right ankle quat | right shoulder quat | right elbow angle |
    left hip quat | left knee angle | left ankle quat | left shoulder quat | left elbow angle

Quaternions are (w, x, y, z) local rotations of each joint relative to its parent link; the knee
and elbow are revolute joints (radians about the axis the URDF gives).

Forward kinematics uses the humanoid that pybullet's DeepMimic environment loads,
``pybullet_data/humanoid/humanoid.urdf``: the joint origins (bone offsets), joint types and axes
and the head sphere are parsed from that file at run time. The environment loads it with
``globalScaling=0.25`` (``humanoid_stable_pd.py``), so every URDF length is multiplied by
:data:`URDF_GLOBAL_SCALING` (a test checks the constant against the installed source, and the
whole forward kinematics against pybullet's own).

Frames: the world is Y up, metres, the floor is the plane y = 0, the character faces +X with its
right side at +Z. Output: millimetres, Z up (rotation +90 degrees about X: (x, y, z) -> (x, -z, y),
a proper rotation, so left stays left), floor at Z = 0 (DeepMimic's own ground plane is kept:
the clips are authored against it; :func:`read_deepmimic` reports the lowest foot-sole height in
``attrs``).

Resampling: the frame durations give each key frame's time; the clip is sampled at ``fps`` from
t = 0 to the last key frame, interpolating the root position and the knee/elbow angles linearly
and every quaternion by slerp, as pybullet's ``HumanoidPoseInterpolator.Slerp`` does.

Mapping to H36M17 (joint positions are the URDF joint origins unless said otherwise):

=============  ================================================================================
H36M17         humanoid
=============  ================================================================================
pelvis         root (the hip centre: both hip joints are offset from it sideways only)
hips, knees,   right_/left_ hip, knee, ankle joints
ankles
spine          chest joint (base of the chest link, above the pelvis)
thorax         neck joint (base of the neck, level with the shoulders)
neck (nose)    centre of the neck link's collision sphere (the head)
head (top)     top of that sphere: centre + radius along the centre's offset direction in the
               neck link frame. Approximation: the humanoid's head is a sphere; its top stands
               in for the Human3.6M head-top marker.
shoulders,     right_/left_ shoulder, elbow joints, wrist fixed joints
elbows, wrists
=============  ================================================================================
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posecurator.errors import DataError
from posecurator.io.common import (
    MAX_ABS_MM, MAX_ABS_RAW, check_coordinates, forward_kinematics, read_text, short_value, up_rotation,
)
from posecurator.poseset import PoseSet
from posecurator.skeleton import H36M17

# Length scale pybullet's DeepMimic environment loads humanoid.urdf with
# (pybullet_envs/deep_mimic/env/humanoid_stable_pd.py: loadURDF(..., globalScaling=0.25)).
URDF_GLOBAL_SCALING = 0.25

FRAME_WIDTH = 44
ROOT_POSITION = slice(1, 4)
ROOT_QUATERNION = slice(4, 8)
# (URDF joint name, first column, number of columns) in frame order; 4 = quaternion (w, x, y, z),
# 1 = revolute angle in radians.
MOTION_COLUMNS: tuple[tuple[str, int, int], ...] = (
    ("chest", 8, 4), ("neck", 12, 4),
    ("right_hip", 16, 4), ("right_knee", 20, 1), ("right_ankle", 21, 4),
    ("right_shoulder", 25, 4), ("right_elbow", 29, 1),
    ("left_hip", 30, 4), ("left_knee", 34, 1), ("left_ankle", 35, 4),
    ("left_shoulder", 39, 4), ("left_elbow", 43, 1),
)
_COLUMNS_OF_TYPE = {"spherical": 4, "revolute": 1, "continuous": 1}

# H36M17 joint -> humanoid link whose origin it is; "neck" and "head" come from the head sphere.
H36M_FROM_LINK: dict[str, str] = {
    "pelvis": "root",
    "right_hip": "right_hip", "right_knee": "right_knee", "right_ankle": "right_ankle",
    "left_hip": "left_hip", "left_knee": "left_knee", "left_ankle": "left_ankle",
    "spine": "chest", "thorax": "neck",
    "left_shoulder": "left_shoulder", "left_elbow": "left_elbow", "left_wrist": "left_wrist",
    "right_shoulder": "right_shoulder", "right_elbow": "right_elbow", "right_wrist": "right_wrist",
}
HEAD_LINK = "neck"
FOOT_LINKS = ("right_ankle", "left_ankle")
# A resampled clip longer than this many frames comes from corrupt durations (a day at 10 fps).
MAX_OUTPUT_FRAMES = 1_000_000


def pybullet_data_path() -> Path:
    """Folder of the ``pybullet_data`` package (a dependency of posecurator)."""
    import pybullet_data  # imported here: only this reader needs it

    return Path(pybullet_data.getDataPath())


def humanoid_urdf_path() -> Path:
    """The humanoid that pybullet's DeepMimic environment simulates."""
    return pybullet_data_path() / "humanoid" / "humanoid.urdf"


def demo_clips() -> list[Path]:
    """The DeepMimic reference motions pybullet ships (``humanoid3d_*.txt``), sorted by name.

    These are the embedded default data of ``posecurator demo``: real motion capture
    (retargeted to the DeepMimic humanoid) that every installation has."""
    return sorted((pybullet_data_path() / "data" / "motions").glob("humanoid3d_*.txt"))


# ---------------------------------------------------------------------- the humanoid
@dataclass(frozen=True)
class HumanoidModel:
    """Kinematic tree of a URDF humanoid, lengths in metres (after the global scaling).

    links: (L,) link names in topological order; parents: (L,) int, -1 for the base link;
    offsets: (L, 3) joint origin of each link in its parent link's frame; origin_rotations:
    (L, 3, 3) fixed rotation of each joint origin (from ``rpy``); joint_types: (L,) URDF joint
    type of the joint whose child is the link ("" for the base); axes: (L, 3) revolute axes;
    head_centre (3,) and head_radius: the head sphere in the head link's frame; foot_boxes:
    link name -> (centre (3,), size (3,)) of each foot's collision box in its link frame.
    """

    links: tuple[str, ...]
    parents: np.ndarray
    offsets: np.ndarray
    origin_rotations: np.ndarray
    joint_types: tuple[str, ...]
    axes: np.ndarray
    head_centre: np.ndarray
    head_radius: float
    foot_boxes: dict

    def index(self, link: str) -> int:
        return self.links.index(link)


def _floats(path, element, attr: str, default: str, n: int) -> np.ndarray:
    text = element.get(attr, default) if element is not None else default
    try:
        values = np.array([float(v) for v in text.split()], dtype=np.float64)
    except ValueError:
        values = np.empty(0)
    if values.shape != (n,):
        raise DataError(path, f"<{getattr(element, 'tag', '?')}> attribute {attr}={text!r} is not {n} numbers")
    return values


def _rpy_matrix(rpy: np.ndarray) -> np.ndarray:
    """URDF fixed-axis roll-pitch-yaw -> rotation matrix ``Rz(yaw) @ Ry(pitch) @ Rx(roll)``."""
    (cr, cp, cy), (sr, sp, sy) = np.cos(rpy), np.sin(rpy)
    return np.array([
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ])


def load_humanoid(urdf: str | os.PathLike | None = None, *, scale: float = URDF_GLOBAL_SCALING) -> HumanoidModel:
    """Parse the humanoid's kinematic tree from its URDF (default: :func:`humanoid_urdf_path`)."""
    path = Path(urdf) if urdf is not None else humanoid_urdf_path()
    # pybullet's humanoid.urdf ends in a NUL byte, which an XML parser rejects
    text = read_text(path).rstrip("\x00 \n\t")
    try:
        robot = ET.fromstring(text)
    except ET.ParseError as e:
        raise DataError(path, f"corrupt URDF: {e}", line=e.position[0]) from None
    joints = {}
    for j in robot.iter("joint"):
        parent, child = j.find("parent"), j.find("child")
        if parent is None or child is None or "link" not in parent.attrib or "link" not in child.attrib:
            raise DataError(path, f"joint {j.get('name')!r} lacks <parent link> or <child link>")
        joints[child.get("link")] = j
    link_elements = {link.get("name"): link for link in robot.iter("link")}
    roots = [name for name in link_elements if name not in joints]
    if len(roots) != 1:
        raise DataError(path, f"expected one base link, found {roots}")

    links, parents, offsets, rotations, types, axes = [roots[0]], [-1], [np.zeros(3)], [np.eye(3)], [""], [np.zeros(3)]
    frontier = [roots[0]]
    while frontier:  # breadth first, so every parent precedes its children
        nxt = []
        for name in frontier:
            for child, j in joints.items():
                if j.find("parent").get("link") != name:
                    continue
                origin = j.find("origin")
                links.append(child)
                parents.append(links.index(name))
                offsets.append(scale * _floats(path, origin, "xyz", "0 0 0", 3))
                rotations.append(_rpy_matrix(_floats(path, origin, "rpy", "0 0 0", 3)))
                types.append(j.get("type", ""))
                axis = _floats(path, j.find("axis"), "xyz", "1 0 0", 3)
                axes.append(axis / np.linalg.norm(axis))
                nxt.append(child)
        frontier = nxt
    if len(links) != len(link_elements):
        raise DataError(path, "links not connected to the base link: " + ", ".join(sorted(set(link_elements) - set(links))))
    for name, _, width in MOTION_COLUMNS:
        if name not in links or _COLUMNS_OF_TYPE.get(types[links.index(name)]) != width:
            raise DataError(path, f"joint {name!r} missing or not of the type the motion format needs ({width} numbers)")

    def collision(link: str, shape: str):
        element = link_elements.get(link)
        col = element.find("collision") if element is not None else None
        geometry = col.find("geometry") if col is not None else None
        if geometry is None or geometry.find(shape) is None:
            raise DataError(path, f"link {link!r} has no <{shape}> collision geometry")
        return scale * _floats(path, col.find("origin"), "xyz", "0 0 0", 3), geometry.find(shape)

    head_centre, sphere = collision(HEAD_LINK, "sphere")
    try:
        head_radius = scale * float(sphere.get("radius"))
    except (TypeError, ValueError):
        raise DataError(path, f"link {HEAD_LINK!r}: sphere radius is not a number") from None
    foot_boxes = {}
    for link in FOOT_LINKS:
        centre, box = collision(link, "box")
        foot_boxes[link] = (centre, scale * _floats(path, box, "size", "", 3))
    return HumanoidModel(
        links=tuple(links), parents=np.array(parents), offsets=np.array(offsets),
        origin_rotations=np.array(rotations), joint_types=tuple(types), axes=np.array(axes),
        head_centre=head_centre, head_radius=head_radius, foot_boxes=foot_boxes,
    )


# ---------------------------------------------------------------------- rotations, resampling
def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (w, x, y, z), normalised here -> (..., 3, 3) rotation matrices."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=-1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=-1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=-1),
    ], axis=-2)


def axis_angle_to_matrix(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotation by ``angle`` (...,) radians about the unit ``axis`` (3,) -> (..., 3, 3) (Rodrigues)."""
    angle = np.asarray(angle, dtype=np.float64)[..., None, None]
    x, y, z = axis
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def slerp(q0: np.ndarray, q1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions along the shorter arc.

    q0, q1: (..., 4); t: broadcastable to q0[..., 0], in [0, 1]. Returns (..., 4) unit quaternions."""
    q0 = q0 / np.linalg.norm(q0, axis=-1, keepdims=True)
    q1 = q1 / np.linalg.norm(q1, axis=-1, keepdims=True)
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)  # q and -q are one rotation; take the short way
    dot = np.clip(np.abs(dot), 0.0, 1.0)
    t = np.asarray(t, dtype=np.float64)[..., None]
    theta = np.arccos(dot)
    sin_theta = np.sin(theta)
    near = sin_theta < 1e-6  # nearly equal: linear interpolation is exact enough and stable
    safe = np.where(near, 1.0, sin_theta)
    w0 = np.where(near, 1 - t, np.sin((1 - t) * theta) / safe)
    w1 = np.where(near, t, np.sin(t * theta) / safe)
    out = w0 * q0 + w1 * q1
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def resample_motion(frames: np.ndarray, fps: float) -> np.ndarray:
    """Key frames (K, 44) with per-frame durations -> frames (F, 44) sampled every 1 / fps seconds.

    Key frame k starts at the sum of the durations before it; samples run from 0 to the last key
    frame's time. Positions and angles are interpolated linearly, quaternions by :func:`slerp`.
    The duration column of the result holds 1 / fps."""
    if len(frames) == 1:
        return frames.copy()
    durations = frames[:-1, 0]
    times = np.concatenate([[0.0], np.cumsum(durations)])
    n_out = int(np.floor(times[-1] * fps + 1e-6)) + 1
    t_out = np.arange(n_out) / fps
    k = np.clip(np.searchsorted(times, t_out, side="right") - 1, 0, len(frames) - 2)
    span = np.where(durations[k] > 0, durations[k], 1.0)
    a = np.clip((t_out - times[k]) / span, 0.0, 1.0)
    f0, f1 = frames[k], frames[k + 1]
    out = f0 + a[:, None] * (f1 - f0)  # linear for everything; quaternion columns replaced below
    quat_starts = [ROOT_QUATERNION.start] + [start for _, start, width in MOTION_COLUMNS if width == 4]
    for start in quat_starts:
        out[:, start:start + 4] = slerp(f0[:, start:start + 4], f1[:, start:start + 4], a)
    out[:, 0] = 1.0 / fps
    return out


# ---------------------------------------------------------------------- forward kinematics
def link_transforms(frames: np.ndarray, model: HumanoidModel) -> tuple[np.ndarray, np.ndarray]:
    """World position (F, L, 3) metres and rotation (F, L, 3, 3) of every link frame of the model.

    frames: (F, 44) motion frames. Y up, as in DeepMimic. Batched over frames."""
    n = len(frames)
    local_rot = np.broadcast_to(model.origin_rotations, (n,) + model.origin_rotations.shape).copy()
    local_trans = np.broadcast_to(model.offsets, (n,) + model.offsets.shape).copy()
    base = int(np.flatnonzero(model.parents < 0)[0])
    local_rot[:, base] = quaternion_to_matrix(frames[:, ROOT_QUATERNION])
    local_trans[:, base] = frames[:, ROOT_POSITION]
    for name, start, width in MOTION_COLUMNS:
        j = model.index(name)
        if width == 4:
            joint_rot = quaternion_to_matrix(frames[:, start:start + 4])
        else:
            joint_rot = axis_angle_to_matrix(model.axes[j], frames[:, start])
        local_rot[:, j] = local_rot[:, j] @ joint_rot
    return forward_kinematics(model.parents, local_rot, local_trans)


def humanoid_to_h36m17(positions: np.ndarray, rotations: np.ndarray, model: HumanoidModel) -> np.ndarray:
    """Link frames (F, L, 3) / (F, L, 3, 3) -> (F, 17, 3) H36M17 joints, same frame and units."""
    out = np.empty((len(positions), H36M17.n_joints, 3))
    for joint, link in H36M_FROM_LINK.items():
        out[:, H36M17.index(joint)] = positions[:, model.index(link)]
    h = model.index(HEAD_LINK)
    centre = model.head_centre
    norm = np.linalg.norm(centre)
    up = centre / norm if norm > 0 else np.array([0.0, 1.0, 0.0])  # head link's own +Y when centred
    top = centre + model.head_radius * up
    out[:, H36M17.index("neck")] = positions[:, h] + rotations[:, h] @ centre
    out[:, H36M17.index("head")] = positions[:, h] + rotations[:, h] @ top
    return out


def foot_sole_height(positions: np.ndarray, rotations: np.ndarray, model: HumanoidModel) -> np.ndarray:
    """(F,) height (Y, metres) of the lowest corner of either foot's collision box per frame."""
    corners = np.array([[sx, sy, sz] for sx in (-0.5, 0.5) for sy in (-0.5, 0.5) for sz in (-0.5, 0.5)])
    lowest = []
    for link in FOOT_LINKS:
        centre, size = model.foot_boxes[link]
        j = model.index(link)
        pts = positions[:, j, None, :] + np.einsum("fab,kb->fka", rotations[:, j], centre + corners * size)
        lowest.append(pts[..., 1].min(axis=1))
    return np.minimum(*lowest)


# ---------------------------------------------------------------------- reader
def _read_frames(path: Path) -> tuple[np.ndarray, str]:
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, f"corrupt or truncated JSON: {e.msg}", line=e.lineno) from None
    if not isinstance(data, dict) or "Frames" not in data:
        raise DataError(path, "not a DeepMimic motion file (no \"Frames\")")
    rows = data["Frames"]
    if not isinstance(rows, list) or len(rows) < 1:
        raise DataError(path, "\"Frames\" is empty")
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != FRAME_WIDTH:
            raise DataError(path, f"frame {i} has {len(row) if isinstance(row, list) else 'no'} numbers, expected {FRAME_WIDTH} (humanoid3d layout)")
    try:
        frames = np.array(rows)  # no dtype: strings, nulls and booleans must not become numbers
    except (TypeError, ValueError, OverflowError):
        frames = None
    if frames is None or frames.dtype.kind not in "iuf" or frames.shape != (len(rows), FRAME_WIDTH):
        raise DataError(path, "\"Frames\" holds values that are not numbers")
    frames = frames.astype(np.float64)
    if not np.isfinite(frames).all():
        i = int(np.argmax(~np.isfinite(frames).all(axis=1)))
        raise DataError(path, f"frame {i} has NaN or infinite values")
    if (np.abs(frames) > MAX_ABS_RAW).any():
        i = int(np.argmax((np.abs(frames) > MAX_ABS_RAW).any(axis=1)))
        raise DataError(path, f"frame {i} has a value beyond {MAX_ABS_RAW:g} (corrupt file?)")
    if (frames[:-1, 0] < 0).any() or (len(frames) > 1 and frames[:-1, 0].sum() <= 0):
        raise DataError(path, "frame durations must be non-negative and not all zero")
    # a zero quaternion is no rotation at all: normalising it would divide by zero
    quat_starts = [ROOT_QUATERNION.start] + [start for _, start, width in MOTION_COLUMNS if width == 4]
    norms = np.stack([np.linalg.norm(frames[:, q:q + 4], axis=1) for q in quat_starts], axis=1)
    if (norms < 1e-6).any():
        i, k = (int(v) for v in np.argwhere(norms < 1e-6)[0])
        raise DataError(path, f"frame {i}: the quaternion in columns {quat_starts[k]}-{quat_starts[k] + 3} is zero")
    loop = data.get("Loop", "")
    return frames, loop if isinstance(loop, str) else short_value(loop)


def clip_activity(path: str | os.PathLike) -> str:
    """``humanoid3d_walk.txt`` -> ``walk`` (any other file: its stem)."""
    stem = Path(path).name.split(".")[0]
    return stem[len("humanoid3d_"):] if stem.startswith("humanoid3d_") else stem


def read_deepmimic(path: str | os.PathLike, *, fps: float = 30.0, urdf: str | os.PathLike | None = None,
                   source: str = "deepmimic") -> PoseSet:
    """A DeepMimic humanoid3d motion -> pose set (H36M17, mm, Z up, floor at Z = 0, ``fps``).

    Resampled from the key-frame durations to ``fps`` (linear / slerp, see the module docstring).
    subject = "deepmimic_humanoid", activity = the name after ``humanoid3d_``, clip =
    ``deepmimic/<activity>``. ``attrs`` notes the loop mode, the key-frame count and the lowest
    foot-sole height over the clip (mm above DeepMimic's ground plane).
    """
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    path = Path(path)
    frames, loop = _read_frames(path)
    n_out = frames[:-1, 0].sum() * fps
    if n_out > MAX_OUTPUT_FRAMES:
        raise DataError(path, f"frame durations add up to {frames[:-1, 0].sum():.4g} s: more than "
                              f"{MAX_OUTPUT_FRAMES} frames at {fps:g} fps (corrupt durations?)")
    model = load_humanoid(urdf)
    sampled = resample_motion(frames, fps)
    positions, rotations = link_transforms(sampled, model)
    joints = humanoid_to_h36m17(positions, rotations, model)
    joints_mm = 1000.0 * joints @ up_rotation("+y").T
    check_coordinates(path, joints_mm, MAX_ABS_MM, what="joints in millimetres", row_name=lambda i: f"output frame {i}")
    sole_mm = 1000.0 * float(foot_sole_height(positions, rotations, model).min())
    activity = clip_activity(path)
    return PoseSet(
        joints3d=joints_mm,
        source=source,
        subject="deepmimic_humanoid",
        activity=activity,
        clip=f"deepmimic/{activity}",
        frame=np.arange(len(joints_mm), dtype=np.int32),
        layout=H36M17.name,
        fps=float(fps),
        attrs={
            "source_file": path.name,
            "loop": loop,
            "key_frames": int(len(frames)),
            "lowest_sole_mm": round(sole_mm, 1),
            "units_source": "m, Y up",
        },
    )
