"""The pose set: the one data model every layer passes around, and its on-disk format.

A pose set holds N samples in the target layout (``H36M17`` unless said otherwise):

=============  =====================  ==========================================================
field          shape / dtype          meaning
=============  =====================  ==========================================================
joints3d       (N, J, 3) float32      world frame, millimetres, Z up, floor at Z = 0 (or None)
joints2d       (N, J, 2) float32      pixels (or None)
visibility     (N, J) float32         1 = labelled/visible, 0 = not (2D sets; None = all visible)
camera         (N,) int32             row of ``cameras`` the 2D came from, -1 = none
source         (N,) text              data set the sample came from ("hdm05", "bandai", ...)
subject        (N,) text              person id
activity       (N,) text              activity label
clip           (N,) text              clip id, unique across the set
frame          (N,) int32             frame index within the clip, after resampling
sample_id      (N,) int64             id unique within the set; lineage refers to it
parents        (N, 2) int64           sample ids of the parents of a generated sample, -1 = none
operator       (N,) text              how a sample was made ("" for real data, "crossover", ...)
generation     (N,) int16             0 for real data, g for the g-th generation of augmentation
bbox           (N, 4) float32         the person's box ``[x, y, width, height]`` px in the image
                                      the 2D came from (or None: unknown; the 2D-only PCK then
                                      uses the box around the labelled joints)
=============  =====================  ==========================================================

The text columns (``source``, ``subject``, ``activity``, ``clip``, ``operator``; :data:`STRING_COLUMNS`)
are :class:`TextColumn` objects: integer codes (1, 2 or 4 bytes a row) into a sorted table of the
column's distinct strings, which behave like the unicode arrays they stand for (``==``,
``np.unique``, ``np.isin``, indexing, ``astype(str)``, ``tolist()``). A fixed-width ``'<U..'``
array took 4 bytes x the longest string per row: about 360 of an augmented set's ~600 bytes a pose.
Anything array-like given for a text column (lists, unicode or StringDType arrays) is converted.

On disk a pose set is a folder: ``posecurator.json`` (format, version, layout, fps, cameras,
string tables, chunk list) and ``chunk-NNNNN.npz`` files (NumPy arrays only, loaded with
``allow_pickle=False``). String columns are stored as integer codes into tables in the JSON.
Chunks let later stages stream millions of poses (:func:`iter_chunks`) and let writers append
(:class:`PoseSetWriter`). A folder is written under a temporary name and renamed when complete,
so a failed write leaves nothing half-written.

``PoseSet.open(path)`` opens a folder lazily (:class:`PoseStore`): the header at once; columns,
rows and selections (row indices, not copies) when asked for. The chunk arrays are stored
uncompressed, so ``take`` reads a few rows through memory maps without decoding their chunks.

Why npz chunks and not Parquet, Zarr or Arrow IPC: measured at 10^6 and 10^7 poses by
``benchmarks/format_bench.py`` (its docstring holds the table). Float32 joint coordinates barely
compress (the best codec saved 37 % on disk), while Parquet and Zarr read 2-5x slower, wrote 3-5x
slower and fetched random rows 20-60x slower than a memory map of the uncompressed arrays; Arrow
IPC matched npz (faster on large writes, slower on random rows) but would need pyarrow in the core
dependencies. Peak memory is the chunk's in every format. :meth:`PoseStore.to_arrow` gives the
tools that speak Arrow (DuckDB, Polars, pandas) a set when pyarrow is installed.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import struct
import tempfile
import tokenize
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterator

import numpy as np

from posecurator.errors import DataError
from posecurator.fileio import atomic_savez, atomic_write_text, output_lock, try_lock_folder

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

# Physical limits of what a reader may accept (the readers and the dataset reader check them):
# a mocap joint farther than 100 m from the origin, a pixel beyond a million, a frame rate above
# 10 kHz (or below one frame in 1000 s) are corrupt values, not data.
MAX_ABS_MM = 1e5
MAX_ABS_PX = 1e6
MIN_FPS, MAX_FPS = 1e-3, 1e4


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
            kwargs[name] = TextColumn.concatenate(values) if name in STRING_COLUMNS else np.concatenate(values)
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
                raise DataError(path, f"{name} has NaN or infinite coordinates (sample {i}, clip {str(self.clip[i])!r}, "
                                      f"frame {int(self.frame[i])})")

    # ------------------------------------------------------------------ storage
    def save(self, path: str | os.PathLike, *, chunk_size: int = DEFAULT_CHUNK, overwrite: bool = True) -> Path:
        """Write to a pose-set folder (atomically: a temporary folder renamed at the end)."""
        with PoseSetWriter(path, layout=self.layout, fps=self.fps, chunk_size=chunk_size, overwrite=overwrite, attrs=self.attrs) as w:
            w.cameras = list(self.cameras)
            w.append(self)
        return Path(path)

    @staticmethod
    def open(path: str | os.PathLike) -> "PoseStore":
        """Open a pose-set folder lazily (:class:`PoseStore`): the header now, rows when asked."""
        return PoseStore(path)

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


def _string_column(value, n: int, fill: str, name: str) -> "TextColumn":
    """A text column of ``n`` rows as a :class:`TextColumn` (codes into a table of strings)."""
    if value is None:
        return TextColumn.full(n, fill)
    if isinstance(value, str):
        return TextColumn.full(n, value)
    if isinstance(value, TextColumn):
        if value.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {value.shape}")
        # a pose set owns its text columns (as when they were copied into unicode arrays): item
        # assignment on one set never shows in another; the codes are a few bytes a row
        return value.copy()
    arr = _str_array(value)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    return TextColumn.from_values(arr)


def _numeric_column(value, n: int, fill, dtype, name: str) -> np.ndarray:
    if value is None:
        return np.full(n, fill, dtype=dtype)
    arr = np.asarray(value)
    if arr.ndim == 0:
        return np.full(n, arr, dtype=dtype)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    return arr.astype(dtype, copy=False)


# ---------------------------------------------------------------------- compact text columns
def _code_dtype(n_table: int) -> np.dtype:
    """The smallest code type for a table of ``n_table`` strings."""
    if n_table <= 1 << 8:
        return np.dtype(np.uint8)
    if n_table <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.int32) if n_table < 1 << 31 else np.dtype(np.int64)


def _frozen(table: np.ndarray) -> np.ndarray:
    table.flags.writeable = False
    return table


_EMPTY_TABLE = _frozen(np.zeros(0, dtype="<U1"))
_HASH_MULT = np.uint64(0x9E3779B97F4A7C15)


def _str_array(value) -> np.ndarray:
    """``value`` as a NumPy unicode array (what ``np.asarray(value).astype(str)`` gives; numpy 2's
    StringDType, which has no cast to an unsized ``str``, cast to the width of its longest string)."""
    arr = np.asarray(value)
    if arr.dtype.kind == "U":
        return arr
    if arr.dtype.kind == "T":  # StringDType: no cast to a fixed width without a size
        width = max(1, int(np.strings.str_len(arr).max())) if arr.size else 1
        return arr.astype(f"<U{width}")
    return arr.astype(str)


def _factorize(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique strings, codes) of a 1-D unicode array, as ``np.unique(return_inverse=True)``
    but by a hash of each string's code points (an integer sort instead of a string sort: ~20x
    faster on a million rows), checked, and by ``np.unique`` itself should two strings collide."""
    n = len(arr)
    if n == 0:
        return _EMPTY_TABLE, np.zeros(0, np.uint8)
    arr = np.ascontiguousarray(arr, dtype=f"<U{max(1, arr.dtype.itemsize // 4)}")
    width = arr.dtype.itemsize // 4
    points = arr.view(np.uint32).reshape(n, width)
    h = np.zeros(n, np.uint64)
    with np.errstate(over="ignore"):
        for j in range(width):  # polynomial hash, wrapping in 64 bits
            h *= _HASH_MULT
            h += points[:, j]
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    reps = arr[first]
    if (reps[inverse] == arr).all():
        order = np.argsort(reps, kind="stable")
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order))
        table = reps[order]
        codes = rank[inverse]
    else:  # a hash collision: the plain (slower) way
        table, codes = np.unique(arr, return_inverse=True)
    table = _frozen(np.ascontiguousarray(table, dtype=f"<U{max(1, table.dtype.itemsize // 4)}"))
    return table, codes.reshape(-1).astype(_code_dtype(len(table)))


def _merge_tables(tables: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """One sorted table holding every string of ``tables`` and, per table, where its entries went."""
    first = tables[0]
    if all(t is first or (len(t) == len(first) and np.array_equal(t, first)) for t in tables[1:]):
        return first, [None] * len(tables)
    merged = _frozen(np.unique(np.concatenate(tables)))
    return merged, [np.searchsorted(merged, t) for t in tables]


class TextColumn:
    """A text column held as integer codes into a small sorted table of its distinct strings.

    It behaves like the 1-D NumPy unicode array it stands for: ``col[i]`` is a string, slicing
    and index arrays give a TextColumn, ``col == "walk"`` and ``col == other`` give boolean
    arrays, ``np.unique`` / ``np.isin`` / ``np.concatenate`` / ``np.argsort(kind="stable")`` /
    ``np.lexsort`` work on the codes, ``len``, ``tolist()``, ``astype(str)``, ``copy()`` and item
    assignment do what they do on an array, and any other NumPy function sees the unicode array
    (``np.asarray(col)``, built on demand). Memory: 1, 2 or 4 bytes per row (by the table's
    size) instead of 4 bytes x the longest string.

    ``codes`` (N,) unsigned/int array and ``table`` (K,) sorted, distinct, read-only unicode
    array; ``table[codes]`` is the column. On disk a pose set stores the same thing (codes into a
    table in the header), and :class:`PoseSetWriter` / :func:`iter_chunks` convert."""

    __slots__ = ("codes", "table")

    def __init__(self, codes: np.ndarray, table: np.ndarray):
        """Trusted constructor: ``table`` sorted and distinct, ``codes`` 1-D and within it (use
        :meth:`from_values` / :meth:`from_codes` for anything else)."""
        self.codes = codes
        self.table = table

    # -------------------------------------------------------------- construction
    @classmethod
    def from_values(cls, value, n: int | None = None) -> "TextColumn":
        """From a TextColumn, a string (repeated ``n`` times), or any array-like of strings."""
        if isinstance(value, TextColumn):
            return value
        if isinstance(value, str):
            return cls.full(1 if n is None else n, value)
        arr = _str_array(value)
        if arr.ndim == 0:
            return cls.full(1 if n is None else n, str(arr))
        if arr.ndim != 1:
            raise ValueError(f"a text column is 1-D, got shape {arr.shape}")
        table, codes = _factorize(arr)
        return cls(codes, table)

    @classmethod
    def full(cls, n: int, text: str) -> "TextColumn":
        table = _frozen(np.array([str(text)], dtype=str))
        return cls(np.zeros(int(n), np.uint8), table)

    @classmethod
    def from_codes(cls, codes, table) -> "TextColumn":
        """From integer ``codes`` into any ``table`` of strings (unsorted, repeated: as in a file)."""
        codes = np.asarray(codes)
        if codes.ndim != 1 or (codes.size and codes.dtype.kind not in "iu"):
            raise ValueError(f"codes must be a 1-D integer array, got {codes.dtype} {codes.shape}")
        raw = _str_array(list(table) if not isinstance(table, np.ndarray) else table).reshape(-1)
        if codes.size and (int(codes.min()) < 0 or int(codes.max()) >= len(raw)):
            raise ValueError(f"codes outside the table of {len(raw)} strings")
        if len(raw) == 0:
            return cls(np.zeros(0, np.uint8), _EMPTY_TABLE)
        uniq, where = np.unique(raw, return_inverse=True)
        table = _frozen(np.ascontiguousarray(uniq))
        if len(table) == len(raw) and (where == np.arange(len(raw))).all():
            return cls(codes.astype(_code_dtype(len(table))), table)
        return cls(where.astype(_code_dtype(len(table)))[codes], table)

    @staticmethod
    def concatenate(columns) -> "TextColumn":
        cols = [TextColumn.from_values(c) for c in columns]
        if not cols:
            raise ValueError("need at least one column to concatenate")
        table, maps = _merge_tables([c.table for c in cols])
        dtype = _code_dtype(len(table))
        parts = [c.codes if m is None else m[c.codes] for c, m in zip(cols, maps)]
        return TextColumn(np.concatenate(parts).astype(dtype, copy=False) if len(parts) > 1 else parts[0].astype(dtype), table)

    # -------------------------------------------------------------- array-like
    @property
    def shape(self) -> tuple[int]:
        return self.codes.shape

    @property
    def ndim(self) -> int:
        return 1

    @property
    def size(self) -> int:
        return self.codes.size

    @property
    def dtype(self) -> np.dtype:
        """The unicode dtype of ``np.asarray(col)``."""
        return self.table.dtype

    @property
    def nbytes(self) -> int:
        """Bytes held: the codes plus the table."""
        return self.codes.nbytes + self.table.nbytes

    def __len__(self) -> int:
        return len(self.codes)

    def __iter__(self):
        return iter(self.table[self.codes])

    def __array__(self, dtype=None, copy=None):
        if copy is False:
            raise ValueError("a TextColumn cannot be viewed as a unicode array without a copy")
        out = self.table[self.codes]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, index):
        codes = self.codes[index]
        if isinstance(codes, np.ndarray):
            return TextColumn(codes, self.table) if codes.ndim == 1 else self.table[codes]
        return self.table[codes]

    def __setitem__(self, index, value) -> None:
        if isinstance(value, TextColumn):
            new = value
        elif isinstance(value, str):
            new = TextColumn.full(1, value)
        else:
            new = TextColumn.from_values(np.atleast_1d(_str_array(value)).reshape(-1))
        table, (m_self, m_new) = _merge_tables([self.table, new.table])
        if m_self is not None:  # new strings: the codes move (and may need a wider type)
            self.codes = m_self.astype(_code_dtype(len(table)))[self.codes]
            self.table = table
        elif _code_dtype(len(table)) != self.codes.dtype:
            self.codes = self.codes.astype(_code_dtype(len(table)))
        codes = new.codes if m_new is None else m_new[new.codes]
        self.codes[index] = codes[0] if isinstance(value, str) else codes

    def __repr__(self) -> str:
        return f"TextColumn({np.asarray(self[:20]).tolist()}{' ...' if len(self) > 20 else ''}, n={len(self)}, distinct<={len(self.table)})"

    def __bool__(self) -> bool:
        if len(self) != 1:
            raise ValueError("the truth value of a text column with more than one element is ambiguous")
        return bool(self[0])

    __hash__ = None

    def __contains__(self, text) -> bool:
        j = self.code_of(str(text)) if isinstance(text, str) else -1
        return bool(j >= 0 and (self.codes == j).any()) if isinstance(text, str) else bool((np.asarray(self) == text).any())

    def __getattr__(self, name: str):
        # any other ndarray attribute (reshape, ravel, item, ...): that of the unicode array
        if name.startswith("_") or not hasattr(np.ndarray, name):
            raise AttributeError(f"'TextColumn' object has no attribute {name!r}")
        return getattr(np.asarray(self), name)

    def tolist(self) -> list[str]:
        table = self.table.tolist()
        return [table[c] for c in self.codes.tolist()]

    def astype(self, dtype, copy: bool = True) -> np.ndarray:
        """The unicode array (``astype(str)``), or the array cast to ``dtype``."""
        return np.asarray(self).astype(dtype)

    def copy(self) -> "TextColumn":
        return TextColumn(self.codes.copy(), self.table)

    def unique(self) -> np.ndarray:
        """Sorted distinct strings (``np.unique(col)``)."""
        return self.table[np.unique(self.codes)]

    def code_of(self, text: str) -> int:
        """The code of ``text`` in this column's table, -1 when the table lacks it."""
        j = int(np.searchsorted(self.table, text))
        return j if j < len(self.table) and self.table[j] == text else -1

    # -------------------------------------------------------------- comparisons
    def _compare(self, other, equal: bool):
        if isinstance(other, (str, np.str_)):
            j = self.code_of(str(other))
            out = (self.codes == j) if j >= 0 else np.zeros(len(self), bool)
            return out if equal else ~out
        if isinstance(other, TextColumn):
            if len(other) != len(self) and len(other) != 1 and len(self) != 1:
                raise ValueError(f"operands could not be broadcast together with shapes {self.shape} {other.shape}")
            table, (ma, mb) = _merge_tables([self.table, other.table])
            a = self.codes if ma is None else ma[self.codes]
            b = other.codes if mb is None else mb[other.codes]
            return (a == b) if equal else (a != b)
        arr = np.asarray(self)
        return (arr == other) if equal else (arr != other)

    def __eq__(self, other):
        return self._compare(other, True)

    def __ne__(self, other):
        return self._compare(other, False)

    def __lt__(self, other):
        return np.asarray(self) < _plain(other)

    def __le__(self, other):
        return np.asarray(self) <= _plain(other)

    def __gt__(self, other):
        return np.asarray(self) > _plain(other)

    def __ge__(self, other):
        return np.asarray(self) >= _plain(other)

    # -------------------------------------------------------------- NumPy protocols
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method == "__call__" and ufunc in (np.equal, np.not_equal) and len(inputs) == 2 and not kwargs:
            a, b = inputs
            if isinstance(a, TextColumn):
                return a._compare(b, ufunc is np.equal)
            return b._compare(a, ufunc is np.equal)
        inputs = tuple(_plain(x) for x in inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(_plain(x) for x in kwargs["out"])
        return getattr(ufunc, method)(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        handler = _TEXT_FUNCTIONS.get(func)
        if handler is not None:
            out = handler(*args, **kwargs)
            if out is not NotImplemented:
                return out
        return func(*_plain(args), **_plain(kwargs))


def _plain(x):
    """TextColumns (also inside lists, tuples and dicts) as plain unicode arrays."""
    if isinstance(x, TextColumn):
        return np.asarray(x)
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x)
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


def _text_unique(ar, return_index=False, return_inverse=False, return_counts=False, axis=None, **kwargs):
    if not isinstance(ar, TextColumn) or axis not in (None, 0) or kwargs.get("sorted", True) is False:
        return NotImplemented
    out = np.unique(ar.codes, return_index=return_index, return_inverse=return_inverse, return_counts=return_counts)
    if not isinstance(out, tuple):
        return ar.table[out]
    return (ar.table[out[0]], *out[1:])


def _text_isin(element, test_elements, assume_unique=False, invert=False, *, kind=None):
    if isinstance(test_elements, TextColumn):
        test_elements = test_elements.unique()
    if not isinstance(element, TextColumn):
        return np.isin(element, test_elements, assume_unique=assume_unique, invert=invert, kind=kind)
    hit = np.isin(element.table, np.asarray(test_elements))
    return (~hit if invert else hit)[element.codes]


def _text_concatenate(arrays, axis=0, out=None, **kwargs):
    arrays = list(arrays)
    if axis != 0 or out is not None or kwargs or not all(
            isinstance(a, (TextColumn, str)) or np.asarray(a).dtype.kind in "UT" for a in arrays):
        return NotImplemented
    if any(not isinstance(a, TextColumn) and np.ndim(a) != 1 for a in arrays):
        return NotImplemented
    return TextColumn.concatenate(arrays)


def _text_argsort(a, axis=-1, kind=None, order=None, **kwargs):
    if not isinstance(a, TextColumn) or kind not in ("stable", "mergesort") or order is not None:
        return NotImplemented  # other kinds: the order of ties is that of the unicode array's sort
    return np.argsort(a.codes, kind="stable", **kwargs)


def _text_lexsort(keys, axis=-1):
    keys = [k.codes if isinstance(k, TextColumn) else k for k in keys]  # stable: codes sort as the strings do
    return np.lexsort(keys, axis=axis)


def _text_take(a, indices, axis=None, out=None, mode="raise"):
    if not isinstance(a, TextColumn) or axis not in (None, 0) or out is not None:
        return NotImplemented
    codes = np.take(a.codes, indices, mode=mode)
    return TextColumn(codes, a.table) if codes.ndim == 1 else a.table[codes]


_TEXT_FUNCTIONS = {
    np.unique: _text_unique,
    np.isin: _text_isin,
    np.concatenate: _text_concatenate,
    np.argsort: _text_argsort,
    np.lexsort: _text_lexsort,
    np.take: _text_take,
    np.shape: lambda a: a.shape if isinstance(a, TextColumn) else NotImplemented,
    np.ndim: lambda a: 1 if isinstance(a, TextColumn) else NotImplemented,
    np.size: lambda a, axis=None: a.size if isinstance(a, TextColumn) and axis is None else NotImplemented,
    np.copy: lambda a, *args, **kw: a.copy() if isinstance(a, TextColumn) and not args and not kw else NotImplemented,
}


# ---------------------------------------------------------------------- folder format
# Everything reading a corrupt .npz can raise: zip and zlib errors, numpy's header parser (ast and
# tokenize on a garbled header), dtype descriptors it cannot build, sizes that do not fit.
_NPZ_ERRORS = (OSError, EOFError, ValueError, TypeError, KeyError, IndexError, OverflowError, MemoryError,
               SyntaxError, RecursionError, RuntimeError, NotImplementedError, UnicodeError, UserWarning,
               zipfile.BadZipFile, zlib.error, struct.error, tokenize.TokenError)
_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _error_text(e: BaseException, limit: int = 80) -> str:
    """An exception as a short single line for an error message (never the bad value in full)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the .npy header of one zip member, checked against the member's size so
    that a garbled header can never make a reader allocate more than the file holds."""
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version not in _NPY_HEADER_READERS:
            raise DataError(path, f"array {name!r} uses .npy format version {version}, which this reader does not handle")
        shape, _, dtype = _NPY_HEADER_READERS[version](f)
    if any(d < 0 for d in shape):
        raise DataError(path, f"array {name!r}: corrupt .npy header (negative shape {shape})")
    count = math.prod(shape)
    if not dtype.hasobject and max(count, count * dtype.itemsize) > info.file_size:
        raise DataError(path, f"array {name!r}: corrupt .npy header (shape {_error_text(shape, 40)} "
                              f"{dtype.str} needs more than the member's {info.file_size} bytes)")
    return tuple(shape), dtype


def read_npz_headers(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array of an npz file, from the .npy headers alone (nothing is
    loaded or unpickled). Raises DataError for a file that is not a readable zip of .npy arrays."""
    path = Path(path)
    out = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy warns on headers it had to repair: corrupt here
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if info.filename.endswith(".npy"):
                        name = info.filename[: -len(".npy")]
                        out[name] = _npy_header(zf, info, path, name)
    except DataError:
        raise
    except _NPZ_ERRORS as e:
        raise DataError(path, f"not a readable npz file (corrupt or truncated?): {_error_text(e)}") from None
    return out


def _npz_read_error(path, name: str | None, e: BaseException) -> DataError:
    """The one-line error of an npz that cannot be read: missing, or ``name`` (None: the archive
    itself) corrupt or truncated."""
    if isinstance(e, FileNotFoundError):
        return DataError(path, "no such file")
    what = "not a readable npz file" if name is None else f"cannot read array {_error_text(name, 40)!r}"
    return DataError(path, f"{what} (corrupt or truncated?): {_error_text(e)}")


def read_npz_arrays(path: str | os.PathLike, names=None, *, required: bool = True) -> dict[str, np.ndarray]:
    """Arrays of an npz file, read without pickle (the same arrays ``np.load`` gives).

    names: the arrays to read (None: all); with ``required=False`` names the file lacks are skipped.
    Object arrays, garbled .npy headers, sizes the file cannot hold, truncated or corrupt zip data:
    all raise DataError naming the file and the array, never another exception."""
    path = Path(path)
    name = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with zipfile.ZipFile(path) as zf:
                infos = {i.filename[: -len(".npy")]: i for i in zf.infolist() if i.filename.endswith(".npy")}
                wanted = list(infos) if names is None else list(names)
                out = {}
                for name in wanted:
                    info = infos.get(name)
                    if info is None:
                        if required:
                            raise DataError(path, f"missing array {_error_text(name, 40)!r}")
                        continue
                    _, dtype = _npy_header(zf, info, path, name)
                    if dtype.hasobject:
                        raise DataError(path, f"array {name!r} holds pickled Python objects, which posecurator never loads")
                    with zf.open(info) as f:
                        out[name] = np.lib.format.read_array(f, allow_pickle=False)
    except DataError:
        raise
    except (FileNotFoundError, *_NPZ_ERRORS) as e:
        raise _npz_read_error(path, name, e) from None
    return out


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_meta(path: str | os.PathLike) -> dict:
    """Read and validate ``posecurator.json`` of a pose-set folder."""
    path = Path(path)
    meta_path = path / META_FILE
    if not path.is_dir() or not meta_path.is_file():
        raise DataError(path, f"not a posecurator dataset (no {META_FILE}); create one with `posecurator import`")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(meta_path, f"corrupt dataset header: {e.msg}", line=e.lineno) from None
    except (ValueError, RecursionError, OSError) as e:  # undecodable bytes, absurd numbers or nesting
        raise DataError(meta_path, f"corrupt dataset header: {_error_text(e)}") from None
    if not isinstance(meta, dict):
        raise DataError(meta_path, "corrupt dataset header: not a JSON object")
    if meta.get("format") != FORMAT_NAME:
        raise DataError(meta_path, f"not a posecurator dataset header (format={_error_text(repr(meta.get('format')), 40)})")
    version = meta.get("version")
    if not _is_int(version) or version < 1:
        raise DataError(meta_path, f"dataset format version {_error_text(repr(version), 40)} is not a positive integer")
    if version > FORMAT_VERSION:
        raise DataError(meta_path, f"dataset format version {version} is newer than this posecurator understands ({FORMAT_VERSION}); upgrade posecurator")
    _check_meta_fields(meta_path, meta)
    return meta


def _check_meta_fields(meta_path: Path, meta: dict) -> None:
    """The header's fields have the types and ranges the writer gives them."""
    def bad(msg):
        return DataError(meta_path, f"corrupt dataset header: {msg}")

    if not isinstance(meta.get("layout"), str) or not 0 < len(meta["layout"]) <= 100:
        raise bad("'layout' must be a layout name")
    fps = meta.get("fps")
    if not _is_number(fps) or not MIN_FPS <= fps <= MAX_FPS:  # also False for NaN
        raise bad(f"'fps' must be a number in [{MIN_FPS:g}, {MAX_FPS:g}], got {_error_text(repr(fps), 40)}")
    chunks = meta.get("chunks")
    if not isinstance(chunks, list):
        raise bad("'chunks' must be a list")
    for i, chunk in enumerate(chunks):
        if not isinstance(chunk, dict) or not isinstance(chunk.get("file"), str) or not _is_int(chunk.get("n")):
            raise bad(f"chunk entry {i} must be {{\"file\": name, \"n\": rows}}")
        name = chunk["file"]
        # a plain file name inside the folder: a header must not make the reader open other files
        if not name.endswith(".npz") or "/" in name or "\\" in name or name.startswith(".") or len(name) > 255:
            raise bad(f"chunk entry {i} names {_error_text(repr(name), 40)}, not a chunk file of this folder")
        if chunk["n"] < 0:
            raise bad(f"chunk entry {i} has a negative row count")
    if "n" in meta and (not _is_int(meta["n"]) or meta["n"] != sum(c["n"] for c in chunks)):
        raise bad("'n' does not match the chunks' row counts")
    strings = meta.get("strings")
    if not isinstance(strings, dict):
        raise bad("'strings' must be an object of string tables")
    for k, table in strings.items():
        if not isinstance(table, list) or not all(isinstance(v, str) for v in table):
            raise bad(f"string table {_error_text(repr(k), 40)} must be a list of strings")
    cameras = meta.get("cameras", [])
    if not isinstance(cameras, list):
        raise bad("'cameras' must be a list of camera objects")
    for i, cam in enumerate(cameras):
        problem = _camera_problem(cam)
        if problem:
            raise bad(f"camera {i}: {problem}")
    if not isinstance(meta.get("attrs", {}), dict):
        raise bad("'attrs' must be an object")


# Numbers of each parameter of a camera entry (Camera.to_dict): required ones, then optional ones
_CAMERA_SIZES = {"R": (9,), "t": (3,), "f": (1, 2), "c": (2,)}
_CAMERA_OPTIONAL = {"k": (3,), "p": (2,)}


def _flat_numbers(value, limit: int = 16) -> list | None:
    """A number or nested lists of numbers, flattened (None when anything else is inside)."""
    flat, stack = [], [value]
    while stack:
        v = stack.pop()
        if isinstance(v, list) and len(flat) + len(stack) + len(v) <= limit:
            stack.extend(reversed(v))
        elif _is_number(v):
            flat.append(v)
        else:
            return None
    return flat


def _camera_problem(cam) -> str:
    """Why a camera entry of the header is unusable ("" when it is fine): a camera the pipelines
    would build with Camera.from_dict, with finite parameters and sizes in pixels."""
    if not isinstance(cam, dict):
        return "not a JSON object"
    for key, sizes in {**_CAMERA_SIZES, **_CAMERA_OPTIONAL}.items():
        if key not in cam:
            if key in _CAMERA_SIZES:
                return f"no {key!r}"
            continue
        flat = _flat_numbers(cam[key])
        if flat is None or len(flat) not in sizes or not all(math.isfinite(v) and abs(v) <= 1e9 for v in flat):
            return f"{key!r} must be {' or '.join(map(str, sizes))} finite numbers"
        try:   # evenly nested too: Camera.from_dict reads each with np.asarray
            np.asarray(cam[key], dtype=np.float64)
        except (ValueError, TypeError):
            return f"{key!r} is unevenly nested"
    for key in ("width", "height"):
        v = cam.get(key, 0)
        if not _is_int(v) or not 0 <= v <= MAX_ABS_PX:
            return f"{key!r} must be an integer number of pixels"
    return ""


# Per column: dtype kinds accepted, number of dimensions, trailing shape, and value range
# (int columns: the range of the dtype the PoseSet stores; float columns: |x| of finite values).
_COLUMN_RULES = {
    "joints3d": ("fiu", 3, (None, 3), MAX_ABS_MM),
    "joints2d": ("fiu", 3, (None, 2), MAX_ABS_PX),
    "visibility": ("fiu", 2, (None,), None),
    "bbox": ("fiu", 2, (4,), MAX_ABS_PX),
    "camera": ("iu", 1, (), (-1, np.iinfo(np.int32).max)),
    "frame": ("iu", 1, (), (np.iinfo(np.int32).min, np.iinfo(np.int32).max)),
    "sample_id": ("iu", 1, (), (np.iinfo(np.int64).min, np.iinfo(np.int64).max)),
    "parents": ("iu", 2, (2,), (-1, np.iinfo(np.int64).max)),
    "generation": ("iu", 1, (), (np.iinfo(np.int16).min, np.iinfo(np.int16).max)),
    **{k: ("iu", 1, (), (0, np.iinfo(np.int64).max)) for k in STRING_COLUMNS},
}


def _check_column(file: Path, name: str, v: np.ndarray, n: int, n_cameras: int) -> None:
    """DataError naming the chunk file and column when a column's dtype, shape or values are not
    what the writer stores (so that nothing is silently cast, wrapped or left for later to trip on)."""
    kinds, ndim, tail, limit = _COLUMN_RULES.get(name, ("fiub", v.ndim or 1, (), None))
    if v.dtype.kind not in kinds:
        raise DataError(file, f"column {name} has dtype {v.dtype}, expected {'real numbers' if 'f' in kinds else 'integers'}")
    if v.ndim != ndim or len(v) != n or any(t is not None and t != s for t, s in zip(tail, v.shape[1:])):
        raise DataError(file, f"column {name} has shape {_error_text(v.shape, 40)}, expected {n} rows"
                              + (f" of {tail}" if tail else ""))
    if not v.size:
        return
    if name == "camera":
        limit = (-1, n_cameras - 1)
    if isinstance(limit, tuple):
        lo, hi = int(v.min()), int(v.max())
        if lo < limit[0] or hi > limit[1]:
            raise DataError(file, f"column {name} has values outside [{limit[0]}, {limit[1]}]")
    elif name == "visibility":
        with np.errstate(invalid="ignore"):
            if not ((v >= 0) & (v <= 1)).all():
                raise DataError(file, "column visibility has values outside [0, 1] (or NaN)")
    elif limit is not None:
        # NaN may mean "not labelled" / "unknown" (2D joints, boxes); infinity never means anything
        with np.errstate(invalid="ignore", over="ignore"):
            beyond = ~np.isnan(v) & ~(np.abs(v) <= limit)
        if beyond.any():
            i = int(np.argmax(beyond.reshape(len(v), -1).any(axis=1)))
            raise DataError(file, f"column {name} has an infinite coordinate or one beyond {limit:g} (row {i})")


def iter_chunks(path: str | os.PathLike, *, columns: list[str] | None = None) -> Iterator[PoseSet]:
    """Yield the pose set chunk by chunk, so millions of poses never need to be in memory at once.

    Every chunk is checked against the header (rows, string codes, camera rows) and each column
    against the types and ranges the writer stores; a corrupt file raises DataError naming it."""
    path = Path(path)
    meta = read_meta(path)
    tables = meta["strings"]
    n_cameras = len(meta.get("cameras", []))
    sorted_tables: dict[str, TextColumn] = {}  # per text column: the header's table, sorted once
    for chunk in meta["chunks"]:
        file = path / chunk["file"]
        wanted = None if columns is None else set(columns) | {"joints3d", "joints2d"}
        arrays = read_npz_arrays(file, wanted, required=False)
        kwargs = _decode_columns(file, arrays, chunk["n"], tables, n_cameras, sorted_tables)
        _check_joint_columns(file, kwargs)
        yield PoseSet(**kwargs, layout=meta["layout"], fps=meta["fps"], cameras=meta.get("cameras", []), attrs=meta.get("attrs", {}))


# the per-sample columns a chunk may hold (PoseSet's array fields)
_COLUMN_NAMES = frozenset(f.name for f in fields(PoseSet)) - {"layout", "fps", "cameras", "attrs"}


def _decode_columns(file: Path, arrays: dict, n: int, tables: dict, n_cameras: int, sorted_tables: dict) -> dict:
    """The arrays of ``n`` rows read from chunk ``file`` as PoseSet fields: each checked, text
    columns turned from codes into the header's ``tables`` into :class:`TextColumn` s
    (``sorted_tables``: the caller's cache of each header table, sorted once)."""
    out = {}
    for name, v in arrays.items():
        if name not in _COLUMN_NAMES:
            raise DataError(file, f"unknown column {_error_text(repr(name), 40)}")
        _check_column(file, name, v, n, n_cameras)
        if name not in STRING_COLUMNS:
            out[name] = v
            continue
        table = tables.get(name)
        if table is None:
            raise DataError(file, f"column {name} has no string table in {META_FILE}")
        if v.size and v.max() >= len(table):
            raise DataError(file, f"column {name} has codes outside its string table")
        if not len(table):
            out[name] = TextColumn.full(n, "")
            continue
        if name not in sorted_tables:  # codes into the file's table -> codes into one sorted table
            sorted_tables[name] = TextColumn.from_codes(np.arange(len(table)), table)
        ref = sorted_tables[name]
        out[name] = TextColumn(ref.codes[v], ref.table)
    return out


def _check_joint_columns(file: Path, kwargs: dict) -> None:
    if "joints3d" not in kwargs and "joints2d" not in kwargs:
        raise DataError(file, "chunk has neither joints3d nor joints2d")
    for a, b in (("joints3d", "joints2d"), ("joints3d", "visibility"), ("joints2d", "visibility")):
        if a in kwargs and b in kwargs and kwargs[a].shape[1] != kwargs[b].shape[1]:
            raise DataError(file, f"columns {a} and {b} have different joint counts")


def write_chunk_file(path: str | os.PathLike, ps: PoseSet, tables: dict[str, dict[str, int]], *, frozen: bool = False) -> int:
    """Write ``ps`` as one chunk file of a pose-set folder (text columns as codes into ``tables``,
    name -> {string: code}; new strings get the next code, or, with ``frozen``, are an error: the
    tables were handed to this process by a :class:`PoseSetWriter`). Not synced: the writer syncs
    every chunk before it renames its folder into place (by then the kernel has written most of
    them back, so a worker never waits on the disk per chunk). Returns the format version the
    chunk's columns need."""
    arrays, version = {}, 1
    for name in ps._array_fields():
        value = getattr(ps, name)
        if value is None:
            continue
        version = max(version, _VERSION_OF_COLUMN.get(name, 1))
        if name in STRING_COLUMNS:
            table = tables[name]
            uniq, inverse = np.unique(value, return_inverse=True)
            if frozen:
                missing = [u for u in uniq.tolist() if u not in table]
                if missing:
                    raise ValueError(f"column {name}: {missing[0]!r} has no code in the writer's table (reserve it first)")
                codes = np.array([table[u] for u in uniq.tolist()], dtype=np.int32)
            else:
                codes = np.array([table.setdefault(u, len(table)) for u in uniq.tolist()], dtype=np.int32)
            value = codes[inverse.reshape(-1)]
        arrays[name] = np.ascontiguousarray(value)
    atomic_savez(path, _sync=False, **arrays)
    return version


class PoseSetWriter:
    """Append pose sets chunk by chunk to a new folder; renamed into place on a clean exit.

    >>> with PoseSetWriter("out.pcs") as w:   # doctest: +SKIP
    ...     for part in parts:
    ...         w.append(part)

    The chunks go to a temporary folder ``.NAME.XXXXXXXX.tmp`` next to the output, which this
    writer holds a lock on (``flock`` on the folder) while it lives; it is renamed over the output
    under the output's lock (:func:`posecurator.fileio.output_lock`), so two writers of one output
    never collide: the later one waits and then replaces the earlier one's set (or, with
    ``overwrite=False``, fails with "already exists"). A failure removes the temporary folder; one
    that a killed writer left behind is removed by the next writer of the same output.
    """

    def __init__(self, path, *, layout: str = "h36m17", fps: float = 30.0, chunk_size: int = DEFAULT_CHUNK,
                 overwrite: bool = True, attrs: dict | None = None):
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise DataError(self.path, "already exists")
        if self.path.exists() and not (self.path / META_FILE).is_file():
            raise DataError(self.path, "exists and is not a posecurator dataset; refusing to overwrite it")
        self.layout, self.fps, self.chunk_size = layout, fps, chunk_size
        self.overwrite = overwrite
        self.attrs = dict(attrs or {})
        self.cameras: list[dict] = []
        self._tables: dict[str, dict[str, int]] = {k: {} for k in STRING_COLUMNS}
        self._chunks: list[dict] = []
        self._claimed = 0
        self._version = 1
        self._tmp: Path | None = None
        self._tmp_lock: int | None = None
        self._n = 0

    def __enter__(self) -> "PoseSetWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # the temporary folder is made and locked under the output's lock: a clean-up by another
        # writer (which also holds it) can then never take a new folder for a dead writer's
        with output_lock(self.path):
            self._remove_dead_temps()
            self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent))
            self._tmp_lock = try_lock_folder(self._tmp)
        os.chmod(self._tmp, 0o755)  # mkdtemp makes an owner-only folder; datasets are meant to be shared
        return self

    def _remove_dead_temps(self) -> None:
        """Remove temporary folders of this output whose writer died (nobody holds their lock)."""
        pattern = re.compile(rf"^\.{re.escape(self.path.name)}\.[a-z0-9_]{{8}}\.tmp$")
        for folder in self.path.parent.iterdir():
            if not pattern.match(folder.name) or not folder.is_dir():
                continue
            fd = try_lock_folder(folder)
            if fd is not None:
                try:
                    shutil.rmtree(folder, ignore_errors=True)
                finally:
                    os.close(fd)

    def scratch_dir(self, name: str) -> Path:
        """An absolute folder ``name`` inside the writer's temporary folder, for a producer's scratch
        files: removed with the temporary folder when the write fails or is killed. The producer
        must remove it before the writer closes (it would be renamed into place with the set)."""
        if self._tmp is None:
            raise RuntimeError("use PoseSetWriter as a context manager")
        if not name or "/" in name or name.startswith(".") or name.startswith("chunk-") or name == META_FILE:
            raise ValueError(f"bad scratch folder name {name!r}")
        folder = (self._tmp / name).resolve()
        folder.mkdir(exist_ok=True)
        return folder

    def append(self, ps: PoseSet) -> None:
        if self._tmp is None:
            raise RuntimeError("use PoseSetWriter as a context manager")
        if ps.layout != self.layout:
            raise ValueError(f"layout {ps.layout} differs from the writer's {self.layout}")
        for start in range(0, len(ps), self.chunk_size):
            self._write_chunk(ps.subset(slice(start, start + self.chunk_size)))

    def _write_chunk(self, ps: PoseSet) -> None:
        fname = self.claim_chunk()
        version = write_chunk_file(self._tmp / fname, ps, self._tables)
        self.register_chunk(fname, len(ps), version)

    # ------------------------------------------------------------ chunks written by other processes
    # A producer whose workers write chunks themselves (sharded augmentation on a parallel engine:
    # the rows never pass through this process) claims the chunks' names in output order, reserves
    # every string its rows may hold, hands `folder` and `frozen_tables()` to the workers (which call
    # `write_chunk_file(..., frozen=True)`), and registers each chunk, in the claimed order, once written.
    @property
    def folder(self) -> Path:
        """The temporary folder the chunks go to (renamed into place on a clean exit)."""
        if self._tmp is None:
            raise RuntimeError("use PoseSetWriter as a context manager")
        return self._tmp

    def claim_chunk(self) -> str:
        """The file name of the next chunk in output order (register it with :meth:`register_chunk`)."""
        if self._tmp is None:
            raise RuntimeError("use PoseSetWriter as a context manager")
        fname = f"chunk-{self._claimed:05d}.npz"
        self._claimed += 1
        return fname

    def register_chunk(self, fname: str, n: int, version: int = 1) -> None:
        """Record a chunk written into :attr:`folder` under a name from :meth:`claim_chunk`; chunks
        must be registered in the order their names were claimed."""
        expected = f"chunk-{len(self._chunks):05d}.npz"
        if fname != expected:
            raise ValueError(f"chunk {fname} registered out of order (next is {expected})")
        self._version = max(self._version, int(version))
        self._chunks.append({"file": fname, "n": int(n)})
        self._n += int(n)

    def reserve_strings(self, name: str, values) -> None:
        """Give codes now to ``values`` of text column ``name`` (in this order, where new), so that
        chunks written elsewhere with :meth:`frozen_tables` can hold them. A reserved string no row
        uses stays in the header's table (harmless: readers map codes, not table entries)."""
        table = self._tables[name]
        for v in values:
            table.setdefault(str(v), len(table))

    def frozen_tables(self) -> dict[str, dict[str, int]]:
        """A copy of the string -> code tables, for :func:`write_chunk_file` in another process."""
        return {k: dict(t) for k, t in self._tables.items()}

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
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
                for chunk in self._chunks:  # written unsynced (write_chunk_file); durable before the swap
                    fd = os.open(self._tmp / chunk["file"], os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                atomic_write_text(self._tmp / META_FILE, json.dumps(meta, indent=1))
                with output_lock(self.path):
                    self._swap()
        finally:
            if self._tmp is not None and self._tmp.exists():
                shutil.rmtree(self._tmp, ignore_errors=True)  # failed, or refused by _swap
            if self._tmp_lock is not None:
                os.close(self._tmp_lock)
                self._tmp_lock = None
        return False

    def _swap(self) -> None:
        """Rename the finished temporary folder over the output (the caller holds the output's
        lock, so what exists now is what this writer replaces)."""
        old = self.path.with_name(f".{self.path.name}.old")
        shutil.rmtree(old, ignore_errors=True)  # left by a writer killed in the middle of its swap
        if self.path.exists():
            if not self.overwrite:
                raise DataError(self.path, "already exists")
            if not (self.path / META_FILE).is_file():
                raise DataError(self.path, "exists and is not a posecurator dataset; refusing to overwrite it")
            os.replace(self.path, old)
            os.replace(self._tmp, self.path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self._tmp, self.path)


# ---------------------------------------------------------------------- lazy opening
# What a PoseSet fills in for a numeric column a chunk does not store: (fill, dtype, row shape).
_COLUMN_FILL = {"camera": (-1, np.int32, ()), "frame": (0, np.int32, ()), "generation": (0, np.int16, ()),
                "parents": (-1, np.int64, (2,))}

@dataclass(frozen=True)
class _Member:
    """One array of a chunk file: its shape and dtype from the .npy header and, for a member
    stored uncompressed in C order (what :class:`PoseSetWriter` writes), the byte offset of its
    data in the file, so that rows can be read through a memory map (None: read it whole)."""

    shape: tuple
    dtype: np.dtype
    offset: int | None


def _npz_members(path: Path) -> dict[str, _Member]:
    """The arrays of an npz chunk file, from its zip directory and .npy headers (nothing loaded).

    A member's data offset is taken from its *local* zip header (the central directory does not
    hold the length of the local extra field, which numpy's zip64 entries use), and is checked to
    lie inside the file together with the whole array, so a memory map never reaches past it."""
    out = {}
    name = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                for info in zf.infolist():
                    if not info.filename.endswith(".npy"):
                        continue
                    name = info.filename[: -len(".npy")]
                    shape, dtype = _npy_header(zf, info, path, name)
                    if dtype.hasobject:
                        raise DataError(path, f"array {_error_text(name, 40)!r} holds pickled Python objects, which posecurator never loads")
                    offset = None
                    if info.compress_type == zipfile.ZIP_STORED:
                        f.seek(info.header_offset)
                        local = f.read(30)
                        if len(local) < 30 or local[:4] != b"PK\x03\x04":
                            raise DataError(path, f"array {_error_text(name, 40)!r}: corrupt zip entry header")
                        name_len, extra_len = struct.unpack("<HH", local[26:30])
                        f.seek(info.header_offset + 30 + name_len + extra_len)
                        version = np.lib.format.read_magic(f)
                        if version not in _NPY_HEADER_READERS:
                            raise DataError(path, f"array {_error_text(name, 40)!r} uses .npy format version {version}, which this reader does not handle")
                        shape2, fortran, dtype2 = _NPY_HEADER_READERS[version](f)
                        if tuple(shape2) != shape or dtype2 != dtype:
                            raise DataError(path, f"array {_error_text(name, 40)!r}: zip entry headers disagree (corrupt file?)")
                        nbytes = math.prod(shape) * dtype.itemsize
                        if f.tell() + nbytes > size or f.tell() + nbytes > info.header_offset + 30 + name_len + extra_len + info.file_size:
                            raise DataError(path, f"array {_error_text(name, 40)!r} is truncated")
                        offset = None if fortran and len(shape) > 1 else f.tell()
                    out[name] = _Member(shape, dtype, offset)
    except DataError:
        raise
    except (FileNotFoundError, *_NPZ_ERRORS) as e:
        raise _npz_read_error(path, name, e) from None
    return out


class PoseStore:
    """A pose-set folder opened lazily: nothing but the header is read until asked for.

    >>> store = PoseSet.open("big.pcs")            # doctest: +SKIP
    >>> len(store), store.layout, store.meta["attrs"]
    >>> walk = store.select(store.column("activity") == "walk")   # indices only, no rows copied
    >>> part = walk.take(np.arange(100))           # reads only the rows it needs
    >>> for chunk in walk.iter_chunks(columns=["joints3d"]): ...

    ``take`` reads only the chunk files the rows fall in, and of those only the rows themselves:
    through a memory map of each uncompressed array (what :class:`PoseSetWriter` writes), or the
    whole array for a compressed one. ``rows_read`` counts the rows decoded, so that callers and
    tests can see what a read cost. Values read this way are checked like :func:`iter_chunks`
    checks them (types, shapes, ranges, string codes), except for the zip checksum, which only a
    whole-array read can verify. A selection (:meth:`select`) holds sorted row indices into the
    folder; the rows are read when :meth:`take`, :meth:`iter_chunks`, :meth:`column` or
    :meth:`load` ask for them."""

    def __init__(self, path: str | os.PathLike, *, _meta: dict | None = None, _index: np.ndarray | None = None):
        self.path = Path(path)
        self.meta = read_meta(self.path) if _meta is None else _meta
        counts = np.array([c["n"] for c in self.meta["chunks"]], dtype=np.int64)
        self._bounds = np.concatenate([[0], np.cumsum(counts)])
        self._index = _index  # sorted, distinct rows of the folder; None = every row
        self._members: dict[int, dict[str, _Member]] = {}
        self._tables: dict[str, TextColumn] = {}
        self.rows_read = 0

    # -------------------------------------------------------------- metadata
    def __len__(self) -> int:
        return int(self._bounds[-1]) if self._index is None else len(self._index)

    def __repr__(self) -> str:
        return f"PoseStore({str(self.path)!r}, n={len(self)}, layout={self.layout!r})"

    @property
    def layout(self) -> str:
        return self.meta["layout"]

    @property
    def fps(self) -> float:
        return self.meta["fps"]

    @property
    def cameras(self) -> list[dict]:
        return self.meta.get("cameras", [])

    @property
    def attrs(self) -> dict:
        return self.meta.get("attrs", {})

    @property
    def columns(self) -> list[str]:
        """The columns stored (those of the first chunk; every chunk the writer makes has the same)."""
        if not self.meta["chunks"]:
            return []
        return self.chunk_columns(0)

    def chunk_columns(self, k: int) -> list[str]:
        """The columns chunk ``k`` stores (its file's member names; no array is read)."""
        return list(self._chunk_members(k))

    @property
    def indices(self) -> np.ndarray:
        """Rows of the folder this store stands for (sorted)."""
        return np.arange(len(self), dtype=np.int64) if self._index is None else self._index

    # -------------------------------------------------------------- selection
    def select(self, index) -> "PoseStore":
        """The rows picked by a boolean mask, index array or slice (relative to this store), as a
        store that holds their indices only. Rows come out in the folder's order, each once."""
        # rows are kept sorted and distinct (reads walk every chunk once, in order); a mask or a
        # slice of sorted rows already is, and is taken without a sort (N/8 bytes, not 3 x 8 N)
        if isinstance(index, slice):
            rows = self.indices[index]
            if index.step is not None and index.step < 0:
                rows = rows[::-1]
        else:
            index = np.asarray(index)
            if index.dtype == bool:
                if index.shape != (len(self),):
                    raise ValueError(f"a mask must have shape ({len(self)},), got {index.shape}")
                rows = np.flatnonzero(index) if self._index is None else self._index[index]
            else:
                rows = np.unique(self.indices[self._check_index(index)])
        return PoseStore(self.path, _meta=self.meta, _index=np.asarray(rows, dtype=np.int64))

    def _check_index(self, index: np.ndarray) -> np.ndarray:
        if index.dtype.kind not in "iu" or index.ndim != 1:
            raise ValueError(f"indices must be a 1-D integer array, got {index.dtype} {index.shape}")
        if index.size and (int(index.min()) < -len(self) or int(index.max()) >= len(self)):
            raise IndexError(f"index out of range for a store of {len(self)} rows")
        return np.where(index < 0, index + len(self), index).astype(np.int64)

    # -------------------------------------------------------------- reading
    def load(self, columns: list[str] | None = None) -> PoseSet:
        """The whole store (or selection) in memory, as :meth:`PoseSet.load` gives it."""
        if self._index is None:
            return PoseSet.load(self.path, columns=columns)
        return self.take(np.arange(len(self)), columns=columns)

    def iter_chunks(self, columns: list[str] | None = None) -> Iterator[PoseSet]:
        """Yield the store chunk by chunk (a selection: the selected rows of each chunk)."""
        if self._index is None:
            yield from iter_chunks(self.path, columns=columns)
            return
        for k, rows in self._rows_by_chunk(self._index):
            yield self._read_rows(k, rows, columns)

    def column(self, name: str) -> np.ndarray | None:
        """One column of every row of the store: a NumPy array (a :class:`TextColumn` for text),
        reading that column alone from each chunk file; None for an optional column the set does
        not store (as ``PoseSet.load`` leaves it)."""
        if name not in _COLUMN_NAMES:
            raise KeyError(f"no column {name!r}; a pose set has {sorted(_COLUMN_NAMES)}")
        parts, missing = [], []
        for k, rows in self._rows_by_chunk(self._index):
            arrays = self._read_arrays(k, rows, [name])
            m = self.meta["chunks"][k]["n"] if rows is None else len(rows)
            if name in arrays:
                parts.append(arrays[name])
            elif name in STRING_COLUMNS:  # what PoseSet.load gives for a column a chunk lacks
                parts.append(TextColumn.full(m, ""))
            elif name in _COLUMN_FILL:
                fill, dtype, tail = _COLUMN_FILL[name]
                parts.append(np.full((m, *tail), fill, dtype))
            else:
                missing.append(self.meta["chunks"][k]["file"])
        if missing and (parts or len(missing) < len(self.meta["chunks"])):
            raise DataError(self.path / missing[0], f"has no column {name}, which other chunks of the set store")
        if missing:
            return None  # an optional column (joints2d, visibility, bbox, ...) the set does not have
        if not parts:
            return TextColumn.full(0, "") if name in STRING_COLUMNS else np.zeros(0)
        return TextColumn.concatenate(parts) if name in STRING_COLUMNS else np.concatenate(parts)

    def take(self, indices, columns: list[str] | None = None) -> PoseSet:
        """The rows at ``indices`` (relative to this store; any order, repeats allowed) as a
        PoseSet, reading only the chunks they fall in and only those rows of them."""
        idx = self._check_index(np.asarray(indices).reshape(-1) if np.ndim(indices) else np.asarray([indices]))
        rows = idx if self._index is None else self._index[idx]
        uniq, where = np.unique(rows, return_inverse=True)
        parts = [self._read_rows(k, r, columns) for k, r in self._rows_by_chunk(uniq)]
        if not parts:  # no rows: an empty set of the stored columns
            return self._read_rows(0, np.zeros(0, np.int64), columns) if self.meta["chunks"] else PoseSet(joints3d=np.zeros((0, 0, 3), np.float32), layout=self.layout, fps=self.fps)
        out = parts[0] if len(parts) == 1 else PoseSet.concatenate(parts)
        out.cameras = list(self.cameras)
        if len(parts) > 1:  # concatenate re-indexed cameras per part; every part shares the header's table
            out.camera = np.concatenate([p.camera for p in parts])
        if len(uniq) != len(rows) or not np.array_equal(uniq, rows):
            out = out.subset(where.reshape(-1))
            out.cameras = list(self.cameras)
        return out

    def to_arrow(self, columns: list[str] | None = None):
        """The store as a ``pyarrow.RecordBatchReader``, one batch per chunk (flat memory), for
        the tools that speak Arrow: ``duckdb.sql("select activity, count(*) from r group by 1")``
        with ``r = store.to_arrow()``, ``polars.from_arrow(r.read_all())``, ``r.read_pandas()``.
        Joints are fixed-size lists of float32 (``(J, 3)`` per row), text columns dictionary-encoded
        strings (categoricals), lineage and the other columns plain integers. Needs pyarrow, which
        posecurator itself does not depend on."""
        try:
            import pyarrow as pa
        except ImportError:
            raise ImportError("PoseStore.to_arrow needs pyarrow: pip install pyarrow") from None

        def batch(ps: PoseSet):
            cols = {}
            for name in ps._array_fields():
                v = getattr(ps, name)
                if v is None or (columns is not None and name not in columns):
                    continue
                if isinstance(v, TextColumn):
                    cols[name] = pa.DictionaryArray.from_arrays(v.codes.astype(np.int32), pa.array(v.table.tolist(), pa.string()))
                elif v.ndim == 1:
                    cols[name] = pa.array(v)
                else:  # (N, J, 3) -> fixed-size lists of fixed-size lists, without copying
                    arr = pa.array(np.ascontiguousarray(v).reshape(-1))
                    for size in reversed(v.shape[1:]):
                        arr = pa.FixedSizeListArray.from_arrays(arr, size)
                    cols[name] = arr
            return pa.record_batch(cols)

        chunks = self.iter_chunks(columns=columns)
        first = next(chunks, None)
        if first is None:
            return pa.RecordBatchReader.from_batches(pa.schema([]), [])
        head = batch(first)

        def rest():
            yield head
            for ps in chunks:
                yield batch(ps).cast(head.schema)  # the same dictionary types in every batch
        return pa.RecordBatchReader.from_batches(head.schema, rest())

    # -------------------------------------------------------------- internals
    def _rows_by_chunk(self, rows: np.ndarray | None):
        """(chunk number, rows within it) for sorted folder ``rows`` (None: all of every chunk)."""
        for k in range(len(self.meta["chunks"])):
            lo, hi = int(self._bounds[k]), int(self._bounds[k + 1])
            if rows is None:
                yield k, None
                continue
            a, b = np.searchsorted(rows, [lo, hi])
            if b > a:
                yield k, rows[a:b] - lo

    def _chunk_members(self, k: int) -> dict[str, _Member]:
        if k not in self._members:
            self._members[k] = _npz_members(self.path / self.meta["chunks"][k]["file"])
        return self._members[k]

    def _read_arrays(self, k: int, rows: np.ndarray | None, names: list[str] | None) -> dict:
        """Columns ``names`` (None: all) of chunk ``k``, rows ``rows`` (None: all), checked."""
        chunk = self.meta["chunks"][k]
        file, n = self.path / chunk["file"], chunk["n"]
        if rows is None:
            arrays = read_npz_arrays(file, names, required=False)  # whole arrays: the checksum is verified too
            m = decoded = n
        else:
            members = self._chunk_members(k)
            arrays = {}
            decoded = len(rows)
            # a run of consecutive rows (a block of a streamed pass) is read as a slice: a plain copy
            pick = slice(int(rows[0]), int(rows[-1]) + 1) if rows.size and int(rows[-1]) - int(rows[0]) + 1 == len(rows) else rows
            for name in members if names is None else names:
                member = members.get(name)
                if member is None:
                    continue
                if not member.shape or member.shape[0] != n:
                    raise DataError(file, f"column {name} has shape {_error_text(member.shape, 40)}, expected {n} rows")
                if not rows.size:
                    arrays[name] = np.zeros((0, *member.shape[1:]), member.dtype)
                elif member.offset is None:  # compressed (or Fortran-ordered): the whole array
                    arrays[name] = read_npz_arrays(file, [name])[name][rows]
                    decoded = n
                else:
                    try:
                        mapped = np.memmap(file, dtype=member.dtype, mode="r", offset=member.offset, shape=member.shape)
                        arrays[name] = np.array(mapped[pick])  # a copy: the map is closed with it
                        del mapped
                    except (OSError, ValueError) as e:
                        raise DataError(file, f"cannot read array {name!r}: {_error_text(e)}") from None
            m = len(rows)
        self.rows_read += decoded  # rows of this chunk decoded (a row counts once, whatever the columns)
        return _decode_columns(file, arrays, m, self.meta["strings"], len(self.cameras), self._tables)

    def _read_rows(self, k: int, rows: np.ndarray, columns: list[str] | None) -> PoseSet:
        file = self.path / self.meta["chunks"][k]["file"]
        names = None if columns is None else list(dict.fromkeys([*columns, "joints3d", "joints2d"]))
        kwargs = self._read_arrays(k, rows, names)
        _check_joint_columns(file, kwargs)
        return PoseSet(**kwargs, layout=self.layout, fps=self.fps, cameras=self.cameras, attrs=self.attrs)
