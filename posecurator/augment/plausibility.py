"""Plausibility of generated poses: a joint-angle prior learned from the training poses themselves.

:class:`JointAnglePrior` (in the spirit of Akhter & Black's pose-conditioned joint-angle limits,
which TAG-Net uses, but learned from whatever real poses it is given; nothing is downloaded):

* **Directions.** Every non-root bone's unit direction is expressed in the local frame of its
  parent bone (pelvis frame for hips, thighs and spine; chest frame, built from the shoulder
  left-right axis, for neck, clavicles and upper arms; the thigh / neck / upper-arm frames for
  shins, head and forearms; see :mod:`posecurator.augment.operators` for the frames). The sphere
  of directions is cut into cells by an equi-angular cube map (6 faces x ``resolution`` ^ 2 cells,
  O(1) lookup per direction, cells of nearly equal size everywhere, no poles). A cell is valid
  for a bone when at least ``min_count`` training poses put that bone in it; the valid region is
  then grown by ``dilate`` rings of neighbouring cells (cells whose centres lie within
  ``(dilate + 0.5)`` cell widths), so poses between two observed ones are not rejected.
* **Lengths.** Each bone's length divided by the sum of all 16 bone lengths (scale-free, so
  people of every size pass) must lie within the training range widened by ``length_margin``
  (as a fraction) on both sides.

A bone is valid when both hold; a *limb* (torso, head, left arm, right arm, left leg, right leg;
:data:`LIMBS`) is valid when all of its bones are; a pose passes :meth:`JointAnglePrior.check`
when at least ``min_valid_limbs`` of the six limbs are valid (all six by default).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from posecurator.augment import operators as _ops
from posecurator.augment.operators import N_JOINTS
from posecurator.poseset import PoseStore, joints3d_of

# Limbs as groups of bones (bone j ends at joint j).
LIMBS: dict[str, tuple[int, ...]] = {
    "torso": (7, 8),
    "head": (9, 10),
    "left_arm": (11, 12, 13),
    "right_arm": (14, 15, 16),
    "left_leg": (4, 5, 6),
    "right_leg": (1, 2, 3),
}
# poses per chunk on hot paths: small enough that the temporaries stay in cache
_CHUNK = 8192


def _joints(poses) -> np.ndarray:
    """PoseSet or array -> (N, 17, 3) joints."""
    return joints3d_of(poses, n_joints=N_JOINTS, purpose="the joint-angle prior")


# ---------------------------------------------------------------------- sphere grid
def _cube_cells_xyz(x, y, z, resolution: int) -> np.ndarray:
    """Cell index of unit vectors given by their component arrays (any equal shapes)."""
    ax, ay, az = np.abs(x), np.abs(y), np.abs(z)
    on_x = (ax >= ay) & (ax >= az)          # major axis x (ties go to the earlier axis)
    on_y = ~on_x & (ay >= az)
    major = np.where(on_x, x, np.where(on_y, y, z))
    u = np.where(on_x, y, np.where(on_y, z, x))  # the next axis after the major one, cyclically
    w = np.where(on_x, z, np.where(on_y, x, y))
    face = np.where(on_x, 0, np.where(on_y, 2, 4)).astype(np.int32) + (major < 0)
    scale = 1.0 / np.maximum(np.abs(major), 1e-12)
    half = resolution / 2
    # equi-angular warp: atan(u) is uniform in angle across the face. |u| <= 1, so the index is
    # >= 0 (truncation towards zero) and reaches `resolution` only at u = 1 exactly
    iu = np.minimum(((np.arctan(u * scale) * (4 / np.pi) + 1.0) * half).astype(np.int32), resolution - 1)
    iw = np.minimum(((np.arctan(w * scale) * (4 / np.pi) + 1.0) * half).astype(np.int32), resolution - 1)
    return (face * resolution + iu) * resolution + iw


def cube_cells(directions: np.ndarray, resolution: int) -> np.ndarray:
    """Cell index in [0, 6 * resolution^2) of unit vectors (..., 3) on an equi-angular cube map.

    Face 2m (+) or 2m + 1 (-) of the major axis m; the two other coordinates, taken cyclically
    after m and divided by the major one, are warped by atan so cells subtend nearly equal angles.
    """
    v = np.asarray(directions, dtype=np.float64)
    return _cube_cells_xyz(v[..., 0], v[..., 1], v[..., 2], resolution)


def cube_cell_centres(resolution: int) -> np.ndarray:
    """(6 * resolution^2, 3) unit centre of every cell of :func:`cube_cells`."""
    r = resolution
    t = np.tan(((np.arange(r) + 0.5) / r * 2 - 1) * np.pi / 4)
    out = np.empty((6, r, r, 3))
    for face in range(6):
        m, sign = face // 2, (-1.0 if face % 2 else 1.0)
        out[face, :, :, m] = sign
        out[face, :, :, (m + 1) % 3] = t[:, None]
        out[face, :, :, (m + 2) % 3] = t[None, :]
    out = out.reshape(-1, 3)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


class JointAnglePrior:
    """Which bone directions (in the parent's frame) and bone-length ratios real people show.

    Parameters: ``resolution`` cells along a cube-face edge (cell width 90 / resolution degrees);
    ``min_count`` training poses a cell needs to be valid; ``dilate`` rings of neighbour cells
    added to the valid region; ``length_margin`` fraction the length-ratio range is widened by;
    ``min_valid_limbs`` limbs (of the six in :data:`LIMBS`) that must be valid in :meth:`check`;
    ``dtype`` of the checks ("float32": ~1.7x faster; a direction within ~1e-6 rad of a cell
    border may fall on the other side than in float64; ``fit`` always runs in float64).

    Learned: ``counts_`` (17, n_cells) training poses per cell (row 0, the root, unused),
    ``valid_cells_`` (17, n_cells) bool, ``length_ratio_low_`` / ``length_ratio_high_`` (17,),
    ``n_fit_`` poses seen.
    """

    def __init__(self, *, resolution: int = 8, min_count: int = 1, dilate: int = 1,
                 length_margin: float = 0.15, min_valid_limbs: int | None = None, dtype: str = "float32"):
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self.dtype = dtype
        self.resolution = resolution
        self.min_count = min_count
        self.dilate = dilate
        self.length_margin = length_margin
        self.min_valid_limbs = min_valid_limbs

    @property
    def n_cells(self) -> int:
        return 6 * self.resolution ** 2

    # ------------------------------------------------------------------ features
    def _features_soa(self, joints_soa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Component-major joints (3, 17, n) -> cells (17, n) of every bone direction (row 0 = 0) and
        length ratios (17, n)."""
        bones = _ops._bones_soa(joints_soa)
        bones[:, 0] = 0.0
        lengths = _ops._norm(bones)
        local = _ops._local_directions_soa(bones, lengths=lengths)
        cells = _cube_cells_xyz(local[0], local[1], local[2], self.resolution)
        cells[0] = 0
        ratio = lengths / np.maximum(lengths.sum(axis=0), 1e-9)
        return cells, ratio

    # ------------------------------------------------------------------ fit
    def fit(self, poses) -> "JointAnglePrior":
        """Learn the valid cells and length-ratio ranges from real poses (PoseSet or (N, 17, 3) mm)."""
        return self.fit_stream([poses])

    def fit_stream(self, parts) -> "JointAnglePrior":
        """:meth:`fit` over consecutive parts of one set (PoseSets or (n, 17, 3) arrays), e.g. the
        chunks of a stored set (``PoseSet.open(path).iter_chunks(columns=["joints3d"])``), holding
        one part at a time. What is learned (cell counts, length-ratio minima and maxima) is a sum
        and an extremum over poses, so the prior equals :meth:`fit` of the whole set exactly,
        whatever the parts."""
        counts = np.zeros((N_JOINTS, self.n_cells), dtype=np.int64)
        lo = np.full(N_JOINTS, np.inf)
        hi = np.full(N_JOINTS, -np.inf)
        n = 0
        for part in parts:
            joints = _joints(part)
            if not np.isfinite(joints).all():
                raise ValueError("training poses contain NaN or infinite coordinates")
            self._accumulate(joints, counts, lo, hi)
            n += len(joints)
        if n == 0:
            raise ValueError("cannot fit a joint-angle prior on zero poses")
        return self._finish(counts, lo, hi, n)

    def _accumulate(self, joints: np.ndarray, counts: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        """Add (N, 17, 3) training poses to the cell counts and length-ratio extrema (in place)."""
        n_cells = self.n_cells
        for start in range(0, len(joints), _CHUNK):
            cells, ratio = self._features_soa(_ops.to_soa(joints[start:start + _CHUNK], np.float64))
            flat = cells + (np.arange(N_JOINTS) * n_cells)[:, None]
            counts += np.bincount(flat.ravel(), minlength=N_JOINTS * n_cells).reshape(N_JOINTS, n_cells)
            np.minimum(lo, ratio.min(axis=1), out=lo)
            np.maximum(hi, ratio.max(axis=1), out=hi)

    def _finish(self, counts: np.ndarray, lo: np.ndarray, hi: np.ndarray, n: int) -> "JointAnglePrior":
        counts[0] = 0
        occupied = counts >= self.min_count
        if self.dilate > 0:
            centres = cube_cell_centres(self.resolution)
            reach = np.cos(min(np.pi, (self.dilate + 0.5) * (np.pi / 2) / self.resolution))
            near = (centres @ centres.T) >= reach - 1e-12  # (n_cells, n_cells) neighbourhood
            occupied = (occupied.astype(np.int64) @ near.astype(np.int64)) > 0
        occupied[0] = True
        self.counts_ = counts
        self.valid_cells_ = occupied
        self.length_ratio_low_ = lo * (1.0 - self.length_margin)
        self.length_ratio_high_ = hi * (1.0 + self.length_margin)
        self.length_ratio_low_[0], self.length_ratio_high_[0] = -np.inf, np.inf
        self.n_fit_ = int(n)
        return self

    @property
    def _valid_flat_(self) -> np.ndarray:
        return self.valid_cells_.ravel()

    @property
    def _row_offset_(self) -> np.ndarray:
        return (np.arange(N_JOINTS, dtype=np.int32) * self.n_cells)[:, None]

    def _check_fitted(self):
        if not hasattr(self, "valid_cells_"):
            raise RuntimeError("JointAnglePrior is not fitted; call fit() first")

    # ------------------------------------------------------------------ checks
    def _is_valid_soa(self, joints_soa: np.ndarray) -> np.ndarray:
        """Component-major joints (3, 17, n) -> (17, n) bool validity per bone (row 0 True)."""
        cells, ratio = self._features_soa(joints_soa)
        ok = self._valid_flat_[cells + self._row_offset_]  # one table lookup per bone
        low = self.length_ratio_low_.astype(ratio.dtype)[:, None]
        high = self.length_ratio_high_.astype(ratio.dtype)[:, None]
        ok &= (ratio >= low) & (ratio <= high)
        ok &= np.isfinite(joints_soa).all(axis=0)
        ok[0] = True
        return ok

    def is_valid(self, poses) -> np.ndarray:
        """(N, 17) bool: bone j's direction and length ratio are both valid (column 0, the root, is True)."""
        self._check_fitted()
        joints = _joints(poses)
        out = np.empty((len(joints), N_JOINTS), dtype=bool)
        for start in range(0, len(joints), _CHUNK):  # chunks stay in cache (see operators' layout note)
            out[start:start + _CHUNK] = self._is_valid_soa(_ops.to_soa(joints[start:start + _CHUNK], self.dtype)).T
        return out

    def limb_validity(self, poses, *, bone_valid: np.ndarray | None = None) -> np.ndarray:
        """(N, 6) bool: every bone of the limb is valid (limbs in the order of :data:`LIMBS`)."""
        ok = self.is_valid(poses) if bone_valid is None else bone_valid
        return np.stack([ok[:, list(bones)].all(axis=1) for bones in LIMBS.values()], axis=1)

    def check(self, poses, *, min_valid_limbs: int | None = None) -> np.ndarray:
        """(N,) bool: at least ``min_valid_limbs`` limbs valid (default: the init value, else all 6)."""
        need = self.required_limbs(min_valid_limbs)
        self._check_fitted()
        joints = _joints(poses)
        out = np.empty(len(joints), dtype=bool)
        for start in range(0, len(joints), _CHUNK):
            out[start:start + _CHUNK] = self._check_soa(_ops.to_soa(joints[start:start + _CHUNK], self.dtype), need)
        return out

    def check_stream(self, parts, *, min_valid_limbs: int | None = None):
        """:meth:`check` of consecutive parts of one set (PoseSets or arrays), part by part: yields
        one (n,) bool array per part. A pose's verdict depends on that pose alone, so the
        concatenated verdicts equal :meth:`check` of the whole set whatever the parts."""
        need = self.required_limbs(min_valid_limbs)
        self._check_fitted()
        for part in parts:
            yield self.check(part, min_valid_limbs=need)

    def _check_soa(self, joints_soa: np.ndarray, need: int) -> np.ndarray:
        """Component-major joints (3, 17, n) -> (n,) bool, at least ``need`` limbs valid."""
        ok = self._is_valid_soa(joints_soa.astype(self.dtype, copy=False))
        n_valid = sum(ok[list(bones)].all(axis=0).astype(np.int8) for bones in LIMBS.values())
        return n_valid >= need

    def required_limbs(self, min_valid_limbs: int | None = None) -> int:
        """The number of limbs :meth:`check` requires (argument, else init value, else all six)."""
        need = min_valid_limbs if min_valid_limbs is not None else self.min_valid_limbs
        need = len(LIMBS) if need is None else int(need)
        if not 0 <= need <= len(LIMBS):
            raise ValueError(f"min_valid_limbs must be in 0..{len(LIMBS)}, got {need}")
        return need

    # ------------------------------------------------------------------ storage (npz, no pickle)
    def save(self, path: str | os.PathLike) -> Path:
        self._check_fitted()
        path = Path(path)
        np.savez(path, counts=self.counts_, valid_cells=self.valid_cells_, length_ratio_low=self.length_ratio_low_,
                 length_ratio_high=self.length_ratio_high_, n_fit=self.n_fit_,
                 params=np.array([self.resolution, self.min_count, self.dilate,
                                  -1 if self.min_valid_limbs is None else self.min_valid_limbs]),
                 length_margin=self.length_margin)
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "JointAnglePrior":
        with np.load(path, allow_pickle=False) as z:
            res, min_count, dilate, mvl = (int(x) for x in z["params"])
            prior = cls(resolution=res, min_count=min_count, dilate=dilate, length_margin=float(z["length_margin"]),
                        min_valid_limbs=None if mvl < 0 else mvl)
            prior.counts_ = z["counts"]
            prior.valid_cells_ = z["valid_cells"]
            prior.length_ratio_low_ = z["length_ratio_low"]
            prior.length_ratio_high_ = z["length_ratio_high"]
            prior.n_fit_ = int(z["n_fit"])
        return prior


# ---------------------------------------------------------------------- stored sets, streamed
def fit_dataset(prior: JointAnglePrior, dataset) -> JointAnglePrior:
    """Fit ``prior`` on a stored pose set (a folder path or a :class:`~posecurator.poseset.PoseStore`,
    e.g. a selection) chunk by chunk: equal to ``prior.fit(PoseSet.load(path))``."""
    return prior.fit_stream(_store(dataset).iter_chunks(columns=["joints3d"]))


def check_dataset(prior: JointAnglePrior, dataset, *, min_valid_limbs: int | None = None) -> np.ndarray:
    """(N,) bool plausibility of every pose of a stored set (folder path or PoseStore), read chunk
    by chunk: memory is one stored chunk plus the N-byte mask. Equal to ``prior.check`` of the
    loaded set (the verdict of a pose depends on that pose alone)."""
    store = _store(dataset)
    out = np.empty(len(store), dtype=bool)
    pos = 0
    for ok in prior.check_stream(store.iter_chunks(columns=["joints3d"]), min_valid_limbs=min_valid_limbs):
        if pos + len(ok) > len(out):
            raise ValueError(f"{store.path}: the chunks hold more rows than the header's {len(out)}")
        out[pos:pos + len(ok)] = ok
        pos += len(ok)
    if pos != len(out):
        raise ValueError(f"{store.path}: the chunks hold {pos} rows, the header says {len(out)}")
    return out


def _store(dataset) -> PoseStore:
    return dataset if isinstance(dataset, PoseStore) else PoseStore(dataset)
