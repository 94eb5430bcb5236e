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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posecurator.errors import DataError, PoseCuratorError
from posecurator.io.common import check_fps, check_poseset, one_line, strip_suffixes
from posecurator.poseset import DEFAULT_CHUNK, META_FILE, STRING_COLUMNS, PoseSet, PoseSetWriter, PoseStore, TextColumn

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
    ps = _relabel(ps, path, root, clip, source)
    check_poseset(path, ps)
    return ps, None


def _find_files(src: str | os.PathLike) -> tuple[Path, list[tuple[Path, str]]]:
    """The root and its importable files; a DataError when there are none."""
    root = Path(src)
    if not root.exists():
        raise DataError(root, "no such file or folder")
    files = find_data_files(root)
    if not files:
        what = "folder" if root.is_dir() else "file"
        raise DataError(root, f"no supported data in this {what} (BVH, ASF/AMC, VideoPose3D/mmpose npz, "
                              "COCO json, MPII json/mat, DeepMimic txt or a posecurator dataset)")
    return root, files


class _StoredPart:
    """A posecurator set inside an imported folder, read chunk by chunk: each chunk as
    :func:`_read_one` makes the loaded set (source label, clip prefix, checks), so that the sink
    writes what it would write of the loaded set while holding one chunk."""

    def __init__(self, path: Path, root: Path, *, clip: str, source: str | None):
        self.store = PoseStore(path)
        self.path, self.root, self.clip, self.source = path, root, clip, source
        meta = self.store.meta
        self.fps, self.attrs, self.cameras = float(meta.get("fps", 30.0)), dict(meta.get("attrs", {})), self.store.cameras
        check_fps(path, self.fps)

    def __len__(self) -> int:
        return len(self.store)

    def uniform(self) -> bool:
        """Whether every chunk stores the same columns (what the writer makes; otherwise loading
        fills some columns in, and the set is read whole)."""
        first = set(self.store.columns)
        return all(set(self.store.chunk_columns(k)) == first for k in range(len(self.store.meta["chunks"])))

    def plain_ids(self) -> bool:
        return bool(np.array_equal(self.store.column("sample_id"), np.arange(len(self))))

    def chunks(self):
        row = 0
        parts = self.store.iter_chunks()
        while True:
            try:
                ps = next(parts, None)
            except PoseCuratorError:
                raise
            except (ValueError, KeyError, IndexError, OSError) as e:  # as _read_parts words a file it cannot read
                raise DataError(self.path, f"cannot read dataset file: {one_line(e)}") from None
            if ps is None:
                return
            ps = _relabel(ps, self.path, self.root, self.clip, self.source)
            check_poseset(self.path, ps, first_row=row)
            row += len(ps)
            yield ps


def _relabel(ps: PoseSet, path: Path, root: Path, clip: str, source: str | None) -> PoseSet:
    """A file's source label and clip prefix, as :func:`_read_one` gives them."""
    if source:
        ps = ps.replace(source=np.full(len(ps), source))
    if root.is_dir() and path != root:  # keep clip ids unique across files
        ps = ps.replace(clip=np.char.add(clip + ":", ps.clip.astype(str)))
    return ps


def _read_parts(root: Path, files: list[tuple[Path, str]], *, mapping, fps: float, source: str | None,
                progress: bool, lazy_sets: bool = False):
    """Yield ``(kind, pose set, clip info)`` of every file with poses, in order, one file at a time
    (with ``lazy_sets``, a posecurator set as a :class:`_StoredPart`, read chunk by chunk)."""
    from tqdm.auto import tqdm

    index = _IndexCache()
    clip_ids = _clip_ids(files, root)
    bar = tqdm(files, desc=f"import {root.name}", unit="file", disable=not progress, leave=False, dynamic_ncols=True)
    try:
        for path, kind in bar:
            try:
                if lazy_sets and kind == "dataset":
                    part = _StoredPart(path, root, clip=clip_ids[path], source=source)
                    if len(part) and part.uniform():
                        yield kind, part, None
                        continue
                ps, info = _read_one(path, kind, root, clip=clip_ids[path], mapping=mapping, fps=fps, source=source, index=index)
            except PoseCuratorError:
                raise
            except (ValueError, KeyError, IndexError, OSError, UnicodeDecodeError) as e:
                # the readers validate what they read; this catches what they missed, in one line
                raise DataError(path, f"cannot read {kind} file: {one_line(e)}") from None
            if len(ps):
                yield kind, ps, info
            ps = info = None  # not held while the next file is read
    finally:
        bar.close()  # also when the consumer stops early (an error, a restart): no bar left behind


class _Provenance:
    """The attrs of an imported set, gathered file by file (small: per source and per clip)."""

    def __init__(self):
        self.parts = 0
        self.first_attrs: dict = {}
        self.clip_info: dict[str, dict] = {}
        self.per_source: dict[str, dict] = {}
        self.fps_values: set[float] = set()

    def add(self, kind: str, ps: PoseSet | _StoredPart, info: dict | None) -> None:
        if not self.parts:
            self.first_attrs = dict(ps.attrs)
        self.parts += 1
        self.fps_values.add(float(ps.fps))
        if info:
            self.clip_info[str(ps.clip[0])] = info
        if kind in ("bvh", "amc"):
            _merge_source_attrs(self.per_source, str(ps.source[0]), ps.attrs)

    def finish(self, root: Path, n_files: int, fps: float) -> tuple[dict, float]:
        """(attrs, fps) of the whole set."""
        attrs = dict(self.first_attrs) if self.parts == 1 else {}
        attrs["imported_from"] = str(root.resolve())
        attrs["files"] = n_files
        if self.per_source:
            attrs["per_source"] = self.per_source
        if self.clip_info:
            attrs["clip_info"] = self.clip_info
        fps_values = sorted(self.fps_values)
        if len(fps_values) == 1:
            return attrs, fps_values[0]
        # mixed rates after resampling (24 fps sources keep 24): the nominal target rate, the
        # real ones per source in attrs["per_source"]
        attrs["fps_values"] = fps_values
        return attrs, float(fps)


def import_path(src: str | os.PathLike, *, mapping=None, fps: float = 30.0, progress: bool = True,
                source: str | None = None) -> PoseSet:
    """Import a file or a folder (recursively) of any supported format into one pose set.

    src: a file or folder. mapping: joint mapping for BVH/AMC files (None: detect a built-in per
    file; a name, a YAML/JSON file or a SkeletonMapping). fps: target frame rate. progress: tqdm
    bar over files. source: label for every sample (default from the folder layout).
    Returns one PoseSet (sample ids renumbered). Raises DataError when nothing importable is
    found, naming the corrupt file (and line) when one file is bad, or when the files cannot be
    combined (2D-only with 3D, different layouts). Holds every file's poses at once:
    :func:`import_to_store` writes the same set to disk holding one file and one chunk."""
    root, files = _find_files(src)
    parts: list[PoseSet] = []
    prov = _Provenance()
    for kind, ps, info in _read_parts(root, files, mapping=mapping, fps=fps, source=source, progress=progress):
        parts.append(ps)
        prov.add(kind, ps, info)
    if not parts:
        raise DataError(root, "the supported files hold no poses")
    try:
        out = parts[0] if len(parts) == 1 else PoseSet.concatenate(parts, renumber=True)
    except ValueError as e:
        raise DataError(root, f"cannot combine the files into one pose set: {e}") from None
    out.attrs, out.fps = prov.finish(root, len(files), fps)
    return out


# ---------------------------------------------------------------------- streamed import
@dataclass(frozen=True)
class _Plan:
    """Choices about the whole set that a stream must make before it has seen every file, each
    forced by a restart when a later file contradicts what the chunks already written assumed
    (what :meth:`PoseSet.concatenate` does with all parts at once): visibility is kept when any
    part has it (ones for the parts without), a bbox only when every part has one, and sample
    ids are renumbered 0..N-1 unless there is a single part (which keeps its own)."""

    visibility: bool = False
    no_bbox: bool = False
    renumber: bool = False


class _Restart(Exception):
    """A later file contradicts the chunks already written: import again under ``plan``."""

    def __init__(self, plan: _Plan):
        super().__init__("restart")
        self.plan = plan


class _ImportSink:
    """Appends imported files to a :class:`PoseSetWriter` in exact multiples of its chunk size
    (so that the chunks are those ``PoseSet.save`` writes of the concatenated set), doing what
    ``PoseSet.concatenate(parts, renumber=True)`` does part by part: the same compatibility
    checks (raised at the first incompatible part), camera tables appended with the camera
    indices offset, visibility/bbox/sample ids as :class:`_Plan` says. Holds at most one
    chunk of rows besides the part being added."""

    def __init__(self, writer: PoseSetWriter, root: Path, plan: _Plan):
        self.writer, self.root, self.plan = writer, root, plan
        self.chunk = int(writer.chunk_size)
        self.first_plain = True  # the first part's sample ids are 0..n-1 (renumbering changes nothing)
        self.parts = 0
        self.visibility = plan.visibility
        self.bbox = False
        # the pending rows (less than a chunk): numeric columns in buffers of one chunk, allocated
        # at the first rows and reused; text columns as codes into their parts' tables
        self.buf: dict[str, np.ndarray] = {}
        self.text: dict[str, list[TextColumn]] = {name: [] for name in STRING_COLUMNS}
        self.count = 0           # rows pending
        self.written = 0         # rows written
        self.kept_ids = False    # a chunk was written with the single first part's own (non-0..n-1) ids
        self.clips: set[str] = set()
        self.subjects: set[str] = set()
        self.activities: set[str] = set()
        self.sources: set[str] = set()
        self.generated = 0

    def add(self, ps: PoseSet) -> None:
        if self.parts == 0:
            self._start(ps)
        else:
            self._check(ps)
        self.parts += 1
        # one camera table for the set: this part's rows index its own table, appended to it
        offset = len(self.writer.cameras)
        self.writer.cameras.extend(ps.cameras)
        self._take(ps, offset)

    def add_stored(self, part: _StoredPart) -> None:
        """:meth:`add` of a stored set given chunk by chunk (:class:`_StoredPart`, whose chunks all
        store the same columns): the same rows, camera table and checks as ``add`` of it loaded."""
        offset = len(self.writer.cameras)
        for i, ps in enumerate(part.chunks()):
            if i == 0:
                if self.parts == 0:
                    self._start(ps)
                    self.first_plain = part.plain_ids()
                else:
                    self._check(ps)
                self.parts += 1
                self.writer.cameras.extend(part.cameras)
            self._take(ps, offset)

    def _take(self, ps: PoseSet, camera_offset: int) -> None:
        """Rows of the current part: counted for the summary, camera rows shifted past the tables
        of the parts before, pushed without their table (concatenate would offset them again)."""
        for name, seen in (("clip", self.clips), ("subject", self.subjects), ("activity", self.activities),
                           ("source", self.sources)):
            seen.update(np.unique(getattr(ps, name)).tolist())
        self.generated += int(np.count_nonzero(ps.generation > 0))
        camera = ps.camera
        if camera_offset:
            camera = camera.copy()
            camera[camera >= 0] += camera_offset
        self._push(ps.replace(camera=camera, cameras=[]))

    def _start(self, ps: PoseSet) -> None:
        self.layout, self.n_joints = ps.layout, ps.n_joints
        self.has3d, self.has2d = ps.joints3d is not None, ps.joints2d is not None
        self.visibility = self.plan.visibility or ps.visibility is not None
        self.bbox = not self.plan.no_bbox and ps.bbox is not None
        self.first_plain = bool(np.array_equal(ps.sample_id, np.arange(len(ps))))
        self.writer.layout = ps.layout

    def _check(self, ps: PoseSet) -> None:
        # PoseSet.concatenate's checks and messages, at the first part that fails them
        if ps.layout != self.layout or ps.n_joints != self.n_joints:
            self._cannot(f"cannot concatenate layouts {self.layout} and {ps.layout}")
        for name, has in (("joints3d", self.has3d), ("joints2d", self.has2d)):
            if (getattr(ps, name) is not None) != has:
                self._cannot(f"cannot concatenate sets with and without {name}")
        contradicts = self.kept_ids  # the single part's own ids are written; a second part renumbers
        if ps.visibility is not None and not self.visibility:
            self.visibility, contradicts = True, contradicts or self.written > 0
            if self.count and not contradicts:  # rows pending without it: all visible, as concatenate fills
                self.buf["visibility"] = np.empty((self.chunk, self.n_joints), np.float32)
                self.buf["visibility"][: self.count] = 1.0
        if ps.bbox is None and self.bbox:
            self.bbox, contradicts = False, contradicts or self.written > 0
            self.buf.pop("bbox", None)
        if contradicts:  # what is known now of the whole set (a second part: ids are renumbered)
            raise _Restart(_Plan(visibility=self.visibility, no_bbox=not self.bbox, renumber=True))

    def _cannot(self, why: str):
        raise DataError(self.root, f"cannot combine the files into one pose set: {why}")

    def _push(self, ps: PoseSet) -> None:
        start, n = 0, len(ps)
        while start < n:
            stop = min(n, start + self.chunk - self.count)
            self._fill(ps, start, stop)
            start = stop
            if self.count == self.chunk:
                self._write()

    def _fill(self, ps: PoseSet, start: int, stop: int) -> None:
        """Copy rows ``start:stop`` of ``ps`` into the chunk buffer (so that the part can go)."""
        lo, hi = self.count, self.count + stop - start
        for name in ps._array_fields():
            value = getattr(ps, name)
            if name in STRING_COLUMNS:
                # codes copied, table shared: the writer codes each chunk against the set's tables
                self.text[name].append(TextColumn(value.codes[start:stop].copy(), value.table))
                continue
            if name == "visibility" and self.visibility and value is None:
                value = np.ones((stop, ps.n_joints), np.float32)  # all visible, as concatenate fills
            if value is None or (name == "bbox" and not self.bbox):
                continue
            buf = self.buf.get(name)
            if buf is None:  # pages are only touched as rows arrive: a small import stays small
                buf = self.buf[name] = np.empty((self.chunk, *value.shape[1:]), value.dtype)
            buf[lo:hi] = value[start:stop]
        self.count = hi

    def flush(self) -> None:
        if self.count:
            self._write()

    def _write(self) -> None:
        n = self.count
        columns = {name: buf[:n] for name, buf in self.buf.items()}
        columns.update({name: TextColumn.concatenate(parts) for name, parts in self.text.items()})
        if self.plan.renumber or self.parts > 1:
            columns["sample_id"] = np.arange(self.written, self.written + n, dtype=np.int64)
        elif not self.first_plain:
            self.kept_ids = True
        self.writer.append(PoseSet(**columns, layout=self.layout))  # written before the buffer is reused
        self.written += n
        self.count = 0
        self.text = {name: [] for name in STRING_COLUMNS}

    def summary(self, fps: float) -> dict:
        """What :meth:`PoseSet.summary` says of the set written."""
        return {
            "frames": int(self.written),
            "clips": len(self.clips),
            "subjects": sorted(self.subjects),
            "activities": sorted(self.activities),
            "sources": sorted(self.sources),
            "layout": self.layout,
            "fps": fps,
            "has_3d": self.has3d,
            "has_2d": self.has2d,
            "generated": self.generated,
        }


def import_to_store(src: str | os.PathLike, output: str | os.PathLike, *, mapping=None, fps: float = 30.0,
                    progress: bool = True, source: str | None = None, chunk_size: int = DEFAULT_CHUNK,
                    overwrite: bool = True) -> dict:
    """Import like :func:`import_path` and write the set to the pose-set folder ``output``, file by
    file: the folder equals ``import_path(src, ...).save(output, chunk_size=chunk_size)`` (the
    same chunks, string tables, cameras, attrs and fps), while memory holds one file's poses and
    one chunk, not the whole set. Returns what :meth:`PoseSet.summary` gives for the set.

    Raises the DataErrors of :func:`import_path`, a set that cannot be combined at the first
    file that does not fit; the output is then left as it was (written to a temporary folder,
    removed on failure). In the rare case a later file changes a choice already written (a
    visibility column where the earlier files had none, a file without boxes after files with
    them, several files after one dataset with its own sample ids), the files are read again
    under that choice."""
    root, files = _find_files(src)
    plan = _Plan()
    while True:
        try:
            return _import_once(root, files, output, plan, mapping=mapping, fps=fps, progress=progress,
                                source=source, chunk_size=chunk_size, overwrite=overwrite)
        except _Restart as r:  # the writer has removed its temporary folder
            plan = r.plan


def _import_once(root: Path, files, output, plan: _Plan, *, mapping, fps: float, progress: bool,
                 source: str | None, chunk_size: int, overwrite: bool) -> dict:
    prov = _Provenance()
    with PoseSetWriter(output, chunk_size=chunk_size, overwrite=overwrite) as writer:
        sink = _ImportSink(writer, root, plan)
        parts = _read_parts(root, files, mapping=mapping, fps=fps, source=source, progress=progress, lazy_sets=True)
        try:
            for kind, ps, info in parts:
                prov.add(kind, ps, info)
                if isinstance(ps, _StoredPart):
                    sink.add_stored(ps)
                else:
                    sink.add(ps)
                del ps
        finally:
            parts.close()
        if not prov.parts:
            raise DataError(root, "the supported files hold no poses")
        sink.flush()
        writer.attrs, writer.fps = prov.finish(root, len(files), fps)
    return sink.summary(writer.fps)


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
