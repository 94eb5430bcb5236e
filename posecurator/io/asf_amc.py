"""ASF/AMC reader (Acclaim skeleton + motion, as in the CMU mocap database and HDM05).

ASF: ``:units`` (``length 0.45`` means one length unit is 1/0.45 inch = 0.05644 m; ``angle deg``
or ``rad``), ``:root`` (``order`` of the AMC root values, ``axis`` rotation order,
``position``, ``orientation``), ``:bonedata`` (direction, length, axis with its rotation order,
dof) and ``:hierarchy``. AMC: plain or gzip, LF or CRLF, ``:DEGREES``/``:RADIANS``; a frame is its
number followed by one line per bone with degrees of freedom.

Rotation conventions (those of the Acclaim format and the CMU tools): an order such as ``XYZ``
or the dof list ``rx ry rz`` means the rotations are applied in that order about fixed axes,
i.e. ``R = Rz @ Ry @ Rx``. A bone's local rotation is ``C @ M @ C^-1`` with C from its ``axis``
and M from its AMC values; its global rotation is the parent's times that; the END point of the
bone, ``end_parent + R_global @ (direction * length)``, is the joint position the reader
reports under the bone's name (``root`` is the root position).

Forward kinematics is vectorised over frames (:func:`amc_positions`);
:func:`amc_positions_reference` is the plain per-frame version the tests compare against.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from posecurator.errors import DataError
from posecurator.io.common import (
    MAX_ABS_RAW, clip_to_poseset, euler_to_matrix, euler_to_matrix_reference, forward_kinematics, parse_floats,
    read_text, resample_stride, short_value, strip_suffixes,
)
from posecurator.poseset import PoseSet

INCH_M = 0.0254
_DOF_AXES = {"rx": "X", "ry": "Y", "rz": "Z"}
_ROOT_KEYS = {"tx": ("t", 0), "ty": ("t", 1), "tz": ("t", 2), "rx": ("r", "X"), "ry": ("r", "Y"), "rz": ("r", "Z")}
# ":units length L" means 1/L inch per unit; outside this range the value is corrupt
_LENGTH_UNIT_RANGE = (1e-6, 1e6)
_MAX_NAME = 100


@dataclass
class AsfSkeleton:
    """A parsed ASF file.

    names: (J,) "root" then the bones in topological order; parents: (J,); vectors: (J, 3)
    direction * length of each bone (root: zeros), file length units, rest-pose axes;
    axis_rotations: (J, 3, 3) C of each bone (root: from its orientation); dofs: per joint the
    AMC value names in order ("rx", ... ; root: "tx", ... from ``order``); metres_per_unit;
    angles_in_degrees (the ASF's own angles: axis values)."""

    path: str | None
    names: list[str]
    parents: np.ndarray
    vectors: np.ndarray
    axis_rotations: np.ndarray
    dofs: list[list[str]]
    metres_per_unit: float
    root_position: np.ndarray = field(default_factory=lambda: np.zeros(3))


# ---------------------------------------------------------------------- ASF
def _fixed_axes_rotation(angles_by_axis: dict[str, float], order: str, degrees: bool) -> np.ndarray:
    """R = R_last @ ... @ R_first for rotations applied in ``order`` about fixed axes. (3, 3)"""
    angles = [angles_by_axis[a] for a in order]
    if not degrees:
        angles = list(np.rad2deg(angles))
    return euler_to_matrix(np.array(angles[::-1], dtype=np.float64), order[::-1])


def parse_asf(text: str, *, path=None) -> AsfSkeleton:
    """Parse ASF text (LF line endings)."""
    lines = text.split("\n")
    section = None
    length_value, degrees = 1.0, True
    root = {"order": ["tx", "ty", "tz", "rx", "ry", "rz"], "axis": "XYZ", "position": [0.0, 0, 0],
            "orientation": [0.0, 0, 0]}
    bones: dict[str, dict] = {}
    bone_order: list[str] = []
    children: dict[str, list[str]] = {}
    current: dict | None = None
    in_limits = False

    def err(msg, i):
        return DataError(path, msg, line=i + 1)

    def floats(vals, i, n, what):
        try:
            out = [float(v) for v in vals[:n]]
        except ValueError:
            raise err(f"{what}: {short_value(' '.join(vals))} are not numbers", i) from None
        if len(out) != n:
            raise err(f"{what} needs {n} numbers, got {len(out)}", i)
        if not all(abs(v) <= MAX_ABS_RAW for v in out):  # also False for NaN
            raise err(f"{what}: {short_value(' '.join(vals[:n]))} are not finite or beyond {MAX_ABS_RAW:g}", i)
        return out

    for i, raw in enumerate(lines):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(":"):
            parts = line.split()
            section = parts[0][1:].lower()
            if section == "units" and len(parts) > 1:
                parts = parts[1:]  # ":units length 0.45" on one line
                line = " ".join(parts)
            else:
                continue
        toks = line.split()
        key = toks[0].lower()
        if section == "units":
            if key == "length":
                length_value = floats(toks[1:], i, 1, "units length")[0]
                if not _LENGTH_UNIT_RANGE[0] <= length_value <= _LENGTH_UNIT_RANGE[1]:
                    raise err(f"units length must be between {_LENGTH_UNIT_RANGE[0]:g} and {_LENGTH_UNIT_RANGE[1]:g}, "
                              f"got {short_value(length_value)}", i)
            elif key == "angle":
                if len(toks) < 2 or toks[1].lower() not in ("deg", "rad", "degrees", "radians"):
                    raise err(f"units angle must be deg or rad, got {short_value(' '.join(toks[1:]))}", i)
                degrees = toks[1].lower().startswith("deg")
        elif section == "root":
            if key == "order":
                root["order"] = [t.lower() for t in toks[1:]]
                for t in root["order"]:
                    if t not in _ROOT_KEYS:
                        raise err(f"unknown root order entry {short_value(t)}", i)
                if len(set(root["order"])) != len(root["order"]):
                    raise err("root order repeats an entry", i)
            elif key == "axis":
                root["axis"] = toks[1].upper() if len(toks) > 1 else "XYZ"
                if sorted(root["axis"]) != ["X", "Y", "Z"]:
                    raise err(f"root axis must be a permutation of XYZ, got {short_value(root['axis'])}", i)
            elif key in ("position", "orientation"):
                root[key] = floats(toks[1:], i, 3, f"root {key}")
        elif section == "bonedata":
            if key == "begin":
                current = {"line": i, "dof": [], "axis": [0.0, 0.0, 0.0], "axis_order": "XYZ"}
                in_limits = False
            elif key == "end":
                if current is None:
                    raise err("'end' without 'begin'", i)
                for need in ("name", "direction", "length"):
                    if need not in current:
                        raise err(f"bone ends without {need!r}", i)
                if current["name"] in bones or current["name"] == "root":
                    raise err(f"bone {short_value(current['name'])} defined twice", i)
                bones[current["name"]] = current
                bone_order.append(current["name"])
                current = None
            elif current is None:
                raise err(f"{short_value(toks[0])} outside a bone's begin/end", i)
            elif key == "name":
                current["name"] = toks[1] if len(toks) > 1 else ""
                if not 0 < len(current["name"]) <= _MAX_NAME:
                    raise err(f"bone name must have 1 to {_MAX_NAME} characters, got {short_value(current['name'])}", i)
                in_limits = False
            elif key == "direction":
                current["direction"] = floats(toks[1:], i, 3, "direction")
            elif key == "length":
                current["length"] = floats(toks[1:], i, 1, "length")[0]
                if current["length"] < 0:
                    raise err(f"bone length must not be negative, got {short_value(current['length'])}", i)
            elif key == "axis":
                current["axis"] = floats(toks[1:], i, 3, "axis")
                current["axis_order"] = toks[4].upper() if len(toks) > 4 else "XYZ"
                if sorted(current["axis_order"]) != ["X", "Y", "Z"]:
                    raise err(f"axis order must be a permutation of XYZ, got {short_value(current['axis_order'])}", i)
            elif key == "dof":
                dof = [t.lower() for t in toks[1:]]
                for d in dof:
                    if d not in _DOF_AXES:
                        raise err(f"bone {short_value(current.get('name'))}: dof {short_value(d)} is not supported "
                                  "(rx, ry, rz only)", i)
                if len(set(dof)) != len(dof):
                    raise err(f"bone {short_value(current.get('name'))}: dof repeats an axis", i)
                current["dof"] = dof
            elif key == "limits":
                in_limits = True
            elif key in ("id", "bodymass", "cofmass") or in_limits:
                pass
            else:
                raise err(f"unknown bone keyword {short_value(toks[0])}", i)
        elif section == "hierarchy":
            if key in ("begin", "end"):
                continue
            parent = toks[0]
            if parent != "root" and parent not in bones:
                raise err(f"hierarchy names unknown bone {short_value(parent)}", i)
            for child in toks[1:]:
                if child not in bones:
                    raise err(f"hierarchy names unknown bone {short_value(child)}", i)
                children.setdefault(parent, []).append(child)
    if not bones:
        raise DataError(path, "no :bonedata bones (not an ASF file?)")
    if not children:
        raise DataError(path, "no :hierarchy section")

    # topological order from the hierarchy (breadth-first from the root)
    names, parents = ["root"], [-1]
    frontier = ["root"]
    while frontier:
        nxt = []
        for p in frontier:
            for c in children.get(p, []):
                if c in names:
                    raise DataError(path, f"bone {short_value(c)} has two parents in :hierarchy")
                names.append(c)
                parents.append(names.index(p))
                nxt.append(c)
        frontier = nxt
    unattached = [b for b in bone_order if b not in names]
    if unattached:
        listed = ", ".join(unattached[:5]) + (f" and {len(unattached) - 5} more" if len(unattached) > 5 else "")
        raise DataError(path, f"bones not attached to the root in :hierarchy: {listed}")

    n = len(names)
    vectors = np.zeros((n, 3))
    axis_rot = np.zeros((n, 3, 3))
    dofs: list[list[str]] = [list(root["order"])]
    axis_rot[0] = _fixed_axes_rotation(dict(zip("XYZ", root["orientation"])), root["axis"], degrees)
    for j, name in enumerate(names[1:], start=1):
        b = bones[name]
        d = np.array(b["direction"], dtype=np.float64)
        norm = np.linalg.norm(d)
        vectors[j] = d / norm * b["length"] if norm > 0 else 0.0
        axis_rot[j] = _fixed_axes_rotation(dict(zip("XYZ", b["axis"])), b["axis_order"], degrees)
        dofs.append(b["dof"])
    root_rot = [t for t in root["order"] if t.startswith("r")]
    if len(set(root_rot)) != len(root_rot):
        raise DataError(path, f"root order repeats a rotation: {short_value(root['order'])}")
    return AsfSkeleton(path=None if path is None else os.fspath(path), names=names,
                       parents=np.array(parents, dtype=np.int64), vectors=vectors, axis_rotations=axis_rot,
                       dofs=dofs, metres_per_unit=INCH_M / length_value,
                       root_position=np.array(root["position"], dtype=np.float64))


@lru_cache(maxsize=64)
def _load_asf_cached(path: str, mtime_ns: int, size: int) -> AsfSkeleton:
    return parse_asf(read_text(path), path=path)


def load_asf(path: str | os.PathLike) -> AsfSkeleton:
    """Read and parse an ASF file (plain or gzip); cached per file version, since many AMC files
    share one skeleton."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as e:
        raise DataError(path, f"cannot read ASF skeleton: {e.strerror or e}") from None
    return _load_asf_cached(os.fspath(path), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=256)
def _asf_files(folder: str, mtime_ns: int) -> tuple[tuple[str, Path], ...]:
    """(lower-case name without suffixes, path) of the ASF files in a folder, listed once per
    folder version (a folder of AMC files asks for its skeleton once per file)."""
    out = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        low = entry.name.lower()
        if (low.endswith(".asf") or low.endswith(".asf.gz")) and entry.is_file():
            out.append((strip_suffixes(entry.name).lower(), Path(entry.path)))
    return tuple(out)


def find_asf(amc_path: str | os.PathLike) -> Path:
    """The ASF skeleton of an AMC file.

    Looks, in the AMC's folder, a sibling ``asf/`` folder, ``../asf`` and the parent folder, for
    ``<prefix>.asf`` (or ``.asf.gz``) where prefix is the AMC name cut at an underscore, longest
    first (HDM05 ``HDM_bd_squat1Reps_001_120.amc`` -> ``HDM_bd.asf``; CMU ``01_01.amc`` ->
    ``01.asf``), matching names case-insensitively; else the only ASF in those folders.
    Raises DataError naming the AMC and where it looked."""
    amc_path = Path(amc_path)
    stem = strip_suffixes(amc_path.name)
    parts = stem.split("_")
    prefixes = ["_".join(parts[:k]) for k in range(len(parts), 0, -1)]
    folder = amc_path.parent
    dirs = []
    for d in (folder, folder / "asf", folder.parent / "asf", folder.parent):
        if d.is_dir() and d.resolve() not in [x.resolve() for x in dirs]:
            dirs.append(d)
    found: dict[str, Path] = {}
    for d in dirs:
        for key, f in _asf_files(os.fspath(d), d.stat().st_mtime_ns):
            found.setdefault(key, f)
        for prefix in prefixes:
            if prefix.lower() in found:
                return found[prefix.lower()]
    if len(found) == 1:
        return next(iter(found.values()))
    # the shortest candidate names (the likely ones: HDM_bk.asf, 01.asf) and the folders, kept short:
    # a long AMC name has many prefixes
    shown = [f"{p[:60]}.asf" for p in prefixes[-4:]]
    looked = ("..., " if len(prefixes) > 4 else "") + ", ".join(shown)
    where = ", ".join(str(d) for d in dirs)
    extra = f" (found {len(found)} other ASF files there, none matching)" if found else ""
    raise DataError(amc_path, f"no ASF skeleton for this AMC: looked for {looked} in {where}{extra}; "
                              "pass the skeleton with asf=...")


# ---------------------------------------------------------------------- AMC
@dataclass
class AmcData:
    skeleton: AsfSkeleton
    values: list[np.ndarray]   # per joint (F, len(dofs[j])) in file units (degrees / radians, lengths)
    degrees: bool
    n_frames: int


_RATE_SUFFIXES = ("24", "25", "30", "50", "60", "100", "120", "240", "480")
_NAME_AT_LINE_START = re.compile(r"(?m)^[ \t]*([A-Za-z_][^\s]*)")


def parse_amc(text: str, skeleton: AsfSkeleton, *, path=None) -> AmcData:
    """Parse AMC text (LF line endings) against its skeleton.

    Fast path: every frame lists the same bones in the same order (true of CMU and HDM05 files),
    so all numbers are parsed at once and reshaped. Otherwise a line-by-line parser checks each
    line and names the bad one."""
    degrees = True
    pos = 0
    # header: comment ('#') and keyword (':') lines before the first frame number
    while pos < len(text):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end + 1
        line = text[pos:end].strip()
        if line and not line.startswith(("#", ":")):
            break
        if line.upper().startswith(":RADIANS"):
            degrees = False
        pos = end
    body = text[pos:]
    first_line = text.count("\n", 0, pos) + 1
    index = {n: j for j, n in enumerate(skeleton.names)}
    fast = _parse_amc_fast(body, skeleton, index, path=path)
    if fast is None or not all((np.abs(v) <= MAX_ABS_RAW).all() for v in fast[0]):  # False for NaN too
        # the line-by-line parser names the bad line (and checks every value is finite)
        fast = _parse_amc_slow(body, skeleton, index, first_line, path=path)
    values, n_frames = fast
    return AmcData(skeleton=skeleton, values=values, degrees=degrees, n_frames=n_frames)


def _parse_amc_fast(body: str, skeleton: AsfSkeleton, index: dict, *, path):
    """All frames at once when every frame has the first frame's bone lines; None otherwise."""
    names = _NAME_AT_LINE_START.findall(body)
    if not names:
        return None
    # the first frame's bone sequence is the template
    first_frame = re.search(r"(?m)^[ \t]*\d+[ \t]*$", body)
    if first_frame is None or first_frame.start() != len(body) - len(body.lstrip()):
        return None
    nxt = re.search(r"(?m)^[ \t]*\d+[ \t]*$", body[first_frame.end():])
    block = body[first_frame.end(): first_frame.end() + nxt.start()] if nxt else body[first_frame.end():]
    template = _NAME_AT_LINE_START.findall(block)
    if not template or len(names) % len(template):
        return None
    n_frames = len(names) // len(template)
    if len(set(template)) != len(template) or any(t not in index for t in template):
        return None
    tiled = np.array(names, dtype=object).reshape(n_frames, len(template))
    if not (tiled == np.array(template, dtype=object)).all():
        return None
    counts = [len(skeleton.dofs[index[t]]) for t in template]
    numbers = _NAME_AT_LINE_START.sub(" ", body)
    try:
        vals = parse_floats(numbers, path=path, what="AMC")
    except DataError:
        return None
    width = 1 + sum(counts)
    if vals.size != n_frames * width:
        return None
    table = vals.reshape(n_frames, width)
    frame_numbers = table[:, 0]
    if not np.array_equal(frame_numbers, frame_numbers[0] + np.arange(n_frames)):
        return None
    values = [np.zeros((n_frames, len(d))) for d in skeleton.dofs]
    col = 1
    for t, c in zip(template, counts):
        values[index[t]] = table[:, col:col + c]
        col += c
    return values, n_frames


def _parse_amc_slow(body: str, skeleton: AsfSkeleton, index: dict, first_line: int, *, path):
    """Line-by-line AMC parser with exact error lines (files that the fast path refuses)."""
    frames: list[dict[int, list[float]]] = []
    frame_lines: list[int] = []
    for i, raw in enumerate(body.split("\n")):
        line = raw.strip()
        lineno = first_line + i
        if not line or line.startswith("#"):
            continue
        toks = line.split()
        if len(toks) == 1 and toks[0].isdigit():
            frames.append({})
            frame_lines.append(lineno)
            continue
        if not frames:
            raise DataError(path, f"expected a frame number, found {short_value(line)}", line=lineno)
        name = toks[0]
        if name not in index:
            raise DataError(path, f"bone {short_value(name)} is not in the ASF skeleton {Path(skeleton.path or '').name}",
                            line=lineno)
        j = index[name]
        try:
            vals = [float(t) for t in toks[1:]]
        except ValueError:
            raise DataError(path, f"bone {name!r}: values {short_value(' '.join(toks[1:]))} are not numbers", line=lineno) from None
        if not all(np.isfinite(vals)):
            raise DataError(path, f"bone {name!r} has NaN or infinite values", line=lineno)
        if not all(abs(v) <= MAX_ABS_RAW for v in vals):
            raise DataError(path, f"bone {name!r} has a value beyond {MAX_ABS_RAW:g} (corrupt file?)", line=lineno)
        if len(vals) != len(skeleton.dofs[j]):
            raise DataError(path, f"bone {name!r} has {len(vals)} values, its ASF dof has {len(skeleton.dofs[j])} "
                                  "(truncated or corrupt file, or the wrong ASF)", line=lineno)
        if j in frames[-1]:
            raise DataError(path, f"bone {name!r} appears twice in one frame", line=lineno)
        frames[-1][j] = vals
    if not frames:
        raise DataError(path, "no frames (not an AMC file, or empty)")
    expected = set(frames[0])
    for f, (frame, ln) in enumerate(zip(frames, frame_lines)):
        if set(frame) != expected:
            missing = sorted(skeleton.names[j] for j in expected - set(frame))
            listed = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
            raise DataError(path, f"frame {f + 1} lacks bone(s) {listed or '?'} (truncated or corrupt file)", line=ln)
    values = []
    for j, d in enumerate(skeleton.dofs):
        if j in expected:
            values.append(np.array([fr[j] for fr in frames], dtype=np.float64).reshape(len(frames), len(d)))
        else:
            values.append(np.zeros((len(frames), len(d))))
    return values, len(frames)


# ---------------------------------------------------------------------- forward kinematics
def _motion_rotation_matrices(dofs: list[str], vals: np.ndarray, degrees: bool) -> np.ndarray:
    """M = R_last @ ... @ R_first of a bone's rotation values (F, k) in dof order. (F, 3, 3)"""
    rot = [(d, c) for c, d in enumerate(dofs) if d in _DOF_AXES]
    if not rot:
        return np.broadcast_to(np.eye(3), (len(vals), 3, 3))
    cols = [c for _, c in rot][::-1]
    order = "".join(_DOF_AXES[d] for d, _ in rot)[::-1]
    angles = vals[:, cols] if degrees else np.rad2deg(vals[:, cols])
    return euler_to_matrix(angles, order)


def amc_forward(data: AmcData, *, frames=slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """Positions (F, J, 3) of the root and every bone's end point, and global rotations
    (F, J, 3, 3), in ASF length units and axes. ``frames`` selects frames before any work."""
    sk = data.skeleton
    values = [v[frames] for v in data.values]
    n_frames, n_joints = len(values[0]), len(sk.names)
    local_rot = np.empty((n_frames, n_joints, 3, 3))
    local_trans = np.zeros((n_frames, n_joints, 3))
    for j in range(n_joints):
        c = sk.axis_rotations[j]
        m = _motion_rotation_matrices(sk.dofs[j], values[j], data.degrees)
        local_rot[:, j] = c @ m @ c.T
        if j == 0:
            trans = sk.root_position.copy() * np.ones((n_frames, 3))
            for col, d in enumerate(sk.dofs[0]):
                kind, axis = _ROOT_KEYS[d]
                if kind == "t":
                    trans[:, axis] = values[0][:, col]
            local_trans[:, 0] = trans
        else:
            # p_j = p_parent + R_parent @ (L_j @ v_j): the bone turns with its own rotation
            local_trans[:, j] = local_rot[:, j] @ sk.vectors[j]
    return forward_kinematics(sk.parents, local_rot, local_trans)


def amc_positions(data: AmcData) -> np.ndarray:
    """Positions (F, J, 3) of the root and every bone's end point (ASF units and axes)."""
    return amc_forward(data)[0]


def amc_positions_reference(data: AmcData) -> np.ndarray:
    """Plain per-frame, per-bone reference of :func:`amc_positions` (Python loops; for tests)."""
    sk = data.skeleton
    n_frames, n_joints = data.n_frames, len(sk.names)
    out = np.zeros((n_frames, n_joints, 3))
    for f in range(n_frames):
        glob = [None] * n_joints
        for j in range(n_joints):
            m = np.eye(3)
            position = None
            for col, d in enumerate(sk.dofs[j]):
                v = float(data.values[j][f, col])
                if d in _DOF_AXES:
                    angle = v if data.degrees else np.rad2deg(v)
                    m = euler_to_matrix_reference([angle], _DOF_AXES[d]) @ m   # later dofs act after
            c = sk.axis_rotations[j]
            local = c @ m @ np.linalg.inv(c)
            if j == 0:
                position = sk.root_position.copy()
                for col, d in enumerate(sk.dofs[0]):
                    if d in ("tx", "ty", "tz"):
                        position["xyz".index(d[1])] = data.values[0][f, col]
                glob[0], out[f, 0] = local, position
            else:
                p = sk.parents[j]
                glob[j] = glob[p] @ local
                out[f, j] = out[f, p] + glob[j] @ sk.vectors[j]
    return out


# ---------------------------------------------------------------------- reader
def load_amc(path: str | os.PathLike, *, asf: str | os.PathLike | AsfSkeleton | None = None) -> AmcData:
    """Read an AMC file with its skeleton (found with :func:`find_asf` when ``asf`` is None)."""
    path = Path(path)
    if isinstance(asf, AsfSkeleton):
        skeleton = asf
    else:
        skeleton = load_asf(find_asf(path) if asf is None else asf)
    return parse_amc(read_text(path), skeleton, path=path)


def read_amc(path: str | os.PathLike, *, asf: str | os.PathLike | AsfSkeleton | None = None, mapping=None,
             fps: float = 30.0, source_fps: float | None = None, units: str | float | None = None,
             up: str | None = None, source: str | None = None, subject: str | None = None,
             activity: str | None = None, clip: str | None = None) -> PoseSet:
    """Read one AMC clip into a pose set in the target layout (H36M17, mm, Z up, floor at 0).

    asf: the skeleton file (None: found next to the AMC, see :func:`find_asf`). mapping: None
    (built-in CMU/HDM05 ASF mapping when the bone names fit), a built-in name, a mapping file or
    a SkeletonMapping; points are bone END points, ``root`` the root position. source_fps: AMC
    files do not store their rate; None takes it from a name ending in ``_<fps>`` (HDM05's
    ``..._120.amc``), else 120 (CMU and HDM05 capture at 120 fps). units: None uses the ASF ``:units length`` (1/length inch per
    unit). up: None = +Y (the ASF convention) unless the body says otherwise."""
    path = Path(path)
    data = load_amc(path, asf=asf)
    stem = strip_suffixes(path.name)
    tail = stem.rsplit("_", 1)[-1]
    if source_fps is None:
        source_fps = float(tail) if "_" in stem and tail in _RATE_SUFFIXES else 120.0
    stride = resample_stride(source_fps, fps)
    positions, rotations = amc_forward(data, frames=slice(None, None, stride))
    return clip_to_poseset(
        positions, data.skeleton.names, path=path, rotations=rotations, parents=data.skeleton.parents, mapping=mapping, units=units,
        file_units=data.skeleton.metres_per_unit, up=up, source_fps=source_fps, stride=stride,
        source=source or "", subject=subject or "", activity=activity or "", clip=clip or stem,
        file_format="amc")
