"""The pose set: the one data model every layer passes around, and its on-disk format.

A pose set holds N samples in the target layout (``H36M17`` unless said otherwise):

=============  =====================  ==========================================================
field          shape / dtype          meaning
=============  =====================  ==========================================================
joints3d       (N, J, 3) float32      world frame, millimetres, Z up, floor at Z = 0 (or None)
joints2d       (N, J, 2) float32      pixels (or None)
visibility     (N, J) float32         1 = labelled/visible, 0 = not (2D sets; None = all visible)
camera         (N,) int32             row of ``cameras`` the 2D came from, -1 = none
source         (N,) str               data set the sample came from ("hdm05", "bandai", ...)
subject        (N,) str               person id
activity       (N,) str               activity label
clip           (N,) str               clip id, unique across the set
frame          (N,) int32             frame index within the clip, after resampling
sample_id      (N,) int64             id unique within the set; lineage refers to it
parents        (N, 2) int64           sample ids of the parents of a generated sample, -1 = none
operator       (N,) str               how a sample was made ("" for real data, "crossover", ...)
generation     (N,) int16             0 for real data, g for the g-th generation of augmentation
bbox           (N, 4) float32         the person's box ``[x, y, width, height]`` px in the image
                                      the 2D came from (or None: unknown; the 2D-only PCK then
                                      uses the box around the labelled joints)
=============  =====================  ==========================================================

On disk a pose set is a folder: ``posecurator.json`` (format, version, layout, fps, cameras,
string tables, chunk list) and ``chunk-NNNNN.npz`` files (NumPy arrays only, loaded with
``allow_pickle=False``). String columns are stored as integer codes into tables in the JSON.
Chunks let later stages stream millions of poses (:func:`iter_chunks`) and let writers append
(:class:`PoseSetWriter`). A folder is written under a temporary name and renamed when complete,
so a failed write leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterator

import numpy as np

from posecurator.errors import DataError

FORMAT_NAME = "posecurator-poseset"
FORMAT_VERSION = 2
# Version 2 added the optional ``bbox`` column; a set without it is still written as version 1,
# so that older posecurator versions keep reading what they can read.
_VERSION_OF_COLUMN = {"bbox": 2}
META_FILE = "posecurator.json"
DEFAULT_CHUNK = 262_144

STRING_COLUMNS = ("source", "subject", "activity", "clip", "operator")
NUMERIC_COLUMNS = {
    "camera": np.int32,
    "frame": np.int32,
    "sample_id": np.int64,
    "generation": np.int16,
}


@dataclass
class PoseSet:
    """N pose samples with their metadata and lineage. See the module docstring for the fields."""

    joints3d: np.ndarray | None = None
    joints2d: np.ndarray | None = None
    visibility: np.ndarray | None = None
    camera: np.ndarray | None = None
    source: np.ndarray | None = None
    subject: np.ndarray | None = None
    activity: np.ndarray | None = None
    clip: np.ndarray | None = None
    frame: np.ndarray | None = None
    sample_id: np.ndarray | None = None
    parents: np.ndarray | None = None
    operator: np.ndarray | None = None
    generation: np.ndarray | None = None
    bbox: np.ndarray | None = None
    layout: str = "h36m17"
    fps: float = 30.0
    # Camera table: name -> list of per-camera dicts (see posecurator.camera.Camera.to_dict).
    cameras: list[dict] = field(default_factory=list)
    # Free-form JSON-serialisable notes (provenance, units of the source, ...).
    attrs: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.joints3d is None and self.joints2d is None:
            raise ValueError("a PoseSet needs joints3d or joints2d")
        n = len(self.joints3d if self.joints3d is not None else self.joints2d)
        if self.joints3d is not None:
            self.joints3d = np.ascontiguousarray(self.joints3d, dtype=np.float32)
            if self.joints3d.ndim != 3 or self.joints3d.shape[2] != 3:
                raise ValueError(f"joints3d must be (N, J, 3), got {self.joints3d.shape}")
        if self.joints2d is not None:
            self.joints2d = np.ascontiguousarray(self.joints2d, dtype=np.float32)
            if self.joints2d.ndim != 3 or self.joints2d.shape[2] != 2 or len(self.joints2d) != n:
                raise ValueError(f"joints2d must be (N, J, 2) with N={n}, got {self.joints2d.shape}")
        if self.bbox is not None:
            self.bbox = np.asarray(self.bbox, dtype=np.float32)
            if self.bbox.shape != (n, 4):
                raise ValueError(f"bbox must be ({n}, 4) [x, y, width, height], got {self.bbox.shape}")
        if self.visibility is not None:
            self.visibility = np.asarray(self.visibility, dtype=np.float32)
            if self.visibility.shape != (n, self.n_joints):
                raise ValueError(f"visibility must be ({n}, {self.n_joints}), got {self.visibility.shape}")
        defaults = {
            "source": "", "subject": "", "activity": "", "clip": "", "operator": "",
        }
        for name, fill in defaults.items():
            value = getattr(self, name)
            setattr(self, name, _string_column(value, n, fill, name))
        self.camera = _numeric_column(self.camera, n, -1, np.int32, "camera")
        self.frame = _numeric_column(self.frame, n, 0, np.int32, "frame")
        self.generation = _numeric_column(self.generation, n, 0, np.int16, "generation")
        if self.sample_id is None:
            self.sample_id = np.arange(n, dtype=np.int64)
        self.sample_id = _numeric_column(self.sample_id, n, 0, np.int64, "sample_id")
        if self.parents is None:
            self.parents = np.full((n, 2), -1, dtype=np.int64)
        self.parents = np.asarray(self.parents, dtype=np.int64)
        if self.parents.shape != (n, 2):
            raise ValueError(f"parents must be ({n}, 2), got {self.parents.shape}")

    # ------------------------------------------------------------------ basic access
    def __len__(self) -> int:
        return len(self.joints3d if self.joints3d is not None else self.joints2d)

    @property
    def n_joints(self) -> int:
        return (self.joints3d if self.joints3d is not None else self.joints2d).shape[1]

    def _array_fields(self) -> list[str]:
        return [f.name for f in fields(self) if f.name not in ("layout", "fps", "cameras", "attrs")]

    def subset(self, index) -> "PoseSet":
        """Rows selected by a boolean mask, an index array or a slice (metadata travels along)."""
        kwargs = {}
        for name in self._array_fields():
            value = getattr(self, name)
            kwargs[name] = None if value is None else value[index]
        return PoseSet(**kwargs, layout=self.layout, fps=self.fps, cameras=list(self.cameras), attrs=dict(self.attrs))

    def replace(self, **changes) -> "PoseSet":
        """A copy with some fields replaced."""
        kwargs = {name: getattr(self, name) for name in self._array_fields()}
        kwargs.update(layout=self.layout, fps=self.fps, cameras=list(self.cameras), attrs=dict(self.attrs))
        kwargs.update(changes)
        return PoseSet(**kwargs)

    @staticmethod
    def concatenate(sets: list["PoseSet"], *, renumber: bool = False) -> "PoseSet":
        """Stack pose sets of one layout. ``renumber`` gives fresh sample ids 0..N-1 (lineage is
        then only meaningful within each part); otherwise ids must already be unique."""
        sets = [s for s in sets if s is not None]
        if not sets:
            raise ValueError("nothing to concatenate")
        first = sets[0]
        for s in sets[1:]:
            if s.layout != first.layout or s.n_joints != first.n_joints:
                raise ValueError(f"cannot concatenate layouts {first.layout} and {s.layout}")
        kwargs = {}
        for name in first._array_fields():
            values = [getattr(s, name) for s in sets]
            if any(v is None for v in values):
                if name == "visibility" and not all(v is None for v in values):
                    values = [np.ones((len(s), s.n_joints), np.float32) if v is None else v for s, v in zip(sets, values)]
                elif name in ("joints3d", "joints2d") and not all(v is None for v in values):
                    raise ValueError(f"cannot concatenate sets with and without {name}")
                else:
                    kwargs[name] = None
                    continue
            kwargs[name] = np.concatenate(values)
        # Cameras are stored per set; re-index them into one table.
        cameras, offset, cam_cols = [], 0, []
        for s in sets:
            col = s.camera.copy()
            col[col >= 0] += offset
            cam_cols.append(col)
            cameras.extend(s.cameras)
            offset += len(s.cameras)
        kwargs["camera"] = np.concatenate(cam_cols)
        if renumber:
            kwargs["sample_id"] = np.arange(sum(len(s) for s in sets), dtype=np.int64)
        attrs = dict(first.attrs)
        return PoseSet(**kwargs, layout=first.layout, fps=first.fps, cameras=cameras, attrs=attrs)

    def summary(self) -> dict:
        """The `info` summary: frames, clips, subjects, activities (and a few more facts)."""
        return {
            "frames": int(len(self)),
            "clips": int(len(np.unique(self.clip))),
            "subjects": sorted(np.unique(self.subject).tolist()),
            "activities": sorted(np.unique(self.activity).tolist()),
            "sources": sorted(np.unique(self.source).tolist()),
            "layout": self.layout,
            "fps": self.fps,
            "has_3d": self.joints3d is not None,
            "has_2d": self.joints2d is not None,
            "generated": int(np.count_nonzero(self.generation > 0)),
        }

    def check_finite(self, path=None) -> None:
        """Raise a DataError naming the first sample with NaN or infinite coordinates."""
        for name in ("joints3d", "joints2d"):
            arr = getattr(self, name)
            if arr is None:
                continue
            bad = ~np.isfinite(arr).all(axis=(1, 2))
            if name == "joints2d" and self.visibility is not None:
                # unlabelled 2D joints may be anything; only labelled ones must be finite
                bad = ~(np.isfinite(arr).all(axis=2) | (self.visibility == 0)).all(axis=1)
            if bad.any():
                i = int(np.argmax(bad))
                raise DataError(path, f"{name} has NaN or infinite coordinates (sample {i}, clip {self.clip[i]!r}, frame {self.frame[i]})")

    # ------------------------------------------------------------------ storage
    def save(self, path: str | os.PathLike, *, chunk_size: int = DEFAULT_CHUNK, overwrite: bool = True) -> Path:
        """Write to a pose-set folder (atomically: a temporary folder renamed at the end)."""
        with PoseSetWriter(path, layout=self.layout, fps=self.fps, chunk_size=chunk_size, overwrite=overwrite, attrs=self.attrs) as w:
            w.cameras = list(self.cameras)
            w.append(self)
        return Path(path)

    @staticmethod
    def load(path: str | os.PathLike, *, columns: list[str] | None = None) -> "PoseSet":
        """Read a whole pose-set folder (or only some ``columns``)."""
        parts = list(iter_chunks(path, columns=columns))
        if len(parts) == 1:
            return parts[0]
        meta = read_meta(path)
        out = PoseSet.concatenate(parts)
        out.cameras = meta.get("cameras", [])
        if out.camera is not None:  # concatenate offset the camera ids per chunk; chunks share one table
            out.camera = np.concatenate([p.camera for p in parts])
        return out


def joints3d_of(poses, *, n_joints: int | None = None, purpose: str = "this step") -> np.ndarray:
    """A PoseSet's joints3d, or an array given directly, checked to be (N, J, 3) (J = ``n_joints``
    when given). Raises ValueError naming ``purpose`` when there is no 3D."""
    if isinstance(poses, PoseSet):
        if poses.joints3d is None:
            raise ValueError(f"{purpose} needs 3D poses, and this pose set has no joints3d")
        poses = poses.joints3d
    poses = np.asarray(poses)
    if poses.ndim != 3 or poses.shape[2] != 3 or (n_joints is not None and poses.shape[1] != n_joints):
        want = f"(N, {n_joints if n_joints is not None else 'J'}, 3)"
        raise ValueError(f"{purpose}: poses must be {want} joints, got {poses.shape}")
    return poses


def _string_column(value, n: int, fill: str, name: str) -> np.ndarray:
    if value is None:
        return np.full(n, fill, dtype=object).astype(str)
    if isinstance(value, str):
        return np.full(n, value).astype(str)
    arr = np.asarray(value).astype(str)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    return arr


def _numeric_column(value, n: int, fill, dtype, name: str) -> np.ndarray:
    if value is None:
        return np.full(n, fill, dtype=dtype)
    arr = np.asarray(value)
    if arr.ndim == 0:
        return np.full(n, arr, dtype=dtype)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    return arr.astype(dtype, copy=False)


# ---------------------------------------------------------------------- folder format
def read_meta(path: str | os.PathLike) -> dict:
    """Read and validate ``posecurator.json`` of a pose-set folder."""
    path = Path(path)
    meta_path = path / META_FILE
    if not path.is_dir() or not meta_path.is_file():
        raise DataError(path, f"not a posecurator dataset (no {META_FILE}); create one with `posecurator import`")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(meta_path, f"corrupt dataset header: {e}") from None
    if meta.get("format") != FORMAT_NAME:
        raise DataError(meta_path, f"not a posecurator dataset header (format={meta.get('format')!r})")
    version = meta.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DataError(meta_path, f"dataset format version {version} is newer than this posecurator understands ({FORMAT_VERSION}); upgrade posecurator")
    return meta


def iter_chunks(path: str | os.PathLike, *, columns: list[str] | None = None) -> Iterator[PoseSet]:
    """Yield the pose set chunk by chunk, so millions of poses never need to be in memory at once."""
    path = Path(path)
    meta = read_meta(path)
    tables = meta["strings"]
    for chunk in meta["chunks"]:
        file = path / chunk["file"]
        try:
            with np.load(file, allow_pickle=False) as z:
                names = set(z.files) if columns is None else (set(z.files) & (set(columns) | {"joints3d", "joints2d"}))
                arrays = {k: z[k] for k in names}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise DataError(file, f"cannot read chunk: {e}") from None
        n = chunk["n"]
        kwargs = {}
        for k, v in arrays.items():
            if len(v) != n:
                raise DataError(file, f"column {k} has {len(v)} rows, header says {n}")
            if k in STRING_COLUMNS:
                table = np.asarray(tables[k], dtype=str)
                if v.size and (v.min() < 0 or v.max() >= len(table)):
                    raise DataError(file, f"column {k} has codes outside its string table")
                kwargs[k] = table[v] if len(table) else np.full(n, "")
            else:
                kwargs[k] = v
        if "joints3d" not in kwargs and "joints2d" not in kwargs:
            raise DataError(file, "chunk has neither joints3d nor joints2d")
        yield PoseSet(**kwargs, layout=meta["layout"], fps=meta["fps"], cameras=meta.get("cameras", []), attrs=meta.get("attrs", {}))


class PoseSetWriter:
    """Append pose sets chunk by chunk to a new folder; renamed into place on a clean exit.

    >>> with PoseSetWriter("out.pcs") as w:   # doctest: +SKIP
    ...     for part in parts:
    ...         w.append(part)
    """

    def __init__(self, path, *, layout: str = "h36m17", fps: float = 30.0, chunk_size: int = DEFAULT_CHUNK,
                 overwrite: bool = True, attrs: dict | None = None):
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise DataError(self.path, "already exists")
        if self.path.exists() and not (self.path / META_FILE).is_file():
            raise DataError(self.path, "exists and is not a posecurator dataset; refusing to overwrite it")
        self.layout, self.fps, self.chunk_size = layout, fps, chunk_size
        self.attrs = dict(attrs or {})
        self.cameras: list[dict] = []
        self._tables: dict[str, dict[str, int]] = {k: {} for k in STRING_COLUMNS}
        self._chunks: list[dict] = []
        self._version = 1
        self._tmp: Path | None = None
        self._n = 0

    def __enter__(self) -> "PoseSetWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent))
        os.chmod(self._tmp, 0o755)  # mkdtemp makes an owner-only folder; datasets are meant to be shared
        return self

    def append(self, ps: PoseSet) -> None:
        if self._tmp is None:
            raise RuntimeError("use PoseSetWriter as a context manager")
        if ps.layout != self.layout:
            raise ValueError(f"layout {ps.layout} differs from the writer's {self.layout}")
        for start in range(0, len(ps), self.chunk_size):
            self._write_chunk(ps.subset(slice(start, start + self.chunk_size)))

    def _write_chunk(self, ps: PoseSet) -> None:
        arrays = {}
        for name in ps._array_fields():
            value = getattr(ps, name)
            if value is None:
                continue
            self._version = max(self._version, _VERSION_OF_COLUMN.get(name, 1))
            if name in STRING_COLUMNS:
                table = self._tables[name]
                uniq, inverse = np.unique(value, return_inverse=True)
                codes = np.array([table.setdefault(u, len(table)) for u in uniq.tolist()], dtype=np.int32)
                value = codes[inverse.reshape(-1)]
            arrays[name] = np.ascontiguousarray(value)
        fname = f"chunk-{len(self._chunks):05d}.npz"
        np.savez(self._tmp / fname, **arrays)
        self._chunks.append({"file": fname, "n": len(ps)})
        self._n += len(ps)

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            return False
        meta = {
            "format": FORMAT_NAME,
            "version": self._version,
            "layout": self.layout,
            "fps": self.fps,
            "n": self._n,
            "chunks": self._chunks,
            "strings": {k: list(t) for k, t in self._tables.items()},
            "cameras": self.cameras,
            "attrs": self.attrs,
        }
        (self._tmp / META_FILE).write_text(json.dumps(meta, indent=1))
        if self.path.exists():
            old = self.path.with_name(f".{self.path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.path, old)
            os.replace(self._tmp, self.path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self._tmp, self.path)
        return False
