"""Real 2D annotations (COCO-17, MPII-16) -> the 17-joint target layout (``H36M17``).

The target layout has joints no 2D data set labels directly (pelvis, spine, thorax, neck, head);
they are derived from labelled keypoints by the rules below. A derived joint is visible only when
*every* input it needs is labelled; a joint that is not visible has NaN coordinates and visibility
0. "Labelled" means visibility > 0 and finite coordinates, so COCO's flag 1 (labelled but occluded)
counts: its position was annotated.

COCO-17 -> H36M17

=================  ==========================================================================
H36M17 joint       rule
=================  ==========================================================================
pelvis             midpoint of left_hip and right_hip (both needed)
right_hip          right_hip (copied; likewise right_knee, right_ankle)
left_hip           left_hip (copied; likewise left_knee, left_ankle)
spine              midpoint of pelvis and thorax (both needed, so all four hips/shoulders)
thorax             midpoint of left_shoulder and right_shoulder (both needed)
neck               nose (the mocap "neck" sits at chin/nose height); if the nose is not
                   labelled, the midpoint of left_eye and right_eye (both needed); else not visible
head               ``head="none"`` (default): not visible. COCO has no keypoint on the top of
                   the head, and the head is never guessed silently.
                   ``head="extrapolate"``: c + head_ratio * (c - thorax), c = mean of the
                   labelled eyes and ears (at least two of them, and the thorax, needed)
left_shoulder ...  left_shoulder, left_elbow, left_wrist (copied)
right_shoulder...  right_shoulder, right_elbow, right_wrist (copied)
=================  ==========================================================================

``head_ratio`` (default :data:`DEFAULT_HEAD_RATIO` = 0.6) is an anthropometric guess: in
Drillis & Contini's proportions of standing height H the shoulders are at 0.818 H, the eyes and
ears at about 0.93 H and the top of the head at 1.0 H, so the head top lies (1 - 0.93) /
(0.93 - 0.818) = 0.62 of the shoulders->face distance beyond the face; in the target skeleton of
the DeepMimic humanoid the head segment is 0.59 of thorax->neck. It is recorded in
``attrs["layout_conversion"]`` when used.

MPII-16 -> H36M17

=================  ==========================================================================
H36M17 joint       rule
=================  ==========================================================================
pelvis, thorax     pelvis, thorax (copied)
hips, knees,       copied, left and right as named
ankles, shoulders,
elbows, wrists
spine              midpoint of pelvis and thorax (both needed)
neck               upper_neck
head               head_top
=================  ==========================================================================

MPII labels a real head top and upper neck, so a converted MPII set keeps a head segment from
which PCKh can be computed (``attrs["layout_conversion"]["head_segment"]`` is True); a converted
COCO set has none (False), even with an extrapolated head.
"""

from __future__ import annotations

import numpy as np

from posecurator.poseset import PoseSet
from posecurator.skeleton.layouts import COCO17, H36M17, MPII16, Layout

HEAD_OPTIONS = ("none", "extrapolate")
DEFAULT_HEAD_RATIO = 0.6

# Target joints that are one source joint of the same name.
_LIMBS = ("right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
          "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist")
COCO_COPIED: dict[str, str] = {name: name for name in _LIMBS}
MPII_COPIED: dict[str, str] = {**{name: name for name in _LIMBS},
                               "pelvis": "pelvis", "thorax": "thorax", "neck": "upper_neck", "head": "head_top"}
COCO_FACE = ("left_eye", "right_eye", "left_ear", "right_ear")
MIN_FACE_KEYPOINTS = 2

COCO_RULES: dict[str, str] = {
    **{name: f"copy {name}" for name in _LIMBS},
    "pelvis": "midpoint of left_hip and right_hip (both needed)",
    "thorax": "midpoint of left_shoulder and right_shoulder (both needed)",
    "spine": "midpoint of pelvis and thorax (both needed)",
    "neck": "nose; else midpoint of left_eye and right_eye (both needed); else not visible",
    "head": "not visible: COCO has no keypoint on the top of the head",
}
COCO_HEAD_EXTRAPOLATED = ("c + head_ratio * (c - thorax), c = mean of the labelled eyes and ears "
                          f"(at least {MIN_FACE_KEYPOINTS}, and the thorax, needed); head_ratio = {{ratio}}")
MPII_RULES: dict[str, str] = {
    **{target: f"copy {source}" for target, source in MPII_COPIED.items()},
    "spine": "midpoint of pelvis and thorax (both needed)",
}


# ---------------------------------------------------------------------- helpers
def _check_input(joints2d, visibility, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """(..., J, 2) coordinates and (..., J) visibility of ``layout`` as float64 arrays."""
    joints2d = np.asarray(joints2d)
    visibility = np.asarray(visibility)
    if joints2d.ndim < 2 or joints2d.shape[-2:] != (layout.n_joints, 2):
        raise ValueError(f"joints2d must be (..., {layout.n_joints}, 2) in the {layout.name} layout, got {joints2d.shape}")
    if visibility.shape != joints2d.shape[:-1]:
        raise ValueError(f"visibility must be {joints2d.shape[:-1]} to match joints2d, got {visibility.shape}")
    return joints2d.astype(np.float64), visibility.astype(np.float64)


def _labelled(joints2d: np.ndarray, visibility: np.ndarray) -> np.ndarray:
    """(..., J) bool: visibility > 0 and finite coordinates."""
    return (visibility > 0) & np.isfinite(joints2d).all(axis=-1)


def _output_dtype(joints2d) -> np.dtype:
    # float32 stays float32 (what a PoseSet stores); float64 stays float64
    return np.result_type(np.asarray(joints2d).dtype, np.float32)


class _Builder:
    """Target joints collected as (..., 2) float64 points with (...,) bool "visible" masks."""

    def __init__(self, lead_shape: tuple[int, ...]):
        self.points = np.full(lead_shape + (H36M17.n_joints, 2), np.nan)
        self.visible = np.zeros(lead_shape + (H36M17.n_joints,), dtype=bool)

    def set(self, name: str, point: np.ndarray, visible: np.ndarray) -> None:
        j = H36M17.index(name)
        self.points[..., j, :] = np.where(visible[..., None], point, np.nan)
        self.visible[..., j] = visible

    def get(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        j = H36M17.index(name)
        return self.points[..., j, :], self.visible[..., j]

    def result(self, dtype) -> tuple[np.ndarray, np.ndarray]:
        return self.points.astype(dtype), self.visible.astype(np.float32)


def _midpoint(a: np.ndarray, a_ok: np.ndarray, b: np.ndarray, b_ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (a + b) / 2, a_ok & b_ok


# ---------------------------------------------------------------------- batched conversions
def coco17_to_h36m17(joints2d, visibility, *, head: str = "none",
                     head_ratio: float = DEFAULT_HEAD_RATIO) -> tuple[np.ndarray, np.ndarray]:
    """COCO-17 2D keypoints -> H36M17 by the rules of the module docstring.

    joints2d: (..., 17, 2) pixels in COCO order (any leading dims); visibility: (..., 17), > 0 =
    labelled. head: "none" (head not visible) or "extrapolate" (see the module docstring),
    head_ratio: the extrapolation's ratio. Returns (joints2d (..., 17, 2), NaN where not visible,
    float32 unless the input was float64; visibility (..., 17) float32 0/1).
    """
    if head not in HEAD_OPTIONS:
        raise ValueError(f"head must be one of {HEAD_OPTIONS}, got {head!r}")
    dtype = _output_dtype(joints2d)
    xy, vis = _check_input(joints2d, visibility, COCO17)
    ok = _labelled(xy, vis)

    def src(name: str) -> tuple[np.ndarray, np.ndarray]:
        j = COCO17.index(name)
        return xy[..., j, :], ok[..., j]

    out = _Builder(xy.shape[:-2])
    for target, source in COCO_COPIED.items():
        out.set(target, *src(source))
    out.set("pelvis", *_midpoint(*src("left_hip"), *src("right_hip")))
    out.set("thorax", *_midpoint(*src("left_shoulder"), *src("right_shoulder")))
    out.set("spine", *_midpoint(*out.get("pelvis"), *out.get("thorax")))
    nose, nose_ok = src("nose")
    eyes, eyes_ok = _midpoint(*src("left_eye"), *src("right_eye"))
    out.set("neck", np.where(nose_ok[..., None], nose, eyes), nose_ok | eyes_ok)
    if head == "extrapolate":
        # sequential sum in the face order, so that the per-pose reference gives the same bits
        face_sum, n_face = np.zeros(xy.shape[:-2] + (2,)), np.zeros(xy.shape[:-2])
        for name in COCO_FACE:
            point, point_ok = src(name)
            face_sum = face_sum + np.where(point_ok[..., None], point, 0.0)
            n_face = n_face + point_ok
        with np.errstate(invalid="ignore", divide="ignore"):  # no face keypoint: masked below
            centre = face_sum / n_face[..., None]
        thorax, thorax_ok = out.get("thorax")
        out.set("head", centre + head_ratio * (centre - thorax), thorax_ok & (n_face >= MIN_FACE_KEYPOINTS))
    return out.result(dtype)


def mpii16_to_h36m17(joints2d, visibility) -> tuple[np.ndarray, np.ndarray]:
    """MPII-16 2D joints -> H36M17 by the rules of the module docstring.

    joints2d: (..., 16, 2) pixels in MPII order; visibility: (..., 16), > 0 = labelled. Returns
    (joints2d (..., 17, 2), NaN where not visible; visibility (..., 17) float32 0/1).
    """
    dtype = _output_dtype(joints2d)
    xy, vis = _check_input(joints2d, visibility, MPII16)
    ok = _labelled(xy, vis)
    out = _Builder(xy.shape[:-2])
    for target, source in MPII_COPIED.items():
        j = MPII16.index(source)
        out.set(target, xy[..., j, :], ok[..., j])
    out.set("spine", *_midpoint(*out.get("pelvis"), *out.get("thorax")))
    return out.result(dtype)


# ---------------------------------------------------------------------- per-pose reference
def coco17_to_h36m17_reference(joints2d, visibility, *, head: str = "none",
                               head_ratio: float = DEFAULT_HEAD_RATIO) -> tuple[np.ndarray, np.ndarray]:
    """The rules of :func:`coco17_to_h36m17` written out per pose and per joint name, with plain
    Python numbers: the reference the batched version is tested against. Same arguments/returns."""
    if head not in HEAD_OPTIONS:
        raise ValueError(f"head must be one of {HEAD_OPTIONS}, got {head!r}")
    dtype = _output_dtype(joints2d)
    xy, vis = _check_input(joints2d, visibility, COCO17)
    lead = xy.shape[:-2]
    flat_xy, flat_vis = xy.reshape(-1, 17, 2), vis.reshape(-1, 17)
    out_xy = np.full((len(flat_xy), H36M17.n_joints, 2), np.nan)
    out_vis = np.zeros((len(flat_xy), H36M17.n_joints), dtype=np.float32)

    def mid(a, b):
        return None if a is None or b is None else ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)

    for p in range(len(flat_xy)):
        coco: dict[str, tuple[float, float] | None] = {}
        for j, name in enumerate(COCO17.joints):
            x, y = float(flat_xy[p, j, 0]), float(flat_xy[p, j, 1])
            labelled = flat_vis[p, j] > 0 and np.isfinite(x) and np.isfinite(y)
            coco[name] = (x, y) if labelled else None
        h36m: dict[str, tuple[float, float] | None] = {name: coco[name] for name in _LIMBS}
        h36m["pelvis"] = mid(coco["left_hip"], coco["right_hip"])
        h36m["thorax"] = mid(coco["left_shoulder"], coco["right_shoulder"])
        h36m["spine"] = mid(h36m["pelvis"], h36m["thorax"])
        h36m["neck"] = coco["nose"] if coco["nose"] is not None else mid(coco["left_eye"], coco["right_eye"])
        h36m["head"] = None
        if head == "extrapolate":
            face = [coco[name] for name in COCO_FACE if coco[name] is not None]
            if h36m["thorax"] is not None and len(face) >= MIN_FACE_KEYPOINTS:
                sx = sy = 0.0
                for fx, fy in face:
                    sx, sy = sx + fx, sy + fy
                cx, cy = sx / len(face), sy / len(face)
                tx, ty = h36m["thorax"]
                h36m["head"] = (cx + head_ratio * (cx - tx), cy + head_ratio * (cy - ty))
        for j, name in enumerate(H36M17.joints):
            if h36m[name] is not None:
                out_xy[p, j] = h36m[name]
                out_vis[p, j] = 1.0
    return out_xy.reshape(lead + (H36M17.n_joints, 2)).astype(dtype), out_vis.reshape(lead + (H36M17.n_joints,))


# ---------------------------------------------------------------------- pose sets
def to_target_layout(ps: PoseSet, target: str = "h36m17", *, head: str = "none",
                     head_ratio: float = DEFAULT_HEAD_RATIO) -> PoseSet:
    """A 2D pose set of a known annotation layout -> the same samples in the target layout.

    ps: a pose set with joints2d (no joints3d) in the "coco17" or "mpii16" layout; an "h36m17"
    set is returned unchanged (the same object). target: only "h36m17". head / head_ratio: how
    COCO's missing head top is handled (see the module docstring; MPII has a real head top and
    ignores them). Every other column is kept. ``attrs`` gains ``original_layout`` and
    ``layout_conversion`` = {"from", "rules" (target joint -> rule text), "head_segment" (True
    only for MPII: a real head top and upper neck for PCKh), "head" and, when the head was
    extrapolated, "head_ratio"}. Raises ValueError for any other layout or target.
    """
    if target != H36M17.name:
        raise ValueError(f"target layout must be {H36M17.name!r}, got {target!r}")
    if head not in HEAD_OPTIONS:
        raise ValueError(f"head must be one of {HEAD_OPTIONS}, got {head!r}")
    if ps.layout == H36M17.name:
        return ps
    if ps.layout not in (COCO17.name, MPII16.name):
        raise ValueError(f"cannot convert layout {ps.layout!r} to {target}: only {COCO17.name} and {MPII16.name} 2D sets")
    if ps.joints2d is None or ps.joints3d is not None:
        raise ValueError(f"converting {ps.layout} to {target} needs a 2D-only pose set "
                         f"(joints2d {'missing' if ps.joints2d is None else 'present'}, joints3d "
                         f"{'present' if ps.joints3d is not None else 'missing'})")
    # no visibility column means every joint is visible (PoseSet convention)
    visibility = ps.visibility if ps.visibility is not None else np.ones(ps.joints2d.shape[:2], np.float32)
    conversion: dict = {"from": ps.layout}
    if ps.layout == COCO17.name:
        joints2d, vis = coco17_to_h36m17(ps.joints2d, visibility, head=head, head_ratio=head_ratio)
        rules = dict(COCO_RULES)
        conversion["head"] = head
        if head == "extrapolate":
            rules["head"] = COCO_HEAD_EXTRAPOLATED.format(ratio=float(head_ratio))
            conversion["head_ratio"] = float(head_ratio)
        conversion["head_segment"] = False
    else:
        joints2d, vis = mpii16_to_h36m17(ps.joints2d, visibility)
        rules = dict(MPII_RULES)
        conversion["head"] = "head_top"
        conversion["head_segment"] = True
    conversion["rules"] = {name: rules[name] for name in H36M17.joints}
    attrs = {**ps.attrs, "original_layout": ps.layout, "layout_conversion": conversion}
    return ps.replace(joints2d=joints2d, visibility=vis, layout=H36M17.name, attrs=attrs)
