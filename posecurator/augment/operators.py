"""Evolution operators on H36M17 3D poses, batched over whole populations (TAG-Net / EvoSkeleton style).

Representation
--------------
A pose (17, 3) in mm (world frame, Z up) is turned into *bones* (17, 3): row 0 holds the root
(pelvis) position, row j > 0 the bone vector ``x_j - x_parent(j)``. H36M17 is topological (every
parent comes before its child), so :func:`from_bones` rebuilds the joints by one pass over the 17
joints. Every operator works on bones, so bone lengths are untouched unless an operator means to
change them.

Local frames (also used by the plausibility prior, :mod:`posecurator.augment.plausibility`)
-------------------------------------------------------------------------------------------
Every non-root bone is *expressed in* one of seven per-pose frames (:data:`FRAME_OF_BONE`):

* ``pelvis`` P: x = right hip - left hip (towards the person's right), z = pelvis -> spine made
  orthogonal to x (up the back), y = z x x (forward). Hip bones, thighs, spine, thorax bone.
* ``chest`` C: x = right shoulder - left shoulder, z = spine -> thorax made orthogonal to x,
  y = z x x. Neck, clavicles, upper arms.
* limb frames of the thighs, the neck and the upper arms (for the shins, the head and the
  forearms): the torso frame carried along with the parent bone by the smallest rotation that
  takes a fixed *rest direction* (:data:`REST_DIRECTION`, in the torso frame) onto the parent bone
  direction ("parallel transport"). Each rest direction is chosen so that the one direction where
  this frame is undefined (the parent bone pointing exactly opposite to it) is anatomically out of
  reach: thighs rest down-and-forward (undefined: up and backwards), neck rests up (undefined:
  straight down), upper arms rest down-forward-out (undefined: up, back and across the body).
  A frame built from a fixed reference axis instead (e.g. shoulder left-right) would be undefined
  in the T-pose, which every mocap calibration contains.

Frames are 3 x 3 matrices whose rows are the frame axes in world coordinates, so ``F @ v`` gives
the coordinates of a world vector ``v`` in the frame.

Speed: the hot paths work component-major, (3, 17, N) arrays (see "layout" below); the public
functions take and return the usual (N, 17, 3).

Operators
---------
``crossover``: the child is parent A with the bones of the subtree at a joint j taken from
parent B, *posed as in B relative to the frame bone j is expressed in* (the transplanted subtree
is rotated by ``F_A^T F_B``) and scaled to A's own bone lengths. This is TAG-Net's exchange of
local bone vectors; the child keeps every bone length of A.
``limb_mutation``: bone j and its subtree rotate rigidly about the parent joint of j by a random
rotation (uniform axis, normal angle). Bone lengths are kept.
``global_rotation``: the whole pose rotates about the vertical Z axis through the pelvis (uniform
yaw) and tilts about a random horizontal axis (small angle). Bone lengths are kept.
``bone_length_mutation``: every bone length is multiplied by a factor in ``[1 - s, 1 + s]``
(the same factor for a left bone and its right twin when ``symmetric``); directions are kept.

Every operator draws its random numbers in one batched call (``draw_*``) into a small dataclass, so
the batched version here and the per-pose reference version in
:mod:`posecurator.augment.reference` consume exactly the same draws.

Feet on the floor: children are re-grounded per pose (:func:`reground`): shifted along Z so that
their lowest joint is as high as the lowest joint of their first parent (the floor contact the
parent had is kept; a child of a jumping parent stays in the air by the same amount). X and Y of
the pelvis are the first parent's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posecurator.skeleton import H36M17

N_JOINTS = H36M17.n_joints
PARENTS = np.array(H36M17.parents, dtype=np.int64)
if not H36M17.is_topological:  # pragma: no cover - guards the one-pass forward kinematics
    raise RuntimeError("H36M17 must be topological for from_bones")

# SUBTREE_MASK[j, k] = joint k lies in the subtree rooted at joint j (j included).
SUBTREE_MASK = np.zeros((N_JOINTS, N_JOINTS), dtype=bool)
for _j in range(N_JOINTS):
    SUBTREE_MASK[_j, H36M17.subtree(_j)] = True

J = {name: i for i, name in enumerate(H36M17.joints)}

# The seven frames bones are expressed in: (name, torso frame it derives from, parent bone or -1).
FRAMES = (
    ("pelvis", -1, -1),
    ("chest", -1, -1),
    ("right_thigh", 0, J["right_knee"]),
    ("left_thigh", 0, J["left_knee"]),
    ("neck", 1, J["neck"]),
    ("left_upper_arm", 1, J["left_elbow"]),
    ("right_upper_arm", 1, J["right_elbow"]),
)
FRAME_INDEX = {name: i for i, (name, _, _) in enumerate(FRAMES)}

# FRAME_OF_BONE[j]: index into FRAMES of the frame bone j is expressed in (-1 for the root).
FRAME_OF_BONE = np.array([
    -1,                                   # pelvis (root)
    0, 0, FRAME_INDEX["right_thigh"],     # right hip, knee, ankle
    0, 0, FRAME_INDEX["left_thigh"],      # left hip, knee, ankle
    0, 0,                                 # spine, thorax
    1, FRAME_INDEX["neck"],               # neck, head
    1, 1, FRAME_INDEX["left_upper_arm"],  # left shoulder, elbow, wrist
    1, 1, FRAME_INDEX["right_upper_arm"], # right shoulder, elbow, wrist
], dtype=np.int64)


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


# Rest directions of the limb frames, in their torso frame (x right, y forward, z up).
REST_DIRECTION = {
    "right_thigh": _unit([0.0, 0.4, -1.0]),
    "left_thigh": _unit([0.0, 0.4, -1.0]),
    "neck": _unit([0.0, 0.3, 1.0]),
    "left_upper_arm": _unit([-1.0, 0.7, -1.0]),
    "right_upper_arm": _unit([1.0, 0.7, -1.0]),
}

# Joints the operators pick by default: bones whose rotation is a real joint rotation (thighs,
# shins, thorax bend, neck, head, upper arms, forearms). The hip and clavicle bones are rigid
# parts of the torso and move with it.
LIMB_JOINTS = (2, 3, 5, 6, 8, 9, 10, 12, 13, 15, 16)

_EPS = 1e-12


# ---------------------------------------------------------------------- layout
# Hot paths work component-major ("structure of arrays"): joints and bones as (3, 17, N), vectors
# as (3, N), per-pose 3 x 3 matrices as (3, 3, N). Every coordinate of every joint is then a
# contiguous run of N numbers, so each step is a handful of whole-array operations; NumPy's
# stacked matmul/einsum on (N, 3, 3) pay a per-matrix overhead that is 5-20x slower here. Callers
# work in chunks of a few thousand poses (CHUNK) so the temporaries stay in cache: fresh large
# arrays cost page faults that dominate everything else on the development VM. The working dtype
# follows the input (float64 for exactness in tests, float32 in the evolution loop for speed).
CHUNK = 8192


def _check_poses(poses: np.ndarray, name: str = "poses") -> np.ndarray:
    poses = np.asarray(poses)
    if poses.ndim != 3 or poses.shape[1:] != (N_JOINTS, 3):
        raise ValueError(f"{name} must be (N, {N_JOINTS}, 3) H36M17 joints in mm, got {poses.shape}")
    return poses


def to_soa(poses: np.ndarray, dtype=np.float64) -> np.ndarray:
    """(N, 17, 3) -> (3, 17, N) contiguous, of ``dtype``."""
    return np.ascontiguousarray(_check_poses(poses).transpose(2, 1, 0), dtype=dtype)


def from_soa(soa: np.ndarray, dtype=np.float64) -> np.ndarray:
    """(3, 17, N) -> (N, 17, 3), contiguous."""
    return np.ascontiguousarray(soa.transpose(2, 1, 0), dtype=dtype)


def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a, b):
    return np.stack(np.broadcast_arrays(a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]))


def _norm(a):
    return np.sqrt(_dot(a, a))


def _normalized(a):
    return a / np.maximum(_norm(a), _EPS)


def _apply(M, v):
    """M (3, 3, N) times vectors v (3, N) or (3, K, N), per pose -> same shape as v."""
    out = np.empty(v.shape, dtype=np.result_type(M, v))
    tmp = np.empty(v.shape[1:], dtype=out.dtype)
    for i in range(3):  # in place: no temporaries beyond one row
        o = out[i]
        np.multiply(M[i, 0], v[0], out=o)
        np.multiply(M[i, 1], v[1], out=tmp)
        o += tmp
        np.multiply(M[i, 2], v[2], out=tmp)
        o += tmp
    return out


def _matmul(A, B):
    """A (3, 3, N) @ B (3, 3, N) per pose."""
    out = np.empty(np.broadcast_shapes(A.shape, B.shape), dtype=np.result_type(A, B))
    for i in range(3):
        for k in range(3):
            out[i, k] = A[i, 0] * B[0, k] + A[i, 1] * B[1, k] + A[i, 2] * B[2, k]
    return out


def _transpose(M):
    return M.transpose(1, 0, 2)


def _rodrigues(axis, angle):
    """Unit axes (3, N), angles (N,) radians -> (3, 3, N) rotation matrices."""
    x, y, z = axis
    c, s = np.cos(angle), np.sin(angle)
    C = 1.0 - c
    return np.array([
        np.stack([c + x * x * C, x * y * C - z * s, x * z * C + y * s]),
        np.stack([y * x * C + z * s, c + y * y * C, y * z * C - x * s]),
        np.stack([z * x * C - y * s, z * y * C + x * s, c + z * z * C]),
    ])


def _minimal_rotation(a, b):
    """Smallest rotations taking unit a (3,) onto unit b (3, N): c I + [v]x + v v^T / (1 + c), v = a x b."""
    a = np.asarray(a, dtype=b.dtype).reshape(3, 1)
    v = _cross(a, b)
    c = _dot(a, b)
    k = 1.0 / np.maximum(1.0 + c, 1e-9)  # undefined only for b = -a; clamped instead of NaN
    vx, vy, vz = v
    return np.array([
        np.stack([c + k * vx * vx, k * vx * vy - vz, k * vx * vz + vy]),
        np.stack([k * vy * vx + vz, c + k * vy * vy, k * vy * vz - vx]),
        np.stack([k * vz * vx - vy, k * vz * vy + vx, c + k * vz * vz]),
    ])


def _bones_soa(joints):
    """(3, 17, N) joints -> (3, 17, N) bones (row 0 = root position)."""
    bones = joints - joints[:, PARENTS.clip(min=0)]
    bones[:, 0] = joints[:, 0]
    return bones


def _joints_soa(bones):
    """(3, 17, N) bones -> (3, 17, N) joints by one pass in topological order."""
    joints = np.empty_like(bones)
    joints[:, 0] = bones[:, 0]
    for j in range(1, N_JOINTS):
        np.add(joints[:, PARENTS[j]], bones[:, j], out=joints[:, j])
    return joints


# ---------------------------------------------------------------------- representation
def to_bones(poses: np.ndarray) -> np.ndarray:
    """(N, 17, 3) joints (mm) -> (N, 17, 3) float64 bones: row 0 = root position, row j = x_j - x_parent(j)."""
    poses = _check_poses(poses).astype(np.float64, copy=False)
    bones = poses - poses[:, PARENTS.clip(min=0)]
    bones[:, 0] = poses[:, 0]
    return bones


def from_bones(bones: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_bones`: (N, 17, 3) bones -> (N, 17, 3) float64 joints (mm)."""
    return from_soa(_joints_soa(to_soa(bones)))


def bone_lengths(poses: np.ndarray) -> np.ndarray:
    """(N, 17, 3) joints -> (N, 17) bone lengths in mm (column 0, the root, is 0)."""
    b = to_bones(poses)
    b[:, 0] = 0.0
    return np.sqrt(np.einsum("nkc,nkc->nk", b, b))


def reground(children: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """Shift each child (N, 17, 3) along Z so its lowest joint is as high as its parent's lowest joint."""
    children = np.array(children, dtype=np.float64)
    parents = _check_poses(parents, "parents")
    children[:, :, 2] += (parents[:, :, 2].min(axis=1) - children[:, :, 2].min(axis=1))[:, None]
    return children


def axis_angle_matrix(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rodrigues: unit axes (N, 3), angles (N,) in radians -> rotation matrices (N, 3, 3)."""
    return np.ascontiguousarray(_rodrigues(np.asarray(axis, dtype=np.float64).T, np.asarray(angle, dtype=np.float64)).transpose(2, 0, 1))


def minimal_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotations taking the unit vector a (3,) onto unit vectors b (N, 3) -> (N, 3, 3)."""
    return np.ascontiguousarray(_minimal_rotation(a, np.asarray(b, dtype=np.float64).T).transpose(2, 0, 1))


# ---------------------------------------------------------------------- frames
def _torso_frame(right, up):
    """Rows x (right), y (forward), z (up) from a left->right and an up vector (3, N) -> (3, 3, N)."""
    x = _normalized(right)
    z = _normalized(up - _dot(up, x) * x)
    return np.stack([x, _cross(z, x), z])


def _limb_frame(name: str, base, parent_bone):
    """Frame of a limb: its torso frame ``base`` (3, 3, N) carried onto the parent bone (3, N)."""
    u = _normalized(_apply(base, parent_bone))
    return _matmul(_transpose(_minimal_rotation(REST_DIRECTION[name], u)), base)  # R^T B


def _frames_soa(bones):
    """(3, 17, N) bones -> (7, 3, 3, N) frames (rows = axes in world), order of :data:`FRAMES`."""
    n = bones.shape[-1]
    out = np.empty((len(FRAMES), 3, 3, n), dtype=bones.dtype)
    out[0] = _torso_frame(bones[:, J["right_hip"]] - bones[:, J["left_hip"]], bones[:, J["spine"]])
    out[1] = _torso_frame(bones[:, J["right_shoulder"]] - bones[:, J["left_shoulder"]], bones[:, J["thorax"]])
    for f, (name, base, bone) in enumerate(FRAMES):
        if bone >= 0:
            out[f] = _limb_frame(name, out[base], bones[:, bone])
    return out


def _frame_at_soa(bones, frame_index):
    """(3, 3, N): for each pose only the frame ``frame_index`` (N,) names (cheaper than all seven)."""
    P = _torso_frame(bones[:, J["right_hip"]] - bones[:, J["left_hip"]], bones[:, J["spine"]])
    C = _torso_frame(bones[:, J["right_shoulder"]] - bones[:, J["left_shoulder"]], bones[:, J["thorax"]])
    out = np.where(frame_index == 0, P, C)
    for f, (name, base, bone) in enumerate(FRAMES):
        if bone < 0:
            continue
        idx = np.flatnonzero(frame_index == f)
        if len(idx):
            torso = (P if base == 0 else C)[..., idx]
            out[..., idx] = _limb_frame(name, torso, bones[:, bone][:, idx])
    return out


def _local_directions_soa(bones, frames_=None, lengths=None):
    """(3, 17, N) bones -> (3, 17, N) unit directions in the frames they are expressed in (root = 0).

    ``frames_`` (7, 3, 3, N) and bone ``lengths`` (17, N) may be passed when already computed.
    """
    F = _frames_soa(bones) if frames_ is None else frames_
    u = bones / np.maximum(_norm(bones) if lengths is None else lengths, _EPS)
    out = np.zeros_like(u)
    for f, group in enumerate(_FRAME_GROUPS):  # seven frames, each with its group of bones
        out[:, group] = _apply(F[f], u[:, group])
    return out


_FRAME_GROUPS = [np.flatnonzero(FRAME_OF_BONE == f) for f in range(len(FRAMES))]


def frames_from_bones(bones: np.ndarray) -> np.ndarray:
    """(N, 17, 3) bones -> (N, 7, 3, 3) frames (rows = axes in world), in the order of :data:`FRAMES`."""
    return np.ascontiguousarray(_frames_soa(to_soa(bones)).transpose(3, 0, 1, 2))


def frames(poses: np.ndarray) -> np.ndarray:
    """(N, 17, 3) joints -> (N, 7, 3, 3) frames; see the module docstring."""
    return frames_from_bones(to_bones(poses))


def local_directions(bones: np.ndarray) -> np.ndarray:
    """Unit direction of every bone in the frame it is expressed in: (N, 17, 3) bones -> (N, 17, 3).

    Row 0 (the root) is zero.
    """
    return from_soa(_local_directions_soa(to_soa(bones)))


# ---------------------------------------------------------------------- draws
@dataclass
class CrossoverDraws:
    """Random numbers of one batch of crossovers: partner (N,) row of parent B, joint (N,) crossover joint."""

    partner: np.ndarray
    joint: np.ndarray


@dataclass
class LimbMutationDraws:
    """joint (N,) rotated joint, axis (N, 3) unit rotation axes, angle (N,) radians."""

    joint: np.ndarray
    axis: np.ndarray
    angle: np.ndarray


@dataclass
class GlobalRotationDraws:
    """yaw (N,) radians about +Z; tilt_axis (N, 3) horizontal unit axes; tilt (N,) radians."""

    yaw: np.ndarray
    tilt_axis: np.ndarray
    tilt: np.ndarray


@dataclass
class BoneLengthDraws:
    """factor (N, 17) multipliers of every bone length (column 0, the root, is 1)."""

    factor: np.ndarray


def random_unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3) directions uniform on the sphere."""
    v = rng.normal(size=(n, 3))
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), _EPS)


def draw_crossover(rng: np.random.Generator, parent: np.ndarray, population_size: int,
                   *, joints=LIMB_JOINTS) -> CrossoverDraws:
    """Partners (a row of the population other than ``parent`` where possible) and crossover joints."""
    parent = np.asarray(parent, dtype=np.int64)
    n = len(parent)
    if population_size > 1:
        # uniform over the other rows: draw from size-1 values and skip the parent's own row
        partner = rng.integers(0, population_size - 1, n)
        partner = partner + (partner >= parent)
    else:
        partner = np.zeros(n, dtype=np.int64)
    joint = np.asarray(joints, dtype=np.int64)[rng.integers(0, len(joints), n)]
    return CrossoverDraws(partner=partner.astype(np.int64), joint=joint)


def draw_limb_mutation(rng: np.random.Generator, n: int, *, sigma_deg: float, joints=LIMB_JOINTS) -> LimbMutationDraws:
    """Uniform joint of ``joints``, uniform axis, angle ~ N(0, sigma_deg^2) (degrees; stored in radians)."""
    joint = np.asarray(joints, dtype=np.int64)[rng.integers(0, len(joints), n)]
    axis = random_unit_vectors(rng, n)
    angle = np.deg2rad(sigma_deg) * rng.normal(size=n)
    return LimbMutationDraws(joint=joint, axis=axis, angle=angle)


def draw_global_rotation(rng: np.random.Generator, n: int, *, yaw_deg: float, tilt_deg: float) -> GlobalRotationDraws:
    """Yaw uniform in [-yaw_deg, yaw_deg]; tilt uniform in [-tilt_deg, tilt_deg] about a uniform horizontal axis."""
    yaw = np.deg2rad(rng.uniform(-yaw_deg, yaw_deg, n))
    phi = rng.uniform(0.0, 2 * np.pi, n)
    tilt_axis = np.stack([np.cos(phi), np.sin(phi), np.zeros(n)], axis=1)
    tilt = np.deg2rad(rng.uniform(-tilt_deg, tilt_deg, n))
    return GlobalRotationDraws(yaw=yaw, tilt_axis=tilt_axis, tilt=tilt)


def draw_bone_length(rng: np.random.Generator, n: int, *, scale: float, symmetric: bool = True) -> BoneLengthDraws:
    """Factors uniform in [1 - scale, 1 + scale] per bone; left and right twins share one when ``symmetric``."""
    factor = 1.0 + rng.uniform(-scale, scale, (n, N_JOINTS))
    if symmetric:
        # a right bone takes its left twin's factor (twins are listed once each in flip_pairs)
        for a, b in H36M17.flip_pairs:
            factor[:, b] = factor[:, a]
    factor[:, 0] = 1.0
    return BoneLengthDraws(factor=factor)


# ---------------------------------------------------------------------- operators (component-major)
def _crossover_soa(bones_a, bones_b, joint):
    f = FRAME_OF_BONE[joint]
    Q = _matmul(_transpose(_frame_at_soa(bones_a, f)), _frame_at_soa(bones_b, f))  # F_A^T F_B
    moved = _apply(Q, bones_b)
    moved *= _norm(bones_a) / np.maximum(_norm(moved), _EPS)  # A's bone lengths
    mask = SUBTREE_MASK[joint].T  # (17, N)
    mask[0] = False
    return np.where(mask, moved, bones_a)


def _limb_mutation_soa(bones, joint, axis, angle, applied=None):
    rotated = _apply(_rodrigues(axis, angle), bones)
    mask = SUBTREE_MASK[joint].T
    mask[0] = False
    if applied is not None:
        mask &= applied
    return np.where(mask, rotated, bones)


def _global_rotation_matrix_soa(yaw, tilt_axis, tilt):
    z = np.zeros((3, len(yaw)), dtype=np.result_type(yaw, tilt_axis))
    z[2] = 1.0
    return _matmul(_rodrigues(tilt_axis, tilt), _rodrigues(z, yaw))


def _global_rotation_soa(bones, yaw, tilt_axis, tilt):
    out = _apply(_global_rotation_matrix_soa(yaw, tilt_axis, tilt), bones)
    out[:, 0] = bones[:, 0]  # rotation about the pelvis: the root stays
    return out


def _bone_length_soa(bones, factor):
    factor = np.array(factor, dtype=bones.dtype).T  # (17, N)
    factor[0] = 1.0
    return bones * factor


# ---------------------------------------------------------------------- operators on bones (N, 17, 3)
def crossover_bones(bones_a: np.ndarray, bones_b: np.ndarray, joint: np.ndarray) -> np.ndarray:
    """Children (N, 17, 3) bones: A with the subtree at ``joint`` (N,) posed as in B, at A's bone lengths.

    The subtree of B is rotated by F_A^T F_B, where F is the frame bone ``joint`` is expressed in
    (so its pose relative to that frame is B's), then every bone is rescaled to A's length.
    """
    _check_poses(bones_a, "bones_a"), _check_poses(bones_b, "bones_b")
    joint = np.asarray(joint, dtype=np.int64)
    if np.any(joint < 1) or np.any(joint >= N_JOINTS):
        raise ValueError("crossover joints must be non-root H36M17 joints (1..16)")
    return from_soa(_crossover_soa(to_soa(bones_a), to_soa(bones_b), joint))


def limb_mutation_bones(bones: np.ndarray, draws: LimbMutationDraws) -> np.ndarray:
    """Rotate bone ``joint`` and its subtree rigidly about its parent joint: (N, 17, 3) -> (N, 17, 3)."""
    return from_soa(_limb_mutation_soa(to_soa(bones), np.asarray(draws.joint, dtype=np.int64),
                                       np.asarray(draws.axis, dtype=np.float64).T, draws.angle))


def global_rotation_matrix(draws: GlobalRotationDraws) -> np.ndarray:
    """(N, 3, 3) = R_tilt @ R_yaw (yaw about +Z first, then the tilt about a horizontal axis)."""
    R = _global_rotation_matrix_soa(draws.yaw, np.asarray(draws.tilt_axis, dtype=np.float64).T, draws.tilt)
    return np.ascontiguousarray(R.transpose(2, 0, 1))


def global_rotation_bones(bones: np.ndarray, draws: GlobalRotationDraws) -> np.ndarray:
    """Rotate every bone about the pelvis (the root position stays): (N, 17, 3) -> (N, 17, 3)."""
    return from_soa(_global_rotation_soa(to_soa(bones), draws.yaw, np.asarray(draws.tilt_axis, dtype=np.float64).T, draws.tilt))


def bone_length_mutation_bones(bones: np.ndarray, draws: BoneLengthDraws) -> np.ndarray:
    """Scale every bone (not the root position) by ``draws.factor`` (N, 17): (N, 17, 3) -> (N, 17, 3)."""
    return from_soa(_bone_length_soa(to_soa(bones), draws.factor))


# ---------------------------------------------------------------------- operators on joints (N, 17, 3)
def crossover(poses_a: np.ndarray, poses_b: np.ndarray, joint: np.ndarray, *, ground: bool = True) -> np.ndarray:
    """Joints (N, 17, 3) of the crossover children of A and B at ``joint`` (N,); re-grounded on A."""
    child = from_bones(crossover_bones(to_bones(poses_a), to_bones(poses_b), joint))
    return reground(child, poses_a) if ground else child


def limb_mutation(poses: np.ndarray, draws: LimbMutationDraws, *, ground: bool = True) -> np.ndarray:
    child = from_bones(limb_mutation_bones(to_bones(poses), draws))
    return reground(child, poses) if ground else child


def global_rotation(poses: np.ndarray, draws: GlobalRotationDraws, *, ground: bool = True) -> np.ndarray:
    child = from_bones(global_rotation_bones(to_bones(poses), draws))
    return reground(child, poses) if ground else child


def bone_length_mutation(poses: np.ndarray, draws: BoneLengthDraws, *, ground: bool = True) -> np.ndarray:
    child = from_bones(bone_length_mutation_bones(to_bones(poses), draws))
    return reground(child, poses) if ground else child


# ---------------------------------------------------------------------- one generation of children
OPERATOR_NAMES = ("crossover", "limb_mutation", "bone_length", "global_rotation")
# name of every combination of operators (bit i set = OPERATOR_NAMES[i] applied), joined with '+'
_COMBO_NAMES = np.array(["+".join(n for i, n in enumerate(OPERATOR_NAMES) if code >> i & 1)
                         for code in range(1 << len(OPERATOR_NAMES))])


@dataclass
class OperatorConfig:
    """Rates and magnitudes of the four operators (angles in degrees, scales as fractions).

    Each child starts as a copy of one parent; each operator is applied with its rate, in the
    order crossover, limb mutation, bone-length mutation, global rotation. A child that drew none
    gets exactly one, chosen with probabilities proportional to the rates (no child is a copy).
    """

    crossover_rate: float = 0.5
    crossover_joints: tuple[int, ...] = LIMB_JOINTS
    limb_rate: float = 0.5
    limb_sigma_deg: float = 20.0
    limb_joints: tuple[int, ...] = LIMB_JOINTS
    bone_length_rate: float = 0.2
    bone_length_scale: float = 0.08
    bone_length_symmetric: bool = True
    global_rate: float = 0.3
    yaw_deg: float = 180.0
    tilt_deg: float = 10.0

    def __post_init__(self):
        rates = self.rates
        if np.any(rates < 0) or np.any(rates > 1) or rates.sum() <= 0:
            raise ValueError(f"operator rates must lie in [0, 1] and not all be 0, got {rates.tolist()}")
        for name in ("crossover_joints", "limb_joints"):
            joints = tuple(int(j) for j in getattr(self, name))
            if not joints or min(joints) < 1 or max(joints) >= N_JOINTS:
                raise ValueError(f"{name} must list non-root H36M17 joints (1..16), got {joints}")
            object.__setattr__(self, name, joints)

    @property
    def rates(self) -> np.ndarray:
        """(4,) rates in the order of :data:`OPERATOR_NAMES`."""
        return np.array([self.crossover_rate, self.limb_rate, self.bone_length_rate, self.global_rate], dtype=np.float64)

    @classmethod
    def preset(cls, name: str, **overrides) -> "OperatorConfig":
        """A named set of rates and magnitudes (:data:`OPERATOR_PRESETS`), with ``overrides``."""
        if name not in OPERATOR_PRESETS:
            raise ValueError(f"unknown operator preset {name!r}; known: {', '.join(OPERATOR_PRESETS)}")
        return cls(**{**OPERATOR_PRESETS[name], **overrides})


# Named operator settings. "tagnet": the evolution defaults of EvoSkeleton (Li et al., CVPR 2020,
# whose lifter is TAG-Net), as its public code sets them, mapped onto these operators: crossover
# of a random limb subtree always, local limb mutation rate 0.3 with 10 deg, bone-length mutation
# rate 0.5, whole-skeleton rotation rate 0.1. Not identical: there the rotation is a Gaussian angle
# about a random axis (here a yaw within 60 deg and a tilt within 30) and bone lengths are replaced
# by hand-made templates (here scaled by 8 %); its joint-angle limits (Akhter & Black's model data)
# are not available here, the learned prior stands in. It breeds 10 % of the population a
# generation (``EvolutionConfig.offspring_ratio`` 0.1; benchmarks/add_tagnet.json has both).
OPERATOR_PRESETS: dict[str, dict] = {
    "default": {},
    "tagnet": {"crossover_rate": 1.0, "limb_rate": 0.3, "limb_sigma_deg": 10.0, "bone_length_rate": 0.5,
               "global_rate": 0.1, "yaw_deg": 60.0, "tilt_deg": 30.0},
}


@dataclass
class GenerationDraws:
    """Every random number one generation of ``n`` children needs, drawn in batched calls.

    parent (n,) population row of the first parent; applied (n, 4) bool, which operators act on
    each child (order of :data:`OPERATOR_NAMES`). The operator draws cover all n children; only
    the rows where the operator is applied are used.
    """

    parent: np.ndarray
    applied: np.ndarray
    crossover: CrossoverDraws
    limb: LimbMutationDraws
    bone_length: BoneLengthDraws
    global_rotation: GlobalRotationDraws

    def __len__(self) -> int:
        return len(self.parent)

    @property
    def operator(self) -> np.ndarray:
        """(n,) operator names, combinations joined with '+' ("crossover+global_rotation")."""
        code = self.applied.astype(np.int64) @ (1 << np.arange(len(OPERATOR_NAMES)))
        return _COMBO_NAMES[code]

    @property
    def partner(self) -> np.ndarray:
        """(n,) population row of the second parent, -1 where no crossover happened."""
        return np.where(self.applied[:, 0], self.crossover.partner, -1)


def take(draws, index):
    """The rows ``index`` of a draws dataclass (every array field is indexed along axis 0)."""
    return type(draws)(**{k: v[index] if isinstance(v, np.ndarray) else take(v, index)
                          for k, v in vars(draws).items()})


def draw_generation(rng: np.random.Generator, population_size: int, n_children: int,
                    config: OperatorConfig | None = None) -> GenerationDraws:
    """Draw everything ``n_children`` children of a population of ``population_size`` need."""
    config = OperatorConfig() if config is None else config
    if population_size < 1:
        raise ValueError("the population is empty")
    n = int(n_children)
    parent = rng.integers(0, population_size, n)
    rates = config.rates
    applied = rng.random((n, len(rates))) < rates
    forced = rng.choice(len(rates), size=n, p=rates / rates.sum())
    none = ~applied.any(axis=1)
    applied[np.flatnonzero(none), forced[none]] = True
    if population_size < 2:
        applied[:, 0] = False  # no partner to cross with
        lone = ~applied.any(axis=1)
        applied[lone, 1] = True
    return GenerationDraws(
        parent=parent,
        applied=applied,
        crossover=draw_crossover(rng, parent, population_size, joints=config.crossover_joints),
        limb=draw_limb_mutation(rng, n, sigma_deg=config.limb_sigma_deg, joints=config.limb_joints),
        bone_length=draw_bone_length(rng, n, scale=config.bone_length_scale, symmetric=config.bone_length_symmetric),
        global_rotation=draw_global_rotation(rng, n, yaw_deg=config.yaw_deg, tilt_deg=config.tilt_deg),
    )


def make_children_soa(population: np.ndarray, draws: GenerationDraws, *, ground: bool = True,
                      dtype=np.float64) -> np.ndarray:
    """Joints of the children ``draws`` describe, component-major (3, 17, n) of ``dtype``, mm.

    ``population`` (P, 17, 3) joints in mm. Batched over the children: parents are gathered
    row-wise from the (P, 17, 3) array (a pose is a few cache lines) and only then turned
    component-major. Children are worked on with the crossover ones first (so crossover, the
    costly operator, runs on one contiguous slice) and put back in draw order at the end; the
    other operators run on every child with neutral parameters (angle 0, factor 1, empty subtree
    mask) where they do not apply, which leaves those children bit-for-bit unchanged.
    Re-grounded on the first parent.
    """
    population = _check_poses(population, "population")
    cast = lambda a: np.asarray(a, dtype=dtype)  # noqa: E731
    applied = draws.applied
    order = np.argsort(~applied[:, 0], kind="stable")  # crossover children first
    n_cross = int(applied[:, 0].sum())
    first = to_soa(population[draws.parent[order]], dtype)
    child = _bones_soa(first)
    if n_cross:
        rows = order[:n_cross]
        partner = _bones_soa(to_soa(population[draws.crossover.partner[rows]], dtype))
        child[..., :n_cross] = _crossover_soa(child[..., :n_cross], partner, draws.crossover.joint[rows])
    on = applied[order]
    m = draws.limb
    if on[:, 1].any():
        child = _limb_mutation_soa(child, m.joint[order], cast(m.axis[order].T), cast(np.where(on[:, 1], m.angle[order], 0.0)),
                                   applied=on[:, 1])
    if on[:, 2].any():
        child = _bone_length_soa(child, np.where(on[:, 2:3], draws.bone_length.factor[order], 1.0))
    if on[:, 3].any():
        g = draws.global_rotation
        child = _global_rotation_soa(child, cast(np.where(on[:, 3], g.yaw[order], 0.0)), cast(g.tilt_axis[order].T),
                                     cast(np.where(on[:, 3], g.tilt[order], 0.0)))
    joints = _joints_soa(child)
    if ground:
        joints[2] += first[2].min(axis=0) - joints[2].min(axis=0)  # lowest joint as the first parent's
    return np.take(joints, np.argsort(order), axis=2)  # back to draw order


def make_children(population: np.ndarray, draws: GenerationDraws, *, ground: bool = True) -> np.ndarray:
    """Joints (n, 17, 3) float64 mm of the children ``draws`` describe, from population joints (P, 17, 3).

    Batched: one call per operator on the children it applies to. Re-grounded on the first parent.
    """
    return from_soa(make_children_soa(population, draws, ground=ground))
