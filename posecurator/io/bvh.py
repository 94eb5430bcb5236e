"""BVH reader: hierarchy, MOTION block, forward kinematics, mapping to the target layout.

What the reader accepts:

* plain or gzip files (detected by the magic bytes), LF, CRLF or mixed line endings;
* any rotation channel order per joint (``Zrotation Xrotation Yrotation``, ``Xrotation ...``),
  meaning ``R = R_first @ R_second @ R_third`` (the BVH convention, angles in degrees);
* rotation-only joints (OFFSET is the local translation) and joints with position channels, whose
  per-frame values REPLACE the OFFSET as the local translation (Bandai's files need this; for a
  root this is the usual absolute position);
* End Sites, named ``<parent>_end`` (``<parent>_end2`` ... for a second one), usable in mappings,
  e.g. ``head: Head_end``.

Positions come from vectorised forward kinematics (a loop over joints, never over frames);
:func:`bvh_positions_reference` is the plain per-frame version the tests compare against.
Length units are guessed from the standing height unless given (see
:func:`posecurator.io.common.guess_units`), the up axis is +Y unless the body says otherwise or
``up`` is given, and the result is in millimetres, Z up, floor at Z = 0.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from posecurator.errors import DataError
from posecurator.io.common import (
    MAX_ABS_RAW, MAX_FPS, MIN_FPS, check_raw_values, clip_to_poseset, euler_to_matrix, nominal_fps,
    euler_to_matrix_reference, forward_kinematics, parse_floats, read_text, resample_stride, short_value, strip_suffixes,
)
from posecurator.poseset import PoseSet

_ROT = {"xrotation": "X", "yrotation": "Y", "zrotation": "Z"}
_POS = {"xposition": 0, "yposition": 1, "zposition": 2}
# Hierarchy keywords as writers spell them: a joint name containing one is a corrupt hierarchy (a
# lost '{' or line), not a name. ROOT and End are left out: some rigs name joints "Root" or "End".
_KEYWORDS = {"HIERARCHY", "JOINT", "OFFSET", "CHANNELS", "MOTION", "}"}
_MAX_NAME = 100
_MOTION_RE = re.compile(
    r"^[ \t]*MOTION[ \t]*\n\s*Frames:?[ \t]*(\S+)[ \t]*\n\s*Frame[ \t]*Time:?[ \t]*(\S+)[ \t]*(?:\n|$)",
    re.IGNORECASE | re.MULTILINE)


@dataclass
class BvhSkeleton:
    """The hierarchy of a BVH file.

    names: (J,) joint names, End Sites included as ``<parent>_end``; parents: (J,) topological;
    offsets: (J, 3) OFFSET lines (source units); rotation_orders: per joint, the axes of its
    rotation channels in channel order ("" = none); rotation_channels / position_channels: per
    joint, the column indices into a MOTION row (position_axes says which of x, y, z each
    position column replaces); n_channels: length of a MOTION row."""

    names: list[str]
    parents: np.ndarray
    offsets: np.ndarray
    is_end_site: np.ndarray
    rotation_orders: list[str]
    rotation_channels: list[list[int]]
    position_axes: list[list[int]]
    position_channels: list[list[int]]
    n_channels: int


@dataclass
class BvhData:
    skeleton: BvhSkeleton
    motion: np.ndarray      # (F, C) float64, the MOTION rows
    frame_time: float       # seconds
    motion_line: int        # 1-based line number of the first MOTION row (for error messages)
    # what the parser accepted with a caveat; read_bvh warns them once the clip has passed every check
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------- parsing
def _tokens(header: str):
    for lineno, line in enumerate(header.split("\n"), start=1):
        for tok in line.replace("{", " { ").replace("}", " } ").split():
            yield tok, lineno


_HEADER_CACHE: dict[str, BvhSkeleton] = {}


def parse_bvh_header(header: str, *, path=None) -> BvhSkeleton:
    """Parse the HIERARCHY part of a BVH file (everything before MOTION). Parsed headers are
    remembered (a data set's files usually share one hierarchy); treat the result as read-only."""
    skeleton = _HEADER_CACHE.get(header)
    if skeleton is None:
        skeleton = _parse_bvh_header(header, path=path)
        if len(_HEADER_CACHE) > 256:
            _HEADER_CACHE.clear()
        _HEADER_CACHE[header] = skeleton
    return skeleton


def _parse_bvh_header(header: str, *, path=None) -> BvhSkeleton:
    toks = list(_tokens(header))
    pos = 0

    def err(msg, line=None):
        return DataError(path, msg, line=line if line is not None else (toks[min(pos, len(toks) - 1)][1] if toks else 1))

    def take(expected: str | None = None):
        nonlocal pos
        if pos >= len(toks):
            raise err(f"unexpected end of the hierarchy (expected {expected or 'more'})")
        tok, line = toks[pos]
        if expected is not None and tok.upper() != expected.upper():
            raise err(f"expected {expected!r}, found {short_value(tok)}", line)
        pos += 1
        return tok, line

    names, parents, offsets, is_end = [], [], [], []
    orders, rot_ch, pos_axes, pos_ch = [], [], [], []
    n_channels = 0

    take("HIERARCHY")
    stack: list[int] = []
    roots = 0
    while pos < len(toks):
        tok, line = toks[pos]
        key = tok.upper()
        if key in ("ROOT", "JOINT", "END"):
            pos += 1
            if key == "END":
                take("Site")
                parent = stack[-1] if stack else -1
                if parent < 0:
                    raise err("End Site outside a joint", line)
                base = f"{names[parent]}_end"
                name, k = base, 1
                while name in names:
                    k += 1
                    name = f"{base}{k}"
            else:
                if key == "ROOT":
                    roots += 1
                    if stack:
                        raise err("ROOT inside another joint", line)
                elif not stack:
                    raise err("JOINT outside the ROOT", line)
                name_toks = []
                while pos < len(toks) and toks[pos][0] != "{":
                    if toks[pos][0] in _KEYWORDS or len(name_toks) > 8:
                        raise err(f"{key} {short_value(' '.join(name_toks))} is not followed by '{{'", toks[pos][1])
                    name_toks.append(take()[0])
                name = " ".join(name_toks)
                if not name:
                    raise err(f"{key} without a name", line)
                if len(name) > _MAX_NAME:
                    raise err(f"joint name {short_value(name)} is longer than {_MAX_NAME} characters", line)
                if name in names:
                    raise err(f"joint name {short_value(name)} appears twice", line)
                parent = stack[-1] if stack else -1
            take("{")
            j = len(names)
            names.append(name)
            parents.append(parent)
            is_end.append(key == "END")
            offsets.append(None)
            orders.append("")
            rot_ch.append([])
            pos_axes.append([])
            pos_ch.append([])
            stack.append(j)
        elif key == "OFFSET":
            pos += 1
            if not stack:
                raise err("OFFSET outside a joint", line)
            vals = []
            for _ in range(3):
                t, ln = take()
                try:
                    vals.append(float(t))
                except ValueError:
                    raise err(f"OFFSET value {short_value(t)} is not a number", ln) from None
                if not abs(vals[-1]) <= MAX_ABS_RAW:  # also catches NaN and inf
                    raise err(f"OFFSET value {short_value(t)} is not finite or beyond {MAX_ABS_RAW:g}", ln)
            offsets[stack[-1]] = vals
        elif key == "CHANNELS":
            pos += 1
            if not stack or is_end[stack[-1]]:
                raise err("CHANNELS outside a joint", line)
            t, ln = take()
            try:
                n = int(t)
            except ValueError:
                raise err(f"channel count {short_value(t)} is not an integer", ln) from None
            if not 0 <= n <= 6:  # three rotations and three positions at most
                raise err(f"channel count {n} is not between 0 and 6", ln)
            j = stack[-1]
            order = ""
            for _ in range(n):
                c, ln = take()
                lc = c.lower()
                if lc in _ROT:
                    order += _ROT[lc]
                    rot_ch[j].append(n_channels)
                elif lc in _POS:
                    pos_axes[j].append(_POS[lc])
                    pos_ch[j].append(n_channels)
                else:
                    raise err(f"unknown channel {short_value(c)} of joint {short_value(names[j])}", ln)
                n_channels += 1
            if len(set(order)) != len(order):
                raise err(f"joint {short_value(names[j])} repeats a rotation axis ({order})", line)
            if len(set(pos_axes[j])) != len(pos_axes[j]):
                raise err(f"joint {short_value(names[j])} repeats a position channel", line)
            orders[j] = order
        elif key == "}":
            pos += 1
            if not stack:
                raise err("unbalanced '}'", line)
            j = stack.pop()
            if offsets[j] is None:
                raise err(f"joint {short_value(names[j])} has no OFFSET", line)
        else:
            raise err(f"unexpected {short_value(tok)} in the hierarchy", line)
    if stack:
        raise err(f"hierarchy ends inside joint {short_value(names[stack[-1]])} (missing '}}')")
    if roots != 1:
        raise DataError(path, f"expected one ROOT joint, found {roots}", line=1)
    return BvhSkeleton(
        names=names, parents=np.array(parents, dtype=np.int64), offsets=np.array(offsets, dtype=np.float64),
        is_end_site=np.array(is_end, dtype=bool), rotation_orders=orders, rotation_channels=rot_ch,
        position_axes=pos_axes, position_channels=pos_ch, n_channels=n_channels)


def parse_bvh(text: str, *, path=None) -> BvhData:
    """Parse BVH text (LF line endings) into the skeleton and the MOTION rows (F, C)."""
    m = _MOTION_RE.search(text)
    if m is None:
        line = text.count("\n", 0, text.upper().find("MOTION")) + 1 if "MOTION" in text.upper() else None
        raise DataError(path, "no MOTION block with 'Frames:' and 'Frame Time:' lines (not a BVH file, or truncated)",
                        line=line)
    header_line = text.count("\n", 0, m.start()) + 1
    skeleton = parse_bvh_header(text[: m.start()], path=path)
    try:
        n_frames = int(m.group(1))
    except ValueError:
        raise DataError(path, f"'Frames:' value {short_value(m.group(1))} is not an integer", line=header_line + 1) from None
    try:
        frame_time = float(m.group(2))
    except ValueError:
        raise DataError(path, f"'Frame Time:' value {short_value(m.group(2))} is not a number", line=header_line + 2) from None
    if not (frame_time > 0 and np.isfinite(frame_time)):
        raise DataError(path, f"'Frame Time:' must be positive, got {short_value(frame_time)}", line=header_line + 2)
    if not 1.0 / MAX_FPS <= frame_time <= 1.0 / MIN_FPS:
        # 1 / 1e-320 is inf: a frame time must give a frame rate a camera can have
        raise DataError(path, f"'Frame Time:' {short_value(frame_time)} s is not a frame rate between "
                              f"{MIN_FPS:g} and {MAX_FPS:g} per second", line=header_line + 2)
    if n_frames <= 0:
        raise DataError(path, f"the file has no frames (Frames: {n_frames})", line=header_line + 1)
    motion_line = text.count("\n", 0, m.end()) + 1
    body = text[m.end():]
    n_ch = skeleton.n_channels
    try:
        values = parse_floats(body, path=path, what="MOTION")
    except DataError:
        values = None
    notes = []
    if values is not None and n_ch and values.size > n_frames * n_ch and values.size % n_ch == 0:
        # more rows than 'Frames:' declares (some exporters): keep the declared frames
        notes.append(f"{path}: 'Frames:' says {n_frames} but the file has {values.size // n_ch} rows; "
                     f"using the first {n_frames}")
        values = values[: n_frames * n_ch]
    if values is None or values.size != n_frames * n_ch:
        _raise_motion_error(body, n_ch, n_frames, motion_line, path)
    motion = values.reshape(n_frames, n_ch)
    bad = ~np.isfinite(motion).all(axis=1)
    if bad.any():
        f = int(np.argmax(bad))
        raise DataError(path, f"MOTION row {f + 1} has NaN or infinite channel values",
                        line=motion_line + _row_line(body, f))
    with np.errstate(over="ignore"):
        huge = (np.abs(motion) > MAX_ABS_RAW).any(axis=1)
    if huge.any():
        f = int(np.argmax(huge))
        check_raw_values(path, motion[f], f"MOTION row {f + 1}", line=motion_line + _row_line(body, f))
    return BvhData(skeleton=skeleton, motion=motion, frame_time=frame_time, motion_line=motion_line, notes=notes)


def _row_line(body: str, row: int) -> int:
    """0-based line offset of the row-th non-empty line of body (error path only)."""
    k = -1
    for i, line in enumerate(body.split("\n")):
        if line.strip():
            k += 1
            if k == row:
                return i
    return 0


def _raise_motion_error(body: str, n_ch: int, n_frames: int, motion_line: int, path):
    """Find the first bad MOTION row and raise a DataError naming its line (error path only)."""
    rows = 0
    for i, line in enumerate(body.split("\n")):
        toks = line.split()
        if not toks:
            continue
        for t in toks:
            try:
                float(t)
            except ValueError:
                raise DataError(path, f"MOTION value {short_value(t)} is not a number", line=motion_line + i) from None
        if len(toks) != n_ch:
            raise DataError(path, f"MOTION row has {len(toks)} values, the hierarchy has {n_ch} channels "
                                  f"(truncated or corrupt file)", line=motion_line + i)
        rows += 1
    if rows < n_frames:
        raise DataError(path, f"'Frames:' says {n_frames} frames but the file has {rows} (truncated file)",
                        line=motion_line + max(0, len(body.split("\n")) - 1))
    raise DataError(path, f"'Frames:' says {n_frames} frames but the file has {rows} rows", line=motion_line)


# ---------------------------------------------------------------------- forward kinematics
def bvh_local_transforms(skeleton: BvhSkeleton, motion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local rotations (F, J, 3, 3) and translations (F, J, 3) of every joint from MOTION rows (F, C).

    Joints sharing a rotation order are converted together (one batched call per order)."""
    n_frames, n_joints = len(motion), len(skeleton.names)
    rotations = np.empty((n_frames, n_joints, 3, 3))
    rotations[:] = np.eye(3)
    by_order: dict[str, list[int]] = {}
    for j, order in enumerate(skeleton.rotation_orders):
        if order:
            by_order.setdefault(order, []).append(j)
    for order, joints in by_order.items():
        cols = np.array([skeleton.rotation_channels[j] for j in joints])      # (K, len(order))
        rotations[:, joints] = euler_to_matrix(motion[:, cols], order)        # (F, K, 3, 3)
    translations = np.broadcast_to(skeleton.offsets, (n_frames, n_joints, 3)).copy()
    for j in range(n_joints):
        if skeleton.position_channels[j]:
            translations[:, j, skeleton.position_axes[j]] = motion[:, skeleton.position_channels[j]]
    return rotations, translations


def bvh_forward(skeleton: BvhSkeleton, motion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World positions (F, J, 3) and global rotations (F, J, 3, 3) of every joint and End Site,
    in the file's units and axes, from MOTION rows (F, C)."""
    rotations, translations = bvh_local_transforms(skeleton, motion)
    return forward_kinematics(skeleton.parents, rotations, translations)


def bvh_positions(skeleton: BvhSkeleton, motion: np.ndarray) -> np.ndarray:
    """World positions (F, J, 3) of every joint and End Site, source units and axes."""
    return bvh_forward(skeleton, motion)[0]


def bvh_positions_reference(skeleton: BvhSkeleton, motion: np.ndarray) -> np.ndarray:
    """Plain per-frame reference of :func:`bvh_positions` (Python loops; for tests)."""
    n_joints = len(skeleton.names)
    out = np.zeros((len(motion), n_joints, 3))
    for f, row in enumerate(motion):
        glob = [None] * n_joints
        for j in range(n_joints):
            local_r = euler_to_matrix_reference([row[c] for c in skeleton.rotation_channels[j]],
                                                skeleton.rotation_orders[j])
            t = skeleton.offsets[j].copy()
            for axis, c in zip(skeleton.position_axes[j], skeleton.position_channels[j]):
                t[axis] = row[c]
            p = skeleton.parents[j]
            if p < 0:
                glob[j], out[f, j] = local_r, t
            else:
                glob[j] = glob[p] @ local_r
                out[f, j] = out[f, p] + glob[p] @ t
    return out


# ---------------------------------------------------------------------- reader
def load_bvh(path: str | os.PathLike) -> BvhData:
    """Read and parse a BVH file (plain or gzip)."""
    return parse_bvh(read_text(path), path=path)


def read_bvh(path: str | os.PathLike, *, mapping=None, fps: float = 30.0, units: str | float | None = None,
             up: str | None = None, source: str | None = None, subject: str | None = None,
             activity: str | None = None, clip: str | None = None) -> PoseSet:
    """Read one BVH clip into a pose set in the target layout (H36M17, mm, Z up, floor at 0).

    mapping: None (detect a built-in mapping from the joint names), a built-in name, a YAML/JSON
    mapping file or a SkeletonMapping. fps: target frame rate (120 -> 30 keeps every 4th frame;
    see :func:`posecurator.io.common.resample_stride`). units: length unit of the file ("m", "cm",
    "mm", "inch", "asf" or metres per unit); None guesses it from the standing height. up: the
    file's up axis ("y", "z", ...); None detects it (+Y unless the body stands along another axis).
    source/subject/activity/clip: labels (clip defaults to the file name without suffixes).
    The PoseSet's ``attrs`` record the units, up axis, source frame rate and mapping used."""
    path = Path(path)
    data = load_bvh(path)
    source_fps = nominal_fps(1.0 / data.frame_time)
    stride = resample_stride(source_fps, fps)
    motion = data.motion[::stride]
    positions, rotations = bvh_forward(data.skeleton, motion)
    out = clip_to_poseset(
        positions, data.skeleton.names, path=path, rotations=rotations, parents=data.skeleton.parents, mapping=mapping, units=units, up=up,
        source_fps=source_fps, stride=stride, source=source or "", subject=subject or "",
        activity=activity or "", clip=clip or strip_suffixes(path.name), file_format="bvh")
    for note in data.notes:
        warnings.warn(note, stacklevel=2)
    return out
