"""Orientation-aligned motion guidance (PoseSyn, App. "Details for Orientation-aligned Motion
Guidance", Eq. 7-9) in posecurator's lifting setting.

PoseSyn animates a reference ("easy", non-challenging) image with each synthesized motion. To
make the animation natural, the motion's global orientation is aligned to the person of the
reference image: frame 1 takes the reference's global orientation ``R_init`` (4DHumans' SMPL
root orientation, Eq. 7), later frames keep the motion's own change of orientation (Eq. 9), and
the mesh is placed at the reference's translation and projected with the reference's camera
(Eq. 10-11). Here "rendering" is projecting the 17 joints through the reference's camera.

What posecurator does, per synthesized sequence (motion ``M`` (L, 17, 3), canonical: world Z up,
floor Z = 0, frame 0's pelvis over the origin facing +X):

1. the **motion's body frame** at frame 0, ``B_m`` (:func:`body_frame` with up = world +Z): rows
   forward (``up x (right_hip - left_hip)``, horizontal), left, up;
2. the **reference's body frame** ``B_r``: forward from the reference person's *predicted*
   root-relative camera-frame pose (the estimator's 3D for the easy sample), up = the world's
   up direction *in that camera* (:func:`up_in_camera`: ``R @ [0, 0, 1]`` for a camera with real
   extrinsics, ``(0, -1, 0)``, a level camera, for COCO-like placeholder cameras);
3. one rotation ``R = B_r^T B_m`` (world -> camera) for the WHOLE sequence, and the translation
   that puts frame 0's pelvis at the reference's root translation:
   ``X_l = R (M_l - M_0[pelvis]) + T_ref``. The pair builder passes the reference's solved
   translation scaled to the motion's body size (:func:`size_matched_translation`): the same
   pelvis pixel and apparent size as the reference person, at the depth a body of the motion's
   size needs (the solved depth carries the scale of the estimator's prediction).

Why the heading and the vertical, and not the reference's full root orientation (torso lean
included): the reference's 3D is a lifter's prediction from 2D, whose pelvis/torso tilt is the
least reliable part of it, and a lean is part of the reference's *pose*, not of where the person
stands. Tilting a whole motion by it would tilt its floor: feet that stand on the ground in the
motion would sink into or float above the reference's ground, and every frame would lean by the
reference's lean. The camera's up is known (real extrinsics) or, for in-the-wild photos, best
assumed level; the facing direction is what makes the animation look like the reference person
turned into the motion. So: facing from the reference, up from the camera.

Why one rigid rotation for the whole sequence: Eq. 9 as printed, ``R_mod,l = R_S,l R_S,l-1^-1
R_init``, applies only the last frame-to-frame increment (it equals the intended cumulative form
for l = 2 only); the text says the relative orientation over frames is kept. Rotating the whole
motion rigidly keeps every frame's orientation relative to frame 0 (``R_mod,l = R B_m R_S,l``,
the cumulative form), keeps the root trajectory consistent with the body's turning (a person
walking forward keeps walking forward), and keeps bone lengths, foot contacts and the floor
(Eq. 10 keeps the translation fixed at ``t_bar`` for every frame; we keep the motion's own root
trajectory, turned with it, since a moving root is what the 2D of a moving person shows).

All functions are batched over any leading dimensions; :func:`align_motion_reference` is the
plain per-sequence, per-frame version the tests compare with.
"""

from __future__ import annotations

import numpy as np

from posecurator.skeleton.layouts import H36M17

ROOT = H36M17.index("pelvis")
RIGHT_HIP, LEFT_HIP = H36M17.index("right_hip"), H36M17.index("left_hip")
N_JOINTS = H36M17.n_joints
WORLD_UP = (0.0, 0.0, 1.0)
LEVEL_UP_CAM = (0.0, -1.0, 0.0)  # OpenCV camera axes: y points down, so up is -y for a level camera
_EPS = 1e-9


def _check_joints(joints, what: str) -> np.ndarray:
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim < 2 or joints.shape[-2:] != (N_JOINTS, 3):
        raise ValueError(f"{what} must be (..., {N_JOINTS}, 3) joints, got {joints.shape}")
    return joints


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > _EPS, v / np.where(n > _EPS, n, 1.0), np.nan)


def body_frame(joints, up) -> np.ndarray:
    """The body's heading frame: (..., 17, 3) joints and the up direction (3,) or (..., 3) in the
    same coordinates -> (..., 3, 3) with rows forward, left, up (unit vectors).

    forward = up x (right_hip - left_hip), which is horizontal (perpendicular to up) by
    construction; left = up x forward. NaN rows where the hip line is parallel to up (a person
    lying on their side seen along the hips: no heading)."""
    joints = _check_joints(joints, "joints")
    up = _unit(np.broadcast_to(np.asarray(up, dtype=np.float64), joints.shape[:-2] + (3,)))
    across = joints[..., RIGHT_HIP, :] - joints[..., LEFT_HIP, :]
    forward = _unit(np.cross(up, across))
    left = np.cross(up, forward)
    return np.stack([forward, left, up], axis=-2)


def is_placeholder_camera(camera: dict | None) -> bool:
    """True for a camera without real extrinsics: none at all, or an identity pose (R = I, t = 0),
    which is what readers of 2D-only data write (COCO: identity pose with intrinsics assumed from
    the image size, ``"assumed_intrinsics": true``). A real camera in posecurator's Z-up world is
    never the identity: that camera would look straight down."""
    if camera is None or "R" not in camera:
        return True
    R = np.asarray(camera["R"], dtype=np.float64).reshape(3, 3)
    t = np.asarray(camera.get("t", (0.0, 0.0, 0.0)), dtype=np.float64).reshape(3)
    return bool(np.allclose(R, np.eye(3)) and np.allclose(t, 0.0))


def up_in_camera(camera: dict | None) -> np.ndarray:
    """The world's up direction (+Z) in the camera frame (3,): ``R @ [0, 0, 1]`` for a camera with
    real extrinsics (``X_cam = R X_world + t``), else (0, -1, 0): a level camera
    (:func:`is_placeholder_camera`; in-the-wild photos are mostly taken level)."""
    if is_placeholder_camera(camera):
        return np.array(LEVEL_UP_CAM)
    R = np.asarray(camera["R"], dtype=np.float64).reshape(3, 3)
    return R @ np.array(WORLD_UP)


def alignment_rotation(motion_first_frame, ref_pose_cam, up_cam) -> np.ndarray:
    """(..., 3, 3) rotation world -> camera that turns the motion's frame-0 body frame (world up
    +Z) onto the reference's body frame (up ``up_cam``): ``R = B_r^T B_m``. Inputs (..., 17, 3),
    (..., 17, 3), (..., 3) or (3,), broadcast."""
    b_m = body_frame(motion_first_frame, WORLD_UP)
    b_r = body_frame(ref_pose_cam, up_cam)
    return np.swapaxes(b_r, -1, -2) @ b_m


def align_motion(motion_world, ref_pose_cam, ref_translation, up_cam) -> np.ndarray:
    """Motions placed in their reference's camera (module docstring, Eq. 9 as one rigid motion).

    motion_world (..., L, 17, 3) canonical world mm (Z up); ref_pose_cam (..., 17, 3) the
    reference's predicted root-relative camera-frame pose (mm); ref_translation (..., 3) mm its
    root translation in the camera; up_cam (..., 3) or (3,) the world's up in the camera
    (:func:`up_in_camera`). Leading dimensions broadcast. Returns (..., L, 17, 3) camera-frame mm:
    frame 0's pelvis at ``ref_translation``, frame 0 facing the reference's facing direction,
    world up along ``up_cam``. NaN where either heading is undefined (:func:`body_frame`)."""
    motion = np.asarray(motion_world, dtype=np.float64)
    if motion.ndim < 3 or motion.shape[-2:] != (N_JOINTS, 3):
        raise ValueError(f"motions must be (..., L, {N_JOINTS}, 3), got {motion.shape}")
    ref = _check_joints(ref_pose_cam, "reference poses")
    trans = np.asarray(ref_translation, dtype=np.float64)
    if trans.shape[-1:] != (3,):
        raise ValueError(f"reference translations must be (..., 3), got {trans.shape}")
    up = np.asarray(up_cam, dtype=np.float64)
    if up.shape[-1:] != (3,):
        raise ValueError(f"up directions must be (..., 3), got {up.shape}")
    lead = np.broadcast_shapes(motion.shape[:-3], ref.shape[:-2], trans.shape[:-1], up.shape[:-1])
    motion = np.broadcast_to(motion, lead + motion.shape[-3:])
    ref = np.broadcast_to(ref, lead + ref.shape[-2:])
    trans = np.broadcast_to(trans, lead + (3,))
    up = np.broadcast_to(up, lead + (3,))
    R = alignment_rotation(motion[..., 0, :, :], ref, up)              # (..., 3, 3)
    rel = motion - motion[..., 0:1, ROOT:ROOT + 1, :]                   # frame 0's pelvis at the origin
    return np.einsum("...ij,...lkj->...lki", R, rel) + trans[..., None, None, :]


def align_motion_reference(motion_world, ref_pose_cam, ref_translation, up_cam) -> np.ndarray:
    """Plain version of :func:`align_motion` for (N, L, 17, 3), (N, 17, 3), (N, 3), (N, 3):
    one sequence at a time, the frames built with explicit cross products, one joint at a time."""
    motion = np.asarray(motion_world, dtype=np.float64)
    out = np.empty_like(motion)
    for n in range(len(motion)):
        def frame(joints, up):
            up = np.asarray(up, dtype=np.float64) / np.linalg.norm(up)
            fwd = np.cross(up, joints[RIGHT_HIP] - joints[LEFT_HIP])
            fwd = fwd / np.linalg.norm(fwd)
            return [fwd, np.cross(up, fwd), up]

        src = frame(motion[n, 0], WORLD_UP)
        dst = frame(np.asarray(ref_pose_cam[n], dtype=np.float64), up_cam[n])
        # R maps each source axis onto the matching target axis: R = sum_k dst_k src_k^T
        R = sum(np.outer(d, s) for d, s in zip(dst, src))
        origin = motion[n, 0, ROOT]
        for l in range(motion.shape[1]):
            for j in range(N_JOINTS):
                out[n, l, j] = R @ (motion[n, l, j] - origin) + np.asarray(ref_translation[n], dtype=np.float64)
    return out


def bone_length_sum(joints) -> np.ndarray:
    """(..., 17, 3) -> (...) the sum of the 16 bone lengths (a pose-independent body size)."""
    joints = _check_joints(joints, "joints")
    bones = H36M17.bones
    return np.linalg.norm(joints[..., bones[:, 1], :] - joints[..., bones[:, 0], :], axis=-1).sum(-1)


def size_matched_translation(ref_translation, ref_pose_cam, motion_first_frame) -> np.ndarray:
    """The reference's root translation (..., 3) scaled by (body size of the motion) / (body size
    of the reference's prediction) (:func:`bone_length_sum`).

    Why: the root translation is solved from the reference's 2D with the estimator's PREDICTED
    pose, so its depth carries the prediction's scale (a lifter that shrinks people puts them
    too close). Under perspective, a body k times larger placed at k times the translation has
    the same image: the scaled translation keeps the reference's pelvis pixel and its apparent
    size, for a motion of its own (real) size. PoseSyn gets the same from 4DHumans' consistent
    SMPL shape and translation (Eq. 7, 10)."""
    k = bone_length_sum(motion_first_frame) / bone_length_sum(ref_pose_cam)
    return np.asarray(ref_translation, dtype=np.float64) * k[..., None]


def upright_from_camera(joints_cam, up_cam) -> np.ndarray:
    """(..., 17, 3) camera-frame poses and the world up in each camera (..., 3) -> the poses in a
    Z-up world frame, batched (:func:`posecurator.synthesis.motion_repr.camera_to_upright` does one
    up direction for all): ``up_cam`` becomes +Z, the optical axis made horizontal +Y, and each
    pose stands with its lowest joint on the floor (Z = 0). Used to give a motion model the
    mis-predicted pose of a hard sample as a pose in its own world."""
    x = _check_joints(joints_cam, "camera-frame poses")
    up = _unit(np.broadcast_to(np.asarray(up_cam, dtype=np.float64), x.shape[:-2] + (3,)))
    optical = np.broadcast_to(np.array([0.0, 0.0, 1.0]), up.shape)
    fwd = optical - up * up[..., 2:3]
    # a camera looking straight along up has no horizontal optical axis: use its x axis instead
    straight = np.linalg.norm(fwd, axis=-1, keepdims=True) < 1e-6
    fwd = np.where(straight, np.array([1.0, 0.0, 0.0]) - up * up[..., 0:1], fwd)
    fwd = _unit(fwd)
    right = np.cross(fwd, up)
    basis = np.stack([right, fwd, up], axis=-2)  # rows: world X, Y, Z in camera coordinates
    world = np.einsum("...ij,...kj->...ki", basis, x)
    return world - np.array([0.0, 0.0, 1.0]) * np.nanmin(world[..., 2], axis=-1)[..., None, None]
