"""3D pose predictions a user made elsewhere (any image model), as a file posecurator reads.

Two forms, one content: per sample id, the predicted 3D joints in the target layout (H36M17,
VideoPose3D order), in the camera frame (OpenCV: x right, y down, z forward), millimetres. They
may be root-relative or not: posecurator subtracts the root joint (pelvis) and places the pose
in its camera itself (:mod:`posecurator.camera.placement`). Optionally the camera intrinsics the
image model assumed (focal lengths ``f`` and principal point ``c`` in pixels); without them the
data's own intrinsics are used (for COCO: assumed from the image size).

npz (``np.load(..., allow_pickle=False)``)::

    sample_id   (N,) int64          the dataset's sample ids (COCO: the annotation id)
    joints3d    (N, 17, 3) float    mm, camera frame
    layout      0-d str, optional   "h36m17" (the only layout accepted)
    f, c        (N, 2) float, optional   px; NaN rows = no camera for that sample

JSON::

    {"layout": "h36m17", "units": "mm",
     "predictions": {"200887": {"joints3d": [[x, y, z], ... 17 rows],
                                "camera": {"f": [fx, fy], "c": [cx, cy]}},   # camera optional
                     ...}}

``units`` may be "mm" (default) or "m" (then multiplied by 1000).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from posecurator.errors import DataError
from posecurator.io.common import MAX_ABS_PX, MAX_ABS_RAW, check_real, one_line, read_npz_arrays, short_value

ACCEPTED_LAYOUTS = ("h36m17",)
N_JOINTS = 17
MAX_ABS_MM = 1e6  # 1 km: anything larger is not a pose in a camera frame
_INT64_MAX = np.iinfo(np.int64).max


def _short(value, limit: int = 40) -> str:
    return short_value(value, limit)


def read_predictions(path: str | os.PathLike) -> dict[str, np.ndarray | str]:
    """Read a predictions file (npz or JSON, see the module docstring).

    Returns ``sample_id`` (N,) int64, ``joints3d`` (N, 17, 3) float64 mm, ``f`` and ``c``
    (N, 2) float64 px (NaN where the file gives no camera), ``layout``. Raises DataError naming
    the file and what is wrong (layout, shape, ids, values).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "predictions file not found")
    low = path.name.lower()
    if low.endswith(".npz"):
        out = _read_npz(path)
    elif low.endswith(".json"):
        out = _read_json(path)
    else:
        raise DataError(path, "predictions must be a .npz or .json file (see posecurator.io.predictions)")
    joints = out["joints3d"]
    if joints.ndim != 3 or joints.shape[1:] != (N_JOINTS, 3):
        raise DataError(path, f"joints3d must be (N, {N_JOINTS}, 3) in the h36m17 layout, got {joints.shape}")
    if len(joints) == 0:
        raise DataError(path, "holds no predictions")
    if not np.isfinite(joints).all():
        i = int(np.argmax(~np.isfinite(joints).all(axis=(1, 2))))
        raise DataError(path, f"sample {int(out['sample_id'][i])}: joints3d has NaN or infinite values")
    if np.abs(joints).max() > MAX_ABS_MM:
        raise DataError(path, "joints3d has coordinates beyond 1 km: not millimetres in a camera frame?")
    ids = out["sample_id"]
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise DataError(path, f"sample id {int(uniq[np.argmax(counts > 1)])} appears more than once")
    for key in ("f", "c"):
        arr = out[key]
        if arr.shape != (len(ids), 2):
            raise DataError(path, f"{key} must be (N, 2) px, got {arr.shape}")
    _check_cameras(path, ids, out["f"], out["c"])
    return out


def _check_cameras(path: Path, ids: np.ndarray, f: np.ndarray, c: np.ndarray) -> None:
    """Each sample's intrinsics are all NaN (no camera) or all finite: f positive and at most
    MAX_ABS_RAW px, c within MAX_ABS_PX px."""
    both = np.concatenate([f, c], axis=1)
    given = np.isfinite(both).all(1)
    partial = ~given & ~np.isnan(both).all(1)   # some finite, or an inf
    if partial.any():
        raise DataError(path, f"sample {int(ids[np.argmax(partial)])}: camera f and c must be all finite or all NaN (no camera)")
    with np.errstate(invalid="ignore"):
        bad_f = given & ~((f > 0) & (f <= MAX_ABS_RAW)).all(1)
        bad_c = given & ~(np.abs(c) <= MAX_ABS_PX).all(1)
    if bad_f.any():
        raise DataError(path, f"sample {int(ids[np.argmax(bad_f)])}: focal lengths must be positive (and at most {MAX_ABS_RAW:g} px)")
    if bad_c.any():
        raise DataError(path, f"sample {int(ids[np.argmax(bad_c)])}: principal point beyond {MAX_ABS_PX:g} px")


def _check_layout(path: Path, layout) -> str:
    if not isinstance(layout, str):
        raise DataError(path, f"layout must be a name such as 'h36m17', got {_short(layout)}")
    layout = str(layout)   # a numpy string becomes a plain one
    if layout not in ACCEPTED_LAYOUTS:
        raise DataError(path, f"predictions are in layout {_short(layout)}; posecurator needs {', '.join(ACCEPTED_LAYOUTS)} "
                              "(17 joints in VideoPose3D order: pelvis, right hip, ..., right wrist)")
    return layout


def _read_npz(path: Path) -> dict:
    arrays = read_npz_arrays(path)
    for key in ("sample_id", "joints3d"):
        if key not in arrays:
            raise DataError(path, f"missing array {key!r} (has {_short(', '.join(sorted(arrays)) or 'none', 80)})")
    layout_arr = arrays.get("layout", np.array("h36m17"))
    if layout_arr.shape != () or layout_arr.dtype.kind != "U":
        raise DataError(path, f"layout must be a 0-d text array, got {layout_arr.dtype} {layout_arr.shape}")
    layout = _check_layout(path, str(layout_arr))
    ids, joints = arrays["sample_id"], arrays["joints3d"]
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise DataError(path, f"sample_id must be a 1-d integer array, got {ids.dtype} {ids.shape}")
    if ids.dtype.kind == "u" and ids.size and int(ids.max()) > _INT64_MAX:
        raise DataError(path, "sample_id holds ids beyond int64")
    check_real(path, joints, "joints3d")
    if joints.ndim >= 1 and len(joints) != len(ids):
        raise DataError(path, f"{len(ids)} sample ids but {len(joints)} poses")
    n = len(ids)
    cams = {}
    for key in ("f", "c"):
        if key in arrays:
            cams[key] = check_real(path, arrays[key], key).astype(np.float64)
        else:
            cams[key] = np.full((n, 2), np.nan)
    return {"sample_id": ids.astype(np.int64), "joints3d": joints.astype(np.float64), "layout": layout, **cams}


def _number_list(path: Path, value, shape: tuple[int, ...], what: str) -> np.ndarray:
    try:
        arr = np.array(value)  # no dtype: strings, nulls and booleans must not become numbers
    except (TypeError, ValueError, OverflowError):
        arr = None
    if arr is None or arr.dtype.kind not in "iuf":
        raise DataError(path, f"{what}: expected numbers of shape {shape}, got {_short(value)}")
    arr = arr.astype(np.float64)
    if arr.shape != shape:
        raise DataError(path, f"{what}: expected shape {shape}, got {arr.shape}")
    return arr


def _read_json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"), parse_constant=lambda c: math.nan)
    except json.JSONDecodeError as e:
        raise DataError(path, f"corrupt JSON: {e.msg}", line=e.lineno) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read: {one_line(e, 80)}") from None
    except (ValueError, RecursionError) as e:  # integers of thousands of digits, absurd nesting
        raise DataError(path, f"corrupt JSON: {one_line(e, 80)}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("predictions"), dict):
        raise DataError(path, 'not a predictions file: expected {"layout": ..., "predictions": {sample_id: {"joints3d": ...}}}')
    layout = _check_layout(path, doc.get("layout", "h36m17"))
    units = doc.get("units", "mm")
    if units not in ("mm", "m"):
        raise DataError(path, f"units must be 'mm' or 'm', got {_short(units)}")
    ids, joints, f, c = [], [], [], []
    for key, entry in doc["predictions"].items():
        try:
            sid = int(key)
        except ValueError:
            raise DataError(path, f"sample id {_short(key)} is not an integer") from None
        if not -_INT64_MAX - 1 <= sid <= _INT64_MAX:
            raise DataError(path, f"sample id {_short(key)} is beyond int64")
        if not isinstance(entry, dict) or "joints3d" not in entry:
            raise DataError(path, f"sample {sid}: expected an object with 'joints3d'")
        joints.append(_number_list(path, entry["joints3d"], (N_JOINTS, 3), f"sample {sid} joints3d"))
        cam = entry.get("camera")
        if cam is None:
            f.append([np.nan, np.nan])
            c.append([np.nan, np.nan])
        elif isinstance(cam, dict) and "f" in cam and "c" in cam:
            f.append(_number_list(path, cam["f"], (2,), f"sample {sid} camera f"))
            c.append(_number_list(path, cam["c"], (2,), f"sample {sid} camera c"))
        else:
            raise DataError(path, f"sample {sid}: camera must be {{\"f\": [fx, fy], \"c\": [cx, cy]}}")
        ids.append(sid)
    scale = 1000.0 if units == "m" else 1.0
    return {"sample_id": np.array(ids, dtype=np.int64), "joints3d": np.array(joints, dtype=np.float64).reshape(-1, N_JOINTS, 3) * scale,
            "f": np.array(f, dtype=np.float64).reshape(-1, 2), "c": np.array(c, dtype=np.float64).reshape(-1, 2), "layout": layout}


def write_predictions(path: str | os.PathLike, sample_id, joints3d, *, f=None, c=None) -> Path:
    """Write predictions as npz (the form :func:`read_predictions` reads), atomically."""
    from posecurator.fileio import atomic_savez

    path = Path(path)
    arrays = {"sample_id": np.asarray(sample_id, dtype=np.int64), "joints3d": np.asarray(joints3d, dtype=np.float32),
              "layout": np.array("h36m17")}
    if f is not None:
        arrays["f"] = np.asarray(f, dtype=np.float64)
    if c is not None:
        arrays["c"] = np.asarray(c, dtype=np.float64)
    atomic_savez(path, **arrays)
    return path
