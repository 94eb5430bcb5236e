"""COCO person-keypoint annotations (``person_keypoints_*.json``) -> 2D pose sets.

COCO stores, per person annotation, 17 keypoints as ``[x1, y1, v1, x2, y2, v2, ...]`` in pixels
of the image with the origin at the top-left corner, and a flag ``v``: 0 = not labelled (x = y = 0),
1 = labelled but not visible (occluded), 2 = labelled and visible. The joint order is
:data:`posecurator.skeleton.COCO17`; the category's ``keypoints`` list in the file is checked
against it.

:func:`read_coco_arrays` returns every annotation field the project may need as arrays (raw
flags, boxes, image sizes); :func:`read_coco` turns them into a :class:`~posecurator.PoseSet`:

* ``joints2d`` (N, 17, 2) float32 pixels; unlabelled joints (v = 0) are NaN, never (0, 0), so an
  unmasked statistic fails loudly instead of pulling poses towards the image corner;
* ``visibility`` (N, 17) float32: 1 where v > 0 (v = 1 "occluded but labelled" counts as
  labelled: its position was annotated), 0 where v = 0;
* ``joints3d`` None; ``subject`` = str(image_id); ``clip`` = ``img<image_id>_ann<ann_id>``;
  ``activity`` = ""; ``frame`` = 0; ``sample_id`` = the annotation id (so files of predictions or
  captions a user made elsewhere name samples by COCO's own ids);
* ``bbox`` (N, 4) the annotation's person box ``[x, y, w, h]`` px (NaN where the file has none);
* one camera per image in the camera table (``camera`` column = its row): identity pose, the
  image's width and height, and intrinsics ASSUMED from the image size (focal length = the larger
  side, principal point = the centre; ../shared/BENCHMARK.md's 2D-only protocol), marked
  ``"assumed_intrinsics": true``. Images without a size get focal length 0 and cannot be lifted
  back into the image (the placement step says so).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np

from posecurator.errors import DataError
from posecurator.io.common import MAX_ABS_PX, is_number, one_line, short_value
from posecurator.poseset import PoseSet
from posecurator.skeleton import COCO17

N_KEYPOINTS = COCO17.n_joints
MAX_IMAGE_SIDE = 1_000_000  # pixels; a larger width or height is corrupt
_INT64 = (-(2**63), 2**63 - 1)


def _load_json(path: Path):
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(path, f"corrupt or truncated JSON: {e.msg}", line=e.lineno) from None
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read: {one_line(e)}") from None
    except (ValueError, RecursionError) as e:  # integers of thousands of digits, absurd nesting
        raise DataError(path, f"corrupt JSON: {one_line(e)}") from None


def _integer(value) -> int | None:
    """A JSON integer within int64 (an integral float such as 3.0 counts), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)
    if isinstance(value, int) and _INT64[0] <= value <= _INT64[1]:
        return value
    return None


def _id(path: Path, value, what: str) -> int:
    out = _integer(value)
    if out is None:
        raise DataError(path, f"{what} must be an integer id, got {short_value(value)}")
    return out


def _person_category_ids(path: Path, data: dict) -> set[int] | None:
    """Ids of categories that carry keypoints; None when the file lists no categories."""
    categories = data.get("categories")
    if not categories:
        return None
    if not isinstance(categories, list):
        raise DataError(path, f"'categories' must be a list, got {type(categories).__name__}")
    ids = set()
    for k, cat in enumerate(categories):
        if not isinstance(cat, dict):
            raise DataError(path, f"categories entry {k} is not a JSON object")
        names = cat.get("keypoints")
        if not names:
            continue
        if not isinstance(names, list) or tuple(names) != COCO17.joints:
            raise DataError(path, f"category {short_value(cat.get('name'))} has keypoints {short_value(names)}, "
                                  f"not the COCO-17 layout (nose, left_eye, ..., right_ankle)")
        ids.add(_id(path, cat.get("id"), f"category {short_value(cat.get('name'))} 'id'"))
    if not ids:
        raise DataError(path, "no category has keypoints: not a COCO person-keypoints file")
    return ids


def _image_table(path: Path, images: list) -> dict[int, tuple[int, int, str]]:
    """image id -> (width, height, file name) of the 'images' list, each checked (0 = size unknown)."""
    if not isinstance(images, list):
        raise DataError(path, f"'images' must be a list, got {type(images).__name__}")
    out = {}
    for k, im in enumerate(images):
        if not isinstance(im, dict) or "id" not in im:
            raise DataError(path, f"images entry {k} lacks a valid id (not an object with 'id')")
        image_id = _id(path, im["id"], f"images entry {k}: 'id'")
        sides = []
        for key in ("width", "height"):
            if key not in im:   # unknown size
                sides.append(0)
                continue
            side = _integer(im[key])
            if side is None or not 1 <= side <= MAX_IMAGE_SIDE:
                raise DataError(path, f"image {image_id}: {key!r} must be a positive integer up to "
                                      f"{MAX_IMAGE_SIDE} pixels, got {short_value(im[key])}")
            sides.append(side)
        name = im.get("file_name", "")
        if not isinstance(name, str) or len(name) > 1000:
            raise DataError(path, f"image {image_id}: 'file_name' must be a file name, got {short_value(name)}")
        entry = (sides[0], sides[1], name)
        # real files repeat an image (one entry per annotation); only a contradiction is an error
        if out.setdefault(image_id, entry) != entry:
            raise DataError(path, f"image id {image_id} appears twice in 'images' with different sizes or file names")
    return out


def _optional_numbers(path: Path, a: dict, key: str, n: int, ann_id: int) -> list[float]:
    """An annotation's ``bbox`` (n = 4) or ``area`` (n = 1): finite, non-negative sizes, at most
    MAX_ABS_PX (area: its square); NaN when absent."""
    if key not in a:
        return [np.nan] * n
    value = a[key]
    values = value if n > 1 else [value]
    if not isinstance(values, list) or len(values) != n or not all(is_number(v) for v in values):
        raise DataError(path, f"annotation {ann_id}: {key!r} must be {'[x, y, w, h]' if n > 1 else 'a number'}, "
                              f"got {short_value(value)}")
    limit = MAX_ABS_PX if n > 1 else MAX_ABS_PX ** 2
    sizes = values[2:] if n > 1 else values
    if not all(abs(float(v)) <= limit for v in values) or not all(v >= 0 for v in sizes):  # NaN fails too
        raise DataError(path, f"annotation {ann_id}: {key!r} holds a negative, non-finite or absurd value "
                              f"({short_value(value)})")
    return [float(v) for v in values]


def _keypoint_array(path: Path, rows: list, ann_ids: list[int]) -> np.ndarray:
    """(N, 17, 3) float64 from the annotations' keypoint lists, which must hold plain numbers
    (no strings, nulls, nested lists, or integers beyond int64 that a float cast would accept)."""
    try:
        arr = np.array(rows) if rows else np.zeros((0, 3 * N_KEYPOINTS))
    except (ValueError, OverflowError):
        arr = None
    if arr is None or arr.dtype.kind not in "iuf" or arr.shape != (len(rows), 3 * N_KEYPOINTS):
        for ann_id, row in zip(ann_ids, rows):
            if not all(is_number(v) and abs(v) < 2**63 for v in row):
                raise DataError(path, f"annotation {ann_id}: keypoints hold a value that is not a number "
                                      f"({short_value(next(v for v in row if not (is_number(v) and abs(v) < 2**63)))})")
        raise DataError(path, "keypoints are not all numbers")
    return arr.astype(np.float64).reshape(-1, N_KEYPOINTS, 3)


def read_coco_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every person annotation with keypoints of a COCO json file, as arrays (N annotations).

    Returns ``keypoints`` (N, 17, 3) float64 ``[x, y, v]`` as stored (pixels, raw flags),
    ``num_keypoints`` (N,) int32 (labelled joints, counted from the flags), ``image_id`` and
    ``ann_id`` (N,) int64, ``bbox`` (N, 4) float64 ``[x, y, w, h]`` pixels, ``area`` (N,) float64,
    ``iscrowd`` (N,) int8, ``image_width`` / ``image_height`` (N,) int32, ``file_name`` (N,) str.
    Annotations of categories without keypoints are skipped. Raises DataError naming the file
    (and the annotation or image) for corrupt JSON, missing keys, values of the wrong type or out
    of range (ids beyond int64, duplicate ids, iscrowd not 0/1, image sizes not positive integers
    up to MAX_IMAGE_SIDE, labelled keypoints beyond MAX_ABS_PX or not finite, flags not 0/1/2),
    keypoint lists of the wrong length, or unknown image ids. Optional fields (bbox, area,
    iscrowd, width, height, file_name) may be absent; present, they must hold valid values (null
    is not one).
    """
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, dict) or "annotations" not in data or "images" not in data:
        raise DataError(path, "not a COCO annotation file (needs 'images' and 'annotations')")
    keypoint_categories = _person_category_ids(path, data)
    images = _image_table(path, data["images"])
    if not isinstance(data["annotations"], list):
        raise DataError(path, f"'annotations' must be a list, got {type(data['annotations']).__name__}")

    rows, image_ids, ann_ids, bboxes, areas, crowd = [], [], [], [], [], []
    seen: set[int] = set()
    for k, a in enumerate(data["annotations"]):
        if not isinstance(a, dict):
            raise DataError(path, f"annotations entry {k} is not a JSON object")
        if keypoint_categories is not None:
            category = _integer(a.get("category_id"))
            if category is None and a.get("category_id") is not None:
                raise DataError(path, f"annotations entry {k}: 'category_id' must be an integer, "
                                      f"got {short_value(a.get('category_id'))}")
            if category not in keypoint_categories:
                continue
        for key in ("keypoints", "image_id", "id"):
            if key not in a:
                raise DataError(path, f"annotation {short_value(a.get('id', '?'))} lacks {key!r}")
        ann_id = _id(path, a["id"], f"annotations entry {k}: 'id'")
        image_id = _id(path, a["image_id"], f"annotation {ann_id}: 'image_id'")
        kp = a["keypoints"]
        if not isinstance(kp, list) or len(kp) != 3 * N_KEYPOINTS:
            raise DataError(path, f"annotation {ann_id}: keypoints must be {3 * N_KEYPOINTS} numbers, got {len(kp) if isinstance(kp, list) else type(kp).__name__}")
        if image_id not in images:
            raise DataError(path, f"annotation {ann_id} refers to image {image_id}, which 'images' does not list")
        if ann_id in seen:
            raise DataError(path, f"annotation id {ann_id} appears twice")
        seen.add(ann_id)
        is_crowd = a.get("iscrowd", 0)
        if _integer(is_crowd) not in (0, 1):
            raise DataError(path, f"annotation {ann_id}: 'iscrowd' must be 0 or 1, got {short_value(is_crowd)}")
        rows.append(kp)
        image_ids.append(image_id)
        ann_ids.append(ann_id)
        bboxes.append(_optional_numbers(path, a, "bbox", 4, ann_id))
        areas.append(_optional_numbers(path, a, "area", 1, ann_id)[0])
        crowd.append(_integer(is_crowd))
    keypoints = _keypoint_array(path, rows, ann_ids)
    bbox = np.array(bboxes, dtype=np.float64).reshape(-1, 4)
    flags = keypoints[..., 2]
    if not np.isin(flags, (0, 1, 2)).all():
        bad = int(np.argmax(~np.isin(flags, (0, 1, 2)).all(axis=1)))
        raise DataError(path, f"annotation {ann_ids[bad]}: visibility flags must be 0, 1 or 2")
    _check_keypoint_range(path, keypoints, ann_ids)
    image_ids = np.array(image_ids, dtype=np.int64)
    width = np.array([images[i][0] for i in image_ids.tolist()], dtype=np.int32)
    height = np.array([images[i][1] for i in image_ids.tolist()], dtype=np.int32)
    return {
        "keypoints": keypoints,
        "num_keypoints": np.count_nonzero(flags > 0, axis=1).astype(np.int32),
        "image_id": image_ids,
        "ann_id": np.array(ann_ids, dtype=np.int64),
        "bbox": bbox,
        "area": np.array(areas, dtype=np.float64),
        "iscrowd": np.array(crowd, dtype=np.int8),
        "image_width": width,
        "image_height": height,
        "file_name": np.array([images[i][2] for i in image_ids.tolist()], dtype=str),
    }


def _check_keypoint_range(path: Path, keypoints: np.ndarray, ann_ids: list[int]) -> None:
    """Labelled keypoints (v > 0) must be finite pixels within MAX_ABS_PX (unlabelled ones are ignored)."""
    labelled = keypoints[..., 2] > 0
    with np.errstate(invalid="ignore", over="ignore"):
        bad = labelled & ~(np.abs(keypoints[..., :2]) <= MAX_ABS_PX).all(axis=-1)   # NaN fails the test too
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise DataError(path, f"annotation {ann_ids[i]}: keypoint {COCO17.joints[j]} is not finite or beyond "
                              f"{MAX_ABS_PX:g} px ({short_value(keypoints[i, j, :2].tolist())})")


def read_coco(path: str | os.PathLike, *, min_keypoints: int = 1, source: str = "coco") -> PoseSet:
    """COCO person keypoints -> 2D pose set in the ``coco17`` layout (see the module docstring).

    Annotations with fewer than ``min_keypoints`` labelled joints are dropped; ``attrs`` records
    how many (``dropped_few_keypoints``), the file name and the kept annotations' count.
    """
    path = Path(path)
    arrays = read_coco_arrays(path)
    keep = arrays["num_keypoints"] >= min_keypoints
    kp = arrays["keypoints"][keep]
    labelled = kp[..., 2] > 0
    joints2d = np.where(labelled[..., None], kp[..., :2], np.nan)
    image_id, ann_id = arrays["image_id"][keep], arrays["ann_id"][keep]
    images, camera = np.unique(image_id, return_inverse=True)
    first = np.zeros(len(images), dtype=np.int64)
    first[camera[::-1]] = np.arange(len(camera))[::-1]  # first annotation of each image
    width = arrays["image_width"][keep][first].astype(np.float64)
    height = arrays["image_height"][keep][first].astype(np.float64)
    focal = np.maximum(width, height)
    cameras = [{"name": f"img{int(i)}", "R": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], "t": [0.0, 0.0, 0.0],
                "f": [float(fl), float(fl)], "c": [float(w) / 2, float(h) / 2], "width": int(w), "height": int(h),
                "assumed_intrinsics": True}
               for i, w, h, fl in zip(images.tolist(), width.tolist(), height.tolist(), focal.tolist())]
    clip = np.char.add(np.char.add("img", image_id.astype(str)), np.char.add("_ann", ann_id.astype(str)))
    attrs = {
        "source_file": path.name,
        "units": "px",
        "min_keypoints": int(min_keypoints),
        "dropped_few_keypoints": int(np.count_nonzero(~keep)),
        "annotations": int(np.count_nonzero(keep)),
        "intrinsics": "assumed from the image size: focal = larger side, principal point = centre",
    }
    return PoseSet(
        joints2d=joints2d,
        visibility=labelled.astype(np.float32),
        source=source,
        subject=image_id.astype(str),
        activity="",
        clip=clip,
        frame=0,
        sample_id=ann_id,
        camera=camera.reshape(-1).astype(np.int32),
        bbox=arrays["bbox"][keep],
        layout=COCO17.name,
        cameras=cameras,
        attrs=attrs,
    )
