"""Deterministic pose and motion descriptions in the words of text-to-motion prompts.

PoseSyn trains a text- and pose-conditioned motion model on captioned mocap and later samples it
with captions of hard in-the-wild poses. A word must therefore mean the same thing at training
(world-frame mocap, floor known) and at use (the estimator's 3D prediction in the camera frame, no
floor). Everything here is measured in the body's own frame from the ``up`` axis and the joints:
heights along ``up``, facing from the hip line, lengths as fractions of the person's own leg
length ``L`` (hip -> knee -> ankle, mean of both sides) so that a child, an adult or a prediction
of the wrong scale are described alike. Rotating a pose about ``up``, moving it, or expressing it
in a camera frame (``up = (0, -1, 0)``) does not change its text.

Measurements (:func:`pose_features`, batched over N poses; all (N,) unless said)
-------------------------------------------------------------------------------
=============================  ==================================================================
feature                        meaning (units)
=============================  ==================================================================
leg_length, arm_length         mean over both sides of hip-knee-ankle / shoulder-elbow-wrist (mm)
hip_width, shoulder_width      distance between the hips / shoulders (mm)
floor                          floor height along ``up`` (mm): the given one, or (``floor`` None)
                               each pose's lowest joint minus 0.08 L (``FLOOR_CLEARANCE``)
height                         (N, 17) every joint's height above the floor (mm)
pelvis/thorax/head_height ...  named columns of ``height``: pelvis, thorax, head, {left,right}_
                               {wrist,knee,ankle}_height (mm above the floor)
knee_flexion_{left,right}      180 deg minus the hip-knee-ankle angle: 0 = straight leg (deg)
elbow_flexion_{left,right}     180 deg minus the shoulder-elbow-wrist angle (deg)
hip_flexion_{left,right}       angle between the thigh (hip -> knee) and the torso axis reversed
                               (thorax -> pelvis): 0 standing, 90 thigh at a right angle (deg)
torso_elevation                angle of the torso axis (pelvis -> thorax) above the horizontal:
                               90 upright, 0 lying, negative upside down (deg)
torso_pitch                    lean of the torso axis towards the facing direction: + forward,
                               - back, 0 upright, +-90 horizontal (deg)
torso_roll                     side lean: + towards the person's right, - left (deg)
front_up                       cosine between the chest's normal and ``up``: +1 lying on the
                               back, -1 lying on the front, 0 upright or on the side
right_up                       cosine between the body's left-to-right axis and ``up``: + the
                               right side is up (lying on the left side)
facing, right                  (N, 3) unit horizontal vectors: where the person faces (``up`` x
                               (right hip - left hip), checked on walking mocap: it points along
                               the walking direction) and the person's right (facing x ``up``)
{l,r}_wrist_above_head         wrist height minus head-top height (mm)
{l,r}_wrist_above_shoulder     wrist height minus the same side's shoulder height (mm)
{l,r}_wrist_above_elbow        wrist height minus the same side's elbow height (mm; forearm up)
{l,r}_wrist_outward            horizontal offset of the wrist from its shoulder away from the
                               body, along ``right`` (mm)
{l,r}_wrist_forward            horizontal offset of the wrist from its shoulder along ``facing``
{l,r}_wrist_to_face            distance from the wrist to the neck joint (chin/nose height; mm)
{l,r}_wrist_beyond_head        wrist minus head along the torso axis (mm; for lying poses)
{l,r}_ankle_forward            ankle ahead of the pelvis along ``facing`` (mm)
{l,r}_knee_contact             knee height < ``knee_contact`` x L (bool)
{l,r}_foot_contact             ankle height < ``foot_contact`` x L (bool)
feet_apart                     distance between the ankles along ``right`` (mm; sideways only,
                               a walking stride is no wide stance)
arms_spread                    distance between the wrists (mm)
=============================  ==================================================================

(``{l,r}`` stands for ``left``/``right`` spelled out, e.g. ``left_wrist_above_head``.)

Poses (:func:`describe_pose`): body posture first, then the arms, then the lean
-------------------------------------------------------------------------------
Defaults of :class:`PoseDescriber` (each a keyword option; L = leg length, A = arm length, heights
above the floor). Postures are tested in this order; the first that holds is said.

=====================================================================  ============================
condition                                                              phrase after "a person"
=====================================================================  ============================
torso_elevation < 35 deg (``lying_elevation``), front_up < -0.5, a     "is on hands and knees"
knee on the floor, both wrists < 0.25 L, pelvis >= 0.3 L
torso_elevation < 35 deg, pelvis < 0.65 L (``lying_pelvis``), thorax   "lies on the back" (front_up
< 0.5 L (``lying_thorax``; a horizontal torso high up is a bend)       > 0.5) / "lies on the front"
                                                                       (< -0.5) / "lies on the left
                                                                       side" (right_up > 0) / "...
                                                                       right side"
torso_elevation < -35 deg (``upside_down_elevation``)                  "is upside down"
a knee height < 0.12 L (``knee_contact``)                              "kneels on both knees" /
                                                                       "kneels on the left knee"
pelvis < 0.4 L (``sit_pelvis``), ankles ahead of the pelvis by > 0.25  "sits on the floor"
L (``sit_feet_forward``; in a squat the feet are under the pelvis)
both knee flexions >= 60 deg, pelvis < 0.8 L, ankles ahead by > 0.3    "crouches as if sitting"
L, torso_elevation >= 55 deg (a chair sit without the chair)
both knee flexions >= 80 deg (``squat_knee``), pelvis < 0.65 L         "squats"
both knee flexions >= 40 deg (``crouch_knee``), pelvis < 0.9 L         "crouches with bent knees"
only with a given ``floor``: both ankles > 0.3 L, torso_elevation >=   "is in the air with both
45 deg                                                                 feet off the floor"
one ankle > 0.3 L (``raised_foot``) above the other, the lower one on  "stands on the left leg with
the floor (< 0.2 L, ``foot_contact``), torso_elevation >= 45 deg;      the right leg raised" + " to
the raised ankle ahead of the pelvis by > 0.35 L (``leg_front``),      the front" / "... with the
else its knee >= pelvis - 0.2 L (``knee_high``), else the ankle        right knee raised high" / "
behind the pelvis by > 0.25 L (``leg_behind``)                         behind"
torso_pitch >= 45 deg (``bend_pitch``)                                 "bends forward"
feet_apart > 0.65 L (``wide_feet``)                                    "stands with the feet wide
                                                                       apart"
otherwise                                                              "stands"
=====================================================================  ============================

Arms, each side on its own, the first that holds (lying, upside down and on hands and knees:
only "near the face" and "stretched out beyond the head", the wrist past the head top along the
torso axis):

=====================================================================  ============================
condition                                                              state
=====================================================================  ============================
wrist > head top - 0.1 L (``above_head``) and > shoulder + 0.1 L       raised above the head
wrist within 0.25 L (``face_distance``) of the neck joint (chin/nose)  near the face
wrist > its shoulder + 0.1 L (``raised_wrist``)                        raised
wrist > its elbow + 0.1 L (``hand_up``; the forearm points up)         hand raised
wrist outward from its shoulder > 0.6 A (``stretch_reach``), elbow     stretched out to the side
flexion < 60 deg (``straight_elbow``), |wrist - shoulder height| <
0.3 L (``level_band``)
wrist forward of its shoulder > 0.6 A, elbow < 60 deg, level as above  stretched forward
wrist < pelvis + 0.15 L, |outward|, |forward| < 0.35 A, elbow < 60 deg at the side
=====================================================================  ============================

Both arms in the same state: "both arms raised above the head", "both hands near the face",
"both arms stretched out to the sides", "arms at the sides", ...; otherwise the arms that are
not at the side: "the left arm raised above the head and the right hand near the face".

Lean (not said for lying, upside down, on hands and knees or "bends forward"): torso_pitch >= 20
deg "leaning forward", <= -15 deg "leaning back"; torso_roll <= -15 / >= 15 deg "leaning to the
left / right" ("leaning forward and to the left").

Motions (:func:`describe_motion`, a window of T consecutive frames at ``fps``)
----------------------------------------------------------------------------
One floor for the window: the given one, or the lowest per-pose estimate over its frames. Speeds
are in leg lengths per second (L/s; 1 L/s is about 0.85 m/s for an adult). Clauses in this order,
joined "a person A, B and C":

=====================================================================  ============================
condition                                                              clause
=====================================================================  ============================
the coarse posture per frame (the postures above; one-leg stances and  "squats down then stands
wide stances count as standing, both sits as sitting) after a 0.25 s   up", "sits down then lies
mode filter; runs shorter than 0.25 s (``min_posture_s``; half at the  down on the back", "kneels
window's ends) dropped, crouch/bend/squat/sit held < 0.6 s             on both knees then lies down
(``passing_s``) between two other postures dropped as passed through;  on the back", "squats down
named by their changes (at most 4 postures); A B A B A counted         and stands up twice"
pelvis path on the floor over standing frames, sampled every 0.25 s,   "walks forward" / "walks
>= 1 L (``travel_min``) at >= 0.3 L/s (``walk_speed``); direction of   backward" / "walks to the
the net displacement vs the start facing (within 45 deg: forward or    left" / "walks around"; "runs
backward, else sideways) when it is >= half the path, else "around"    ..." at >= 2.5 L/s
(path >= 2 L, ``wander_min``)                                          (``run_speed``), or >= 1 L/s
                                                                       with both ankles > 0.15 L in
                                                                       >= 3 % of the frames
both ankles > 0.15 L (``flight_height``) while standing for >= 0.25 s  "jumps" / "jumps forward
(``jump_flight_s``) and the pelvis >= 0.15 L (``jump_rise``) above     twice" / "hops on the left
its median standing height (running flights are shorter and lower);    leg"; not while running at
the other ankle > 0.3 L higher in >= 80 % of standing frames: a hop;   >= 2.5 L/s
crouching to take off and land is part of it
>= 80 % of frames upright: heading change (facing unwrapped over the   "turns a full circle to the
upright frames, counter-clockwise about ``up`` = left) >= 300 / 135 /  left" / "turns around" /
45 deg (``full_circle``, ``turn_around``, ``turn``)                    "turns left"
not running: an ankle above the other knee while upright, moving >=    "kicks forward with the left
2.5 L/s (``kick_speed``) relative to the pelvis, the knee straightened leg" (ahead of the pelvis by
to <= 60 deg (``kick_knee``) in that span                              > 0.35 L) / "kicks with ..."
no kick: a knee >= pelvis - 0.2 L with its ankle > 0.3 L above the     "raises the left knee"
other, standing, for >= 0.1 s
standing still (no travel, no jump): torso_pitch >= 20 deg for >=      "leans forward and
0.25 s inside the window                                               straightens up"
upright frames: the wrist > shoulder + 0.1 L in >= 20 % of frames      "raises the right arm (above
(``raise_fraction``): the arm; else (not while travelling or jumping:  the head) then lowers it",
arms swing with the gait) the wrist > elbow + 0.1 L: the hand; above   "raises both hands", "keeps
the head in >= 10 %; raised already at the first frame: "keeps";       the left arm raised", "waves
down at the last: "then lowers"; the wrist's sideways position         the right hand", "waves both
reverses >= 3 times (``wave_reversals``) by >= 0.08 L (``wave_swing``) hands"
while up: a wave
nothing of the above                                                   the middle frame's pose text
=====================================================================  ============================
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from posecurator.poseset import PoseSet, joints3d_of
from posecurator.skeleton.layouts import H36M17

# joint indices of the H36M17 layout (VideoPose3D order)
J = {name: i for i, name in enumerate(H36M17.joints)}
PELVIS, THORAX, NECK, HEAD = J["pelvis"], J["thorax"], J["neck"], J["head"]
SIDES = ("left", "right")
HIP = {s: J[f"{s}_hip"] for s in SIDES}
KNEE = {s: J[f"{s}_knee"] for s in SIDES}
ANKLE = {s: J[f"{s}_ankle"] for s in SIDES}
SHOULDER = {s: J[f"{s}_shoulder"] for s in SIDES}
ELBOW = {s: J[f"{s}_elbow"] for s in SIDES}
WRIST = {s: J[f"{s}_wrist"] for s in SIDES}
OTHER = {"left": "right", "right": "left"}

# contact thresholds of pose_features, as fractions of the leg length (see the module docstring)
KNEE_CONTACT = 0.12
FOOT_CONTACT = 0.2
# Without a floor (predictions from 2D), the floor is the lowest joint minus this clearance: a joint
# resting on the floor sits above it by the flesh and the foot below it. Measured on HDM05, CMU and
# Bandai mocap (floor known): the lowest joint of a pose is at a median 0.09-0.13 L (ankles) and
# 0.06-0.11 L (elbows, head, neck when lying) above the floor.
FLOOR_CLEARANCE = 0.08
_EPS = 1e-9


# ---------------------------------------------------------------------- measurements
def _unit(v: np.ndarray) -> np.ndarray:
    """(..., 3) vectors scaled to length 1 (zero vectors stay zero)."""
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, _EPS)


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(...,) angle between (..., 3) vectors a and b in degrees (0 .. 180)."""
    cos = np.sum(_unit(a) * _unit(b), axis=-1)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _check_up(up) -> np.ndarray:
    up = np.asarray(up, dtype=np.float64).reshape(-1)
    if up.shape != (3,) or not np.all(np.isfinite(up)) or np.linalg.norm(up) < _EPS:
        raise ValueError(f"up must be a non-zero 3-vector, got {up!r}")
    return up / np.linalg.norm(up)


def _check_joints(joints3d) -> np.ndarray:
    """(N, 17, 3) float64 H36M17 joints (one pose (17, 3) becomes N = 1)."""
    if isinstance(joints3d, PoseSet):
        if joints3d.layout != H36M17.name:
            raise ValueError(f"describing poses needs the {H36M17.name} layout, got {joints3d.layout}")
    arr = joints3d_of(joints3d, purpose="describing poses") if isinstance(joints3d, PoseSet) else np.asarray(joints3d)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (H36M17.n_joints, 3):
        raise ValueError(f"joints3d must be (N, {H36M17.n_joints}, 3) in the {H36M17.name} layout, got {arr.shape}")
    return arr.astype(np.float64, copy=False)


def pose_features(joints3d, *, up=(0.0, 0.0, 1.0), floor: float | None = None,
                  knee_contact: float = KNEE_CONTACT, foot_contact: float = FOOT_CONTACT,
                  clearance: float = FLOOR_CLEARANCE) -> dict[str, np.ndarray]:
    """Measurements of N poses that :func:`describe_pose` thresholds (module docstring: the table).

    joints3d: (N, 17, 3) H36M17 joints in millimetres in any right-handed frame (a PoseSet, or one
    (17, 3) pose). up: the frame's up direction (world Z up: (0, 0, 1); a camera frame with y down:
    (0, -1, 0)). floor: the floor's height along ``up`` in mm (world mocap: 0.0), or None: each
    pose's lowest joint minus ``clearance`` x its leg length (predictions from 2D have no floor).
    knee_contact / foot_contact: contact thresholds as fractions of the leg length.
    Returns a dict of float64 (N,) arrays (bool for contacts), ``height`` (N, 17) and ``facing``,
    ``right`` (N, 3). Batched: no Python loop over poses."""
    j = _check_joints(joints3d)
    u = _check_up(up)
    n = len(j)
    out: dict[str, np.ndarray] = {}

    def seg(a, b):  # (N,) distance between joints a and b
        return np.linalg.norm(j[:, a] - j[:, b], axis=-1)

    leg = {s: seg(HIP[s], KNEE[s]) + seg(KNEE[s], ANKLE[s]) for s in SIDES}
    arm = {s: seg(SHOULDER[s], ELBOW[s]) + seg(ELBOW[s], WRIST[s]) for s in SIDES}
    out["leg_length"] = 0.5 * (leg["left"] + leg["right"])
    out["arm_length"] = 0.5 * (arm["left"] + arm["right"])
    out["hip_width"] = seg(HIP["left"], HIP["right"])
    out["shoulder_width"] = seg(SHOULDER["left"], SHOULDER["right"])

    # heights along up, relative to the floor
    z = j @ u                                                        # (N, 17)
    floor_z = z.min(axis=1) - clearance * out["leg_length"] if floor is None else np.full(n, float(floor))
    height = z - floor_z[:, None]
    out["floor"] = floor_z
    out["height"] = height
    out["pelvis_height"] = height[:, PELVIS]
    out["thorax_height"] = height[:, THORAX]
    out["head_height"] = height[:, HEAD]
    for s in SIDES:
        for part, idx in (("wrist", WRIST), ("knee", KNEE), ("ankle", ANKLE)):
            out[f"{s}_{part}_height"] = height[:, idx[s]]

    # joint angles
    for s in SIDES:
        out[f"knee_flexion_{s}"] = _angle_deg(j[:, KNEE[s]] - j[:, HIP[s]], j[:, ANKLE[s]] - j[:, KNEE[s]])
        out[f"elbow_flexion_{s}"] = _angle_deg(j[:, ELBOW[s]] - j[:, SHOULDER[s]], j[:, WRIST[s]] - j[:, ELBOW[s]])
        out[f"hip_flexion_{s}"] = _angle_deg(j[:, KNEE[s]] - j[:, HIP[s]], j[:, PELVIS] - j[:, THORAX])

    # the body frame: torso axis, left-to-right axis, chest normal; facing from the hip line
    torso = _unit(j[:, THORAX] - j[:, PELVIS])                       # (N, 3)
    hip_line = _unit(j[:, HIP["right"]] - j[:, HIP["left"]])
    shoulder_line = _unit(j[:, SHOULDER["right"]] - j[:, SHOULDER["left"]])
    lateral = _unit(hip_line + shoulder_line)
    lateral = _unit(lateral - np.sum(lateral * torso, -1, keepdims=True) * torso)   # orthogonal to the torso
    chest = np.cross(torso, lateral)                                 # points out of the chest
    out["torso_elevation"] = np.degrees(np.arcsin(np.clip(torso @ u, -1.0, 1.0)))
    out["front_up"] = chest @ u
    out["right_up"] = lateral @ u
    # facing: horizontal, perpendicular to the hip line; when the hip line is near vertical (lying on
    # the side) it is undefined and the chest normal's horizontal part stands in
    facing_hips = np.cross(u, hip_line)
    chest_h = chest - (chest @ u)[:, None] * u
    use_hips = np.linalg.norm(facing_hips, axis=-1) >= 0.3
    facing = _unit(np.where(use_hips[:, None], facing_hips, chest_h))
    right = np.cross(facing, u)
    out["facing"] = facing
    out["right"] = right
    t_up, t_fwd, t_right = torso @ u, np.sum(torso * facing, -1), np.sum(torso * right, -1)
    out["torso_pitch"] = np.degrees(np.arctan2(t_fwd, t_up))
    out["torso_roll"] = np.degrees(np.arctan2(t_right, t_up))

    # arms relative to the head, the shoulders and the face
    for s in SIDES:
        w = j[:, WRIST[s]]
        d = w - j[:, SHOULDER[s]]
        outward = 1.0 if s == "right" else -1.0
        out[f"{s}_wrist_above_head"] = height[:, WRIST[s]] - height[:, HEAD]
        out[f"{s}_wrist_above_shoulder"] = height[:, WRIST[s]] - height[:, SHOULDER[s]]
        out[f"{s}_wrist_above_elbow"] = height[:, WRIST[s]] - height[:, ELBOW[s]]
        out[f"{s}_wrist_outward"] = outward * np.sum(d * right, -1)
        out[f"{s}_wrist_forward"] = np.sum(d * facing, -1)
        out[f"{s}_wrist_to_face"] = np.linalg.norm(w - j[:, NECK], axis=-1)
        out[f"{s}_wrist_beyond_head"] = np.sum((w - j[:, HEAD]) * torso, -1)
        out[f"{s}_ankle_forward"] = np.sum((j[:, ANKLE[s]] - j[:, PELVIS]) * facing, -1)

    # contacts and spreads
    length = out["leg_length"]
    for s in SIDES:
        out[f"{s}_knee_contact"] = out[f"{s}_knee_height"] < knee_contact * length
        out[f"{s}_foot_contact"] = out[f"{s}_ankle_height"] < foot_contact * length
    ankle_d = j[:, ANKLE["left"]] - j[:, ANKLE["right"]]
    out["feet_apart"] = np.abs(np.sum(ankle_d * right, -1))         # sideways only: a stride is no stance
    out["arms_spread"] = seg(WRIST["left"], WRIST["right"])
    return out


def pose_features_reference(joints3d, *, up=(0.0, 0.0, 1.0), floor: float | None = None,
                            knee_contact: float = KNEE_CONTACT, foot_contact: float = FOOT_CONTACT,
                            clearance: float = FLOOR_CLEARANCE) -> dict[str, np.ndarray]:
    """The same measurements as :func:`pose_features`, one pose at a time with plain Python
    geometry (math on tuples), written independently to check the batched version in tests."""
    import math

    arr = _check_joints(joints3d)
    u = tuple(_check_up(up).tolist())

    def sub(a, b):
        return (a[0] - b[0], a[1] - b[1], a[2] - b[2])

    def add(a, b):
        return (a[0] + b[0], a[1] + b[1], a[2] + b[2])

    def dot(a, b):
        return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]

    def scale(a, k):
        return (a[0] * k, a[1] * k, a[2] * k)

    def cross(a, b):
        return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])

    def norm(a):
        return math.sqrt(dot(a, a))

    def unit(a):
        n = norm(a)
        return scale(a, 1.0 / n) if n > _EPS else (0.0, 0.0, 0.0)

    def angle(a, b):
        c = dot(unit(a), unit(b))
        return math.degrees(math.acos(max(-1.0, min(1.0, c))))

    rows: list[dict] = []
    for pose in arr:
        p = [tuple(float(c) for c in joint) for joint in pose]
        f: dict = {}
        leg = {s: norm(sub(p[HIP[s]], p[KNEE[s]])) + norm(sub(p[KNEE[s]], p[ANKLE[s]])) for s in SIDES}
        arm = {s: norm(sub(p[SHOULDER[s]], p[ELBOW[s]])) + norm(sub(p[ELBOW[s]], p[WRIST[s]])) for s in SIDES}
        f["leg_length"] = (leg["left"] + leg["right"]) / 2
        f["arm_length"] = (arm["left"] + arm["right"]) / 2
        f["hip_width"] = norm(sub(p[HIP["left"]], p[HIP["right"]]))
        f["shoulder_width"] = norm(sub(p[SHOULDER["left"]], p[SHOULDER["right"]]))
        z = [dot(q, u) for q in p]
        fl = min(z) - clearance * f["leg_length"] if floor is None else float(floor)
        h = [v - fl for v in z]
        f["floor"] = fl
        f["height"] = h
        f["pelvis_height"], f["thorax_height"], f["head_height"] = h[PELVIS], h[THORAX], h[HEAD]
        for s in SIDES:
            for part, idx in (("wrist", WRIST), ("knee", KNEE), ("ankle", ANKLE)):
                f[f"{s}_{part}_height"] = h[idx[s]]
            f[f"knee_flexion_{s}"] = angle(sub(p[KNEE[s]], p[HIP[s]]), sub(p[ANKLE[s]], p[KNEE[s]]))
            f[f"elbow_flexion_{s}"] = angle(sub(p[ELBOW[s]], p[SHOULDER[s]]), sub(p[WRIST[s]], p[ELBOW[s]]))
            f[f"hip_flexion_{s}"] = angle(sub(p[KNEE[s]], p[HIP[s]]), sub(p[PELVIS], p[THORAX]))
        torso = unit(sub(p[THORAX], p[PELVIS]))
        hip_line = unit(sub(p[HIP["right"]], p[HIP["left"]]))
        lateral = unit(add(hip_line, unit(sub(p[SHOULDER["right"]], p[SHOULDER["left"]]))))
        lateral = unit(sub(lateral, scale(torso, dot(lateral, torso))))
        chest = cross(torso, lateral)
        f["torso_elevation"] = math.degrees(math.asin(max(-1.0, min(1.0, dot(torso, u)))))
        f["front_up"], f["right_up"] = dot(chest, u), dot(lateral, u)
        facing = cross(u, hip_line)
        if norm(facing) < 0.3:
            facing = sub(chest, scale(u, dot(chest, u)))
        facing = unit(facing)
        right = cross(facing, u)
        f["facing"], f["right"] = facing, right
        f["torso_pitch"] = math.degrees(math.atan2(dot(torso, facing), dot(torso, u)))
        f["torso_roll"] = math.degrees(math.atan2(dot(torso, right), dot(torso, u)))
        for s in SIDES:
            w = p[WRIST[s]]
            d = sub(w, p[SHOULDER[s]])
            f[f"{s}_wrist_above_head"] = h[WRIST[s]] - h[HEAD]
            f[f"{s}_wrist_above_shoulder"] = h[WRIST[s]] - h[SHOULDER[s]]
            f[f"{s}_wrist_above_elbow"] = h[WRIST[s]] - h[ELBOW[s]]
            f[f"{s}_wrist_outward"] = dot(d, right) * (1.0 if s == "right" else -1.0)
            f[f"{s}_wrist_forward"] = dot(d, facing)
            f[f"{s}_wrist_to_face"] = norm(sub(w, p[NECK]))
            f[f"{s}_wrist_beyond_head"] = dot(sub(w, p[HEAD]), torso)
            f[f"{s}_ankle_forward"] = dot(sub(p[ANKLE[s]], p[PELVIS]), facing)
            f[f"{s}_knee_contact"] = f[f"{s}_knee_height"] < knee_contact * f["leg_length"]
            f[f"{s}_foot_contact"] = f[f"{s}_ankle_height"] < foot_contact * f["leg_length"]
        f["feet_apart"] = abs(dot(sub(p[ANKLE["left"]], p[ANKLE["right"]]), right))
        f["arms_spread"] = norm(sub(p[WRIST["left"]], p[WRIST["right"]]))
        rows.append(f)
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


# ---------------------------------------------------------------------- pose -> words
# posture codes, in the order they are tested (the first that holds is said); phrase after "a person "
POSTURES: tuple[tuple[str, str], ...] = (
    ("hands_knees", "is on hands and knees"),
    ("lie_back", "lies on the back"),
    ("lie_front", "lies on the front"),
    ("lie_left", "lies on the left side"),
    ("lie_right", "lies on the right side"),
    ("upside_down", "is upside down"),
    ("kneel_both", "kneels on both knees"),
    ("kneel_left", "kneels on the left knee"),
    ("kneel_right", "kneels on the right knee"),
    ("sit_floor", "sits on the floor"),
    ("sit_like", "crouches as if sitting"),
    ("squat", "squats"),
    ("crouch", "crouches with bent knees"),
    ("airborne", "is in the air with both feet off the floor"),
    ("one_leg_left", "stands on the left leg with the right leg raised"),
    ("one_leg_right", "stands on the right leg with the left leg raised"),
    ("bend", "bends forward"),
    ("stand_wide", "stands with the feet wide apart"),
    ("stand", "stands"),
)
POSTURE_CODE = {name: i for i, (name, _) in enumerate(POSTURES)}
# how the raised leg of a one-leg stance is said: detail code -> ending of the posture phrase
LEG_DETAIL = ("", " to the front", " behind", "knee raised high")

# arm states of one side: (code name, phrase for one arm with {side}, phrase for both arms)
ARM_STATES: tuple[tuple[str, str, str], ...] = (
    ("other", "", ""),
    ("side", "", "arms at the sides"),
    ("above_head", "the {side} arm raised above the head", "both arms raised above the head"),
    ("face", "the {side} hand near the face", "both hands near the face"),
    ("raised", "the {side} arm raised", "both arms raised"),
    ("hand_up", "the {side} hand raised", "both hands raised"),
    ("sideways", "the {side} arm stretched out to the side", "both arms stretched out to the sides"),
    ("forward", "the {side} arm stretched forward", "both arms stretched forward"),
    ("beyond_head", "the {side} arm stretched out beyond the head", "both arms stretched out beyond the head"),
)
ARM_CODE = {name: i for i, (name, _, _) in enumerate(ARM_STATES)}

# coarse postures of motions (a walk's swing leg is no "one-leg stance"): posture code -> class
MOTION_CLASS = {
    "lie_back": "lie_back", "lie_front": "lie_front", "lie_left": "lie_left", "lie_right": "lie_right",
    "upside_down": "upside_down", "hands_knees": "hands_knees",
    "kneel_both": "kneel_both", "kneel_left": "kneel_left", "kneel_right": "kneel_right",
    "sit_floor": "sit", "sit_like": "sit", "squat": "squat", "crouch": "crouch", "bend": "bend",
    "airborne": "stand", "one_leg_left": "stand", "one_leg_right": "stand", "stand_wide": "stand", "stand": "stand",
}
MOTION_CLASSES = ("lie_back", "lie_front", "lie_left", "lie_right", "upside_down", "hands_knees", "kneel_both",
                  "kneel_left", "kneel_right", "sit", "squat", "crouch", "bend", "stand")
# a class held in a window: how it is said at the start (static) and as the change into it
MOTION_STATIC = {
    "lie_back": "lies on the back", "lie_front": "lies on the front", "lie_left": "lies on the left side",
    "lie_right": "lies on the right side", "upside_down": "is upside down", "hands_knees": "is on hands and knees",
    "kneel_both": "kneels on both knees", "kneel_left": "kneels on the left knee",
    "kneel_right": "kneels on the right knee", "sit": "sits", "squat": "squats", "crouch": "crouches",
    "bend": "bends forward", "stand": "stands",
}
MOTION_CHANGE = {
    "lie_back": "lies down on the back", "lie_front": "lies down on the front",
    "lie_left": "lies down on the left side", "lie_right": "lies down on the right side",
    "upside_down": "turns upside down", "hands_knees": "gets down on hands and knees",
    "kneel_both": "kneels down on both knees", "kneel_left": "kneels down on the left knee",
    "kneel_right": "kneels down on the right knee", "sit": "sits down", "squat": "squats down",
    "crouch": "crouches down", "bend": "bends forward", "stand": "stands up",
}
_POSTURE_TO_CLASS = np.array([MOTION_CLASSES.index(MOTION_CLASS[name]) for name, _ in POSTURES])
_LOW = {"lie_back", "lie_front", "lie_left", "lie_right", "hands_knees"}
# postures one passes through on the way between others: not named unless held for ``passing_s``
_PASSING = {"crouch", "bend", "squat", "sit"}


def _change_phrase(before: str, after: str) -> str:
    """The verb phrase of a change of coarse posture ``before`` -> ``after``."""
    if after == "stand" and before == "bend":
        return "straightens up"
    if after == "sit" and before in _LOW:
        return "sits up"
    if after.startswith("kneel") and before in _LOW:
        return "gets up onto " + ("both knees" if after == "kneel_both" else f"the {after[6:]} knee")
    if after.startswith("lie") and before.startswith("lie"):
        return "rolls onto the " + {"lie_back": "back", "lie_front": "front", "lie_left": "left side",
                                    "lie_right": "right side"}[after]
    if after == "squat" and before in _LOW | {"sit"} or after == "crouch" and before in _LOW | {"sit"}:
        return "gets up into a squat" if after == "squat" else "gets up into a crouch"
    return MOTION_CHANGE[after]


@dataclass(frozen=True)
class _Options:
    """Every threshold of the describer (the module docstring's tables; L = leg length, A = arm length)."""

    knee_contact: float = KNEE_CONTACT       # L
    foot_contact: float = FOOT_CONTACT       # L
    clearance: float = FLOOR_CLEARANCE       # L
    lying_elevation: float = 35.0            # deg
    lying_pelvis: float = 0.65               # L
    lying_thorax: float = 0.5                # L
    upside_down_elevation: float = -35.0     # deg
    hands_knees_wrist: float = 0.25          # L
    sit_pelvis: float = 0.4                  # L
    sit_feet_forward: float = 0.25           # L
    squat_knee: float = 80.0                 # deg
    squat_pelvis: float = 0.65               # L
    sit_like_knee: float = 60.0              # deg
    sit_like_pelvis: float = 0.8             # L
    sit_like_feet_forward: float = 0.3       # L
    sit_like_elevation: float = 55.0         # deg
    crouch_knee: float = 40.0                # deg
    crouch_pelvis: float = 0.9               # L
    raised_foot: float = 0.3                 # L
    one_leg_elevation: float = 45.0          # deg
    knee_high: float = 0.2                   # L below the pelvis
    leg_front: float = 0.35                  # L
    leg_behind: float = 0.25                 # L
    bend_pitch: float = 45.0                 # deg
    wide_feet: float = 0.65                  # L
    above_head: float = -0.1                 # L (wrist minus head top)
    raised_wrist: float = 0.1                # L (wrist above its shoulder)
    hand_up: float = 0.1                     # L (wrist above its elbow)
    face_distance: float = 0.25              # L
    stretch_reach: float = 0.6               # A
    straight_elbow: float = 60.0             # deg
    level_band: float = 0.3                  # L
    side_band: float = 0.35                  # A
    side_pelvis: float = 0.15                # L
    lean_forward: float = 20.0               # deg
    lean_back: float = -15.0                 # deg
    lean_side: float = 15.0                  # deg
    # motion
    min_posture_s: float = 0.25              # s
    passing_s: float = 0.6                   # s
    travel_min: float = 1.0                  # L of pelvis path
    wander_min: float = 2.0                  # L of a winding path ("walks around")
    walk_speed: float = 0.3                  # L / s
    run_speed: float = 2.5                   # L / s
    jog_speed: float = 1.0                   # L / s (with flight frames: runs)
    run_flight_fraction: float = 0.03
    flight_height: float = 0.15              # L (both ankles above it: feet off the floor)
    turn: float = 45.0                       # deg
    turn_around: float = 135.0               # deg
    full_circle: float = 300.0               # deg
    jump_rise: float = 0.15                  # L
    jump_flight_s: float = 0.25              # s
    kick_speed: float = 2.5                  # L / s
    kick_knee: float = 60.0                  # deg of knee flexion at the kick's top
    raise_fraction: float = 0.2
    wave_swing: float = 0.08                 # L
    wave_reversals: int = 3


OPTION_NAMES = tuple(f.name for f in fields(_Options))


def _posture_codes(f: dict, o: _Options, *, floor_given: bool) -> tuple[np.ndarray, np.ndarray]:
    """(N,) posture code (index into POSTURES) and (N,) raised-leg detail (index into LEG_DETAIL)
    of N poses' features; the first posture of POSTURES whose condition holds wins."""
    length = f["leg_length"]
    pelvis = f["pelvis_height"] / length
    elev = f["torso_elevation"]
    knee_l, knee_r = f["left_knee_contact"], f["right_knee_contact"]
    feet_forward = 0.5 * (f["left_ankle_forward"] + f["right_ankle_forward"]) / length
    knee_min = np.minimum(f["knee_flexion_left"], f["knee_flexion_right"])
    ankle_l, ankle_r = f["left_ankle_height"] / length, f["right_ankle_height"] / length
    wrists_low = np.maximum(f["left_wrist_height"], f["right_wrist_height"]) / length < o.hands_knees_wrist
    flat = elev < o.lying_elevation
    upright_enough = elev >= o.one_leg_elevation
    # lying: the torso horizontal and low (a horizontal torso high above the floor is a bend)
    lie = flat & (pelvis < o.lying_pelvis) & (f["thorax_height"] / length < o.lying_thorax)
    side_left_down = f["right_up"] > 0
    conditions = [
        ("hands_knees", flat & (f["front_up"] < -0.5) & (knee_l | knee_r) & wrists_low & (pelvis >= 0.3)),
        ("lie_back", lie & (f["front_up"] > 0.5)),
        ("lie_front", lie & (f["front_up"] < -0.5)),
        ("lie_left", lie & side_left_down),
        ("lie_right", lie & ~side_left_down),
        ("upside_down", elev < o.upside_down_elevation),
        ("kneel_both", knee_l & knee_r),
        ("kneel_left", knee_l),
        ("kneel_right", knee_r),
        ("sit_floor", (pelvis < o.sit_pelvis) & (feet_forward > o.sit_feet_forward)),
        ("sit_like", (knee_min >= o.sit_like_knee) & (pelvis < o.sit_like_pelvis)
         & (feet_forward > o.sit_like_feet_forward) & (elev >= o.sit_like_elevation)),
        ("squat", (knee_min >= o.squat_knee) & (pelvis < o.squat_pelvis)),
        ("crouch", (knee_min >= o.crouch_knee) & (pelvis < o.crouch_pelvis)),
        ("airborne", np.full(len(length), floor_given) & (np.minimum(ankle_l, ankle_r) > o.raised_foot) & upright_enough),
        ("one_leg_left", (ankle_r - ankle_l > o.raised_foot) & f["left_foot_contact"] & upright_enough),
        ("one_leg_right", (ankle_l - ankle_r > o.raised_foot) & f["right_foot_contact"] & upright_enough),
        ("bend", f["torso_pitch"] >= o.bend_pitch),
        ("stand_wide", f["feet_apart"] / length > o.wide_feet),
    ]
    assert [name for name, _ in conditions] == [name for name, _ in POSTURES[:-1]]
    code = np.select([c for _, c in conditions], [POSTURE_CODE[name] for name, _ in conditions], POSTURE_CODE["stand"])
    # the raised leg of a one-leg stance: to the front, the knee raised high, behind
    raised = np.where(code == POSTURE_CODE["one_leg_left"], 1, 0)    # 1: the right leg is raised
    ankle_fwd = np.where(raised == 1, f["right_ankle_forward"], f["left_ankle_forward"]) / length
    knee_h = np.where(raised == 1, f["right_knee_height"], f["left_knee_height"]) / length
    detail = np.select([ankle_fwd > o.leg_front, knee_h >= pelvis - o.knee_high, ankle_fwd < -o.leg_behind], [1, 3, 2], 0)
    one_leg = (code == POSTURE_CODE["one_leg_left"]) | (code == POSTURE_CODE["one_leg_right"])
    return code.astype(np.int64), np.where(one_leg, detail, 0).astype(np.int64)


_LYING_CODES = np.array([POSTURE_CODE[n] for n in ("lie_back", "lie_front", "lie_left", "lie_right", "upside_down", "hands_knees")])
_NO_LEAN_CODES = np.array(list(_LYING_CODES) + [POSTURE_CODE["bend"]])


def _arm_codes(f: dict, o: _Options, posture: np.ndarray) -> dict[str, np.ndarray]:
    """{side: (N,) arm state code (index into ARM_STATES)} of N poses; lying poses use the body
    axis ("beyond the head") instead of heights."""
    length, arm = f["leg_length"], f["arm_length"]
    lying = np.isin(posture, _LYING_CODES)
    out = {}
    for s in SIDES:
        above_sh = f[f"{s}_wrist_above_shoulder"] / length
        straight = f[f"elbow_flexion_{s}"] < o.straight_elbow
        level = np.abs(above_sh) < o.level_band
        outward, forward = f[f"{s}_wrist_outward"] / arm, f[f"{s}_wrist_forward"] / arm
        face = f[f"{s}_wrist_to_face"] / length < o.face_distance
        upright = np.select(
            [(f[f"{s}_wrist_above_head"] / length > o.above_head) & (above_sh > o.raised_wrist),
             face,
             above_sh > o.raised_wrist,
             f[f"{s}_wrist_above_elbow"] / length > o.hand_up,
             (outward > o.stretch_reach) & straight & level,
             (forward > o.stretch_reach) & straight & level,
             ((f[f"{s}_wrist_height"] - f["pelvis_height"]) / length < o.side_pelvis) & (np.abs(outward) < o.side_band)
             & (np.abs(forward) < o.side_band) & straight],
            [ARM_CODE[k] for k in ("above_head", "face", "raised", "hand_up", "sideways", "forward", "side")],
            ARM_CODE["other"])
        flat = np.select([face, f[f"{s}_wrist_beyond_head"] > 0], [ARM_CODE["face"], ARM_CODE["beyond_head"]], ARM_CODE["other"])
        out[s] = np.where(lying, flat, upright).astype(np.int64)
    return out


def _lean_codes(f: dict, o: _Options, posture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) pitch code (0 none, 1 forward, 2 back) and (N,) roll code (0 none, 1 left, 2 right)."""
    allowed = ~np.isin(posture, _NO_LEAN_CODES)
    pitch = np.select([f["torso_pitch"] >= o.lean_forward, f["torso_pitch"] <= o.lean_back], [1, 2], 0)
    roll = np.select([f["torso_roll"] <= -o.lean_side, f["torso_roll"] >= o.lean_side], [1, 2], 0)
    return np.where(allowed, pitch, 0).astype(np.int64), np.where(allowed, roll, 0).astype(np.int64)


def _arm_clause(left: int, right: int) -> str:
    if left == right:
        return ARM_STATES[left][2]
    parts = [ARM_STATES[code][1].format(side=side) for side, code in (("left", left), ("right", right))
             if ARM_STATES[code][1]]
    return " and ".join(parts)


def _pose_text(posture: int, detail: int, left: int, right: int, pitch: int, roll: int) -> str:
    """The text of one combination of codes (built once per distinct combination)."""
    name, phrase = POSTURES[posture]
    if name.startswith("one_leg") and detail:
        phrase = phrase.replace("leg raised", LEG_DETAIL[detail]) if detail == 3 else phrase + LEG_DETAIL[detail]
    clauses = [phrase]
    arms = _arm_clause(left, right)
    if arms:
        clauses.append(arms)
    lean = [w for w, on in (("forward", pitch == 1), ("back", pitch == 2)) if on]
    lean += [w for w, on in (("to the left", roll == 1), ("to the right", roll == 2)) if on]
    if lean:
        clauses.append("leaning " + " and ".join(lean))
    return "a person " + ", ".join(clauses)


def _refloor(f: dict, floor: np.ndarray, o: _Options) -> dict:
    """Features with every height measured from another floor ((N,) heights along up, mm)."""
    g = dict(f)
    shift = f["floor"] - floor                                       # (N,) mm to add to each height
    g["floor"] = floor
    g["height"] = f["height"] + shift[:, None]
    for k in ("pelvis_height", "thorax_height", "head_height"):
        g[k] = f[k] + shift
    for s in SIDES:
        for part in ("wrist", "knee", "ankle"):
            g[f"{s}_{part}_height"] = f[f"{s}_{part}_height"] + shift
        g[f"{s}_knee_contact"] = g[f"{s}_knee_height"] < o.knee_contact * f["leg_length"]
        g[f"{s}_foot_contact"] = g[f"{s}_ankle_height"] < o.foot_contact * f["leg_length"]
    return g


def _take(f: dict, index) -> dict:
    """Rows ``index`` (a slice or an index array) of every feature."""
    return {k: v[index] for k, v in f.items()}


# ---------------------------------------------------------------------- motion -> words
_COUNT_WORDS = {1: "", 2: " twice", 3: " three times", 4: " four times"}


def _times(n: int) -> str:
    return _COUNT_WORDS.get(n, f" {n} times")


def _mode_filter(codes: np.ndarray, n_classes: int, width: int) -> np.ndarray:
    """(T,) most frequent code in a centred window of ``width`` frames (ties: the lower code)."""
    if width <= 1 or len(codes) <= 2:
        return codes
    onehot = np.zeros((len(codes) + 1, n_classes))
    onehot[np.arange(1, len(codes) + 1), codes] = 1
    cum = np.cumsum(onehot, axis=0)
    half = width // 2
    t = np.arange(len(codes))
    lo, hi = np.clip(t - half, 0, len(codes)), np.clip(t + half + 1, 0, len(codes))
    return np.argmax(cum[hi] - cum[lo], axis=1)


def _runs(codes: np.ndarray) -> list[list[int]]:
    """Run-length encoding: [[code, start, length], ...]."""
    if len(codes) == 0:
        return []
    cut = np.flatnonzero(np.diff(codes)) + 1
    starts = np.concatenate([[0], cut])
    lengths = np.diff(np.concatenate([starts, [len(codes)]]))
    return [[int(codes[s]), int(s), int(n)] for s, n in zip(starts, lengths)]


def _posture_sequence(classes: np.ndarray, fps: float, o: _Options) -> list[str]:
    """The coarse postures a window goes through, held long enough to be named (T,) -> names."""
    n_cls = len(MOTION_CLASSES)
    width = max(1, int(round(o.min_posture_s * fps)) | 1)
    runs = _runs(_mode_filter(classes, n_cls, width))
    min_len, passing_len = o.min_posture_s * fps, o.passing_s * fps
    while len(runs) > 1:
        # the shortest run that is too short, or a brief posture passed through between two others
        # a run at either end of the window may be cut by it: half the length is enough there
        drop = [i for i, (c, _, n) in enumerate(runs)
                if n < (min_len if 0 < i < len(runs) - 1 else min_len / 2)
                or (0 < i < len(runs) - 1 and MOTION_CLASSES[c] in _PASSING and n < passing_len
                    and runs[i - 1][0] != runs[i + 1][0])]
        if not drop:
            break
        i = min(drop, key=lambda k: (runs[k][2], k))
        if i == 0:
            runs[1][1], runs[1][2] = 0, runs[1][2] + runs[0][2]
        elif i == len(runs) - 1 or runs[i - 1][2] >= runs[i + 1][2]:
            runs[i - 1][2] += runs[i][2]
        else:
            runs[i + 1][1], runs[i + 1][2] = runs[i][1], runs[i + 1][2] + runs[i][2]
        del runs[i]
        merged = [runs[0]]
        for r in runs[1:]:
            if r[0] == merged[-1][0]:
                merged[-1][2] += r[2]
            else:
                merged.append(r)
        runs = merged
    return [MOTION_CLASSES[c] for c, _, _ in runs]


def _posture_clause(seq: list[str]) -> str:
    """"squats down then stands up", "kneels on both knees then lies down on the back", ..."""
    if not seq:
        return ""
    if len(seq) >= 4 and len(set(seq)) == 2 and all(seq[i] == seq[i % 2] for i in range(len(seq))):
        a, b = seq[0], seq[1]                                        # a repeated a -> b -> a: count it
        n = sum(1 for c in seq if c == b)
        return f"{_change_phrase(a, b)} and {_change_phrase(b, a)}{_times(n)}" if seq[-1] == a else \
            f"{_change_phrase(a, b)} and {_change_phrase(b, a)}{_times(n - 1)} then {_change_phrase(a, b)}"
    seq = seq[:4]
    parts = [] if seq[0] == "stand" else [MOTION_STATIC[seq[0]]]
    parts += [_change_phrase(a, b) for a, b in zip(seq, seq[1:])]
    return " then ".join(parts)


def _heading_deg(facing: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(T,) unwrapped heading of (T, 3) horizontal facing vectors, counter-clockwise about up (deg)."""
    e1 = np.cross(up, [1.0, 0.0, 0.0])
    if np.linalg.norm(e1) < 0.5:
        e1 = np.cross(up, [0.0, 1.0, 0.0])
    e1 = e1 / np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    return np.degrees(np.unwrap(np.arctan2(facing @ e2, facing @ e1)))


def _flights(mask: np.ndarray, min_frames: int) -> list[tuple[int, int]]:
    """(start, stop) of runs of True at least ``min_frames`` long."""
    return [(s, s + n) for c, s, n in _runs(mask.astype(np.int64)) if c == 1 and n >= min_frames]


def _reversals(x: np.ndarray, swing: float) -> int:
    """How often the (T,) signal ``x`` changes direction after moving at least ``swing`` (hysteresis)."""
    count, direction = 0, 0
    lo = hi = extreme = float(x[0]) if len(x) else 0.0
    for v in x[1:]:                                                  # one window's frames: a few hundred
        v = float(v)
        if direction == 0:
            lo, hi = min(lo, v), max(hi, v)
            if v - lo >= swing:
                direction, extreme = 1, v
            elif hi - v >= swing:
                direction, extreme = -1, v
        elif direction * (v - extreme) > 0:
            extreme = v
        elif abs(v - extreme) >= swing:
            count, direction, extreme = count + 1, -direction, v
    return count


def _arm_motion_clause(f: dict, upright: np.ndarray, o: _Options, *, travelling: bool) -> str:
    """Raising / waving of the arms (wrist above the shoulder) or hands (wrist above the elbow)
    over a window, judged on the frames where the person is upright. While ``travelling`` the
    hands swing up with the gait (Bandai's "active" walks: wrist near shoulder height), so only
    arms raised above the shoulder count then."""
    length = float(np.median(f["leg_length"]))
    state: dict[str, tuple[str, str, bool, bool]] = {}              # side -> (kind, limb, above the head, lowered)
    for s in SIDES:
        arm_up = (f[f"{s}_wrist_above_shoulder"] / f["leg_length"] > o.raised_wrist) & upright
        hand_up = arm_up | ((f[f"{s}_wrist_above_elbow"] / f["leg_length"] > o.hand_up) & upright)
        if arm_up.mean() >= o.raise_fraction:
            limb, up_frames = "arm", arm_up
        elif hand_up.mean() >= o.raise_fraction and not travelling:
            limb, up_frames = "hand", hand_up
        else:
            continue
        overhead = arm_up & (f[f"{s}_wrist_above_head"] / f["leg_length"] > o.above_head)
        # a wave swings the hand sideways (punches and slashes swing it forward and back)
        swings = _reversals(f[f"{s}_wrist_outward"][hand_up], o.wave_swing * length)
        if swings >= o.wave_reversals:
            state[s] = ("wave", "hand", False, False)
        else:
            state[s] = ("keep" if up_frames[0] else "raise", limb,
                        limb == "arm" and bool(overhead.mean() >= 0.5 * o.raise_fraction), not up_frames[-1])
    if not state:
        return ""
    if len(state) == 2 and state["left"] == state["right"]:
        kind, limb, overhead, lowered = state["left"]
        where = " above the head" if overhead else ""
        if kind == "wave":
            return "waves both hands"
        if kind == "keep":
            return f"keeps both {limb}s raised{where}"
        return f"raises both {limb}s{where}" + (" then lowers them" if lowered else "")
    parts = []
    for s in SIDES:
        if s not in state:
            continue
        kind, limb, overhead, lowered = state[s]
        where = " above the head" if overhead else ""
        if kind == "wave":
            parts.append(f"waves the {s} hand")
        elif kind == "keep":
            parts.append(f"keeps the {s} {limb} raised{where}")
        else:
            parts.append(f"raises the {s} {limb}{where}" + (" then lowers it" if lowered else ""))
    return " and ".join(parts)


def _travel(joints: np.ndarray, counted_frames: np.ndarray, facing0: np.ndarray, up: np.ndarray, fps: float,
            length: float) -> tuple[float, float, str]:
    """Pelvis path length (L), mean speed (L/s) and direction ("forward", "backward", "to the left",
    "to the right", or "" for a winding path) of a (T, 17, 3) window, over the steps between
    ``counted_frames`` (T,) only (getting down to the floor moves the pelvis too). The path is sampled
    every ~0.25 s so that the sway of the pelvis within a step does not count as travel."""
    t = len(joints)
    step = max(1, int(round(fps / 4)))
    samples = np.unique(np.r_[np.arange(0, t, step), t - 1])
    pos = joints[samples, PELVIS]
    pos = pos - np.outer(pos @ up, up)
    steps = np.diff(pos, axis=0)
    counted = counted_frames[samples[:-1]] & counted_frames[samples[1:]]
    path = float(np.linalg.norm(steps[counted], axis=1).sum()) / length
    disp = steps[counted].sum(axis=0) / length
    spent = float(np.sum(np.diff(samples)[counted])) / fps
    speed = path / spent if spent > 0 else 0.0
    if path < _EPS or np.linalg.norm(disp) < 0.5 * path:
        return path, speed, ""
    cos = float(disp @ facing0) / float(np.linalg.norm(disp))
    limit = float(np.cos(np.radians(45.0)))
    if cos >= limit:
        return path, speed, "forward"
    if cos <= -limit:
        return path, speed, "backward"
    return path, speed, "to the right" if float(disp @ np.cross(facing0, up)) > 0 else "to the left"


def _motion_text(joints: np.ndarray, f: dict, fps: float, up: np.ndarray, o: _Options, *, floor: float | None) -> str:
    """The text of one window: (T, 17, 3) joints and their per-frame features (per-pose floors)."""
    t = len(joints)
    # one floor for the whole window: the given one, or the lowest estimate over its frames
    g = _refloor(f, np.full(t, float(floor) if floor is not None else float(np.min(f["floor"]))), o)
    length = float(np.median(f["leg_length"]))
    posture, _ = _posture_codes(g, o, floor_given=True)
    classes = _POSTURE_TO_CLASS[posture]
    seq = _posture_sequence(classes, fps, o)
    standing = classes == MOTION_CLASSES.index("stand")
    upright = np.isin(classes, [MOTION_CLASSES.index(c) for c in ("stand", "crouch", "squat", "bend")])
    k = max(1, min(3, t // 4))                                       # frames averaged at each end
    facing0 = _unit(f["facing"][:k].mean(axis=0))
    path, speed, direction = _travel(joints, standing, facing0, up, fps, length)
    moving = path >= o.travel_min and speed >= o.walk_speed and (direction or path >= o.wander_min)
    # a jump's direction: over every upright frame (it starts and ends in a crouch)
    jump_path, _, jump_direction = _travel(joints, upright, facing0, up, fps, length)
    # both feet off the floor while standing: short flights are running strides, long ones with
    # the pelvis well above its standing height are jumps
    flight = (g["left_ankle_height"] > o.flight_height * g["leg_length"]) & \
        (g["right_ankle_height"] > o.flight_height * g["leg_length"]) & standing
    ground = ~flight & standing
    base = float(np.median(g["pelvis_height"][ground])) if ground.any() else np.inf
    jumps = [(a, b) for a, b in _flights(flight, max(2, int(round(o.jump_flight_s * fps))))
             if g["pelvis_height"][a:b].max() - base >= o.jump_rise * length]
    running = moving and (speed >= o.run_speed or (speed >= o.jog_speed and flight.mean() >= o.run_flight_fraction))
    clauses = []
    if jumps:
        # crouching down to take off and to land is part of a jump, not a posture of its own
        seq = _posture_sequence(np.where(classes == MOTION_CLASSES.index("crouch"), MOTION_CLASSES.index("stand"), classes),
                                fps, o)
    if seq != ["stand"]:
        clauses.append(_posture_clause(seq))
    if jumps and not (running and speed >= o.run_speed):
        hop = ""
        diff = (g["left_ankle_height"] - g["right_ankle_height"]) / g["leg_length"]
        for s, sign in (("left", -1.0), ("right", 1.0)):             # hopping on s: the other ankle stays up
            if np.mean(sign * diff[standing] > o.raised_foot) >= 0.8:
                hop = s
        verb = f"hops on the {hop} leg" if hop else "jumps"
        clauses.append(verb + (f" {jump_direction}" if jump_path >= o.travel_min and jump_direction else "")
                       + _times(len(jumps)))
        running = False
    elif moving:
        clauses.append(("runs " if running else "walks ") + (direction or "around"))

    # turning: over the upright frames only (the hip line of a lying person gives no heading), and
    # only when the window is mostly upright
    if upright.mean() >= 0.8:
        heading = _heading_deg(f["facing"][upright], up)
        turn = float(heading[-k:].mean() - heading[:k].mean())
        side = "left" if turn > 0 else "right"                       # counter-clockwise about up = left
        if abs(turn) >= o.full_circle:
            clauses.append(f"turns a full circle to the {side}")
        elif abs(turn) >= o.turn_around:
            clauses.append("turns around")
        elif abs(turn) >= o.turn:
            clauses.append(f"turns {side}")

    # kicks (an ankle fast above the other knee with the leg stretched) and knee raises
    if not running:
        vel = np.gradient(joints, axis=0) * fps if t > 2 else np.zeros_like(joints)
        for s in SIDES:
            rel_speed = np.linalg.norm(vel[:, ANKLE[s]] - vel[:, PELVIS], axis=1) / length
            high = (g[f"{s}_ankle_height"] > g[f"{OTHER[s]}_knee_height"]) & upright
            kicks, front = 0, False
            for a, b in _flights(high, 1):
                # the leg snaps out straight while the foot is up (the top of the foot's path may
                # come while the knee is chambered, before or after the snap)
                if rel_speed[a:b].max() >= o.kick_speed and f[f"knee_flexion_{s}"][a:b].min() <= o.kick_knee:
                    kicks += 1
                    front |= bool(f[f"{s}_ankle_forward"][a:b].max() / length > o.leg_front)
            if kicks:
                clauses.append(("kicks forward" if front else "kicks") + f" with the {s} leg" + _times(kicks))
                continue
            # a knee raised on one leg: the knee near the pelvis's height, its foot well off the floor
            knee_up = (g[f"{s}_knee_height"] >= g["pelvis_height"] - o.knee_high * g["leg_length"]) & standing & \
                ((g[f"{s}_ankle_height"] - g[f"{OTHER[s]}_ankle_height"]) / g["leg_length"] > o.raised_foot)
            raises = _flights(knee_up, max(1, int(round(0.1 * fps))))
            if raises:
                clauses.append(f"raises the {s} knee" + _times(len(raises)))

    # leaning forward and back up while standing still (a bow that does not reach "bends forward")
    if seq == ["stand"] and not moving and not jumps:
        leaning = standing & (f["torso_pitch"] >= o.lean_forward)
        leans = [(a, b) for a, b in _flights(leaning, max(1, int(round(o.min_posture_s * fps)))) if a > 0 and b < t]
        if leans:
            clauses.append("leans forward and straightens up" + _times(len(leans)))

    arms = _arm_motion_clause(f, upright, o, travelling=moving or bool(jumps))
    if arms:
        clauses.append(arms)
    if not clauses:
        mid = _take(f, slice(t // 2, t // 2 + 1))
        return _describe_features(mid, o, floor_given=floor is not None)[0]
    if len(clauses) == 1:
        return "a person " + clauses[0]
    return "a person " + ", ".join(clauses[:-1]) + " and " + clauses[-1]


# ---------------------------------------------------------------------- public API
def _describe_features(f: dict, o: _Options, *, floor_given: bool) -> list[str]:
    """(N,) texts of N poses' features: codes are computed batched, the text once per distinct
    combination of codes (a few hundred at most), so 400k poses take well under a second."""
    if len(f["leg_length"]) == 0:
        return []
    posture, detail = _posture_codes(f, o, floor_given=floor_given)
    arms = _arm_codes(f, o, posture)
    pitch, roll = _lean_codes(f, o, posture)
    keys = np.stack([posture, detail, arms["left"], arms["right"], pitch, roll], axis=1)
    combos, inverse = np.unique(keys, axis=0, return_inverse=True)
    texts = np.array([_pose_text(*map(int, c)) for c in combos], dtype=object)
    return texts[inverse.reshape(-1)].tolist()


class PoseDescriber:
    """Deterministic describer of poses and short motions (thresholds: the module docstring).

    Keyword-only options: ``up`` (the frame's up direction), ``floor`` (floor height along ``up``
    in mm, or None: each pose's lowest joint minus ``clearance`` x L; motions: the lowest over the
    window) and any threshold of the tables, e.g. ``PoseDescriber(knee_contact=0.1, lean_forward=25)``.
    Like a scikit-learn estimator: the options are attributes, ``get_params`` / ``set_params``.

    Use: ``PoseDescriber().describe(poses)`` ((N, 17, 3) or a PoseSet -> N texts),
    ``PoseDescriber(up=(0, -1, 0)).describe(pred3d)`` (camera-frame predictions),
    ``PoseDescriber().describe_motion(clip)`` ((T, 17, 3) -> one text).
    """

    name = "describer"

    def __init__(self, *, up=(0.0, 0.0, 1.0), floor: float | None = None, **thresholds):
        unknown = sorted(set(thresholds) - set(OPTION_NAMES))
        if unknown:
            raise TypeError(f"unknown describer option(s) {', '.join(unknown)}; known: {', '.join(OPTION_NAMES)}")
        self.up = tuple(float(v) for v in _check_up(up))
        self.floor = None if floor is None else float(floor)
        defaults = _Options()
        for k in OPTION_NAMES:
            setattr(self, k, thresholds.get(k, getattr(defaults, k)))

    # scikit-learn-like parameter access
    def get_params(self, deep: bool = True) -> dict:
        return {"up": self.up, "floor": self.floor, **{k: getattr(self, k) for k in OPTION_NAMES}}

    def set_params(self, **params) -> "PoseDescriber":
        unknown = sorted(set(params) - set(self.get_params()))
        if unknown:
            raise TypeError(f"unknown describer option(s) {', '.join(unknown)}")
        new = PoseDescriber(**{**self.get_params(), **params})
        self.__dict__.update(new.__dict__)
        return self

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if k not in ("up", "floor") and v != getattr(_Options(), k)}
        opts = ", ".join(f"{k}={v!r}" for k, v in {"up": self.up, "floor": self.floor, **changed}.items())
        return f"PoseDescriber({opts})"

    @property
    def options(self) -> _Options:
        return _Options(**{k: getattr(self, k) for k in OPTION_NAMES})

    def features(self, poses) -> dict[str, np.ndarray]:
        """:func:`pose_features` of (N, 17, 3) poses (or a PoseSet) with this describer's options."""
        o = self.options
        return pose_features(poses, up=self.up, floor=self.floor, knee_contact=o.knee_contact,
                             foot_contact=o.foot_contact, clearance=o.clearance)

    def describe(self, poses) -> list[str]:
        """One text per pose: (N, 17, 3) joints (a single (17, 3) pose gives one text) or a PoseSet."""
        return _describe_features(self.features(poses), self.options, floor_given=self.floor is not None)

    def describe_motion(self, joints3d, *, fps: float = 30.0) -> str:
        """One text of a (T, 17, 3) window of consecutive frames at ``fps`` (a PoseSet's rows in order)."""
        joints = _check_joints(joints3d)
        return self.describe_windows(joints, np.array([[0, len(joints)]]), fps=fps)[0]

    def describe_windows(self, joints3d, bounds, *, fps: float = 30.0, features: dict | None = None) -> list[str]:
        """Texts of many windows of one (N, 17, 3) array: ``bounds`` (W, 2) [start, stop) rows of
        consecutive frames. Features are computed once for all rows (or passed as ``features``)."""
        joints = _check_joints(joints3d)
        bounds = np.asarray(bounds, dtype=np.int64).reshape(-1, 2)
        if len(bounds) and (bounds.min() < 0 or bounds.max() > len(joints) or np.any(bounds[:, 1] <= bounds[:, 0])):
            raise ValueError(f"window bounds must be non-empty [start, stop) rows within 0..{len(joints)}")
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        f = self.features(joints) if features is None else features
        if len(f["leg_length"]) != len(joints):
            raise ValueError(f"features of {len(f['leg_length'])} poses given for {len(joints)} joints")
        o, up = self.options, np.asarray(self.up)
        out = np.empty(len(bounds), dtype=object)
        # one-frame windows (e.g. generated poses, which have no neighbours in time) are poses: batched
        single = bounds[:, 1] - bounds[:, 0] == 1
        if single.any():
            out[single] = _describe_features(_take(f, bounds[single, 0]), o, floor_given=self.floor is not None)
        for w in np.flatnonzero(~single):
            a, b = bounds[w]
            out[w] = _motion_text(joints[a:b], _take(f, slice(a, b)), float(fps), up, o, floor=self.floor)
        return out.tolist()


def describe_pose(joints3d, *, up=(0.0, 0.0, 1.0), floor: float | None = None, **thresholds) -> list[str]:
    """One text per pose of (N, 17, 3) H36M17 joints in mm (or a PoseSet): body posture, then the
    arms, then the lean, e.g. "a person kneels on the left knee, both arms raised above the head,
    leaning forward". ``up``/``floor``/thresholds: see :class:`PoseDescriber`. Deterministic."""
    return PoseDescriber(up=up, floor=floor, **thresholds).describe(joints3d)


def describe_motion(joints3d, *, fps: float = 30.0, up=(0.0, 0.0, 1.0), floor: float | None = None,
                    **thresholds) -> str:
    """One text of a (T, 17, 3) window of consecutive frames, e.g. "a person squats down then
    stands up", "a person walks forward and turns left", "a person jumps forward twice"."""
    return PoseDescriber(up=up, floor=floor, **thresholds).describe_motion(joints3d, fps=fps)
