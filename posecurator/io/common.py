"""Helpers shared by the motion-capture readers: file opening, rotations, forward kinematics,
units, up axis, frame-rate resampling, floor, and turning source joints into a target pose set.

Conventions used throughout:

* Rotation matrices act on column vectors (``v_parent = R @ v_child``).
* Euler angles are in degrees in the files; an order string such as ``"ZXY"`` lists the axes in
  the order the channels appear and means ``R = Rz(a0) @ Rx(a1) @ Ry(a2)`` (BVH convention).
* Kinematic trees are given by a ``parents`` array in topological order (parent index < child
  index, -1 for the root).
"""

from __future__ import annotations

import gzip
import math
import os
import reprlib
import warnings
import zlib
from pathlib import Path

import numpy as np

from posecurator.errors import DataError, MappingError
from posecurator.poseset import (  # noqa: F401  (the limits and npz access are re-exported for the readers)
    MAX_ABS_MM, MAX_ABS_PX, MAX_FPS, MIN_FPS, PoseSet, read_npz_arrays, read_npz_headers,
)
from posecurator.skeleton.mapping import get_mapping

GZIP_MAGIC = b"\x1f\x8b"

# Metres per length unit of the unit names a reader understands. "asf" is the CMU/HDM05 ASF length
# unit (":units length 0.45" = 1/0.45 inch), which some BVH conversions of CMU data keep.
UNIT_SCALES: dict[str, float] = {
    "m": 1.0,
    "cm": 0.01,
    "mm": 0.001,
    "inch": 0.0254,
    "asf": 0.0254 / 0.45,
}
# A standing adult is between these heights (metres); the unit guess aims at their geometric middle.
PLAUSIBLE_HEIGHT_M = (1.4, 2.0)
_TYPICAL_HEIGHT_M = math.sqrt(PLAUSIBLE_HEIGHT_M[0] * PLAUSIBLE_HEIGHT_M[1])

# Fraction of the standing height that the chain ankle-knee-hip + pelvis-spine-thorax-neck-head of
# the 17-joint target spans (the ankle is above the sole; the hip is beside, not above, the pelvis).
# Measured on HDM05, whose ASF files give their units: 0.93-0.95.
_CHAIN_TO_HEIGHT = 0.94


# Any number a mocap file stores (angles in degrees, lengths in its own units) beyond this is
# corrupt: bounding the raw values first keeps forward kinematics free of overflow, and the
# result is checked against MAX_ABS_MM after the unit conversion anyway.
MAX_ABS_RAW = 1e7


# ---------------------------------------------------------------------- validation
class _ShortRepr(reprlib.Repr):
    """reprlib that never walks a huge container and writes numpy scalars as Python values."""

    def repr1(self, x, level):
        if isinstance(x, np.generic):
            x = x.item()
        elif isinstance(x, np.ndarray):
            return f"<array {x.shape} {x.dtype}>" if x.size > 6 else self.repr1(x.tolist(), level)
        return super().repr1(x, level)


_SHORT = _ShortRepr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict, _SHORT.maxset = 2, 4, 4, 3, 3
_SHORT.maxstring, _SHORT.maxlong, _SHORT.maxother = 60, 30, 60


def short_value(value, limit: int = 40) -> str:
    """A value as it may appear in a one-line error message: Python-style (numpy scalars and
    small arrays converted first, so never ``np.str_('...')``), one line, at most ``limit``
    characters (long strings, numbers and containers are cut with "...")."""
    text = _SHORT.repr(value).replace("\n", " ")
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def one_line(error, limit: int = 120) -> str:
    """An exception (or text) as one short line, for wrapping a library's message in a DataError."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_int(value) -> bool:
    """A JSON/Python integer (bool is not one)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value) -> bool:
    """A JSON/Python real number (bool is not one; NaN and inf are, check them separately)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def check_fps(path, fps, *, what: str = "frame rate", line: int | None = None) -> float:
    """``fps`` as a float when it is a number in [MIN_FPS, MAX_FPS], else DataError."""
    if not is_number(fps) or not MIN_FPS <= fps <= MAX_FPS:  # also False for NaN
        raise DataError(path, f"{what} must be a number of frames per second in [{MIN_FPS:g}, {MAX_FPS:g}], "
                              f"got {short_value(fps)}", line=line)
    return float(fps)


def check_real(path, arr: np.ndarray, what: str, *, kinds: str = "fiu") -> np.ndarray:
    """DataError unless ``arr`` holds real numbers (dtype kind in ``kinds``: no complex, strings,
    booleans, objects or records, which a cast would silently turn into something else)."""
    if arr.dtype.kind not in kinds:
        want = "integers" if "f" not in kinds else "real numbers"
        raise DataError(path, f"{what} must hold {want}, not {arr.dtype}")
    return arr


def check_coordinates(path, coords: np.ndarray, limit: float, *, what: str, unit: str = "mm",
                      row_name=None, mask: np.ndarray | None = None) -> None:
    """DataError naming the first row with a NaN/infinite coordinate or one beyond ``limit``.

    coords: (N, ..., D); mask: (N, ...) bool of the points that must be checked (None: all);
    row_name: i -> how the message names row i (default "sample i")."""
    coords = np.asarray(coords)
    if coords.size == 0:
        return
    with np.errstate(invalid="ignore", over="ignore"):
        nonfinite = ~np.isfinite(coords).all(axis=-1)
        beyond = (np.abs(coords) > limit).any(axis=-1) & ~nonfinite
    for bad, problem in ((nonfinite, "a NaN or infinite coordinate"), (beyond, f"a coordinate beyond {limit:g} {unit}")):
        if mask is not None:
            bad = bad & mask
        per_row = bad.reshape(len(bad), -1).any(axis=1)
        if per_row.any():
            i = int(np.argmax(per_row))
            name = row_name(i) if row_name is not None else f"sample {i}"
            raise DataError(path, f"{what}: {name} has {problem}")


def check_raw_values(path, values: np.ndarray, what: str, *, line=None) -> None:
    """DataError when a mocap file's numbers (``values`` any shape) are not finite or beyond MAX_ABS_RAW."""
    with np.errstate(invalid="ignore", over="ignore"):
        ok = np.isfinite(values) & (np.abs(values) <= MAX_ABS_RAW)
    if not ok.all():
        bad = np.asarray(values).reshape(-1)[int(np.argmax(~ok.reshape(-1)))]
        problem = "is NaN or infinite" if not np.isfinite(bad) else f"is beyond {MAX_ABS_RAW:g}"
        raise DataError(path, f"{what}: value {short_value(bad)} {problem} (corrupt file?)", line=line)


def check_poseset(path, ps: PoseSet, *, first_row: int = 0) -> None:
    """What every reader's result must satisfy (import_path checks each file's): a frame rate in
    [MIN_FPS, MAX_FPS], finite 3D within MAX_ABS_MM, finite labelled 2D within MAX_ABS_PX.
    ``first_row``: the row of the file ``ps`` starts at (a chunk of a stored set), for the message."""
    check_fps(path, ps.fps)
    # the same test as PoseSet.check_finite (labelled 2D only), with a message free of numpy reprs
    row = lambda i: f"sample {first_row + i} (clip {short_value(str(ps.clip[i]), 60)}, frame {int(ps.frame[i])})"  # noqa: E731
    if ps.joints3d is not None:
        check_coordinates(path, ps.joints3d, MAX_ABS_MM, what="joints3d", row_name=row)
    if ps.joints2d is not None:
        labelled = None if ps.visibility is None else ps.visibility > 0
        check_coordinates(path, ps.joints2d, MAX_ABS_PX, what="joints2d", unit="px", row_name=row, mask=labelled)


# ---------------------------------------------------------------------- files
def read_text(path: str | os.PathLike) -> str:
    """The text of a plain or gzip-compressed file (detected by its magic bytes, not its name),
    with CRLF and CR line endings turned into LF. Bytes that are not UTF-8 (e.g. Latin-1 comments
    in HDM05 files) are decoded as Latin-1 so that nothing fails on a comment."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(path, f"cannot read file: {e.strerror or e}") from None
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(path, f"corrupt gzip data: {e}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def strip_suffixes(name: str) -> str:
    """File name without its format suffixes: ``a.bvh.gz`` -> ``a``, ``b.amc`` -> ``b``."""
    for suffix in (".gz",):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    stem, dot, ext = name.rpartition(".")
    return stem if dot else name


def parse_floats(text: str, *, path, what: str) -> np.ndarray:
    """All whitespace-separated numbers of ``text`` as float64 (fast C parser).

    Returns (K,). Raises DataError when a token is not a number (the caller finds the line)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        try:
            return np.fromstring(text, dtype=np.float64, sep=" ")
        except (ValueError, DeprecationWarning):
            raise DataError(path, f"{what}: found a token that is not a number") from None


# ---------------------------------------------------------------------- rotations
def axis_rotations(axis: str, angles_rad: np.ndarray) -> np.ndarray:
    """Rotation matrices about one coordinate axis.

    axis: "X", "Y" or "Z"; angles_rad: (...,) radians. Returns (..., 3, 3), right-handed
    (a positive angle turns Y towards Z about X, Z towards X about Y, X towards Y about Z)."""
    a = np.asarray(angles_rad, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    out = np.zeros(a.shape + (3, 3))
    i = "XYZ".index(axis.upper())
    j, k = (i + 1) % 3, (i + 2) % 3
    out[..., i, i] = 1.0
    out[..., j, j] = c
    out[..., k, k] = c
    out[..., j, k] = -s
    out[..., k, j] = s
    return out


def euler_to_matrix(angles_deg: np.ndarray, order: str) -> np.ndarray:
    """Rotation matrices from Euler angles in degrees.

    angles_deg: (..., len(order)); order: axes in channel order, e.g. "ZXY", meaning
    ``R = Rz(angles[..., 0]) @ Rx(angles[..., 1]) @ Ry(angles[..., 2])``. Returns (..., 3, 3)."""
    angles = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    if angles.shape[-1] != len(order):
        raise ValueError(f"{len(order)} axes in order {order!r} but angles of shape {angles.shape}")
    out = None
    for n, axis in enumerate(order):
        r = axis_rotations(axis, angles[..., n])
        out = r if out is None else out @ r
    if out is None:
        out = np.broadcast_to(np.eye(3), angles.shape[:-1] + (3, 3)).copy()
    return out


def euler_to_matrix_reference(angles_deg, order: str) -> np.ndarray:
    """Plain per-rotation reference of :func:`euler_to_matrix` for ONE set of angles (len(order),)."""
    m = np.eye(3)
    for axis, a in zip(order, angles_deg):
        a = math.radians(float(a))
        c, s = math.cos(a), math.sin(a)
        r = {
            "X": [[1, 0, 0], [0, c, -s], [0, s, c]],
            "Y": [[c, 0, s], [0, 1, 0], [-s, 0, c]],
            "Z": [[c, -s, 0], [s, c, 0], [0, 0, 1]],
        }[axis.upper()]
        m = m @ np.array(r, dtype=np.float64)
    return m


# ---------------------------------------------------------------------- forward kinematics
def forward_kinematics(parents: np.ndarray, local_rotations: np.ndarray, local_translations: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Global joint positions and rotations of a kinematic tree, vectorised over frames.

    parents: (J,) int, topological (parents[j] < j), -1 for the root(s).
    local_rotations: (F, J, 3, 3), each joint's rotation relative to its parent's frame.
    local_translations: (F, J, 3) or (J, 3), each joint's origin in its parent's frame (for a root:
    in the world frame).
    Returns positions (F, J, 3) and global rotations (F, J, 3, 3), same units as the translations.
    Loops over joints only: ``R_j = R_parent @ L_j`` and ``p_j = p_parent + R_parent @ t_j``."""
    parents = np.asarray(parents)
    n_frames, n_joints = local_rotations.shape[:2]
    if local_rotations.shape != (n_frames, n_joints, 3, 3):
        raise ValueError(f"local_rotations must be (F, J, 3, 3), got {local_rotations.shape}")
    trans = np.broadcast_to(local_translations, (n_frames, n_joints, 3))
    if parents.shape != (n_joints,):
        raise ValueError(f"parents must be ({n_joints},), got {parents.shape}")
    rotations = np.empty((n_frames, n_joints, 3, 3))
    positions = np.empty((n_frames, n_joints, 3))
    for j in range(n_joints):
        p = int(parents[j])
        if p < 0:
            rotations[:, j] = local_rotations[:, j]
            positions[:, j] = trans[:, j]
        else:
            if p >= j:
                raise ValueError(f"parents must be topological; joint {j} has parent {p}")
            rotations[:, j] = rotations[:, p] @ local_rotations[:, j]
            positions[:, j] = positions[:, p] + np.einsum("fab,fb->fa", rotations[:, p], trans[:, j])
    return positions, rotations


def forward_kinematics_reference(parents, local_rotations, local_translations) -> np.ndarray:
    """Plain per-frame, per-joint reference of :func:`forward_kinematics` (positions only).

    Same shapes; slow on purpose (Python loops over frames) so that tests can compare."""
    local_rotations = np.asarray(local_rotations)
    n_frames, n_joints = local_rotations.shape[:2]
    trans = np.broadcast_to(local_translations, (n_frames, n_joints, 3))
    out = np.zeros((n_frames, n_joints, 3))
    for f in range(n_frames):
        glob_r = [None] * n_joints
        for j in range(n_joints):
            p = int(parents[j])
            if p < 0:
                glob_r[j] = local_rotations[f, j]
                out[f, j] = trans[f, j]
            else:
                glob_r[j] = glob_r[p].dot(local_rotations[f, j])
                out[f, j] = out[f, p] + glob_r[p].dot(trans[f, j])
    return out


# ---------------------------------------------------------------------- units, up axis, fps, floor
def metres_per_unit(units: str | float) -> float:
    """Metres per source length unit from a unit name (see UNIT_SCALES) or a number."""
    if isinstance(units, (int, float)) and not isinstance(units, bool):
        if not units > 0:
            raise ValueError(f"units must be positive metres per unit, got {units}")
        return float(units)
    key = str(units).strip().lower()
    aliases = {"metre": "m", "meter": "m", "metres": "m", "meters": "m", "centimetres": "cm",
               "centimeters": "cm", "millimetres": "mm", "millimeters": "mm", "in": "inch",
               "inches": "inch"}
    key = aliases.get(key, key)
    if key not in UNIT_SCALES:
        raise ValueError(f"unknown units {units!r}; use one of {', '.join(UNIT_SCALES)} or metres per unit")
    return UNIT_SCALES[key]


def unit_label(units: str | float) -> str:
    """A unit's name: the UNIT_SCALES name for a number that is one of them, else '<x> m'."""
    scale = metres_per_unit(units)
    for name, value in UNIT_SCALES.items():
        if math.isclose(scale, value, rel_tol=1e-9):
            return name
    return f"{scale:g} m"


def standing_height_raw(joints17: np.ndarray) -> float:
    """Standing height of a body in its own (unknown) length units, independent of its pose.

    joints17: (F, 17, 3) in the H36M17 layout. Sums the median lengths of the bones from ankle to
    head top (leg averaged over both sides) and divides by the fraction of the height they span,
    so a crouching or lying clip gives the same answer as a standing one."""
    def length(a, b):
        return float(np.median(np.linalg.norm(joints17[:, a] - joints17[:, b], axis=-1)))
    leg = 0.5 * (length(3, 2) + length(2, 1) + length(6, 5) + length(5, 4))
    trunk = length(0, 7) + length(7, 8) + length(8, 9) + length(9, 10)
    return (leg + trunk) / _CHAIN_TO_HEIGHT


def guess_units(height_raw: float) -> tuple[str, float]:
    """The unit name (of UNIT_SCALES) that makes a standing height most human (nearest, in ratio,
    to the middle of PLAUSIBLE_HEIGHT_M). Consecutive candidates differ by at least 2.2x, so the
    plausible range (1.43x wide) holds at most one of them. Returns (name, metres per unit)."""
    if not (height_raw > 0 and np.isfinite(height_raw)):
        raise ValueError(f"cannot guess units from height {height_raw}")
    best = min(UNIT_SCALES, key=lambda u: abs(math.log(height_raw * UNIT_SCALES[u] / _TYPICAL_HEIGHT_M)))
    return best, UNIT_SCALES[best]


_UP_ROTATIONS = {
    # proper rotations taking the signed source up axis to +Z (handedness, hence left/right, kept)
    "+z": np.eye(3),
    "-z": np.array([[1.0, 0, 0], [0, -1, 0], [0, 0, -1]]),
    "+y": np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]),   # Rx(+90): (x, y, z) -> (x, -z, y)
    "-y": np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]),   # Rx(-90)
    "+x": np.array([[0.0, 0, -1], [0, 1, 0], [1, 0, 0]]),   # Ry(-90)
    "-x": np.array([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]]),   # Ry(+90)
}


def normalize_up(up: str) -> str:
    key = str(up).strip().lower()
    if key in ("x", "y", "z"):
        key = "+" + key
    if key not in _UP_ROTATIONS:
        raise ValueError(f"unknown up axis {up!r}; use one of x, y, z, -x, -y, -z or auto")
    return key


def up_rotation(up: str) -> np.ndarray:
    """(3, 3) rotation taking the source's up axis ("y", "z", "-y", ...) to +Z."""
    return _UP_ROTATIONS[normalize_up(up)]


def detect_up(joints17: np.ndarray, *, default: str = "+y") -> str:
    """The source's up axis from a clip in the H36M17 layout (source frame and units).

    joints17: (F, 17, 3). For each frame the signed axis closest to ankles-midpoint -> head is a
    vote. The format's ``default`` wins unless it gets under 20% of the votes (a clip that starts
    lying down must not turn the world on its side); otherwise the majority wins."""
    body_axis = joints17[:, 10] - 0.5 * (joints17[:, 3] + joints17[:, 6])
    dominant = np.argmax(np.abs(body_axis), axis=1)
    positive = body_axis[np.arange(len(body_axis)), dominant] >= 0
    counts = np.bincount(dominant * 2 + positive, minlength=6)
    votes = {f"{'-+'[code % 2]}{'xyz'[code // 2]}": int(c) for code, c in enumerate(counts) if c}
    default = normalize_up(default)
    total = max(1, sum(votes.values()))
    if votes.get(default, 0) >= 0.2 * total or not votes:
        return default
    return max(votes, key=votes.get)


def nominal_fps(fps: float) -> float:
    """A frame rate read from a rounded frame time (1 / 0.0333333 = 30.00003) as the whole
    number it stands for, when within 0.05%; other rates unchanged."""
    whole = round(fps)
    return float(whole) if whole > 0 and abs(fps - whole) <= 5e-4 * fps else float(fps)


def resample_stride(source_fps: float, target_fps: float) -> int:
    """Keep every ``stride``-th frame: round(source / target) when the source is at least 1.5x
    faster than the target (120 -> 30 keeps every 4th frame), else every frame (24 or 30 -> 30)."""
    if not (source_fps > 0 and target_fps > 0):
        raise ValueError(f"frame rates must be positive, got {source_fps} and {target_fps}")
    if source_fps >= 1.5 * target_fps:
        return max(1, int(round(source_fps / target_fps)))
    return 1


def floor_height(z: np.ndarray) -> float:
    """Height of the floor under a clip: the 2nd percentile over frames of each frame's lowest
    point. z: (F, J) heights of every source joint (end sites included, so toes count).
    The percentile ignores a few bad frames; jumps do not lift the floor because most frames of a
    clip touch it."""
    if z.size == 0:
        return 0.0
    return float(np.percentile(z.min(axis=1), 2.0))


# ---------------------------------------------------------------------- source clip -> pose set
def body_mask(parents: np.ndarray, used: list[int]) -> np.ndarray:
    """(J,) bool: the joints in the subtree of the lowest common ancestor of the ``used`` joints.

    Excludes joints above the body (Bandai's static ``joint_Root`` at the origin) and branches
    beside it (props), which must not decide where the floor is."""
    parents = np.asarray(parents)
    n = len(parents)
    if not used:
        return np.ones(n, dtype=bool)

    def chain(j):
        out = []
        while j >= 0:
            out.append(int(j))
            j = parents[j]
        return out

    common = set(chain(used[0]))
    for j in used[1:]:
        common &= set(chain(j))
    lca = max(common, key=lambda j: len(chain(j))) if common else -1
    if lca < 0:
        return np.ones(n, dtype=bool)
    mask = np.zeros(n, dtype=bool)
    mask[lca] = True
    for j in range(n):  # topological order: a child comes after its parent
        if parents[j] >= 0 and mask[parents[j]]:
            mask[j] = True
    return mask


def clip_to_poseset(positions: np.ndarray, names, *, path, rotations: np.ndarray | None = None,
                    parents: np.ndarray | None = None, mapping=None, units=None, file_units=None,
                    up=None, up_default: str = "+y", source_fps: float, stride: int, source: str = "",
                    subject: str = "", activity: str = "", clip: str = "", file_format: str = "") -> PoseSet:
    """Turn source joint positions of one clip into a pose set in the target layout.

    positions: (F, S, 3) world positions of all source joints (End Sites included), in the
    file's length units and axes, already resampled (every ``stride``-th frame of a
    ``source_fps`` clip). names: (S,) source joint names. rotations: (F, S, 3, 3) global joint
    rotations (for mapping points given as ``{joint, offset}``). parents: (S,) the source tree
    (topological); the floor is then found among the body's joints only (:func:`body_mask`).
    Length unit, by priority: ``units`` (the caller's), ``file_units`` (the file says, e.g. ASF
    ``:units``) when it gives a plausible body height, the mapping's ``units`` hint, else a guess
    from the standing height. Up axis: ``up``, the mapping's hint, else :func:`detect_up`.
    Then: rotate the up axis to +Z, millimetres, floor (:func:`floor_height` over the body's
    source joints, End Sites included) at Z = 0.
    Returns a PoseSet (F, 17, 3) float32 with fps = source_fps / stride."""
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[1:] != (len(names), 3):
        raise ValueError(f"positions must be (F, {len(names)}, 3), got {positions.shape}")
    if len(positions) == 0:
        raise DataError(path, "the clip has no frames")
    check_fps(path, source_fps, what="the file's frame rate")
    # the readers bound their raw numbers, so this is a guard: no overflow warning may reach the user
    check_raw_values(path, positions, "joint positions after forward kinematics")
    chosen = get_mapping(mapping, names, path=path)
    joints = chosen.apply(positions, names, rotations=rotations, path=path)   # (F, 17, 3) source units
    height_raw = standing_height_raw(joints)
    notes: list[str] = []   # warned once the clip has passed every check: no warning before an error line
    if not (np.isfinite(height_raw) and height_raw > 0):
        raise DataError(path, "cannot measure the body: mapped bones have zero or non-finite length "
                              f"(mapping {chosen.where()})")

    if units is not None and str(units).lower() != "auto":
        unit_name, scale, how = unit_label(units), metres_per_unit(units), "given"
    elif file_units is not None and 0.9 <= height_raw * metres_per_unit(file_units) <= 2.6:
        unit_name, scale, how = unit_label(file_units), metres_per_unit(file_units), "file"
    elif chosen.units is not None:
        try:
            unit_name, scale, how = unit_label(chosen.units), metres_per_unit(chosen.units), "mapping"
        except ValueError as e:
            raise MappingError(chosen.path, f"{chosen.where()}: {e}") from None
    else:
        unit_name, scale = guess_units(height_raw)
        how = "guessed"
        if file_units is not None:
            notes.append(f"{path}: the file's length unit gives a body {height_raw * metres_per_unit(file_units):.2f} m "
                         f"tall; using {unit_name} instead")
    height_m = height_raw * scale
    if how != "given" and not (PLAUSIBLE_HEIGHT_M[0] * 0.7 <= height_m <= PLAUSIBLE_HEIGHT_M[1] * 1.3):
        notes.append(f"{path}: body is {height_m:.2f} m tall in unit {unit_name}; pass units= if that is wrong")

    if up is not None and str(up).lower() != "auto":
        up_axis, up_how = normalize_up(up), "given"
    elif chosen.up is not None:
        up_axis, up_how = normalize_up(chosen.up), "mapping"
    else:
        up_axis, up_how = detect_up(joints, default=up_default), "detected"
    to_world = up_rotation(up_axis) * (scale * 1000.0)                   # source -> mm, Z up
    if parents is not None:
        weights, virtual_joints, _ = chosen.resolve(names, path=path)
        used = sorted(set(np.flatnonzero(np.abs(weights[:, :len(names)]).sum(0) > 0).tolist()) | set(virtual_joints))
        body = body_mask(parents, used)
    else:
        body = np.ones(len(names), dtype=bool)
    floor = floor_height(positions[:, body] @ to_world[2])               # (F, S_body) heights in mm
    world = joints @ to_world.T
    world[..., 2] -= floor
    # A unit the caller gives is taken at its word (even one that makes the body 100 times too
    # large); only a unit the reader chose must give a body within MAX_ABS_MM of the origin.
    limit = MAX_ABS_MM if how != "given" else 1e3 * MAX_ABS_MM
    check_coordinates(path, world, limit, what=f"joints in millimetres (unit {unit_name})",
                      row_name=lambda i: f"source frame {i * stride + 1}")
    fps_out = source_fps / stride
    attrs = {
        "units": unit_name, "metres_per_unit": scale, "units_from": how, "up": up_axis, "up_from": up_how,
        "source_fps": round(float(source_fps), 6), "stride": int(stride), "mapping": chosen.name,
        "standing_height_m": round(float(height_m), 4), "format": file_format,
    }
    out = PoseSet(joints3d=world.astype(np.float32), source=source, subject=subject, activity=activity,
                  clip=clip, frame=np.arange(len(world), dtype=np.int32), fps=float(fps_out), attrs=attrs)
    out.check_finite(path)
    for note in notes:
        warnings.warn(note, stacklevel=3)
    return out
