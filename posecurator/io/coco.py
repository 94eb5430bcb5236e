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
from posecurator.poseset import PoseSet
from posecurator.skeleton import COCO17

N_KEYPOINTS = COCO17.n_joints


def _load_json(path: Path):
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(path, f"corrupt or truncated JSON: {e.msg}", line=e.lineno) from None
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read: {e}") from None


def _person_category_ids(path: Path, data: dict) -> set[int] | None:
    """Ids of categories that carry keypoints; None when the file lists no categories."""
    categories = data.get("categories")
    if not categories:
        return None
    ids = set()
    for cat in categories:
        names = cat.get("keypoints") if isinstance(cat, dict) else None
        if not names:
            continue
        if tuple(names) != COCO17.joints:
            raise DataError(path, f"category {cat.get('name')!r} has keypoints {names}, not the COCO-17 layout {list(COCO17.joints)}")
        ids.add(cat.get("id"))
    if not ids:
        raise DataError(path, "no category has keypoints: not a COCO person-keypoints file")
    return ids


def read_coco_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every person annotation with keypoints of a COCO json file, as arrays (N annotations).

    Returns ``keypoints`` (N, 17, 3) float64 ``[x, y, v]`` as stored (pixels, raw flags),
    ``num_keypoints`` (N,) int32 (labelled joints, counted from the flags), ``image_id`` and
    ``ann_id`` (N,) int64, ``bbox`` (N, 4) float64 ``[x, y, w, h]`` pixels, ``area`` (N,) float64,
    ``iscrowd`` (N,) int8, ``image_width`` / ``image_height`` (N,) int32, ``file_name`` (N,) str.
    Annotations of categories without keypoints are skipped. Raises DataError naming the file
    for corrupt JSON, missing keys, keypoint lists of the wrong length, or unknown image ids.
    """
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, dict) or "annotations" not in data or "images" not in data:
        raise DataError(path, "not a COCO annotation file (needs 'images' and 'annotations')")
    keypoint_categories = _person_category_ids(path, data)
    try:
        images = {int(im["id"]): im for im in data["images"]}
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(path, f"an entry of 'images' lacks a valid id ({e})") from None

    anns = [a for a in data["annotations"] if keypoint_categories is None or a.get("category_id") in keypoint_categories]
    rows, image_ids, ann_ids, bboxes, areas, crowd = [], [], [], [], [], []
    for a in anns:
        try:
            kp, image_id, ann_id = a["keypoints"], int(a["image_id"]), int(a["id"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(path, f"annotation {a.get('id', '?')} lacks {e}") from None
        if not isinstance(kp, list) or len(kp) != 3 * N_KEYPOINTS:
            raise DataError(path, f"annotation {ann_id}: keypoints must be {3 * N_KEYPOINTS} numbers, got {len(kp) if isinstance(kp, list) else type(kp).__name__}")
        if image_id not in images:
            raise DataError(path, f"annotation {ann_id} refers to image {image_id}, which 'images' does not list")
        rows.append(kp)
        image_ids.append(image_id)
        ann_ids.append(ann_id)
        bboxes.append(a.get("bbox", [np.nan] * 4))
        areas.append(a.get("area", np.nan))
        crowd.append(a.get("iscrowd", 0))
    try:
        keypoints = np.array(rows, dtype=np.float64).reshape(-1, N_KEYPOINTS, 3)
        bbox = np.array(bboxes, dtype=np.float64).reshape(-1, 4)
    except (TypeError, ValueError) as e:
        raise DataError(path, f"non-numeric keypoints or bbox: {e}") from None
    flags = keypoints[..., 2]
    if not np.isin(flags, (0, 1, 2)).all():
        bad = int(np.argmax(~np.isin(flags, (0, 1, 2)).all(axis=1)))
        raise DataError(path, f"annotation {ann_ids[bad]}: visibility flags must be 0, 1 or 2")
    image_ids = np.array(image_ids, dtype=np.int64)
    width = np.array([images[i].get("width", 0) for i in image_ids.tolist()], dtype=np.int32)
    height = np.array([images[i].get("height", 0) for i in image_ids.tolist()], dtype=np.int32)
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
        "file_name": np.array([str(images[i].get("file_name", "")) for i in image_ids.tolist()], dtype=str),
    }


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
