"""Target-aware scores: how well candidate poses cover a target domain known only by its unlabeled 2D.

A user who deploys a lifter nearly always has 2D of the domain (a 2D detector run on their videos,
or annotations such as COCO). These scorers compare candidate poses (source, augmented or
synthesized 3D, or 2D) with that 2D in a camera-invariant 2D pose space.

**The 2D pose space** (:func:`pose2d_features`, :func:`pose2d_distance_reference`). A 2D pose is
its compared joints (default :data:`DEFAULT_JOINTS`, the 12 limb joints of H36M17: shoulders,
elbows, wrists, hips, knees, ankles; COCO labels these, while its "head", "spine", "pelvis",
"thorax" and "neck" are missing or derived from them, and the mocap neck is not COCO's nose) with a
labelled mask. Two poses are compared over the joints labelled in BOTH (at least ``min_joints``,
default 8 of the 12; otherwise they are not neighbours): each is centred on the mean of those
joints and divided by its RMS distance from that mean, and the distance is the RMS over those
joints of the difference,

    d(a, b) = sqrt( 1/|C| sum_{j in C} || a^_j - b^_j ||^2 ) = sqrt(2 - 2 cos_C(a, b)),

where ``a^`` is ``a`` centred and scaled over the common joints ``C`` and ``cos_C`` the cosine of
the two centred vectors. ``d`` is in [0, 2] (0: the same pose up to 2D translation and scale;
sqrt(2): uncorrelated; 2: point-mirrored), does not change when either pose is translated or
scaled in the image (any image size, focal length, distance), and does change with in-plane
rotation and with left/right (a person seen from the front and from the back differ). The
centre is the mean of the common joints, not the pelvis: COCO's pelvis exists only when both
hips are labelled, and the mean is the translation that best aligns the two poses whatever
joints are missing (for fully labelled poses it is the usual root-centred, scale-normalised 2D
up to the choice of root).

A 3D candidate (H36M17, mm) is seen by ``n_views`` (default 8) virtual pinhole cameras around
its pelvis (:func:`virtual_cameras`: seeded stratified azimuths over 360 degrees, seeded
elevations in ``elevation_deg`` (default -10 to 25 degrees), ``distance_mm`` (default 5000) from the
pelvis, looking at it; about the elevations of the training cameras, -13 to 27 degrees): (N, V, J, 2) projections in
normalised image coordinates, made in one batched pass per chunk. A 2D candidate (joints2d,
COCO-17 / MPII-16 sets mapped to H36M17) is its own single view. A pose set with 3D is scored by
its 3D.

**Scores** (``higher`` = less useful for the target, the :mod:`posecurator.scoring.base`
convention; "keep the lowest" keeps what the target needs):

====================  ======================================================  =========  ===========  ===================
name                  score of candidate pose i                               shape      range        higher means
====================  ======================================================  =========  ===========  ===================
``target_coverage``   D_T(i) = min over views v of the mean of the k          (N,) f8    [0, 2]       farther from every
                      smallest d(view_v(i), t) over target 2D poses t                                 pose the target
                      (fewer than k eligible: the mean of those)                                      shows
``target_novelty``    D_T(i) - D_S(i); D_S likewise against the source's      (N,) f8    [-2, 2]      farther from the
                      3D projected through the same virtual cameras                                   target, or already
                      (a seeded subset of (pose, view) pairs, as many as                              common in the
                      the target poses unless ``max_source`` says); low =                             source
                      the target shows it and the source lacks it
====================  ======================================================  =========  ===========  ===================

NaN: a 2D candidate with fewer than ``min_joints`` labelled compared joints, or with no eligible
neighbour. ``exclude_own_clip`` (default True): a reference pose of the candidate's own clip
((source, clip) equal) is never its neighbour, so a source pose scored against its own source
(``target_novelty``) is measured against the *other* clips, not its own neighbouring frames
(at 30 fps these are at distance ~0). Augmented children carry new clip names (``aug-g001``...),
so they are measured against every source pose, their parents included.

No model is trained: the scores are neither in nor out of sample, except that a pose scored
against a reference holding its own clip is measured out of clip (``exclude_own_clip``).

Target poses with fewer than ``min_joints`` labelled compared joints are left out at ``fit``
(``n_target_left_out_``); above ``max_target`` target poses a seeded random subset is kept.

Cost: the nearest neighbours are chunked batched matrix products in PyTorch (``torch.topk`` on
blocks of at most ``block_elems`` distances, merged across column blocks), so memory is bounded
by the block size whatever N; time is O(N V M |joints|) for M reference poses.
:func:`target_scores_reference` is the plain-loop definition the batched version is tested against.
"""

from __future__ import annotations

import math

import numpy as np

from posecurator.camera.core import look_at, project_points, world_to_camera
from posecurator.errors import DataError
from posecurator.poseset import PoseSet
from posecurator.scoring.base import PoseScorer, register_scorer
from posecurator.skeleton.layouts import H36M17

DEFAULT_JOINTS = ("right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
                  "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist")
DEFAULT_BLOCK_ELEMS = 1 << 20  # distances per block (float32: 4 MB; the general path holds ~12 such arrays)
_COL_BLOCK = 1 << 13           # reference poses per column block (top-k merged across blocks)
_EPS = 1e-9


# ---------------------------------------------------------------------- inputs
def joint_indices(joints=None) -> np.ndarray:
    """(K,) H36M17 indices of the compared joints: None = :data:`DEFAULT_JOINTS`, "all" = all 17, or names."""
    if joints is None:
        joints = DEFAULT_JOINTS
    elif isinstance(joints, str):
        if joints != "all":
            raise ValueError(f"joints must be None, 'all' or a list of H36M17 joint names, got {joints!r}")
        joints = H36M17.joints
    unknown = [j for j in joints if j not in H36M17.joints]
    if unknown:
        raise ValueError(f"unknown joint names {unknown}; H36M17 has {', '.join(H36M17.joints)}")
    if len(set(joints)) < 2:
        raise ValueError("compare at least 2 joints")
    return np.array([H36M17.index(j) for j in joints], dtype=np.int64)


def _as_h36m17_2d(poses: PoseSet, *, what: str) -> PoseSet:
    """A pose set with joints2d in H36M17 (COCO-17 / MPII-16 2D sets are mapped)."""
    if not isinstance(poses, PoseSet):
        raise TypeError(f"{what} must be a PoseSet, got {type(poses).__name__}")
    if poses.joints2d is None:
        raise DataError(None, f"{what} has no 2D joints (joints2d); the target scorers fit on the target's unlabeled 2D "
                              "(e.g. COCO keypoints, or a split's target from pipelines.splits.load_target_2d)")
    if poses.layout != H36M17.name:
        from posecurator.skeleton.keypoints2d import to_target_layout

        try:
            poses = to_target_layout(poses.replace(joints3d=None) if poses.joints3d is not None else poses)
        except ValueError as e:
            raise DataError(None, f"{what}: {e}") from None
    return poses


def _mask_of(joints2d: np.ndarray, visibility: np.ndarray | None) -> np.ndarray:
    vis = np.ones(joints2d.shape[:-1], bool) if visibility is None else np.asarray(visibility) > 0
    return vis & np.isfinite(joints2d).all(-1)


def _clip_keys(poses: PoseSet) -> np.ndarray:
    return np.char.add(np.char.add(poses.source.astype(str), "\x1f"), poses.clip.astype(str))


def pose2d_features(joints2d, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """(..., K, 2) 2D joints (any units) and (..., K) labelled mask -> (features (..., K, 2) float64,
    mask (..., K) bool): each pose centred on the mean of its labelled joints and divided by their
    RMS distance from it (so sum over labelled joints of |feature|^2 = number labelled); 0 where not
    labelled. A pose with fewer than 2 labelled joints or no spread gets an all-False mask."""
    x = np.asarray(joints2d, dtype=np.float64)
    m = np.isfinite(x).all(-1) if mask is None else (np.asarray(mask, bool) & np.isfinite(x).all(-1))
    x = np.where(m[..., None], x, 0.0)
    n = m.sum(-1)
    safe_n = np.maximum(n, 1)[..., None]
    centre = x.sum(-2) / safe_n
    x = np.where(m[..., None], x - centre[..., None, :], 0.0)
    rms = np.sqrt((x ** 2).sum((-1, -2)) / safe_n[..., 0])
    ok = (n >= 2) & (rms > _EPS * (1.0 + np.abs(centre).max(-1)))
    x = np.where(ok[..., None, None], x / np.where(ok, rms, 1.0)[..., None, None], 0.0)
    return x, m & ok[..., None]


def virtual_cameras(n_views: int = 8, *, distance_mm: float = 5000.0, elevation_deg=(-10.0, 25.0),
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """V cameras around a pose whose pelvis is at the origin (world Z up): view v stands at azimuth
    (v + u_v) / V * 360 degrees (u_v ~ U(0, 1), seeded: stratified over the circle) and elevation
    ~ U(elevation_deg) (seeded), ``distance_mm`` from the origin, looking at it (no roll).
    Returns (R (V, 3, 3), t (V, 3), azimuth_deg (V,), elevation_deg (V,))."""
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    lo, hi = float(elevation_deg[0]), float(elevation_deg[1])
    if not (-89.0 <= lo <= hi <= 89.0):
        raise ValueError(f"elevation_deg must be an interval within [-89, 89], got {elevation_deg}")
    if not distance_mm > 0:
        raise ValueError(f"distance_mm must be > 0, got {distance_mm}")
    rng = np.random.default_rng(seed)
    az = (np.arange(n_views) + rng.uniform(0.0, 1.0, n_views)) / n_views * 360.0
    el = rng.uniform(lo, hi, n_views)
    a, e = np.deg2rad(az), np.deg2rad(el)
    eye = distance_mm * np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], axis=1)
    R, t = look_at(eye, np.zeros_like(eye))
    return R, t, az, el


def project_views(joints3d, R, t, *, root: int = 0) -> np.ndarray:
    """(N, J, 3) world mm -> (N, V, J, 2) normalised image coordinates (focal 1, principal point 0)
    of each pose, its root joint moved to the origin, seen by the V cameras (R (V, 3, 3), t (V, 3)).
    Joints at or behind a camera are NaN."""
    x = np.asarray(joints3d, dtype=np.float64)
    x = x - x[:, root:root + 1]
    x_cam = world_to_camera(x[:, None], R[None], t[None])
    with np.errstate(invalid="ignore", divide="ignore"):
        out = project_points(x_cam, np.ones(2), np.zeros(2))
    out[~(x_cam[..., 2] > 1.0)] = np.nan
    return out


# ---------------------------------------------------------------------- batched nearest neighbours
def _torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "float64": torch.float64}[name]


class _Reference:
    """Reference 2D poses (normalised features, masks, clip ids) as torch tensors, for k-NN searches."""

    def __init__(self, feats: np.ndarray, mask: np.ndarray, clip_ids: np.ndarray, dtype: str):
        import torch

        td = _torch_dtype(dtype)
        self.n = len(feats)
        self.full = bool(mask.all())
        self.k_joints = feats.shape[1]
        self.A = torch.from_numpy(feats.reshape(self.n, -1)).to(td)            # (M, 2K)
        ax, ay = feats[..., 0], feats[..., 1]
        # (4, M, K): mask, x, y, x^2 + y^2 (zero where not labelled), for the general path
        self.parts = torch.from_numpy(np.stack([mask.astype(np.float64), ax, ay, ax ** 2 + ay ** 2])).to(td)
        self.count = self.parts[0].sum(1)  # (M,) labelled joints of each reference pose
        self.clip = torch.from_numpy(clip_ids.astype(np.int64))


def _block_similarity(ref: _Reference, cols: slice, B, parts_b, full_rows: bool, min_joints: int):
    """(R, C) cos_C of the module docstring between candidate rows and reference columns (d =
    sqrt(2 - 2 cos), so the nearest have the largest cos); -inf where a pair is not eligible."""
    import torch

    sab = B @ ref.A[cols].T
    if ref.full and full_rows:  # every joint labelled on both sides: features are already normalised
        return sab.div_(ref.k_joints)
    r, c = len(B), cols.stop - cols.start
    MA = ref.parts[0, cols]
    MB, BX, BY, BSQ = parts_b
    if full_rows:
        # candidates fully labelled (3D projections): the common joints are the reference pose's
        # labelled ones, over which its features are centred with sum |a|^2 = n, so only the
        # candidate needs re-centring and re-scaling: cos = sab / sqrt(n * var_b)
        n = ref.count[cols]
        sb_x, sb_y, sbb = (torch.cat([BX, BY, BSQ]) @ MA.T).reshape(3, r, c).unbind(0)
        vb = sbb.sub_(sb_x.mul_(sb_x).addcmul_(sb_y, sb_y).div_(n))
        ok = (vb > 1e-6 * n) & (n >= min_joints - 0.5)
        cos = sab.div_(torch.sqrt(vb.mul_(n).clamp_(min=1e-30)))
        return cos.masked_fill_(~ok, float("-inf"))
    n, sa_x, sa_y, saa = (MB @ ref.parts[:, cols].reshape(-1, ref.k_joints).T).reshape(r, 4, c).unbind(1)
    sb_x, sb_y, sbb = (torch.cat([BX, BY, BSQ]) @ MA.T).reshape(3, r, c).unbind(0)
    inv_n = torch.clamp(n, min=1.0).reciprocal_()
    cov = sab.sub_((sa_x * sb_x).addcmul_(sa_y, sb_y).mul_(inv_n))
    va = saa.sub_((sa_x.mul_(sa_x)).addcmul_(sa_y, sa_y).mul_(inv_n))
    vb = sbb.sub_((sb_x.mul_(sb_x)).addcmul_(sb_y, sb_y).mul_(inv_n))
    ok = (n >= min_joints - 0.5) & (va > 1e-6 * n) & (vb > 1e-6 * n)
    cos = cov.div_(torch.sqrt(va.mul_(vb).clamp_(min=1e-30)))
    return cos.masked_fill_(~ok, float("-inf"))


def knn_mean_distance(ref: _Reference, feats: np.ndarray, mask: np.ndarray, clip_ids: np.ndarray | None, *,
                      k: int, min_joints: int, dtype: str, block_elems: int = DEFAULT_BLOCK_ELEMS) -> np.ndarray:
    """(R,) mean distance of each candidate 2D pose (features (R, K, 2) from :func:`pose2d_features`,
    mask (R, K)) to its k nearest eligible reference poses (fewer eligible: the mean over those;
    none: NaN); ``clip_ids`` (R,) excludes the reference poses of the same clip id (None: none)."""
    import torch

    td = _torch_dtype(dtype)
    r_total = len(feats)
    out = np.full(r_total, np.nan)
    if r_total == 0 or ref.n == 0:
        return out
    col = min(ref.n, _COL_BLOCK)
    rows = max(1, int(block_elems) // col)
    kk = min(k, ref.n)
    check_clip = clip_ids is not None and bool(np.isin(clip_ids, ref.clip.numpy()).any())
    with torch.inference_mode():
        for r0 in range(0, r_total, rows):
            f = feats[r0:r0 + rows]
            m = mask[r0:r0 + rows]
            B = torch.from_numpy(f.reshape(len(f), -1)).to(td)
            full_rows = bool(m.all())
            parts_b = None
            if not (full_rows and ref.full):
                bx, by = f[..., 0], f[..., 1]
                parts_b = torch.from_numpy(np.stack([m.astype(np.float64), bx, by, bx ** 2 + by ** 2])).to(td)
            cid = torch.from_numpy(clip_ids[r0:r0 + rows].astype(np.int64)) if check_clip else None
            best = None
            for c0 in range(0, ref.n, col):
                cols = slice(c0, min(c0 + col, ref.n))
                sim = _block_similarity(ref, cols, B, parts_b, full_rows, min_joints)
                if cid is not None:
                    sim = sim.masked_fill_(cid[:, None] == ref.clip[cols][None, :], float("-inf"))
                vals = torch.topk(sim, min(kk, sim.shape[1]), dim=1).values
                best = vals if best is None else torch.topk(torch.cat([best, vals], 1), kk, dim=1).values
            d = torch.sqrt(torch.clamp(2.0 - 2.0 * best.double(), min=0.0))  # -inf (not eligible) -> inf
            fin = torch.isfinite(d)
            cnt = fin.sum(1)
            tot = torch.where(fin, d, torch.zeros_like(d)).sum(1)
            res = torch.where(cnt > 0, tot / torch.clamp(cnt, min=1), torch.full_like(tot, float("nan")))
            out[r0:r0 + len(f)] = res.numpy()
    return out


# ---------------------------------------------------------------------- scorers
@register_scorer("target_coverage")
class TargetCoverageScorer(PoseScorer):
    """Distance of a candidate pose's best view to the k nearest poses of the target's unlabeled 2D
    (the module docstring's D_T); higher = farther from anything the target shows.

    Options: ``k`` neighbours (mean of their distances); ``n_views``, ``distance_mm``,
    ``elevation_deg``, ``seed`` the virtual cameras of 3D candidates (:func:`virtual_cameras`;
    ``seed`` also draws the target subset); ``joints`` compared H36M17 joints (None:
    :data:`DEFAULT_JOINTS`; "all"; or names); ``min_joints`` commonly labelled joints a pair needs;
    ``max_target`` target poses kept (seeded subset above); ``exclude_own_clip``; ``chunk`` (3D
    candidate poses projected at a time) and ``block_elems`` (distances per block) bound memory;
    ``dtype`` "float32" (default) or "float64" for the distance products.

    Learned: ``joint_index_`` (K,), ``cameras_`` (R (V, 3, 3), t (V, 3)), ``views_deg_`` (V, 2)
    azimuth/elevation, ``target_joints2d_`` (M, K, 2) raw target 2D of the compared joints,
    ``target_mask_`` (M, K), ``target_clip_`` (M,) clip keys, ``n_target_left_out_``.
    """

    higher_means = "farther from every pose the target's 2D shows: less useful for the target"
    score_range = (0.0, 2.0)

    def __init__(self, *, k: int = 5, n_views: int = 8, distance_mm: float = 5000.0, elevation_deg=(-10.0, 25.0),
                 joints=None, min_joints: int = 8, max_target: int = 20_000, exclude_own_clip: bool = True,
                 seed: int = 0, chunk: int = 8192, block_elems: int = DEFAULT_BLOCK_ELEMS, dtype: str = "float32"):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        if max_target < 1 or chunk < 1 or block_elems < 1:
            raise ValueError("max_target, chunk and block_elems must be >= 1")
        self.k = int(k)
        self.n_views = int(n_views)
        self.distance_mm = float(distance_mm)
        self.elevation_deg = tuple(float(e) for e in elevation_deg)
        self.joints = joints
        self.min_joints = int(min_joints)
        self.max_target = int(max_target)
        self.exclude_own_clip = bool(exclude_own_clip)
        self.seed = int(seed)
        self.chunk = int(chunk)
        self.block_elems = int(block_elems)
        self.dtype = dtype
        idx = joint_indices(joints)
        if not 2 <= self.min_joints <= len(idx):
            raise ValueError(f"min_joints must be in [2, {len(idx)}] (the compared joints), got {min_joints}")
        virtual_cameras(self.n_views, distance_mm=self.distance_mm, elevation_deg=self.elevation_deg)  # checks

    # -- fitting
    def _setup(self) -> None:
        self.joint_index_ = joint_indices(self.joints)
        R, t, az, el = virtual_cameras(self.n_views, distance_mm=self.distance_mm, elevation_deg=self.elevation_deg,
                                       seed=self.seed)
        self.cameras_ = (R, t)
        self.views_deg_ = np.stack([az, el], axis=1)
        self._clip_vocab: dict[str, int] = {}

    def _clip_ids(self, keys: np.ndarray, *, add: bool) -> np.ndarray:
        out = np.empty(len(keys), dtype=np.int64)
        uniq, inv = np.unique(keys, return_inverse=True)
        ids = np.empty(len(uniq), dtype=np.int64)
        for i, key in enumerate(uniq.tolist()):
            if key not in self._clip_vocab:
                if not add:
                    ids[i] = -1 - i  # a clip no reference pose has: never equal to a reference id
                    continue
                self._clip_vocab[key] = len(self._clip_vocab)
            ids[i] = self._clip_vocab[key]
        out[:] = ids[inv.reshape(-1)]
        return out

    def _fit_target(self, target: PoseSet) -> None:
        target = _as_h36m17_2d(target, what="the target")
        xy = np.asarray(target.joints2d, dtype=np.float64)[:, self.joint_index_]
        vis = None if target.visibility is None else np.asarray(target.visibility)[:, self.joint_index_]
        mask = _mask_of(xy, vis)
        keep = np.flatnonzero(mask.sum(1) >= self.min_joints)
        self.n_target_left_out_ = int(len(xy) - len(keep))
        if len(keep) == 0:
            raise DataError(None, f"no target pose has {self.min_joints} or more labelled compared joints "
                                  f"({len(xy)} poses); nothing to fit on")
        if len(keep) > self.max_target:
            rng = np.random.default_rng(self.seed)
            keep = np.sort(rng.choice(keep, self.max_target, replace=False))
        self.target_joints2d_ = np.where(mask[keep, :, None], xy[keep], np.nan)
        self.target_mask_ = mask[keep]
        self.target_clip_ = _clip_keys(target)[keep] if len(target) else np.array([], str)
        feats, fmask = pose2d_features(self.target_joints2d_, self.target_mask_)
        self._target_ref = _Reference(feats, fmask, self._clip_ids(self.target_clip_, add=True), self.dtype)

    def fit(self, reference: PoseSet) -> TargetCoverageScorer:
        """Fit on the target's unlabeled 2D (a PoseSet with joints2d; COCO-17 / MPII-16 sets are
        mapped to H36M17; any 3D it carries is ignored). Raises DataError without 2D."""
        self._setup()
        self._fit_target(reference)
        return self

    # -- candidates
    def _candidate_views(self, poses: PoseSet, rows: slice) -> tuple[np.ndarray, np.ndarray]:
        """Raw 2D views of candidate rows: ((n, V, K, 2), (n, V, K) labelled)."""
        if poses.joints3d is not None:
            if poses.layout != H36M17.name:
                raise DataError(None, f"3D candidates must be in the {H36M17.name} layout, got {poses.layout}")
            R, t = self.cameras_
            uv = project_views(poses.joints3d[rows], R, t, root=0)[:, :, self.joint_index_]
            return uv, np.isfinite(uv).all(-1)
        xy = np.asarray(poses.joints2d[rows], dtype=np.float64)[:, None][:, :, self.joint_index_]
        vis = None if poses.visibility is None else np.asarray(poses.visibility[rows])[:, None][:, :, self.joint_index_]
        return xy, _mask_of(xy, vis)

    def _prepare_candidates(self, poses: PoseSet) -> PoseSet:
        if not isinstance(poses, PoseSet):
            raise TypeError(f"candidates must be a PoseSet, got {type(poses).__name__}")
        if poses.joints3d is None:
            if poses.joints2d is None:
                raise DataError(None, "the candidate poses have neither 3D nor 2D joints")
            poses = _as_h36m17_2d(poses, what="the candidate poses")
        return poses

    def _distances(self, ref: _Reference, poses: PoseSet) -> np.ndarray:
        """(N,) min over views of the k-NN mean distance to ``ref`` (NaN where none)."""
        n = len(poses)
        out = np.full(n, np.nan)
        clip = self._clip_ids(_clip_keys(poses), add=False) if self.exclude_own_clip else None
        for s in range(0, n, self.chunk):
            rows = slice(s, min(s + self.chunk, n))
            uv, m = self._candidate_views(poses, rows)
            nv = uv.shape[1]
            feats, fmask = pose2d_features(uv, m)
            fmask = fmask & (fmask.sum(-1, keepdims=True) >= self.min_joints)
            cid = None if clip is None else np.repeat(clip[rows], nv)
            d = knn_mean_distance(ref, feats.reshape(-1, *feats.shape[2:]), fmask.reshape(-1, fmask.shape[-1]), cid,
                                  k=self.k, min_joints=self.min_joints, dtype=self.dtype, block_elems=self.block_elems)
            d = d.reshape(-1, nv)
            with np.errstate(all="ignore"):
                best = np.where(np.isnan(d).all(1), np.nan, np.nanmin(np.where(np.isnan(d), np.inf, d), axis=1))
            out[rows] = best
        return out

    def target_distance(self, poses: PoseSet) -> np.ndarray:
        """(N,) D_T of the module docstring (= :meth:`score_samples` of ``target_coverage``)."""
        self._check_fitted("_target_ref")
        return self._distances(self._target_ref, self._prepare_candidates(poses))

    def score_samples(self, poses: PoseSet) -> np.ndarray:
        """(N,) float64 in [0, 2]: D_T; higher = farther from anything the target shows; NaN where
        a 2D candidate has too few labelled joints or no eligible neighbour."""
        return self.target_distance(poses)


@register_scorer("target_novelty")
class TargetNoveltyScorer(TargetCoverageScorer):
    """D_T - D_S of the module docstring: low for poses the target shows and the source lacks.

    ``fit(target, source=SOURCE_3D)``: D_S's reference is the source's 3D projected through the
    same virtual cameras, a seeded subset of at most ``max_source`` (pose, view) pairs; None
    (default): as many as the target poses kept, since a k-NN distance shrinks as its reference
    grows and D_T - D_S should not favour whichever reference is larger (the other options as
    :class:`TargetCoverageScorer`). Keep the lowest to keep the novel poses the
    target covers. Learned (besides the coverage scorer's): ``source_index_`` (S, 2) the (row of
    the source, view) pairs of the reference, ``source_clip_`` (S,).
    """

    higher_means = ("farther from the target's 2D, or already common in the source (D_T - D_S): "
                    "keep the lowest for target poses the source lacks")
    score_range = (-2.0, 2.0)

    def __init__(self, *, max_source: int | None = None, **options):
        super().__init__(**options)
        if max_source is not None and max_source < 1:
            raise ValueError(f"max_source must be >= 1 or None, got {max_source}")
        self.max_source = None if max_source is None else int(max_source)

    def fit(self, reference: PoseSet, source: PoseSet | None = None) -> TargetNoveltyScorer:
        """Fit on the target's unlabeled 2D (``reference``) and the source's 3D (``source``)."""
        if source is None:
            raise DataError(None, "target_novelty needs the source poses: fit(target, source=SOURCE_3D)")
        if not isinstance(source, PoseSet) or source.joints3d is None:
            raise DataError(None, "target_novelty: the source must be a pose set with 3D joints (joints3d)")
        if source.layout != H36M17.name:
            raise DataError(None, f"target_novelty: the source must be in the {H36M17.name} layout, got {source.layout}")
        self._setup()
        self._fit_target(reference)
        n_pairs = len(source) * self.n_views
        limit = len(self.target_mask_) if self.max_source is None else self.max_source
        rng = np.random.default_rng(self.seed + 1)
        flat = np.arange(n_pairs) if n_pairs <= limit else np.sort(rng.choice(n_pairs, limit, replace=False))
        rows, views = flat // self.n_views, flat % self.n_views
        self.source_index_ = np.stack([rows, views], axis=1)
        R, t = self.cameras_
        uv = np.empty((len(flat), len(self.joint_index_), 2))
        for s in range(0, len(flat), self.chunk):  # project only the views kept, chunk by chunk
            r, v = rows[s:s + self.chunk], views[s:s + self.chunk]
            x = np.asarray(source.joints3d[r], dtype=np.float64)
            x = x - x[:, :1]
            cam = world_to_camera(x, R[v], t[v])
            with np.errstate(invalid="ignore", divide="ignore"):
                p = project_points(cam, np.ones(2), np.zeros(2))
            p[~(cam[..., 2] > 1.0)] = np.nan
            uv[s:s + len(r)] = p[:, self.joint_index_]
        self.source_clip_ = _clip_keys(source)[rows]
        feats, fmask = pose2d_features(uv, np.isfinite(uv).all(-1))
        self._source_ref = _Reference(feats, fmask, self._clip_ids(self.source_clip_, add=True), self.dtype)
        return self

    def source_distance(self, poses: PoseSet) -> np.ndarray:
        """(N,) D_S of the module docstring."""
        self._check_fitted("_source_ref")
        return self._distances(self._source_ref, self._prepare_candidates(poses))

    def score_samples(self, poses: PoseSet) -> np.ndarray:
        """(N,) float64 in [-2, 2]: D_T - D_S; low = the target shows it and the source lacks it."""
        self._check_fitted("_source_ref")
        poses = self._prepare_candidates(poses)
        return self._distances(self._target_ref, poses) - self._distances(self._source_ref, poses)


# ---------------------------------------------------------------------- plain reference (tests)
def pose2d_distance_reference(a, a_mask, b, b_mask, *, min_joints: int) -> float:
    """d(a, b) of the module docstring for two (K, 2) poses, written out joint by joint; inf when
    fewer than ``min_joints`` joints are labelled in both or either has no spread."""
    common = [j for j in range(len(a)) if a_mask[j] and b_mask[j]
              and math.isfinite(a[j][0]) and math.isfinite(a[j][1]) and math.isfinite(b[j][0]) and math.isfinite(b[j][1])]
    if len(common) < min_joints:
        return math.inf

    def normalised(p):
        cx = sum(p[j][0] for j in common) / len(common)
        cy = sum(p[j][1] for j in common) / len(common)
        rms = math.sqrt(sum((p[j][0] - cx) ** 2 + (p[j][1] - cy) ** 2 for j in common) / len(common))
        if rms <= 0:
            return None
        return [((p[j][0] - cx) / rms, (p[j][1] - cy) / rms) for j in common]

    na, nb = normalised(a), normalised(b)
    if na is None or nb is None:
        return math.inf
    return math.sqrt(sum((x0 - x1) ** 2 + (y0 - y1) ** 2 for (x0, y0), (x1, y1) in zip(na, nb)) / len(common))


def _views_reference(scorer: TargetCoverageScorer, poses: PoseSet, i: int) -> list[tuple[list, list]]:
    """The 2D views of candidate ``i`` as lists of (x, y) and labelled flags, one camera at a time."""
    idx = scorer.joint_index_.tolist()
    if poses.joints3d is not None:
        R, t = scorer.cameras_
        pose = np.asarray(poses.joints3d[i], dtype=np.float64)
        views = []
        for v in range(len(R)):
            pts, ok = [], []
            for j in idx:
                xc = R[v] @ (pose[j] - pose[0]) + t[v]
                pts.append((xc[0] / xc[2], xc[1] / xc[2]) if xc[2] > 1.0 else (math.nan, math.nan))
                ok.append(bool(xc[2] > 1.0))
            views.append((pts, ok))
        return views
    xy = np.asarray(poses.joints2d[i], dtype=np.float64)
    vis = np.ones(len(xy)) if poses.visibility is None else poses.visibility[i]
    return [([tuple(xy[j]) for j in idx], [bool(vis[j] > 0 and np.isfinite(xy[j]).all()) for j in idx])]


def _knn_reference(scorer, views, refs, own_clip, k) -> float:
    best = math.nan
    for pts, ok in views:
        if sum(ok) < scorer.min_joints:
            continue
        ds = sorted(pose2d_distance_reference(pts, ok, rp, rm, min_joints=scorer.min_joints)
                    for rp, rm, rclip in refs if not (scorer.exclude_own_clip and rclip == own_clip))
        ds = [d for d in ds if math.isfinite(d)][:k]
        if ds:
            mean = sum(ds) / len(ds)
            best = mean if math.isnan(best) else min(best, mean)
    return best


def target_scores_reference(scorer: TargetCoverageScorer, poses: PoseSet, source: PoseSet | None = None) -> np.ndarray:
    """Plain-loop twin of ``scorer.score_samples(poses)`` for a fitted scorer (slow; for tests):
    every candidate view against every reference pose with :func:`pose2d_distance_reference`.
    ``target_novelty`` needs the ``source`` it was fitted with (its reference views are re-projected
    here, one joint at a time)."""
    scorer._check_fitted("target_joints2d_")
    if poses.joints3d is None:
        poses = _as_h36m17_2d(poses, what="the candidate poses")
    tgt = [(scorer.target_joints2d_[m].tolist(), scorer.target_mask_[m].tolist(), scorer.target_clip_[m])
           for m in range(len(scorer.target_joints2d_))]
    src = None
    if isinstance(scorer, TargetNoveltyScorer):
        if source is None:
            raise ValueError("the reference of target_novelty needs the source it was fitted with")
        R, t = scorer.cameras_
        idx = scorer.joint_index_.tolist()
        keys = _clip_keys(source)
        src = []
        for r, v in scorer.source_index_.tolist():
            pose = np.asarray(source.joints3d[r], dtype=np.float64)
            pts, ok = [], []
            for j in idx:
                xc = R[v] @ (pose[j] - pose[0]) + t[v]
                pts.append((xc[0] / xc[2], xc[1] / xc[2]) if xc[2] > 1.0 else (math.nan, math.nan))
                ok.append(bool(xc[2] > 1.0))
            src.append((pts, ok, keys[r]))
    keys = _clip_keys(poses)
    out = np.empty(len(poses))
    for i in range(len(poses)):
        views = _views_reference(scorer, poses, i)
        d_t = _knn_reference(scorer, views, tgt, keys[i], scorer.k)
        out[i] = d_t if src is None else d_t - _knn_reference(scorer, views, src, keys[i], scorer.k)
    return out
