"""MPII Human Pose annotations -> 2D pose sets in the MPII-16 layout.

Two forms are read (:func:`read_mpii` picks by the file name's suffix):

* **JSON** as used by mmpose and HRNet (``mpii_train.json``, ``mpii_val.json``): a list of
  objects, one per person, ``{"image": "015601864.jpg", "center": [x, y], "scale": s,
  "joints": [[x, y] x 16], "joints_vis": [0/1 x 16]}`` with an optional ``"headbox": [[x1, y1],
  [x2, y2]]``. ``scale`` is the person's height / 200 px; a joint with flag 0 is not labelled
  (its coordinates, often -1 or 0, are ignored).
* **MATLAB** ``mpii_human_pose_v1_u12_1.mat`` of the official release, read with
  :func:`scipy.io.loadmat`: ``RELEASE.annolist(i).image.name``, ``.annorect(j)`` with the head
  box ``x1, y1, x2, y2``, ``objpos.x/.y``, ``scale`` and ``annopoints.point(k)`` with ``id``
  (0-15), ``x``, ``y``, ``is_visible``; ``RELEASE.img_train(i)``, ``RELEASE.single_person{i}``
  (1-based annorect indices) and ``RELEASE.act(i).act_name``. People without ``annopoints``
  (every person of the test images) are skipped and counted. This path was written from the
  MPII documentation and tested only on small files written with :func:`scipy.io.savemat` in the
  same struct shape; it was **not checked against the real release**.

The joint order is MPII's own (:data:`posecurator.skeleton.MPII16`): r ankle, r knee, r hip,
l hip, l knee, l ankle, pelvis, thorax, upper neck, head top, r wrist, r elbow, r shoulder,
l shoulder, l elbow, l wrist. A joint is labelled when the file has a point for it (MATLAB) or
its flag is 1 (JSON); ``is_visible`` of the MATLAB file says whether a labelled joint is
occluded and is kept in :func:`read_mpii_arrays` only, as COCO's flag 1 is: occluded joints were
annotated and count as labelled.

MPII coordinates are MATLAB pixel coordinates, 1-based; like mmpose and HRNet, the reader
subtracts 1 (``one_based=True``) from joints, centres and head boxes so that they share COCO's
0-based pixel origin.

:func:`read_mpii` returns ``joints2d`` (N, 16, 2) float32 pixels, NaN where not labelled;
``visibility`` (N, 16) 0/1; layout ``"mpii16"``; ``source`` "mpii"; ``subject`` the image file
name; ``clip`` ``<image>_p<k>`` (k: the person's 0-based annorect index in the MATLAB file, its
0-based order among the image's entries in a JSON file); ``activity`` the MATLAB file's
``act_name`` (else ""); ``frame`` 0. Neither form stores image sizes: width and height are 0
(unknown) unless ``image_sizes`` gives them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from posecurator.errors import DataError
from posecurator.io.coco import _load_json  # the same JSON/gzip opening and one-line errors as COCO
from posecurator.poseset import PoseSet
from posecurator.skeleton import MPII16

N_JOINTS = MPII16.n_joints
# Coordinates beyond this (pixels) are corrupt, not a large image.
MAX_ABS_COORD = 1e6


def _describe(value) -> str:
    """A short description of a malformed value (never the value itself: it may be huge)."""
    if isinstance(value, (list, tuple)):
        return f"{len(value)} items"
    return type(value).__name__


def _numbers(path: Path, where: str, key: str, value, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``value`` (nested JSON lists) as a float64 array of ``shape``, or a DataError."""
    try:
        arr = np.array(value, dtype=object)
    except ValueError:
        arr = None
    if arr is None or arr.shape != shape:
        got = f"shape {arr.shape}" if arr is not None and arr.ndim else _describe(value)
        raise DataError(path, f"{where}: {key!r} must be {what}, got {got}")
    for x in arr.flat:
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise DataError(path, f"{where}: {key!r} holds a non-numeric value ({type(x).__name__})")
    try:
        return arr.astype(np.float64)
    except OverflowError:
        raise DataError(path, f"{where}: {key!r} holds a number beyond {MAX_ABS_COORD:g}") from None


def _check_coordinates(path: Path, where: list[str], name: str, coords: np.ndarray, mask: np.ndarray | None = None,
                       joint_axis: bool = False) -> None:
    """DataError for the first of N rows whose (masked) coordinates are NaN/inf or absurd.

    coords: (N, ..., 2); mask: (N, ...) bool of the entries that must be checked (None: all);
    where: the N rows' names for the message; joint_axis: coords is (N, J, 2), name the joint."""
    with np.errstate(invalid="ignore"):
        nonfinite = ~np.isfinite(coords).all(axis=-1)
        absurd = (np.abs(coords) > MAX_ABS_COORD).any(axis=-1) & ~nonfinite
    for bad, problem in ((nonfinite, "a NaN or infinite coordinate"), (absurd, f"a coordinate beyond {MAX_ABS_COORD:g} px")):
        if mask is not None:
            bad = bad & mask
        per_row = bad.reshape(len(bad), -1).any(axis=1) if bad.size else np.zeros(len(bad), dtype=bool)
        if per_row.any():
            i = int(np.argmax(per_row))
            detail = f" (joint {MPII16.joints[int(np.argmax(bad[i]))]})" if joint_axis else ""
            raise DataError(path, f"{where[i]}: {name} has {problem}{detail}")


# ---------------------------------------------------------------------- JSON (mmpose / HRNet)
def _read_json_entries(path: Path) -> dict[str, np.ndarray]:
    data = _load_json(path)
    if not isinstance(data, list):
        top = "object" if isinstance(data, dict) else type(data).__name__
        raise DataError(path, f"not an MPII annotation list: the top level is a JSON {top}")
    n = len(data)
    joints = np.full((n, N_JOINTS, 2), np.nan)
    flags = np.zeros((n, N_JOINTS), dtype=np.int8)
    center = np.full((n, 2), np.nan)
    scale = np.full(n, np.nan)
    headbox = np.full((n, 2, 2), np.nan)
    center_given, headbox_given = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    images = []
    for i, entry in enumerate(data):
        where = f"entry {i}"
        if not isinstance(entry, dict):
            raise DataError(path, f"{where}: not a JSON object but {_describe(entry)}")
        for key in ("image", "joints", "joints_vis"):
            if key not in entry:
                raise DataError(path, f"{where}: no {key!r}")
        image = entry["image"]
        if not isinstance(image, str) or not image or len(image) > 1000:
            raise DataError(path, f"{where}: 'image' must be a file name")
        images.append(image)
        joints[i] = _numbers(path, where, "joints", entry["joints"], (N_JOINTS, 2), f"{N_JOINTS} [x, y] pairs")
        vis = _numbers(path, where, "joints_vis", entry["joints_vis"], (N_JOINTS,), f"{N_JOINTS} flags")
        if not np.isin(vis, (0, 1)).all():
            raise DataError(path, f"{where}: 'joints_vis' flags must be 0 or 1")
        flags[i] = vis
        if entry.get("center") is not None:
            center[i] = _numbers(path, where, "center", entry["center"], (2,), "[x, y]")
            center_given[i] = True
        if entry.get("scale") is not None:
            scale[i] = _numbers(path, where, "scale", entry["scale"], (), "a number")
            if not 0 < scale[i] <= MAX_ABS_COORD:  # also False for NaN
                raise DataError(path, f"{where}: 'scale' must be a positive finite number (person height / 200 px)")
        if entry.get("headbox") is not None:
            headbox[i] = _numbers(path, where, "headbox", entry["headbox"], (2, 2), "[[x1, y1], [x2, y2]]")
            headbox_given[i] = True
    where = [f"entry {i}" for i in range(n)]
    _check_coordinates(path, where, "'joints'", joints, flags > 0, joint_axis=True)
    _check_coordinates(path, where, "'center'", center, center_given)
    _check_coordinates(path, where, "'headbox'", headbox, headbox_given[:, None])
    # k = order of the person among the image's entries
    seen: dict[str, int] = {}
    person = np.empty(n, dtype=np.int32)
    for i, image in enumerate(images):
        person[i] = seen.get(image, 0)
        seen[image] = person[i] + 1
    return {
        "joints": joints, "joints_vis": flags, "is_visible": np.full((n, N_JOINTS), -1, dtype=np.int8),
        "image": np.array(images, dtype=str).reshape(n), "person": person, "center": center, "scale": scale,
        "headbox": headbox, "is_train": np.full(n, -1, dtype=np.int8), "single_person": np.full(n, -1, dtype=np.int8),
        "annolist_index": np.full(n, -1, dtype=np.int32), "activity": np.full(n, "", dtype=object).astype(str),
        "skipped_without_points": 0,
    }


# ---------------------------------------------------------------------- MATLAB release
class _Malformed(Exception):
    """A value of the .mat file that is not what the MPII documentation describes."""


def _items(value) -> list:
    """Elements of a MATLAB struct array or cell read with ``squeeze_me=True``: a lone element,
    an array of them, or an empty array (-> [])."""
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        return list(value.ravel()) if value.size else []
    return [value]


def _scalar(value, *, allow_text: bool = False) -> float | None:
    """A MATLAB number read with ``squeeze_me=True``; None for a missing field or ``[]``.
    ``allow_text``: the release stores some flags as text ('0', '1')."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return None
        if value.size != 1:
            raise _Malformed(f"{value.size} numbers where one is expected")
        value = value.item()
    if isinstance(value, str):
        if not allow_text:
            raise _Malformed("text where a number is expected")
        value = value.strip()
        if not value:
            return None
        try:
            return float(value)
        except ValueError:
            raise _Malformed("text that is not a number") from None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise _Malformed(f"a {type(value).__name__} where a number is expected")
    return float(value)


def _coordinate(value: float | None, what: str) -> float | None:
    """``value`` unless it is NaN, infinite or absurd (then _Malformed naming ``what``)."""
    if value is not None and not np.isfinite(value):
        raise _Malformed(f"{what} has a NaN or infinite coordinate")
    if value is not None and abs(value) > MAX_ABS_COORD:
        raise _Malformed(f"{what} has a coordinate beyond {MAX_ABS_COORD:g} px")
    return value


def _text(value) -> str:
    if isinstance(value, np.ndarray):
        return "" if value.size == 0 else str(value.ravel()[0])
    return "" if value is None else str(value)


def _read_mat_release(path: Path) -> dict[str, np.ndarray]:
    from scipy.io import loadmat

    try:
        mat = loadmat(path, struct_as_record=False, squeeze_me=True)
    except NotImplementedError:  # MATLAB v7.3 (HDF5) files
        raise DataError(path, "MATLAB v7.3 (HDF5) file: save the MPII release as -v7 or use its JSON form") from None
    except (ValueError, TypeError, OSError, EOFError) as e:
        raise DataError(path, f"cannot read MATLAB file: {str(e)[:200]}") from None
    if "RELEASE" not in mat:
        raise DataError(path, "no RELEASE struct: not the MPII Human Pose release")
    release = mat["RELEASE"]
    annolist = _items(getattr(release, "annolist", None))
    img_train = _items(getattr(release, "img_train", None))
    # a cell array per image; with one image only, squeeze_me leaves the lone cell's content
    cells = getattr(release, "single_person", None)
    single_person = [] if cells is None else list(cells.ravel()) if isinstance(cells, np.ndarray) and cells.dtype == object else [cells]
    acts = _items(getattr(release, "act", None))

    rows: dict[str, list] = {k: [] for k in ("joints", "joints_vis", "is_visible", "image", "person", "center", "scale",
                                             "headbox", "is_train", "single_person", "annolist_index", "activity")}
    skipped = 0
    for i, ann in enumerate(annolist):
        image = _text(getattr(getattr(ann, "image", None), "name", None))
        if not image:
            raise DataError(path, f"annolist({i + 1}): no image name")
        try:
            train = _scalar(img_train[i]) if i < len(img_train) else None
            singles = {int(_scalar(s)) for s in _items(single_person[i])} if i < len(single_person) else set()
        except _Malformed as e:
            raise DataError(path, f"annolist({i + 1}): img_train or single_person holds {e}") from None
        activity = _text(getattr(acts[i], "act_name", None)) if i < len(acts) else ""
        for j, rect in enumerate(_items(getattr(ann, "annorect", None))):
            where = f"annolist({i + 1}).annorect({j + 1})"
            annopoints = _items(getattr(rect, "annopoints", None))
            points = _items(getattr(annopoints[0], "point", None)) if annopoints else []
            if not points:
                skipped += 1
                continue
            joints = np.full((N_JOINTS, 2), np.nan)
            labelled = np.zeros(N_JOINTS, dtype=np.int8)
            visible = np.full(N_JOINTS, -1, dtype=np.int8)
            try:
                for point in points:
                    jid = _scalar(getattr(point, "id", None))
                    if jid is None or jid != int(jid) or not 0 <= jid < N_JOINTS:
                        raise _Malformed(f"a point id that is not an integer 0..{N_JOINTS - 1}")
                    jid = int(jid)
                    if labelled[jid]:
                        raise _Malformed(f"point id {jid} twice")
                    what = f"point id {jid} ({MPII16.joints[jid]})"
                    x, y = (_coordinate(_scalar(getattr(point, k, None)), what) for k in ("x", "y"))
                    if x is None or y is None:
                        raise _Malformed(f"{what} without x or y")
                    flag = _scalar(getattr(point, "is_visible", None), allow_text=True)
                    if flag is not None and flag not in (0, 1):
                        raise _Malformed(f"point id {jid}: is_visible must be 0 or 1")
                    joints[jid], labelled[jid] = (x, y), 1
                    visible[jid] = -1 if flag is None else int(flag)
                box = [_coordinate(_scalar(getattr(rect, k, None)), "the head box") for k in ("x1", "y1", "x2", "y2")]
                objpos = _items(getattr(rect, "objpos", None))
                center = [_coordinate(_scalar(getattr(objpos[0], k, None)), "objpos") for k in ("x", "y")] if objpos else [None, None]
                scale = _coordinate(_scalar(getattr(rect, "scale", None)), "scale")
            except _Malformed as e:
                raise DataError(path, f"{where}: {e}") from None
            rows["joints"].append(joints)
            rows["joints_vis"].append(labelled)
            rows["is_visible"].append(visible)
            rows["image"].append(image)
            rows["person"].append(j)
            rows["center"].append([np.nan if c is None else c for c in center])
            rows["scale"].append(np.nan if scale is None else scale)
            rows["headbox"].append(np.nan if None in box else np.array(box).reshape(2, 2))
            rows["is_train"].append(-1 if train is None else int(train))
            rows["single_person"].append(int(j + 1 in singles))
            rows["annolist_index"].append(i)
            rows["activity"].append(activity)
    n = len(rows["image"])
    out = {
        "joints": np.array(rows["joints"], dtype=np.float64).reshape(n, N_JOINTS, 2),
        "joints_vis": np.array(rows["joints_vis"], dtype=np.int8).reshape(n, N_JOINTS),
        "is_visible": np.array(rows["is_visible"], dtype=np.int8).reshape(n, N_JOINTS),
        "image": np.array(rows["image"], dtype=str).reshape(n),
        "person": np.array(rows["person"], dtype=np.int32),
        "center": np.array(rows["center"], dtype=np.float64).reshape(n, 2),
        "scale": np.array(rows["scale"], dtype=np.float64),
        "headbox": np.array([np.broadcast_to(b, (2, 2)) for b in rows["headbox"]], dtype=np.float64).reshape(n, 2, 2),
        "is_train": np.array(rows["is_train"], dtype=np.int8),
        "single_person": np.array(rows["single_person"], dtype=np.int8),
        "annolist_index": np.array(rows["annolist_index"], dtype=np.int32),
        "activity": np.array(rows["activity"], dtype=str).reshape(n),
        "skipped_without_points": skipped,
    }
    return out


# ---------------------------------------------------------------------- public readers
def read_mpii_arrays(path: str | os.PathLike, *, one_based: bool = True,
                     image_sizes: dict[str, tuple[int, int]] | None = None) -> dict:
    """Every person with joint annotations of an MPII file (JSON or MATLAB), as arrays (N people).

    Returns ``joints`` (N, 16, 2) float64 pixels (0-based when ``one_based``; NaN where not
    labelled), ``joints_vis`` (N, 16) int8 (1 = labelled), ``is_visible`` (N, 16) int8 (MATLAB
    only: 1 visible, 0 occluded; -1 unknown), ``image`` (N,) str, ``person`` (N,) int32 (k of the
    clip id), ``center`` (N, 2) and ``scale`` (N,) float64 (person centre; height / 200 px; NaN
    when absent), ``headbox`` (N, 2, 2) float64 ``[[x1, y1], [x2, y2]]`` (NaN when absent),
    ``is_train`` / ``single_person`` (N,) int8 (MATLAB only; -1 unknown), ``annolist_index``
    (N,) int32 (0-based; -1 for JSON), ``activity`` (N,) str, ``image_width`` / ``image_height``
    (N,) int32 (0 = unknown, or from ``image_sizes``: image name -> (width, height)),
    ``skipped_without_points`` (int) and ``format`` ("json" or "mat"). Raises DataError naming
    the file and the entry for malformed input.
    """
    path = Path(path)
    low = path.name.lower()
    if low.endswith(".mat"):
        out, fmt = _read_mat_release(path), "mat"
    elif low.endswith((".json", ".json.gz")):
        out, fmt = _read_json_entries(path), "json"
    else:
        raise DataError(path, "not an MPII annotation file (expected .json or .mat)")
    if one_based:
        for key in ("joints", "center", "headbox"):
            out[key] = out[key] - 1.0
    sizes = image_sizes or {}
    out["image_width"] = np.array([sizes.get(name, (0, 0))[0] for name in out["image"].tolist()], dtype=np.int32)
    out["image_height"] = np.array([sizes.get(name, (0, 0))[1] for name in out["image"].tolist()], dtype=np.int32)
    out["format"] = fmt
    return out


def read_mpii(path: str | os.PathLike, *, min_keypoints: int = 1, source: str = "mpii", one_based: bool = True,
              image_sizes: dict[str, tuple[int, int]] | None = None) -> PoseSet:
    """MPII annotations (JSON or MATLAB) -> 2D pose set in the ``mpii16`` layout (module docstring).

    People with fewer than ``min_keypoints`` labelled joints are dropped. ``attrs`` records the
    file name and format, units, the coordinate origin, the kept and dropped counts and how many
    people have a head box (the boxes themselves: :func:`read_mpii_arrays`).
    """
    path = Path(path)
    arrays = read_mpii_arrays(path, one_based=one_based, image_sizes=image_sizes)
    keep = arrays["joints_vis"].sum(axis=1) >= min_keypoints
    labelled = arrays["joints_vis"][keep] > 0
    image = arrays["image"][keep]
    clip = np.char.add(np.char.add(image, "_p"), arrays["person"][keep].astype(str))
    attrs = {
        "source_file": path.name,
        "format": f"mpii-{arrays['format']}",
        "units": "px",
        "coordinates": "0-based pixels (the file's 1-based MATLAB coordinates minus 1)" if one_based
                       else "as stored in the file",
        "min_keypoints": int(min_keypoints),
        "dropped_few_keypoints": int(np.count_nonzero(~keep)),
        "skipped_without_points": int(arrays["skipped_without_points"]),
        "annotations": int(np.count_nonzero(keep)),
        "with_headbox": int(np.count_nonzero(np.isfinite(arrays["headbox"][keep]).all(axis=(1, 2)))),
        "image_size": "given" if image_sizes else "unknown",
    }
    return PoseSet(
        joints2d=np.where(labelled[..., None], arrays["joints"][keep], np.nan),
        visibility=labelled.astype(np.float32),
        source=source,
        subject=image,
        activity=arrays["activity"][keep],
        clip=clip,
        frame=0,
        layout=MPII16.name,
        attrs=attrs,
    )
