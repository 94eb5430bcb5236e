"""Import a file or a folder (recursively) of any supported format into one pose set.

=========================  ===============================================================
file                       read with
=========================  ===============================================================
``*.bvh``, ``*.bvh.gz``    :func:`posecurator.io.bvh.read_bvh`
``*.amc``, ``*.amc.gz``    :func:`posecurator.io.asf_amc.read_amc` (ASF found next to it)
``*.npz``                  :func:`posecurator.io.h36m_npz.read_h36m_npz_auto` (VideoPose3D/mmpose)
``*.json`` with            :func:`posecurator.io.coco.read_coco`; other json files (e.g. Bandai's
"annotations"              per-clip content/style labels) are labels, not data
``*.json``: a list of      :func:`posecurator.io.mpii.read_mpii` (MPII-16 in mmpose/HRNet's form)
objects with "joints_vis"
``*.mat`` with "RELEASE"   :func:`posecurator.io.mpii.read_mpii` (the official MPII release)
``*.txt`` with "Frames"    :func:`posecurator.io.deepmimic.read_deepmimic`
folder with                :meth:`posecurator.PoseSet.load` (a posecurator dataset)
``posecurator.json``
=========================  ===============================================================

Labels of BVH/AMC clips, by priority:

1. an ``index.csv`` in the file's folder or an ancestor (up to the data set's root), matched by
   its ``file``/``name``/``clip`` column (suffixes ignored). Subject from the first of the
   columns ``subject, actor, person_id, person, performer, participant``; activity from
   ``activity, motion, action, content, kind, class, label, category`` (HDM05: actor, motion;
   Bandai: content, its style kept in ``attrs["clip_info"]``; ReActIdle: person_id, kind). Other
   columns (take, style, split, ...) go to ``attrs["clip_info"][clip]``.
2. a per-clip json next to the file with ``content``/``style`` ids (Bandai), named through
   ``cfg/content_label.txt`` when present;
3. the file name: ``HDM_<actor>_<motion>_<take>[_<fps>]`` (HDM05) or ``..._<subject>_<trial>``
   (CMU, e.g. ``01_01``, ``bvh11_131_01``).

A clip with no known activity gets ``"unknown"``; one with no known subject gets its source
name as subject: Bandai's files carry no actor ids
(three actors, one normalised skeleton), so every Bandai clip has subject ``"bandai"``. The
source is the nearest folder named like a known data set (hdm05, bandai, cmu, reactidle), else
an HDM05 file name says hdm05, else the top folder's name. Clip ids are the file's path
relative to the imported folder without suffixes (with the format suffix where two files would
collide, e.g. ``01_01.amc`` and ``01_01.bvh``), so they are unique across the set; clips of
other readers are prefixed with their file's id.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import numpy as np

from posecurator.errors import DataError, PoseCuratorError
from posecurator.io.common import check_poseset, one_line, strip_suffixes
from posecurator.poseset import META_FILE, PoseSet

KNOWN_SOURCES = ("hdm05", "bandai", "cmu", "reactidle")
UNKNOWN_ACTIVITY = "unknown"
MOCAP_SUFFIXES = (".bvh", ".bvh.gz", ".amc", ".amc.gz")
OTHER_SUFFIXES = (".npz", ".json", ".txt", ".mat")
SUBJECT_COLUMNS = ("subject", "actor", "person_id", "person", "performer", "participant")
ACTIVITY_COLUMNS = ("activity", "motion", "action", "content", "kind", "class", "label", "category")
KEY_COLUMNS = ("file", "name", "clip", "filename")
_NOT_INFO = set(KEY_COLUMNS) | {"frames", "frame_time", "fps"}
_HDM_NAME = re.compile(r"^HDM_([A-Za-z0-9]+)_(.+?)_(\d+)(?:_(\d+))?$")
_SUBJECT_TRIAL = re.compile(r"(?:^|_)(\d+)_(\d+)$")


# ---------------------------------------------------------------------- discovery
def _kind(path: Path) -> str | None:
    """What a path is: 'dataset', 'bvh', 'amc', 'npz', 'coco', 'mpii', 'deepmimic', or None (not data)."""
    if path.is_dir():
        return "dataset" if (path / META_FILE).is_file() else None
    low = path.name.lower()
    if low.endswith((".bvh", ".bvh.gz")):
        return "bvh"
    if low.endswith((".amc", ".amc.gz")):
        return "amc"
    if low.endswith(".npz"):
        return "npz"
    if low.endswith(".json"):
        if _file_contains(path, b'"annotations"'):
            return "coco"
        return "mpii" if _is_mpii_json(path) else None
    if low.endswith(".mat"):
        return "mpii" if _mat_has_variable(path, "RELEASE") else None
    if low.endswith(".txt"):
        return "deepmimic" if _file_contains(path, b'"Frames"') else None
    return None


def _file_contains(path: Path, needle: bytes) -> bool:
    try:
        with open(path, "rb") as fh:
            return needle in fh.read()
    except OSError:
        return False


def _is_mpii_json(path: Path) -> bool:
    """A JSON list of objects with "joints_vis" (mmpose/HRNet's MPII form): judged from the start
    of the file, where the first object is."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return False
    return head.lstrip().startswith(b"[") and head.lstrip()[1:].lstrip().startswith(b"{") and b'"joints_vis"' in head


def _mat_has_variable(path: Path, name: str) -> bool:
    """Whether a MATLAB file holds a variable ``name`` (read from the headers, not the data)."""
    from scipy.io import whosmat

    try:
        return any(var == name for var, _, _ in whosmat(path))
    except Exception:  # not a MATLAB v4/v5 file (or unreadable): not data  # noqa: BLE001
        return False


def find_data_files(root: str | os.PathLike) -> list[tuple[Path, str]]:
    """(path, kind) of every importable file under ``root`` (sorted; a dataset folder counts as
    one item and is not descended into)."""
    root = Path(root)
    kind = _kind(root)
    if root.is_file() or kind == "dataset":
        return [(root, kind)] if kind else []
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames.sort()
        keep = []
        for d in dirnames:
            if (here / d / META_FILE).is_file():
                out.append((here / d, "dataset"))
            elif not d.startswith("."):
                keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            if name.startswith(".") or name == META_FILE:
                continue
            k = _kind(here / name)
            if k:
                out.append((here / name, k))
    out.sort(key=lambda pk: str(pk[0]))
    return out


# ---------------------------------------------------------------------- labels
class _IndexCache:
    """index.csv tables by folder, read once."""

    def __init__(self):
        self.tables: dict[Path, dict[str, dict[str, str]] | None] = {}

    def table(self, folder: Path) -> dict[str, dict[str, str]] | None:
        if folder not in self.tables:
            self.tables[folder] = _read_index(folder / "index.csv") if (folder / "index.csv").is_file() else None
        return self.tables[folder]

    def lookup(self, path: Path, top: Path) -> dict[str, str] | None:
        key = strip_suffixes(path.name).lower()
        folder = path.parent
        for _ in range(6):
            table = self.table(folder)
            if table is not None and key in table:
                return table[key]
            if folder == top or folder.parent == folder:
                break
            folder = folder.parent
        return None


def _read_index(path: Path) -> dict[str, dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(path, f"cannot read label index: {e}") from None
    out = {}
    for row in rows:
        # a row with more fields than the header puts the extras in a list under the key None
        row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None and isinstance(v, (str, type(None)))}
        key = next((row[c] for c in KEY_COLUMNS if row.get(c)), None)
        if key:
            out[strip_suffixes(key).lower()] = row
    return out


def _first(row: dict[str, str], columns) -> str:
    return next((row[c] for c in columns if row.get(c)), "")


def _bandai_json_labels(path: Path) -> dict[str, str] | None:
    side = path.parent / (strip_suffixes(path.name) + ".json")
    if not side.is_file():
        return None
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None   # labels, not data: an unreadable label file leaves the clip unlabelled
    if not isinstance(data, dict) or "content" not in data:
        return None
    out = {}
    for key in ("content", "style"):
        raw = data.get(key)
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            continue   # not a label (a list, an object, null)
        value = str(raw)[:100]
        for folder in (path.parent, path.parent.parent, path.parent.parent.parent):
            labels = folder / "cfg" / f"{key}_label.txt"
            if labels.is_file():
                try:
                    names = labels.read_text(encoding="utf-8").split()
                except (OSError, UnicodeDecodeError):
                    break
                if isinstance(raw, int) and 0 <= raw < len(names):
                    value = re.sub(r"^dataset-\d+_", "", names[raw])
                elif isinstance(raw, str) and raw.isdecimal() and int(raw) < len(names):
                    value = re.sub(r"^dataset-\d+_", "", names[int(raw)])
                break
        out[key] = value
    return out


def _source_for(path: Path, root: Path) -> str:
    for part in reversed(path.resolve().parent.parts):
        if part.lower() in KNOWN_SOURCES:
            return part.lower()
    if _HDM_NAME.match(strip_suffixes(path.name)):
        return "hdm05"
    rel = path.relative_to(root).parts if root.is_dir() and path != root else ()
    if len(rel) > 1:
        return rel[0]
    return (root if root.is_dir() else root.parent).resolve().name or "data"


def clip_labels(path: Path, root: Path, index: _IndexCache | None = None) -> dict:
    """Subject, activity and extra info of one mocap file (see the module docstring)."""
    index = index or _IndexCache()
    stem = strip_suffixes(path.name)
    top = root if root.is_dir() else root.parent
    # the data set's root may be above the imported folder (importing bandai/dataset-1 finds bandai/index.csv)
    for _ in range(3):
        if top.parent != top and not (top / "index.csv").is_file() and (top.parent / "index.csv").is_file():
            top = top.parent
        else:
            break
    subject = activity = ""
    info: dict[str, str] = {}
    row = index.lookup(path, top)
    if row is not None:
        subject = _first(row, SUBJECT_COLUMNS)
        activity = _first(row, ACTIVITY_COLUMNS)
        used = {next((c for c in SUBJECT_COLUMNS if row.get(c)), None), next((c for c in ACTIVITY_COLUMNS if row.get(c)), None)}
        info = {k: v for k, v in row.items() if k not in _NOT_INFO and k not in used and v}
    else:
        side = _bandai_json_labels(path)
        if side is not None:
            activity = side.get("content", "")
            info = {k: v for k, v in side.items() if k != "content"}
        m = _HDM_NAME.match(stem)
        if m:
            subject = subject or m.group(1)
            activity = activity or m.group(2)
            info.setdefault("take", m.group(3))
        elif not subject:
            m = _SUBJECT_TRIAL.search(stem)
            if m:
                subject, info["trial"] = m.group(1), m.group(2)
    return {"subject": subject, "activity": activity, "info": info}


# ---------------------------------------------------------------------- import
def _clip_id(path: Path, root: Path) -> str:
    if root.is_dir() and path != root:
        rel = path.relative_to(root)
        return "/".join(rel.parts[:-1] + (strip_suffixes(rel.name),))
    return strip_suffixes(path.name)


def _clip_ids(files: list[tuple[Path, str]], root: Path) -> dict[Path, str]:
    """Clip id (prefix) of every file: its relative path without suffixes, or with its format
    suffix where two files would otherwise share an id (``01_01.amc`` and ``01_01.bvh``)."""
    ids = {path: _clip_id(path, root) for path, _ in files}
    seen: dict[str, int] = {}
    for v in ids.values():
        seen[v] = seen.get(v, 0) + 1
    for path, v in ids.items():
        if seen[v] > 1:
            name = path.name[:-3] if path.name.lower().endswith(".gz") else path.name
            ids[path] = v[: len(v) - len(strip_suffixes(path.name))] + name
    return ids


def _read_one(path: Path, kind: str, root: Path, *, clip: str, mapping, fps: float, source: str | None,
              index: _IndexCache) -> tuple[PoseSet, dict | None]:
    if kind in ("bvh", "amc"):
        labels = clip_labels(path, root, index)
        src = source or _source_for(path, root)
        kwargs = dict(mapping=mapping, fps=fps, source=src, subject=labels["subject"] or src,
                      activity=labels["activity"] or UNKNOWN_ACTIVITY, clip=clip)
        if kind == "bvh":
            from posecurator.io.bvh import read_bvh
            return read_bvh(path, **kwargs), labels["info"]
        from posecurator.io.asf_amc import read_amc
        return read_amc(path, **kwargs), labels["info"]
    if kind == "dataset":
        ps = PoseSet.load(path)
    elif kind == "npz":
        from posecurator.io.h36m_npz import read_h36m_npz_auto
        ps = read_h36m_npz_auto(path)
    elif kind == "coco":
        from posecurator.io.coco import read_coco
        ps = read_coco(path)
    elif kind == "mpii":
        from posecurator.io.mpii import read_mpii
        ps = read_mpii(path)
    elif kind == "deepmimic":
        from posecurator.io.deepmimic import read_deepmimic
        ps = read_deepmimic(path, fps=fps)
    else:  # pragma: no cover - _kind returns only the kinds above
        raise DataError(path, f"unsupported file kind {kind}")
    if source:
        ps = ps.replace(source=np.full(len(ps), source))
    if root.is_dir() and path != root:  # keep clip ids unique across files
        ps = ps.replace(clip=np.char.add(clip + ":", ps.clip.astype(str)))
    check_poseset(path, ps)
    return ps, None


def import_path(src: str | os.PathLike, *, mapping=None, fps: float = 30.0, progress: bool = True,
                source: str | None = None) -> PoseSet:
    """Import a file or a folder (recursively) of any supported format into one pose set.

    src: a file or folder. mapping: joint mapping for BVH/AMC files (None: detect a built-in per
    file; a name, a YAML/JSON file or a SkeletonMapping). fps: target frame rate. progress: tqdm
    bar over files. source: label for every sample (default from the folder layout).
    Returns one PoseSet (sample ids renumbered). Raises DataError when nothing importable is
    found, naming the corrupt file (and line) when one file is bad, or when the files cannot be
    combined (2D-only with 3D, different layouts)."""
    root = Path(src)
    if not root.exists():
        raise DataError(root, "no such file or folder")
    files = find_data_files(root)
    if not files:
        what = "folder" if root.is_dir() else "file"
        raise DataError(root, f"no supported data in this {what} (BVH, ASF/AMC, VideoPose3D/mmpose npz, "
                              "COCO json, MPII json/mat, DeepMimic txt or a posecurator dataset)")
    from tqdm.auto import tqdm

    index = _IndexCache()
    clip_ids = _clip_ids(files, root)
    parts: list[PoseSet] = []
    clip_info: dict[str, dict] = {}
    per_source: dict[str, dict] = {}
    for path, kind in tqdm(files, desc=f"import {root.name}", unit="file", disable=not progress,
                           leave=False, dynamic_ncols=True):
        try:
            ps, info = _read_one(path, kind, root, clip=clip_ids[path], mapping=mapping, fps=fps, source=source, index=index)
        except PoseCuratorError:
            raise
        except (ValueError, KeyError, IndexError, OSError, UnicodeDecodeError) as e:
            # the readers validate what they read; this catches what they missed, in one line
            raise DataError(path, f"cannot read {kind} file: {one_line(e)}") from None
        if len(ps) == 0:
            continue
        parts.append(ps)
        if info:
            clip_info[str(ps.clip[0])] = info
        if kind in ("bvh", "amc"):
            _merge_source_attrs(per_source, str(ps.source[0]), ps.attrs)
    if not parts:
        raise DataError(root, "the supported files hold no poses")
    fps_values = sorted({float(p.fps) for p in parts})
    try:
        out = parts[0] if len(parts) == 1 else PoseSet.concatenate(parts, renumber=True)
    except ValueError as e:
        raise DataError(root, f"cannot combine the files into one pose set: {e}") from None
    attrs = dict(parts[0].attrs) if len(parts) == 1 else {}
    attrs["imported_from"] = str(root.resolve())
    attrs["files"] = len(files)
    if per_source:
        attrs["per_source"] = per_source
    if clip_info:
        attrs["clip_info"] = clip_info
    out.attrs = attrs
    if len(fps_values) == 1:
        out.fps = fps_values[0]
    else:
        # mixed rates after resampling (24 fps sources keep 24): the nominal target rate, the
        # real ones per source in attrs["per_source"]
        out.fps = float(fps)
        attrs["fps_values"] = fps_values
    return out


def _merge_source_attrs(per_source: dict, source: str, attrs: dict) -> None:
    keys = ("format", "units", "up", "mapping", "source_fps", "stride")
    entry = per_source.setdefault(source, {})
    for k in keys:
        if k not in attrs:
            continue
        v = attrs[k]
        if k not in entry:
            entry[k] = v
        elif entry[k] != v:
            old = entry[k] if isinstance(entry[k], list) else [entry[k]]
            if v not in old:
                entry[k] = old + [v]
    entry["fps"] = round(attrs.get("source_fps", 0) / max(1, attrs.get("stride", 1)), 4)
