"""Human3.6M-style npz files: VideoPose3D's layout and mmpose's, read and written without pickle.

VideoPose3D (``data_3d_h36m.npz`` / ``data_2d_h36m_*.npz``)
---------------------------------------------------------------
The original files hold Python dicts as pickled 0-d object arrays: ``positions_3d[subject][action]``
(F, 32, 3) float32 metres in the Human3.6M world frame (Z up), ``positions_2d[subject][action]``
a list with one (F, 17, 2) float32 pixel array per camera, and ``metadata`` (``layout_name``,
``num_joints``, ``keypoints_symmetry``). Reading them needs unpickling, which posecurator never
does. Where the user trusts such a file, it is converted once: load its dicts the way VideoPose3D
does (``numpy.load`` with its allow_pickle option, then ``.item()`` on each array), pass them to
:func:`videopose3d_from_dicts` and save a pickle-free copy with :func:`write_videopose3d_npz`
(:func:`read_videopose3d_npz`'s error on such a file names these two functions).

:func:`write_videopose3d_npz` writes one file that serves both sides:

* pickle-free keys, the ones posecurator reads (``np.load(..., allow_pickle=False)``):
  ``metadata_json`` (0-d unicode array: format name and version, fps, units "m", layout, symmetry,
  one entry per sequence with subject, action, clip, activity, source and its camera indices,
  and the camera table in :meth:`posecurator.camera.Camera.to_dict` form, millimetres), and per
  sequence i ``positions_3d.<i:05d>`` (F, J, 3) float32 metres, ``positions_2d.<i:05d>``
  (C, F, 17, 2) float32 pixels, ``frame.<i:05d>`` (F,) int32;
* with ``pickled_dicts=True`` (the default) also VideoPose3D's own ``positions_3d``,
  ``positions_2d`` and ``metadata`` object arrays, so that VideoPose3D's own loading code
  (``numpy.load`` with pickling allowed, then ``.item()``) reads the file unchanged. Writing them
  pickles our own plain dicts of arrays (safe to produce); posecurator never reads them back.

A VideoPose3D action is a posecurator clip. The 3D joints are the 17 of :data:`H36M17`
(VideoPose3D's order); ``n_joints=32`` pads them to the original 32-joint Human3.6M skeleton with
NaN in the 15 joints VideoPose3D's ``Human36mDataset`` removes on loading. Reading takes 17 joints,
or 32 reduced with :data:`H36M32_KEPT`. Units: metres in the file, millimetres in pose sets; the
world frame is Z up in both, so no axis change.

mmpose Human3.6M (``annotation_body3d/fps*/h36m_{train,test}.npz``)
-------------------------------------------------------------------
As mmpose's ``tools/dataset_converters/preprocess_h36m.py`` writes them: one row per (sequence,
camera, frame) with ``imgname`` (N,) str
``S1/S1_Directions_1.54138969/S1_Directions_1.54138969_000001.jpg`` (1-based frame number),
``center`` (N, 2) float64 and ``scale`` (N,) float64 of the box around the 2D joints
(scale = 1.2 * max(width, height) / 200), ``part`` (N, 17, 3) float64 pixels + visibility and
``S`` (N, 17, 4) float64 camera-frame metres + visibility. Strings are fixed-width unicode, never
object arrays. mmpose keeps the cameras in a pickle (``cameras.pkl``, keyed by
``(subject, camera_id)``); posecurator writes the same fields as JSON instead
(``<stem>_cameras.json``, keys ``"<subject>,<camera_id>"``): ``R`` (3, 3) camera-to-world rotation,
``T`` (3, 1) camera centre in metres (mmpose's ``SimpleCamera``: x_cam = R^T (x_world - T)),
``f``, ``c`` (2, 1) pixels, optional ``k`` (3, 1), ``p`` (2, 1), ``w``, ``h``, ``name``, ``id``;
plus posecurator's fps and the original subject / activity / clip of each sequence.
mmpose's loader needs tuple keys, so feeding the JSON to mmpose means turning its keys into
``tuple(key.split(","))`` once. The reader turns ``S`` back into the world frame through these
cameras.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posecurator.camera import Camera, evaluation_rig
from posecurator.errors import DataError
from posecurator.io.common import (
    MAX_ABS_MM, MAX_ABS_PX, MAX_ABS_RAW, check_coordinates, check_fps, check_real, is_int, is_number, one_line,
    read_npz_arrays, read_npz_headers, short_value,
)
from posecurator.poseset import PoseSet
from posecurator.skeleton import COCO17, H36M17

# The 17 of the 32 Human3.6M joints VideoPose3D (and mmpose) keep, in H36M17 order.
H36M32_KEPT = np.array([0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27])
# VideoPose3D's metadata for the 17-joint Human3.6M layout: [left joints, right joints].
H36M_SYMMETRY = ([4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16])
H36M_VIDEO_FPS = 50.0

VP3D_FORMAT = "posecurator-videopose3d"
VP3D_VERSION = 1
VP3D_PICKLED_KEYS = ("positions_3d", "positions_2d", "metadata")

MMPOSE_KEYS = ("imgname", "center", "scale", "part", "S")
MMPOSE_CAMERAS_FORMAT = "posecurator-mmpose-h36m-cameras"
MMPOSE_CAMERAS_VERSION = 1
MMPOSE_BOX_SCALE = 1.2  # preprocess_h36m.py: scale = 1.2 * max(w, h) / 200

_VP3D_LAYOUTS = {"h36m": H36M17, "coco": COCO17}


# ---------------------------------------------------------------------- npz access without pickle
def npz_headers(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array of an npz file, from the .npy headers alone.

    Nothing is loaded or unpickled, so this also describes files whose object arrays posecurator
    will not read. Raises DataError for a file that is not a readable zip of .npy arrays (garbled
    headers included: :func:`posecurator.poseset.read_npz_headers`)."""
    return read_npz_headers(path)


def _load_arrays(path: Path, names) -> dict[str, np.ndarray]:
    return read_npz_arrays(path, names)


def _pickled_error(path: Path, names) -> DataError:
    # one line: the how-to (load the dicts yourself where you trust the file, as VideoPose3D does,
    # then videopose3d_from_dicts and write_videopose3d_npz) is in the module docstring
    return DataError(path, (
        f"holds pickled Python objects ({short_value(', '.join(names), 60)}), as VideoPose3D writes them, which "
        "posecurator never unpickles; where you trust the file, convert it once with "
        "posecurator.io.h36m_npz.videopose3d_from_dicts and write_videopose3d_npz"))


def _write_atomic(files: dict[Path, callable]) -> None:
    """Write every file under a temporary name first, then rename them all into place, so a
    failure leaves no half-written file. ``files`` maps a target path to ``write(fileobj)``."""
    tmps = {}
    try:
        for target, write in files.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            tmps[target] = tmp
            with open(tmp, "wb") as f:
                write(f)
        for target, tmp in tmps.items():
            os.replace(tmp, target)
    finally:
        for tmp in tmps.values():
            if tmp.exists():
                tmp.unlink()


# ---------------------------------------------------------------------- pose set <-> camera views
@dataclass
class ClipViews:
    """One clip seen by C cameras: frames (F,) int, joints3d (F, J, 3) world mm, joints2d
    (C, F, J, 2) pixels, cameras (C,) :class:`Camera` (millimetres)."""

    subject: str
    clip: str
    activity: str
    source: str
    frame: np.ndarray
    joints3d: np.ndarray
    joints2d: np.ndarray
    cameras: list[Camera]


def clip_views(ps: PoseSet, cameras: list[Camera] | None = None) -> list[ClipViews]:
    """Group a 3D pose set into clips with their 2D views, for the multi-view file formats.

    * ``cameras`` given: every clip is projected through these cameras;
    * else, when every row already names a camera (``ps.camera >= 0``) and has 2D: the rows are
      views; they are grouped by camera and their 2D is kept as it is;
    * else the fixed evaluation rig of ../shared/BENCHMARK.md (:func:`evaluation_rig`) is placed
      around each clip's mean pelvis (floor at Z = 0) and the 3D is projected through it.

    Clips keep their first-appearance order; frames are sorted within a clip.
    """
    if ps.joints3d is None:
        raise ValueError("these formats need 3D joints; the pose set has none")
    if ps.layout != H36M17.name:
        raise ValueError(f"these formats hold the h36m17 layout, not {ps.layout}")
    if len(ps) == 0:
        raise ValueError("the pose set is empty")
    if cameras is not None and len(cameras) == 0:
        raise ValueError("cameras is an empty list; give at least one camera, or None for the evaluation rig")
    as_views = cameras is None and ps.joints2d is not None and len(ps) > 0 and bool((ps.camera >= 0).all())
    _, first, inverse = np.unique(ps.clip, return_index=True, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    groups = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
    out = []
    for c in np.argsort(first):
        rows = groups[c]
        r0 = rows[0]
        if as_views:
            cam_ids = np.unique(ps.camera[rows])
            per_cam = [rows[ps.camera[rows] == k] for k in cam_ids]
            per_cam = [r[np.argsort(ps.frame[r], kind="stable")] for r in per_cam]
            frames = ps.frame[per_cam[0]]
            if any(len(r) != len(frames) or not np.array_equal(ps.frame[r], frames) for r in per_cam):
                raise ValueError(f"clip {ps.clip[r0]!r}: its cameras do not all see the same frames")
            joints3d = ps.joints3d[per_cam[0]]
            joints2d = np.stack([ps.joints2d[r] for r in per_cam])
            cams = [Camera.from_dict(ps.cameras[k]) for k in cam_ids]
        else:
            rows = rows[np.argsort(ps.frame[rows], kind="stable")]
            frames = ps.frame[rows]
            if len(np.unique(frames)) != len(frames):
                raise ValueError(f"clip {ps.clip[r0]!r} has several rows for one frame but no camera ids to tell them apart")
            joints3d = ps.joints3d[rows]
            cams = cameras if cameras is not None else evaluation_rig(joints3d[:, 0].mean(axis=0), floor_z=0.0)
            joints2d = np.stack([cam.project(joints3d) for cam in cams])
        out.append(ClipViews(subject=str(ps.subject[r0]), clip=str(ps.clip[r0]), activity=str(ps.activity[r0]),
                             source=str(ps.source[r0]), frame=frames.astype(np.int32), joints3d=joints3d,
                             joints2d=joints2d.astype(np.float64), cameras=list(cams)))
    return out


@dataclass
class _Sequence:
    """One sequence as read from a file: 3D (F, J3, 3) world mm or None, 2D (C, F, J2, 2) or None."""

    subject: str
    clip: str
    activity: str
    source: str
    frame: np.ndarray
    joints3d: np.ndarray | None
    joints2d: np.ndarray | None
    cameras: list[int] | None  # rows of the camera table, one per view


def _to_h36m17(path, joints: np.ndarray, what: str) -> np.ndarray:
    if joints.shape[-2] == 32:
        return joints[..., H36M32_KEPT, :]
    if joints.shape[-2] == H36M17.n_joints:
        return joints
    raise DataError(path, f"{what} has {joints.shape[-2]} joints; expected 17 (H36M17) or 32 (original Human3.6M)")


def _sequences_to_poseset(path, seqs: list[_Sequence], *, views: bool, fps: float, camera_table: list[dict],
                          layout2d: str = H36M17.name) -> PoseSet:
    """Rows: one per frame (``views=False``, 3D only) or one per (camera, frame) with 2D."""
    has3d = all(s.joints3d is not None for s in seqs)
    if not seqs:
        raise DataError(path, "holds no sequences")
    if not views:
        if not has3d:
            raise DataError(path, "has no 3D positions; read its 2D with views=True")
        parts = [dict(j3=s.joints3d, j2=None, cam=-1, s=s, clip=s.clip) for s in seqs]
        layout = H36M17.name
    else:
        if any(s.joints2d is None for s in seqs):
            raise DataError(path, "has no 2D positions to read views from")
        layout = layout2d if not has3d else H36M17.name
        if has3d and layout2d != H36M17.name:
            raise DataError(path, f"2D in the {layout2d} layout and 3D in h36m17 cannot share one pose set; read them separately")
        parts = []
        for s in seqs:
            for c in range(len(s.joints2d)):
                cam = -1 if s.cameras is None else s.cameras[c]
                # without a camera table the views can only be told apart by their clip id
                clip = s.clip if cam >= 0 else f"{s.clip}/cam{c}"
                parts.append(dict(j3=s.joints3d, j2=s.joints2d[c], cam=cam, s=s, clip=clip))
    lengths = [len(p["s"].frame) for p in parts]
    rep = lambda key: np.repeat(np.array([key(p) for p in parts], dtype=str), lengths)  # noqa: E731
    return PoseSet(
        joints3d=np.concatenate([p["j3"] for p in parts]) if has3d else None,
        joints2d=np.concatenate([p["j2"] for p in parts]) if views else None,
        camera=np.repeat(np.array([p["cam"] for p in parts], dtype=np.int32), lengths),
        source=rep(lambda p: p["s"].source),
        subject=rep(lambda p: p["s"].subject),
        activity=rep(lambda p: p["s"].activity),
        clip=rep(lambda p: p["clip"]),
        frame=np.concatenate([p["s"].frame for p in parts]),
        layout=layout,
        fps=float(fps),
        cameras=camera_table if views else [],
        attrs={"source_file": Path(path).name if path else ""},
    )


def h36m_activity(action: str) -> str:
    """Human3.6M action name without its take number: ``"Walking 1"`` / ``"Walking_1"`` -> ``"Walking"``."""
    return re.sub(r"[ _]\d+$", "", action)


# ---------------------------------------------------------------------- VideoPose3D
def write_videopose3d_npz(ps: PoseSet, path: str | os.PathLike, *, cameras: list[Camera] | None = None,
                          n_joints: int = 17, pickled_dicts: bool = True) -> Path:
    """Write a 3D pose set (H36M17, mm, world Z up) in VideoPose3D's npz layout (module docstring).

    The 2D of every camera view comes from :func:`clip_views`: through ``cameras`` if given, the
    set's own views if its rows are views, else the evaluation rig around each clip. ``n_joints``:
    17, or 32 to pad to the original Human3.6M skeleton (NaN in the joints VideoPose3D drops).
    The file is written under a temporary name and renamed when complete.
    """
    if n_joints not in (17, 32):
        raise ValueError(f"n_joints must be 17 or 32, got {n_joints}")
    path = Path(path)
    views = clip_views(ps, cameras)
    arrays, sequences, table = {}, [], []
    pos3d_dict, pos2d_dict = {}, {}
    for i, v in enumerate(views):
        pos3d = (v.joints3d / 1000.0).astype(np.float32)
        if n_joints == 32:
            padded = np.full((len(pos3d), 32, 3), np.nan, dtype=np.float32)
            padded[:, H36M32_KEPT] = pos3d
            pos3d = padded
        pos2d = v.joints2d.astype(np.float32)
        arrays[f"positions_3d.{i:05d}"] = pos3d
        arrays[f"positions_2d.{i:05d}"] = pos2d
        arrays[f"frame.{i:05d}"] = v.frame
        sequences.append({"subject": v.subject, "action": v.clip, "clip": v.clip, "activity": v.activity,
                          "source": v.source, "cameras": list(range(len(table), len(table) + len(v.cameras)))})
        table.extend(cam.to_dict() for cam in v.cameras)
        pos3d_dict.setdefault(v.subject, {})[v.clip] = pos3d
        pos2d_dict.setdefault(v.subject, {})[v.clip] = list(pos2d)
    symmetry = [list(H36M_SYMMETRY[0]), list(H36M_SYMMETRY[1])]
    meta = {
        "format": VP3D_FORMAT, "version": VP3D_VERSION, "units": "m", "fps": float(ps.fps),
        "layout_name": "h36m", "num_joints": H36M17.n_joints, "keypoints_symmetry": symmetry,
        "sequences": sequences, "cameras": table,
    }
    arrays["metadata_json"] = np.array(json.dumps(meta))
    if pickled_dicts:
        # For VideoPose3D only (it reads these with pickle); posecurator reads the keys above.
        arrays["positions_3d"] = _object_scalar(pos3d_dict)
        arrays["positions_2d"] = _object_scalar(pos2d_dict)
        arrays["metadata"] = _object_scalar({"layout_name": "h36m", "num_joints": H36M17.n_joints,
                                             "keypoints_symmetry": symmetry})
    _write_atomic({path: lambda f: np.savez_compressed(f, **arrays)})
    return path


def _object_scalar(value: dict) -> np.ndarray:
    out = np.empty((), dtype=object)
    out[()] = value
    return out


def _read_json_scalar(path: Path, key: str) -> dict:
    arr = _load_arrays(path, [key])[key]
    if arr.dtype.kind != "U" or arr.shape != ():
        raise DataError(path, f"{key} must be a 0-d unicode array, got {arr.dtype} {arr.shape}")
    try:
        meta = json.loads(str(arr))
    except json.JSONDecodeError as e:
        raise DataError(path, f"{key} is not valid JSON: {e.msg}") from None
    except (ValueError, RecursionError) as e:  # integers of thousands of digits, absurd nesting
        raise DataError(path, f"{key} is not valid JSON: {one_line(e, 60)}") from None
    if not isinstance(meta, dict):
        raise DataError(path, f"{key} is not a JSON object")
    return meta


def _check_format(path: Path, meta: dict, name: str, version: int) -> None:
    if meta.get("format") != name:
        raise DataError(path, f"unknown layout {short_value(meta.get('format'))}; expected {name!r}")
    v = meta.get("version")
    if not is_int(v) or v < 1:
        raise DataError(path, f"{name} version {short_value(v)} is not a positive integer")
    if v > version:
        raise DataError(path, f"{name} version {v} is newer than this posecurator understands ({version}); upgrade posecurator")


def _text_field(path: Path, entry: dict, key: str, where: str, default: str | None = None) -> str:
    """A string field of a metadata object (DataError when absent without default, or not text)."""
    value = entry.get(key, default)
    if value is None:
        raise DataError(path, f"{where} lacks {key!r}")
    if not isinstance(value, str) or len(value) > 1000:
        raise DataError(path, f"{where}: {key!r} must be text, got {short_value(value)}")
    return value


def _frame_numbers(path: Path, frame: np.ndarray, where: str) -> np.ndarray:
    """Frame indices as int32: an integer array whose values fit (never a silent wrap-around)."""
    check_real(path, frame, f"{where} frame", kinds="iu")
    if frame.size and (int(frame.min()) < 0 or int(frame.max()) > np.iinfo(np.int32).max):
        raise DataError(path, f"{where}: frame numbers must be between 0 and {np.iinfo(np.int32).max}")
    return frame.astype(np.int32)


def read_videopose3d_npz(path: str | os.PathLike, *, views: bool = False) -> PoseSet:
    """A VideoPose3D npz written by :func:`write_videopose3d_npz` -> pose set (H36M17, mm, Z up).

    ``views=False``: one row per frame, 3D only. ``views=True``: one row per (camera, frame) with
    the 2D pixels and the camera (the file's camera table becomes ``ps.cameras``).
    Original VideoPose3D files (pickled dicts only) raise a DataError that says how to convert them.
    Metadata of the wrong type or range (fps, units, sequence fields, camera indices) and arrays
    that are not real numbers, not finite or beyond MAX_ABS_MM / MAX_ABS_PX raise DataError too.
    """
    path = Path(path)
    headers = npz_headers(path)
    if "metadata_json" not in headers:
        pickled = [k for k in VP3D_PICKLED_KEYS if k in headers and headers[k][1].hasobject]
        if pickled:
            raise _pickled_error(path, pickled)
        raise DataError(path, f"unknown npz layout (arrays: {short_value(', '.join(sorted(headers)) or 'none', 80)}); "
                              "expected a VideoPose3D file written by posecurator (metadata_json)")
    meta = _read_json_scalar(path, "metadata_json")
    _check_format(path, meta, VP3D_FORMAT, VP3D_VERSION)
    units = meta.get("units", "m")
    scale = {"m": 1000.0, "mm": 1.0}.get(units) if isinstance(units, str) else None
    if scale is None:
        raise DataError(path, f"unknown units {short_value(units)} (expected 'm' or 'mm')")
    fps = check_fps(path, meta.get("fps", H36M_VIDEO_FPS), what="metadata_json 'fps'")
    sequences = meta.get("sequences")
    if not isinstance(sequences, list) or not all(isinstance(s, dict) for s in sequences):
        raise DataError(path, "metadata_json has no list of sequence objects")
    table = meta.get("cameras", [])
    if not isinstance(table, list) or not all(isinstance(c, dict) for c in table):
        raise DataError(path, "metadata_json 'cameras' must be a list of camera objects")
    wanted = ["positions_3d", "frame"] + (["positions_2d"] if views else [])
    names = [f"{key}.{i:05d}" for i in range(len(sequences)) for key in wanted]
    missing = [n for n in names if n not in headers]
    if missing:
        raise DataError(path, f"metadata_json lists {len(sequences)} sequences but arrays {', '.join(missing[:3])} are missing")
    arr = _load_arrays(path, names)
    seqs = [_vp3d_sequence(path, i, s, arr, scale=scale, views=views, n_cameras=len(table))
            for i, s in enumerate(sequences)]
    return _sequences_to_poseset(path, seqs, views=views, fps=fps, camera_table=table)


def _vp3d_sequence(path: Path, i: int, s: dict, arr: dict, *, scale: float, views: bool, n_cameras: int) -> _Sequence:
    """Sequence i of a VideoPose3D file, every field checked."""
    where = f"sequence {i}"
    pos3d, frame = arr[f"positions_3d.{i:05d}"], arr[f"frame.{i:05d}"]
    check_real(path, pos3d, f"{where} positions_3d")
    if pos3d.ndim != 3 or pos3d.shape[2] != 3 or frame.shape != (len(pos3d),):
        raise DataError(path, f"{where}: positions_3d {pos3d.shape} and frame {frame.shape} do not fit (F, J, 3) and (F,)")
    joints3d = _to_h36m17(path, pos3d, f"{where} positions_3d").astype(np.float64) * scale
    check_coordinates(path, joints3d, MAX_ABS_MM, what=f"{where} positions_3d", row_name=lambda f: f"frame {f}")
    joints2d, cams = None, None
    if views:
        pos2d = check_real(path, arr[f"positions_2d.{i:05d}"], f"{where} positions_2d")
        cams = s.get("cameras", [])
        if not isinstance(cams, list) or not all(is_int(c) for c in cams):
            raise DataError(path, f"{where}: 'cameras' must be a list of camera indices, got {short_value(cams)}")
        if pos2d.ndim != 4 or pos2d.shape[1] != len(pos3d) or pos2d.shape[-1] != 2 or len(cams) != len(pos2d):
            raise DataError(path, f"{where}: positions_2d {pos2d.shape} does not fit ({len(cams)} cameras, {len(pos3d)} frames, 17, 2)")
        joints2d = _to_h36m17(path, pos2d, f"{where} positions_2d")
        check_coordinates(path, joints2d.transpose(1, 0, 2, 3), MAX_ABS_PX, what=f"{where} positions_2d", unit="px",
                          row_name=lambda f: f"frame {f}")
        if any(not 0 <= c < n_cameras for c in cams):
            raise DataError(path, f"{where}: camera index outside the camera table")
        cams = [int(c) for c in cams]
    action = _text_field(path, s, "action", where)
    return _Sequence(subject=_text_field(path, s, "subject", where), clip=_text_field(path, s, "clip", where, action),
                     activity=_text_field(path, s, "activity", where, h36m_activity(action)),
                     source=_text_field(path, s, "source", where, ""), frame=_frame_numbers(path, frame, where),
                     joints3d=joints3d, joints2d=joints2d, cameras=cams)


def videopose3d_from_dicts(positions_3d: dict | None = None, positions_2d: dict | None = None,
                           metadata: dict | None = None, *, views: bool = False, fps: float = H36M_VIDEO_FPS,
                           source: str = "h36m") -> PoseSet:
    """VideoPose3D's in-memory dicts (as its own code loads them) -> pose set. No file access.

    positions_3d: subject -> action -> (F, 32 or 17, 3) metres, Human3.6M world (Z up).
    positions_2d: subject -> action -> list per camera of (F, J, 2) pixels; ``metadata``
    ``layout_name`` says the 2D layout ("h36m", or "coco" for VideoPose3D's Detectron keypoints).
    Where both are given, 2D longer than the 3D is trimmed to it, as VideoPose3D's run.py does.
    subject and action come from the keys; clip = "<subject>/<action>"; activity = the action
    without its take number. Views have no camera table (VideoPose3D keeps Human3.6M's cameras
    in its code), so ``views=True`` rows tell their camera by the clip suffix ``/cam<c>``.
    """
    if positions_3d is None and positions_2d is None:
        raise ValueError("give positions_3d, positions_2d or both")
    layout_name = (metadata or {}).get("layout_name", "h36m")
    if layout_name not in _VP3D_LAYOUTS:
        raise DataError(None, f"unknown VideoPose3D 2D layout {layout_name!r}; known: {', '.join(_VP3D_LAYOUTS)}")
    keys = []
    for d in (positions_3d, positions_2d):
        for subject, actions in (d or {}).items():
            keys.extend((subject, a) for a in actions if (subject, a) not in keys)
    seqs = []
    for subject, action in keys:
        where = f"{subject}/{action}"
        pos3d = (positions_3d or {}).get(subject, {}).get(action)
        pos2d = (positions_2d or {}).get(subject, {}).get(action)
        if positions_3d is not None and pos3d is None:
            continue  # 2D of a sequence without 3D: VideoPose3D skips it too
        joints3d = None
        if pos3d is not None:
            pos3d = np.asarray(pos3d, dtype=np.float64)
            if pos3d.ndim != 3 or pos3d.shape[2] != 3:
                raise DataError(None, f"positions_3d[{where}] must be (F, J, 3), got {pos3d.shape}")
            joints3d = _to_h36m17(None, pos3d, f"positions_3d[{where}]") * 1000.0
        joints2d = None
        if pos2d is not None:
            arrays = [np.asarray(a, dtype=np.float64) for a in pos2d]
            n = len(joints3d) if joints3d is not None else min(len(a) for a in arrays)
            if any(a.ndim != 3 or a.shape[2] != 2 or len(a) < n for a in arrays):
                raise DataError(None, f"positions_2d[{where}] must be a list of (F >= {n}, J, 2) arrays")
            joints2d = np.stack([a[:n] for a in arrays])
            if layout_name == "h36m":
                joints2d = _to_h36m17(None, joints2d, f"positions_2d[{where}]")
        n_frames = len(joints3d) if joints3d is not None else joints2d.shape[1]
        seqs.append(_Sequence(subject=str(subject), clip=where, activity=h36m_activity(str(action)), source=source,
                              frame=np.arange(n_frames, dtype=np.int32), joints3d=joints3d, joints2d=joints2d, cameras=None))
    return _sequences_to_poseset(None, seqs, views=views, fps=fps, camera_table=[],
                                 layout2d=_VP3D_LAYOUTS[layout_name].name)


# ---------------------------------------------------------------------- mmpose Human3.6M
def _token(text: str, fallback: str) -> str:
    """A name safe inside an mmpose imgname (which is split on '/', '_' and '.')."""
    out = re.sub(r"[^A-Za-z0-9-]+", "-", text).strip("-")
    return out or fallback


def default_mmpose_camera_file(path: str | os.PathLike) -> Path:
    """``h36m_train.npz`` -> ``h36m_train_cameras.json`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.name.removesuffix('.npz')}_cameras.json")


def write_mmpose_h36m_npz(ps: PoseSet, path: str | os.PathLike, *, cameras: list[Camera] | None = None,
                          camera_file: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Write a 3D pose set as mmpose's Human3.6M annotation npz plus a JSON camera file.

    Rows: per clip, per camera, per frame (mmpose's order). Cameras as in :func:`clip_views`.
    Subjects and clips become imgname-safe names (subject ``S1``-like token, sequence
    ``<activity>_<n>``); the camera file keeps the original strings. Returns (npz, camera file);
    both are written under temporary names and renamed when complete.
    """
    path = Path(path)
    camera_file = Path(camera_file) if camera_file is not None else default_mmpose_camera_file(path)
    views = clip_views(ps, cameras)
    imgnames, centers, scales, parts, S = [], [], [], [], []
    cam_json, seq_json = {}, {}
    for i, v in enumerate(views):
        subj = _token(v.subject, "S")
        seq = f"{_token(v.activity, 'clip')}_{i + 1}"
        seq_json[f"{subj}_{seq}"] = {"subject": v.subject, "activity": v.activity, "clip": v.clip, "source": v.source}
        frame_names = np.char.add(np.char.mod("%06d", v.frame.astype(np.int64) + 1), ".jpg")
        for cam, xy in zip(v.cameras, v.joints2d):
            cam_id = f"c{len(cam_json):04d}"
            base = f"{subj}_{seq}.{cam_id}"
            imgnames.append(np.char.add(f"{subj}/{base}/{base}_", frame_names))
            r_c2w = cam.R.T
            entry = {"R": r_c2w.tolist(), "T": (cam.center / 1000.0).reshape(3, 1).tolist(),
                     "f": cam.f.reshape(2, 1).tolist(), "c": cam.c.reshape(2, 1).tolist(),
                     "w": int(cam.width), "h": int(cam.height), "name": cam.name or cam_id, "id": cam_id}
            if cam.k is not None and cam.p is not None:
                entry["k"], entry["p"] = cam.k.reshape(3, 1).tolist(), cam.p.reshape(2, 1).tolist()
            cam_json[f"{subj},{cam_id}"] = entry
            lo, hi = xy.min(axis=1), xy.max(axis=1)
            centers.append((lo + hi) / 2)
            scales.append(MMPOSE_BOX_SCALE * (hi - lo).max(axis=1) / 200)
            ones = np.ones(xy.shape[:2] + (1,))
            parts.append(np.concatenate([xy, ones], axis=2))
            S.append(np.concatenate([cam.world_to_camera(v.joints3d) / 1000.0, ones], axis=2))
    arrays = {
        "imgname": np.concatenate(imgnames).astype(str),
        "center": np.concatenate(centers).astype(np.float64),
        "scale": np.concatenate(scales).astype(np.float64),
        "part": np.concatenate(parts).astype(np.float64),
        "S": np.concatenate(S).astype(np.float64),
    }
    meta = {"format": MMPOSE_CAMERAS_FORMAT, "version": MMPOSE_CAMERAS_VERSION, "fps": float(ps.fps),
            "cameras": cam_json, "sequences": seq_json}
    _write_atomic({
        path: lambda f: np.savez(f, **arrays),
        camera_file: lambda f: f.write(json.dumps(meta).encode()),
    })
    return path, camera_file


def _find_camera_file(path: Path, cameras) -> Path:
    if cameras is not None:
        return Path(cameras)
    candidates = [default_mmpose_camera_file(path), path.with_name("cameras.json"), path.parent.parent / "cameras.json"]
    for c in candidates:
        if c.is_file():
            return c
    pickled = [c for c in (path.with_name("cameras.pkl"), path.parent.parent / "cameras.pkl") if c.is_file()]
    hint = (f"; {pickled[0].name} is a pickle, which posecurator never reads: where you trust it, save its dict as JSON "
            "with keys \"<subject>,<camera_id>\" and arrays as lists, and pass that file as cameras=") if pickled else ""
    raise DataError(path, f"no camera file to turn S (camera frame) into world coordinates; looked for {candidates[0].name} "
                          "and cameras.json beside it and one folder up" + hint)


# The 20-digit frame number of a corrupt imgname must not overflow: frames of a video fit in 9 digits.
_MAX_FRAME_DIGITS = 9


def _parse_imgnames(path: Path, names: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """mmpose imgnames -> subject, sequence, camera id (str arrays) and 1-based frame number (int64)."""
    if names.dtype.kind != "U":
        raise DataError(path, f"imgname must be an array of text (fixed-width unicode), not {names.dtype}")
    base = np.char.rpartition(names, "/")[:, 2]
    subj, _, rest = np.char.partition(base, "_").T
    seq, _, rest = np.char.partition(rest, ".").T
    cam, _, rest = np.char.partition(rest, "_").T
    number = np.char.partition(rest, ".")[:, 0]
    digits = np.char.str_len(number)
    # ASCII digits only (stripping them leaves nothing), 1 to 9 of them
    ok = (np.char.str_len(subj) > 0) & (np.char.str_len(seq) > 0) & (np.char.str_len(cam) > 0)
    ok &= (digits > 0) & (digits <= _MAX_FRAME_DIGITS) & (np.char.str_len(np.char.strip(number, "0123456789")) == 0)
    if not ok.all():
        i = int(np.argmax(~ok))
        raise DataError(path, f"imgname {i} {short_value(str(names[i]), 80)} is not <subject>_<sequence>.<camera>_<frame>.jpg "
                              f"(frame: 1 to {_MAX_FRAME_DIGITS} digits)")
    return subj, seq, cam, number.astype(np.int64)


def _json_floats(value, sizes: tuple[int, ...]) -> np.ndarray | None:
    """A JSON number or (nested) list of numbers, flattened to float64 when its count is one of
    ``sizes`` and every number is finite and within MAX_ABS_RAW; else None."""
    flat, stack = [], [value]
    while stack:
        v = stack.pop()
        if isinstance(v, list) and len(flat) + len(stack) <= 16:
            stack.extend(reversed(v))
        elif is_number(v) and abs(v) <= MAX_ABS_RAW:  # False for NaN and inf too
            flat.append(float(v))
        else:
            return None
    return np.array(flat, dtype=np.float64) if len(flat) in sizes else None


def _mmpose_camera(cam_path: Path, key: str, p, npz_name: str) -> tuple[Camera, np.ndarray, np.ndarray]:
    """One camera of an mmpose camera JSON: (Camera, R camera-to-world (3, 3), T centre metres (3,))."""
    if not isinstance(p, dict):
        raise DataError(cam_path, f"camera {short_value(key)} is not a JSON object")
    shapes = {"R": (9,), "T": (3,), "f": (1, 2), "c": (2,), "k": (3,), "p": (2,)}
    values = {}
    for name, sizes in shapes.items():
        if name not in p:
            if name in ("k", "p"):
                continue
            raise DataError(cam_path, f"camera {short_value(key)}: bad or missing parameter {name!r} (needed by {npz_name})")
        values[name] = _json_floats(p[name], sizes)
        if values[name] is None:
            raise DataError(cam_path, f"camera {short_value(key)}: {name!r} must be {' or '.join(map(str, sizes))} finite "
                                      f"numbers, got {short_value(p[name])}")
    R = values["R"].reshape(3, 3)
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-3) or np.linalg.det(R) < 0:
        raise DataError(cam_path, f"camera {short_value(key)}: 'R' is not a rotation matrix")
    if not (values["f"] > 0).all():
        raise DataError(cam_path, f"camera {short_value(key)}: focal lengths 'f' must be positive")
    sides = []
    for name in ("w", "h"):
        side = p.get(name, 1000)
        if not is_int(side) or not 1 <= side <= MAX_ABS_PX:
            raise DataError(cam_path, f"camera {short_value(key)}: {name!r} must be a positive integer up to "
                                      f"{MAX_ABS_PX:g}, got {short_value(side)}")
        sides.append(int(side))
    label = p.get("name", key)
    if not isinstance(label, str) or len(label) > 1000:
        raise DataError(cam_path, f"camera {short_value(key)}: 'name' must be text, got {short_value(label)}")
    T = values["T"]
    camera = Camera(R=R.T, t=-R.T @ (T * 1000.0), f=values["f"], c=values["c"], width=sides[0], height=sides[1],
                    k=values.get("k"), p=values.get("p"), name=label)
    return camera, R, T


def _read_camera_json(cam_path: Path) -> dict:
    try:
        cam_meta = json.loads(Path(cam_path).read_text())
    except json.JSONDecodeError as e:
        raise DataError(cam_path, f"corrupt camera JSON: {e.msg}", line=e.lineno) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(cam_path, f"cannot read camera file: {one_line(e)}") from None
    except (ValueError, RecursionError) as e:  # integers of thousands of digits, absurd nesting
        raise DataError(cam_path, f"corrupt camera JSON: {one_line(e, 60)}") from None
    if not isinstance(cam_meta, dict):
        raise DataError(cam_path, "camera file is not a JSON object")
    return cam_meta


def _sequence_labels(cam_path: Path, seq_meta: dict, key: str, subject: str, sequence: str, source: str) -> tuple:
    """(subject, activity, clip, source) of one sequence: the camera file's, else from its imgname."""
    m = seq_meta.get(key, {})
    if not isinstance(m, dict):
        raise DataError(cam_path, f"sequence {short_value(key)} is not a JSON object")
    where = f"sequence {short_value(key)}"
    return (_text_field(cam_path, m, "subject", where, subject), _text_field(cam_path, m, "activity", where, h36m_activity(sequence)),
            _text_field(cam_path, m, "clip", where, f"{subject}/{sequence}"), _text_field(cam_path, m, "source", where, source))


def read_mmpose_h36m_npz(path: str | os.PathLike, *, cameras: str | os.PathLike | None = None, views: bool = False,
                         fps: float | None = None, source: str = "h36m") -> PoseSet:
    """mmpose's Human3.6M annotation npz + its cameras as JSON -> pose set (H36M17, world mm, Z up).

    ``cameras``: the JSON camera file (default: ``<stem>_cameras.json`` beside the npz, else
    ``cameras.json`` beside it or one folder up, where mmpose keeps ``cameras.pkl``).
    ``views=False``: the rows of each sequence's first camera, 3D only; ``views=True``: every row,
    with ``part`` as 2D, its visibility flag as ``visibility`` and the camera table.
    Frame rate: ``fps``, else the camera file's, else mmpose's folder name ``fps<N>``, else 50;
    frame numbers are the imgname's (1-based, counted at 50 fps in mmpose's own files).
    Arrays that are not real numbers, imgnames that do not parse, camera parameters of the wrong
    type or range (R not a rotation, f not positive, sizes not positive integers), an fps out of
    range and world joints beyond MAX_ABS_MM raise DataError naming the file.
    """
    path = Path(path)
    headers = npz_headers(path)
    missing = [k for k in MMPOSE_KEYS if k not in headers]
    if missing:
        raise DataError(path, f"not an mmpose Human3.6M npz: lacks {', '.join(missing)}")
    n = headers["imgname"][0][0] if headers["imgname"][0] else -1
    expected = {"imgname": (n,), "center": (n, 2), "scale": (n,), "part": (n, 17, 3), "S": (n, 17, 4)}
    for k, shape in expected.items():
        if headers[k][0] != shape:
            raise DataError(path, f"array {k} has shape {short_value(headers[k][0])}, expected {shape}")
    if headers["imgname"][1].hasobject:
        raise _pickled_error(path, ["imgname"])
    cam_path = _find_camera_file(path, cameras)
    cam_meta = _read_camera_json(cam_path)
    ours = "format" in cam_meta
    if ours:
        _check_format(cam_path, cam_meta, MMPOSE_CAMERAS_FORMAT, MMPOSE_CAMERAS_VERSION)
    cam_params = cam_meta.get("cameras", {}) if ours else cam_meta
    seq_meta = cam_meta.get("sequences", {}) if ours else {}
    if not isinstance(cam_params, dict) or not isinstance(seq_meta, dict):
        raise DataError(cam_path, "'cameras' and 'sequences' must be JSON objects keyed by name")

    arr = _load_arrays(path, MMPOSE_KEYS)
    for k in ("center", "scale", "part", "S"):
        check_real(path, arr[k], f"array {k}")
    subj, seq, cam, number = _parse_imgnames(path, arr["imgname"])
    cam_keys, cam_inv = np.unique(np.char.add(np.char.add(subj, ","), cam), return_inverse=True)
    table, r_c2w, centre_m = [], [], []
    for key in cam_keys.tolist():
        if key not in cam_params:
            raise DataError(cam_path, f"no camera {short_value(key)} (needed by {path.name})")
        camera, R, T = _mmpose_camera(cam_path, key, cam_params[key], path.name)
        table.append(camera.to_dict())
        r_c2w.append(R)
        centre_m.append(T)
    r_c2w, centre_m = np.array(r_c2w)[cam_inv], np.array(centre_m)[cam_inv]
    with np.errstate(over="ignore", invalid="ignore"):  # corrupt S: the check below names it, quietly
        joints3d = 1000.0 * (np.einsum("nab,njb->nja", r_c2w, arr["S"][..., :3]) + centre_m[:, None, :])
    check_coordinates(path, joints3d, MAX_ABS_MM, what="S in world millimetres", row_name=lambda i: f"row {i}")

    if fps is None:
        folder = re.fullmatch(r"fps(\d+)", path.parent.name)
        fps = (check_fps(cam_path, cam_meta["fps"], what="'fps'") if ours and "fps" in cam_meta
               else float(folder.group(1)) if folder else H36M_VIDEO_FPS)
    check_fps(path, fps)
    # mmpose numbers frames of the 50 fps video; files posecurator wrote number their own frames
    step = 1 if ours else max(1, int(round(H36M_VIDEO_FPS / fps)))
    frame = ((number - 1) // step).astype(np.int32)

    seq_keys, seq_inv = np.unique(np.char.add(np.char.add(subj, "_"), seq), return_inverse=True)
    info = [_sequence_labels(cam_path, seq_meta, key, str(s), str(q), source)
            for key, s, q in zip(seq_keys.tolist(), *np.char.partition(seq_keys, "_")[:, [0, 2]].T)]
    info = np.array(info, dtype=str).reshape(-1, 4)[seq_inv]

    keep = slice(None)
    if not views:
        # first camera seen in each sequence
        first_row = np.full(len(seq_keys), len(seq_inv))
        np.minimum.at(first_row, seq_inv, np.arange(len(seq_inv)))
        keep = cam_inv == cam_inv[first_row][seq_inv]
    else:
        part = arr["part"]
        check_coordinates(path, part[..., :2], MAX_ABS_PX, what="part", unit="px", row_name=lambda i: f"row {i}")
        with np.errstate(invalid="ignore"):
            if not ((part[..., 2] >= 0) & (part[..., 2] <= 1)).all():
                raise DataError(path, "part: visibility flags must be in [0, 1]")
    return PoseSet(
        joints3d=joints3d[keep],
        joints2d=arr["part"][keep][..., :2] if views else None,
        visibility=arr["part"][keep][..., 2] if views else None,
        camera=cam_inv[keep].astype(np.int32) if views else -1,
        subject=info[keep, 0], activity=info[keep, 1], clip=info[keep, 2], source=info[keep, 3],
        frame=frame[keep],
        layout=H36M17.name,
        fps=fps,
        cameras=table if views else [],
        attrs={"source_file": path.name, "camera_file": Path(cam_path).name},
    )


# ---------------------------------------------------------------------- either
def read_h36m_npz_auto(path: str | os.PathLike, *, views: bool = False, **kwargs) -> PoseSet:
    """Read a Human3.6M-style npz whichever layout it has (from its array names, nothing unpickled):
    mmpose (imgname, center, scale, part, S) or VideoPose3D (metadata_json, or the pickled
    positions_3d / positions_2d of an original file, which gets a DataError saying how to convert it)."""
    path = Path(path)
    headers = npz_headers(path)
    if all(k in headers for k in MMPOSE_KEYS):
        return read_mmpose_h36m_npz(path, views=views, **kwargs)
    if "metadata_json" in headers or any(k in headers for k in VP3D_PICKLED_KEYS):
        return read_videopose3d_npz(path, views=views, **kwargs)
    raise DataError(path, f"unknown npz layout (arrays: {short_value(', '.join(sorted(headers)) or 'none', 80)}); expected "
                    f"VideoPose3D (metadata_json / positions_3d) or mmpose Human3.6M ({', '.join(MMPOSE_KEYS)})")
