"""From synthesized motions to 2D-3D training pairs (PoseSyn Sec. 3.3 in the lifting setting), and
the export of those pairs for image animation models.

**Pairs** (:func:`synthesized_pairs`). Motion ``s`` of hard sample ``h`` is placed in the camera of
a reference ("easy") sample ``r`` (:func:`posecurator.synthesis.alignment.align_motion`: facing
the reference person's direction, upright in the camera, frame 0's pelvis at the reference's
root translation, scaled to the motion's body size) and every frame is projected through the reference's intrinsics: this
is PoseSyn's "rendering" when the estimator is a 2D-to-3D lifter (exact projection, so no
rendering artefacts). Visibility is 1 for a joint in front of the camera and inside the image,
else 0 with NaN 2D.

**World frame of a synthesized pair.** The 3D is stored, as in every pose set, in a Z-up world
(mm, floor at Z = 0) with one camera table row per synthesized sequence such that
``world_to_camera(joints3d, R, t)`` is the aligned camera-frame motion and projecting it with the
row's ``f``, ``c`` gives ``joints2d`` (the 2D is computed FROM the stored float32 world 3D, so
posecurator's camera code reproduces it exactly):

* a reference camera with real extrinsics (a 3D set seen through cameras): that camera's
  rotation and position, with the world shifted vertically so the motion's floor is at Z = 0;
* a COCO-like placeholder camera (identity pose, intrinsics assumed from the image size): a
  *virtual level camera* ``R = [[1, 0, 0], [0, 0, -1], [0, 1, 0]]`` (looking along world +Y) at
  ``(0, 0, h)``, its height ``h`` chosen so the motion's floor (the canonical motion's Z = 0) lies
  at Z = 0: that is the assumption the alignment made (a level camera), written down.

The row keeps the reference image's size and intrinsics and names its reference
(``reference_sample_id``, ``reference_camera``, ``virtual_level``).

**Lineage.** ``parents`` = (hard sample id, reference sample id), operator ``posesyn``, generation
1, clip ``syn-h{hard}-r{ref}-s{seq}``, frame = frame index in the motion, source ``posesyn``,
activity = the hard sample's caption (else "posesyn"), subject = the reference's id. With
``n_random_cameras`` > 0 each sequence is also seen through that many seeded random cameras
(:class:`posecurator.camera.RandomCameraSampler`, aimed at the sequence's mean pelvis; clip
suffix ``-v1``, ``-v2``, ...).

**Export for image animation models** (:func:`export_guidance`): per-frame skeleton images in
the OpenPose/DWPose body drawing convention (:func:`openpose18`, :func:`draw_openpose`) and one
JSON per sequence with the 2D, the 3D and the camera of every frame; predictions an image
estimator makes on frames animated from them come back with :func:`import_predictions`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posecurator.camera import RandomCameraSampler
from posecurator.camera.core import camera_to_world, project_points, world_to_camera
from posecurator.camera.placement import MIN_DEPTH_MM, sample_cameras
from posecurator.errors import DataError
from posecurator.fileio import staged_dir
from posecurator.poseset import PoseSet
from posecurator.skeleton.layouts import H36M17
from posecurator.synthesis.alignment import ROOT, align_motion, is_placeholder_camera, size_matched_translation, up_in_camera

OPERATOR = "posesyn"
# the virtual level camera of a placeholder reference: x_cam = world X, y_cam = -world Z, z_cam = world Y
LEVEL_CAMERA_R = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
_VIEW_STREAM = 53
_ASSIGN_STREAM = 59


@dataclass
class ReferenceSet:
    """PoseSyn's reference ("easy") samples with what alignment needs: ``poses`` (PoseSet with 2D
    and a camera table row per sample), ``pred3d`` (R, 17, 3) the estimator's root-relative
    camera-frame prediction (mm) and ``translation`` (R, 3) its solved root translation (mm)."""

    poses: PoseSet
    pred3d: np.ndarray
    translation: np.ndarray

    def __post_init__(self):
        n = len(self.poses)
        self.pred3d = np.asarray(self.pred3d, dtype=np.float64)
        self.translation = np.asarray(self.translation, dtype=np.float64)
        if self.pred3d.shape != (n, H36M17.n_joints, 3) or self.translation.shape != (n, 3):
            raise ValueError(f"references: pred3d must be ({n}, 17, 3) and translation ({n}, 3), "
                             f"got {self.pred3d.shape}, {self.translation.shape}")
        if n == 0:
            raise DataError(None, "no reference (easy) sample to place the synthesized motions in")
        cams = sample_cameras(self.poses)
        bad = ~(np.isfinite(self.pred3d).all((1, 2)) & np.isfinite(self.translation).all(1) & np.isfinite(cams["f"]).all(1)
                & np.isfinite(cams["width"]) & np.isfinite(cams["height"]))
        if bad.any():
            raise DataError(None, f"{int(bad.sum())} reference sample(s) have no prediction, translation or camera size "
                                  f"(first sample id {int(self.poses.sample_id[np.argmax(bad)])})")

    def __len__(self) -> int:
        return len(self.poses)


def assign_references(n_hard: int, per_sample: int, n_refs: int, *, seed: int = 0) -> np.ndarray:
    """(H, S) rows of the references for the S motions of each of H hard samples, seeded: each
    hard sample's motions get distinct references while S <= number of references."""
    rng = np.random.default_rng([int(seed), _ASSIGN_STREAM])
    if per_sample <= n_refs:
        return np.argsort(rng.random((n_hard, n_refs)), axis=1)[:, :per_sample].astype(np.int64)
    return rng.integers(0, n_refs, size=(n_hard, per_sample)).astype(np.int64)


def camera_frame_joints(poses: PoseSet) -> np.ndarray:
    """(N, 17, 3) float64 mm: each sample's world 3D in its own camera (camera table row)."""
    if poses.joints3d is None:
        raise DataError(None, "camera-frame joints need 3D poses")
    cams = sample_cameras(poses)
    return world_to_camera(poses.joints3d.astype(np.float64), cams["R"], cams["t"])


def _visible(x_cam: np.ndarray, px: np.ndarray, width, height) -> np.ndarray:
    """(..., J) joints in front of the camera and inside the image [0, w) x [0, h)."""
    w = np.asarray(width, dtype=np.float64)[..., None]
    h = np.asarray(height, dtype=np.float64)[..., None]
    with np.errstate(invalid="ignore"):
        return ((x_cam[..., 2] > MIN_DEPTH_MM) & np.isfinite(px).all(-1) & (px[..., 0] >= 0) & (px[..., 0] < w)
                & (px[..., 1] >= 0) & (px[..., 1] < h))


def project_stored(poses: PoseSet) -> tuple[np.ndarray, np.ndarray]:
    """2D (N, J, 2) float32 px (NaN where not visible) and visibility (N, J) float32 of a pose
    set's world 3D seen through each sample's camera table row: 1 for a joint in front of the
    camera and inside the image, else 0."""
    cams = sample_cameras(poses)
    x_cam = world_to_camera(poses.joints3d.astype(np.float64), cams["R"], cams["t"])
    px = project_points(x_cam, cams["f"], cams["c"])
    vis = _visible(x_cam, px, cams["width"], cams["height"])
    return np.where(vis[..., None], px, np.nan).astype(np.float32), vis.astype(np.float32)


def synthesis_world(aligned_cam: np.ndarray, ref_R: np.ndarray, ref_t: np.ndarray, placeholder: np.ndarray,
                    floor_point_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Z-up world of each synthesized sequence (module docstring).

    aligned_cam (..., L, 17, 3) camera-frame motions; ref_R (..., 3, 3), ref_t (..., 3) the
    reference cameras (ignored where ``placeholder``); placeholder (...) bool; floor_point_cam
    (..., 3) a point of the motion's floor in the camera frame. Returns (world joints (..., L, 17, 3),
    R (..., 3, 3), t (..., 3)) with ``R @ world + t = aligned_cam`` and the floor at Z = 0."""
    placeholder = np.asarray(placeholder, dtype=bool)
    R = np.where(placeholder[..., None, None], LEVEL_CAMERA_R, np.asarray(ref_R, dtype=np.float64))
    ref_center = -np.einsum("...ji,...j->...i", np.nan_to_num(np.asarray(ref_R, dtype=np.float64)),
                            np.nan_to_num(np.asarray(ref_t, dtype=np.float64)))
    center0 = np.where(placeholder[..., None], 0.0, ref_center)
    floor_world = np.einsum("...ji,...j->...i", R, floor_point_cam) + center0
    center = center0 - np.stack([np.zeros_like(floor_world[..., 0]), np.zeros_like(floor_world[..., 0]), floor_world[..., 2]], -1)
    world = np.einsum("...ji,...lkj->...lki", R, aligned_cam) + center[..., None, None, :]
    t = -np.einsum("...ij,...j->...i", R, center)
    return world, R, t


def synthesized_pairs(motions, hard_ids, refs: ReferenceSet, *, ref_choice=None, seed: int = 0, source: str = "posesyn",
                      captions: dict[int, str] | None = None, n_random_cameras: int = 0,
                      camera_sampler: RandomCameraSampler | None = None, first_id: int = 0,
                      match_size: bool = True) -> PoseSet:
    """2D-3D pairs of synthesized motions placed in their references' cameras (module docstring).

    motions (H, S, L, 17, 3) canonical world mm (frame 0 pelvis over the origin facing +X, floor
    Z = 0); hard_ids (H,) the hard samples' ids; refs the reference samples; ref_choice (H, S)
    rows of ``refs`` (default :func:`assign_references` with ``seed``); captions {hard id: text}
    for the activity column; ``n_random_cameras`` extra seeded random views per sequence;
    ``first_id`` the first sample id; ``match_size`` scales each reference's root translation to
    the motion's body size (:func:`posecurator.synthesis.alignment.size_matched_translation`: same
    pelvis pixel and apparent size as the reference person; False: the solved translation as is).
    Sequences whose heading is undefined (hips along the up
    direction in frame 0) are left out, counted in ``attrs["posesyn"]["dropped_sequences"]``.
    Returns H * S * L * (1 + n_random_cameras) pairs (fewer when sequences are left out),
    ordered by hard sample, motion, view, frame."""
    motions = np.asarray(motions, dtype=np.float64)
    if motions.ndim != 5 or motions.shape[-2:] != (H36M17.n_joints, 3):
        raise ValueError(f"motions must be (H, S, L, 17, 3), got {motions.shape}")
    H, S, L = motions.shape[:3]
    hard_ids = np.asarray(hard_ids, dtype=np.int64)
    if hard_ids.shape != (H,):
        raise ValueError(f"hard_ids must be ({H},), got {hard_ids.shape}")
    assignment = "seeded random" if ref_choice is None else "given"
    if ref_choice is None:
        ref_choice = assign_references(H, S, len(refs), seed=seed)
    ref_choice = np.asarray(ref_choice, dtype=np.int64)
    if ref_choice.shape != (H, S) or (ref_choice < 0).any() or (ref_choice >= len(refs)).any():
        raise ValueError(f"ref_choice must be ({H}, {S}) rows of the {len(refs)} references")
    captions = captions or {}

    cams = sample_cameras(refs.poses)
    table = refs.poses.cameras
    rows = [table[int(i)] if 0 <= int(i) < len(table) else None for i in refs.poses.camera]
    placeholder = np.array([is_placeholder_camera(r) for r in rows])
    up = np.stack([up_in_camera(r) for r in rows])                                         # (R, 3)

    translation = refs.translation[ref_choice]
    if match_size:
        translation = size_matched_translation(translation, refs.pred3d[ref_choice], motions[:, :, 0])
    aligned = align_motion(motions, refs.pred3d[ref_choice], translation, up[ref_choice])
    floor_cam = translation - up[ref_choice] * motions[:, :, 0, ROOT, 2:3]                 # (H, S, 3)
    world, R, t = synthesis_world(aligned, cams["R"][ref_choice], cams["t"][ref_choice], placeholder[ref_choice], floor_cam)
    ok_seq = np.isfinite(world).all((2, 3, 4)) & np.isfinite(R).all((2, 3))               # (H, S)

    # one camera table row per sequence (and per extra view)
    n_views = 1 + int(n_random_cameras)
    hh, ss = np.nonzero(ok_seq)                                                           # kept sequences
    n_seq = len(hh)
    ref_rows = ref_choice[hh, ss]
    world_k = world[hh, ss]                                                               # (n_seq, L, 17, 3)
    seq_R = np.repeat(R[hh, ss][:, None], n_views, 1)                                     # (n_seq, V, 3, 3)
    seq_t = np.repeat(t[hh, ss][:, None], n_views, 1)
    seq_f = np.repeat(cams["f"][ref_rows][:, None], n_views, 1)
    seq_c = np.repeat(cams["c"][ref_rows][:, None], n_views, 1)
    seq_w = np.repeat(cams["width"][ref_rows][:, None], n_views, 1)
    seq_h = np.repeat(cams["height"][ref_rows][:, None], n_views, 1)
    if n_views > 1 and n_seq:
        sampler = RandomCameraSampler() if camera_sampler is None else camera_sampler
        pelvis = np.repeat(world_k[:, :, ROOT].mean(1), n_views - 1, axis=0)             # (n_seq * (V-1), 3)
        rc = sampler.sample(pelvis, np.random.default_rng([int(seed), _VIEW_STREAM]), floor_z=0.0)
        shape = (n_seq, n_views - 1)
        seq_R[:, 1:] = rc.R.reshape(shape + (3, 3))
        seq_t[:, 1:] = rc.t.reshape(shape + (3,))
        seq_f[:, 1:] = rc.f.reshape(shape + (2,))
        seq_c[:, 1:] = rc.c.reshape(shape + (2,))
        seq_w[:, 1:] = rc.width.reshape(shape)
        seq_h[:, 1:] = rc.height.reshape(shape)

    joints3d = np.repeat(world_k[:, None], n_views, 1).astype(np.float32)                # (n_seq, V, L, 17, 3)

    hard_of, ref_id = hard_ids[hh], refs.poses.sample_id[ref_rows]
    ref_cam_names = [str(rows[r].get("name", "")) if rows[r] is not None else "" for r in ref_rows.tolist()]
    seq_name = [f"syn-h{int(a)}-r{int(b)}-s{int(s)}" for a, b, s in zip(hard_of.tolist(), ref_id.tolist(), ss.tolist())]
    table_out, clip_names = [], []
    for q in range(n_seq):
        for v in range(n_views):
            name = seq_name[q] if v == 0 else f"{seq_name[q]}-v{v}"
            clip_names.append(name)
            table_out.append({"name": name, "R": seq_R[q, v].tolist(), "t": seq_t[q, v].tolist(), "f": seq_f[q, v].tolist(),
                              "c": seq_c[q, v].tolist(), "width": int(seq_w[q, v]), "height": int(seq_h[q, v]),
                              "reference_sample_id": int(ref_id[q]), "reference_camera": ref_cam_names[q] if v == 0 else "",
                              "virtual_level": bool(placeholder[ref_rows[q]]) if v == 0 else False,
                              "view": "reference" if v == 0 else "random"})
    n = n_seq * n_views * L
    seq_view = np.repeat(np.arange(n_seq * n_views), L)
    parents = np.stack([np.repeat(hard_of, n_views * L), np.repeat(ref_id, n_views * L)], axis=1)
    activity = np.repeat(np.array([captions.get(int(i)) or OPERATOR for i in hard_of.tolist()], dtype=str), n_views * L)
    attrs = {"posesyn": {
        "what": "synthesized motions placed in reference cameras and projected (PoseSyn Sec. 3.3, lifting setting)",
        "world_frame": "per sequence: the reference camera's world (real extrinsics) or a virtual level camera "
                       "(placeholder cameras), shifted so the motion's floor is at Z = 0; the 2D is the stored 3D "
                       "projected through the sequence's camera row",
        "hard_samples": int(H), "per_sample": int(S), "frames": int(L), "views": n_views,
        "sequences": int(n_seq), "dropped_sequences": int(H * S - n_seq),
        "reference_assignment": assignment, "seed": int(seed),
        "translation": "scaled to the motion's body size (same pelvis pixel and apparent size as the reference)"
                       if match_size else "the reference's solved root translation"}}
    out = PoseSet(joints3d=joints3d.reshape(n, H36M17.n_joints, 3), camera=seq_view.astype(np.int32), cameras=table_out,
                   source=source, subject=np.repeat(ref_id.astype(str), n_views * L), activity=activity,
                   clip=np.repeat(np.asarray(clip_names, dtype=str), L),
                   frame=np.tile(np.arange(L), n_seq * n_views).astype(np.int32),
                   sample_id=np.arange(first_id, first_id + n, dtype=np.int64), parents=parents.astype(np.int64),
                   operator=OPERATOR, generation=1, layout=H36M17.name, attrs=attrs)
    # the 2D from the STORED float32 world 3D and camera rows, by the very code a reader runs
    # (sample_cameras -> world_to_camera -> project_points), so it reproduces exactly
    j2d, vis = project_stored(out)
    return out.replace(joints2d=j2d, visibility=vis)


# ---------------------------------------------------------------------------------- export
# OpenPose's 18-keypoint body (COCO-18) from the 17 joints: nose = the neck/nose joint, neck =
# thorax; OpenPose's eyes and ears (14-17) have no counterpart and are left out (confidence 0).
OPENPOSE18 = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
              "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
              "right_eye", "left_eye", "right_ear", "left_ear")
OPENPOSE_FROM_H36M = (H36M17.index("neck"), H36M17.index("thorax"), H36M17.index("right_shoulder"),
                      H36M17.index("right_elbow"), H36M17.index("right_wrist"), H36M17.index("left_shoulder"),
                      H36M17.index("left_elbow"), H36M17.index("left_wrist"), H36M17.index("right_hip"),
                      H36M17.index("right_knee"), H36M17.index("right_ankle"), H36M17.index("left_hip"),
                      H36M17.index("left_knee"), H36M17.index("left_ankle"), -1, -1, -1, -1)
# OpenPose / ControlNet / DWPose body drawing: 17 limbs (keypoint pairs, 0-based) and 18 colours (RGB)
OPENPOSE_LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
                  (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
OPENPOSE_COLORS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
                   (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
                   (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
STICK_WIDTH = 4
JOINT_RADIUS = 4


def openpose18(joints2d, visibility=None) -> np.ndarray:
    """(..., 17, 2) px (and visibility (..., 17)) -> (..., 18, 3) OpenPose body keypoints
    [x, y, confidence]: confidence 1 where the mapped joint is visible, else 0 with x = y = 0
    (OpenPose's JSON convention); eyes and ears always 0."""
    x = np.asarray(joints2d, dtype=np.float64)
    if x.ndim < 2 or x.shape[-2:] != (H36M17.n_joints, 2):
        raise ValueError(f"2D joints must be (..., 17, 2), got {x.shape}")
    vis = np.isfinite(x).all(-1) if visibility is None else (np.asarray(visibility) > 0) & np.isfinite(x).all(-1)
    src = np.array(OPENPOSE_FROM_H36M)
    have = src >= 0
    out = np.zeros(x.shape[:-2] + (18, 3))
    conf = np.zeros(x.shape[:-2] + (18,))
    conf[..., have] = vis[..., src[have]]
    out[..., have, :2] = np.where(conf[..., have, None] > 0, x[..., src[have], :], 0.0)
    out[..., 2] = conf
    return out


def _ellipse_polygon(cx, cy, half_length, half_width, angle_deg) -> list[tuple[float, float]]:
    """The outline OpenCV's ``ellipse2Poly(center, axes, angle, 0, 360, 1)`` draws a limb with."""
    t = np.deg2rad(np.arange(0, 361))
    a = np.deg2rad(angle_deg)
    x = cx + half_length * np.cos(t) * np.cos(a) - half_width * np.sin(t) * np.sin(a)
    y = cy + half_length * np.cos(t) * np.sin(a) + half_width * np.sin(t) * np.cos(a)
    return list(zip(np.round(x).tolist(), np.round(y).tolist()))


def draw_openpose(keypoints18, width: int, height: int) -> np.ndarray:
    """One OpenPose body skeleton image (height, width, 3) uint8 RGB in the ControlNet/DWPose
    convention: black background, each limb a filled ellipse of half-width 4 px in its colour, the
    limbs dimmed to 60 %, then each keypoint a disc of radius 4 px in its colour. Keypoints with
    confidence 0 (and limbs touching them) are not drawn."""
    from PIL import Image, ImageDraw

    kp = np.asarray(keypoints18, dtype=np.float64)
    if kp.shape != (18, 3):
        raise ValueError(f"keypoints must be (18, 3), got {kp.shape}")
    img = Image.new("RGB", (int(width), int(height)), (0, 0, 0))
    draw = ImageDraw.Draw(img)
    for (a, b), color in zip(OPENPOSE_LIMBS, OPENPOSE_COLORS):
        if kp[a, 2] <= 0 or kp[b, 2] <= 0:
            continue
        (xa, ya), (xb, yb) = kp[a, :2], kp[b, :2]
        length = math.hypot(xa - xb, ya - yb)
        angle = math.degrees(math.atan2(ya - yb, xa - xb))
        draw.polygon(_ellipse_polygon(int((xa + xb) / 2), int((ya + yb) / 2), int(length / 2), STICK_WIDTH, int(angle)),
                     fill=color)
    canvas = (np.asarray(img, dtype=np.float64) * 0.6).astype(np.uint8)
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    for k in range(18):
        if kp[k, 2] <= 0:
            continue
        x, y = int(kp[k, 0]), int(kp[k, 1])
        draw.ellipse([x - JOINT_RADIUS, y - JOINT_RADIUS, x + JOINT_RADIUS, y + JOINT_RADIUS], fill=OPENPOSE_COLORS[k])
    return np.asarray(img)


GUIDANCE_INDEX = "guidance.json"


def export_guidance(pairs: PoseSet, out_dir, *, max_frames: int | None = None) -> dict:
    """Write motion guidance for image animation models (Champ, Animate Anyone, ...) to ``out_dir``:

    * ``<clip>/frame_NNNNN.png``: the OpenPose body skeleton of each frame (:func:`draw_openpose`)
      at the reference image's size;
    * ``<clip>.json``: the sequence (hard and reference sample ids, reference image, image size)
      and per frame its sample id, 2D (px, null where not visible), visibility, world 3D (mm),
      camera-frame 3D (mm), the camera (R, t, f, c) and the OpenPose keypoints
      (``pose_keypoints_2d``: 18 x [x, y, confidence] flattened, as OpenPose writes them);
    * ``guidance.json``: the index (sequences, frames, the conventions).

    ``max_frames`` caps the frames of each sequence (its first ones). The folder is written under
    a temporary name and renamed when complete. Returns the index."""
    if pairs.joints2d is None or pairs.joints3d is None:
        raise DataError(None, "guidance export needs synthesized pairs (2D and 3D)")
    from PIL import Image

    out_dir = Path(out_dir)
    if out_dir.exists() and not (out_dir / GUIDANCE_INDEX).is_file():
        raise DataError(out_dir, "exists and is not a guidance export; refusing to replace it")
    cams = sample_cameras(pairs)
    x_cam = world_to_camera(pairs.joints3d.astype(np.float64), cams["R"], cams["t"])
    vis = pairs.visibility if pairs.visibility is not None else np.isfinite(pairs.joints2d).all(-1).astype(np.float32)
    keypoints = openpose18(pairs.joints2d, vis)
    index = {"format": "posecurator-posesyn-guidance", "version": 1, "drawing": "OpenPose/DWPose body (ControlNet convention)",
             "keypoints": list(OPENPOSE18), "from_h36m17": {OPENPOSE18[k]: (H36M17.joints[j] if j >= 0 else None)
                                                             for k, j in enumerate(OPENPOSE_FROM_H36M)},
             "units": {"2d": "px", "3d": "mm"}, "camera": "X_cam = R @ X_world + t (OpenCV axes)", "sequences": []}
    with staged_dir(out_dir) as tmp:
        names, inverse = np.unique(pairs.clip, return_inverse=True)
        order = np.lexsort((pairs.frame, inverse.reshape(-1)))
        starts = np.r_[0, np.flatnonzero(np.diff(inverse.reshape(-1)[order])) + 1, len(order)]
        for a, b in zip(starts[:-1], starts[1:]):
            rows = order[a:b][: max_frames if max_frames is not None else None]
            clip = str(pairs.clip[rows[0]])
            cam_row = pairs.cameras[int(pairs.camera[rows[0]])] if pairs.camera[rows[0]] >= 0 else {}
            width, height = int(cams["width"][rows[0]]), int(cams["height"][rows[0]])
            (tmp / clip).mkdir()
            frames = []
            for r in rows.tolist():
                Image.fromarray(draw_openpose(keypoints[r], width, height)).save(tmp / clip / f"frame_{int(pairs.frame[r]):05d}.png")
                frames.append({
                    "frame": int(pairs.frame[r]), "sample_id": int(pairs.sample_id[r]),
                    "joints2d": [[None, None] if not np.isfinite(p).all() else [float(p[0]), float(p[1])] for p in pairs.joints2d[r]],
                    "visibility": pairs.visibility[r].astype(int).tolist() if pairs.visibility is not None else None,
                    "joints3d_world": np.round(pairs.joints3d[r].astype(np.float64), 3).tolist(),
                    "joints3d_camera": np.round(x_cam[r], 3).tolist(),
                    "camera": {"R": cams["R"][r].tolist(), "t": cams["t"][r].tolist(), "f": cams["f"][r].tolist(),
                               "c": cams["c"][r].tolist()},
                    "pose_keypoints_2d": np.round(keypoints[r], 3).reshape(-1).tolist()})
            doc = {"clip": clip, "hard_sample_id": int(pairs.parents[rows[0], 0]),
                   "reference_sample_id": int(pairs.parents[rows[0], 1]), "reference_image": cam_row.get("reference_camera", ""),
                   "caption": str(pairs.activity[rows[0]]), "width": width, "height": height, "frames": frames}
            (tmp / f"{clip}.json").write_text(json.dumps(doc))
            index["sequences"].append({"clip": clip, "frames": len(frames), "json": f"{clip}.json", "images": clip})
        index["n_sequences"] = len(index["sequences"])
        index["n_frames"] = int(sum(s["frames"] for s in index["sequences"]))
        (tmp / GUIDANCE_INDEX).write_text(json.dumps(index, indent=1))
    return {k: v for k, v in index.items() if k != "sequences"}


def import_predictions(pairs: PoseSet, predictions_file) -> PoseSet:
    """An image estimator's predictions on frames animated from ``pairs`` (file in the
    :mod:`posecurator.io.predictions` format, keyed by the pairs' ``sample_id``) as a pose set
    aligned row by row with ``pairs``: same metadata and cameras, ``joints3d`` = the prediction
    made root-relative and placed at the pair's TRUE root in the pair's camera, expressed in the
    pair's world frame. So ``camera_frame_joints(result)`` minus its root is the prediction, and
    comparing it with ``camera_frame_joints(pairs)`` is Eq. 6. Every pair needs a prediction
    (DataError naming the file and the first missing ids otherwise)."""
    from posecurator.scoring.estimator import PredictionsFileEstimator

    if pairs.joints3d is None:
        raise DataError(None, "predictions are imported onto synthesized pairs (with 3D)")
    pred = PredictionsFileEstimator(predictions_file).predict(pairs)                      # root-relative, camera frame
    cams = sample_cameras(pairs)
    x_cam = world_to_camera(pairs.joints3d.astype(np.float64), cams["R"], cams["t"])
    placed = pred + x_cam[:, ROOT:ROOT + 1]
    world = camera_to_world(placed, cams["R"], cams["t"]).astype(np.float32)
    attrs = {**pairs.attrs, "predictions": {"file": str(predictions_file),
                                            "joints3d": "the estimator's prediction, root-relative, placed at the pair's true root, "
                                                        "in the pair's world frame"}}
    return pairs.replace(joints3d=world, attrs=attrs)
