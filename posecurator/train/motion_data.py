"""Training data of PoseSyn's motion model: windows of motion, their features and captions, the
validation split by clip, left-right mirroring, and the perturbed init poses of stage 2 (see
:mod:`posecurator.train.motion_trainer`).

Captions: every window gets "a person <label phrase of its clip>; <the describer's text of the
window's motion>" (:func:`~posecurator.synthesis.captions.label_phrase`,
:meth:`~posecurator.synthesis.describe.PoseDescriber.describe_windows`; as
:func:`~posecurator.synthesis.captions.caption_clips` words them), every frame a pose caption (the
describer's text of that single pose: what a caption of a mis-predicted pose looks like at use).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass

import numpy as np

from posecurator.errors import DataError
from posecurator.models.motion_vqvae import MotionVQVAE
from posecurator.poseset import PoseSet
from posecurator.skeleton.layouts import H36M17
from posecurator.synthesis.captions import label_phrase
from posecurator.synthesis.describe import PoseDescriber
from posecurator.synthesis.motion_repr import (DIM, FEATURES, N_JOINTS, ROOT, MotionNormalizer, joints_to_motion,
                                               motion_windows)
from posecurator.synthesis.text_embedding import embed_unique, load_text_encoder
from posecurator.train import motion_model as mm
from posecurator.train.motion_config import MotionConfig

_SPLIT = 31  # seed-sequence tag of the validation split


@dataclass
class WindowSet:
    """Windows of one length: ``joints`` (W, L, 17, 3) float32 world mm, ``features`` (W, L, 54)
    raw, ``clip`` (W,) clip keys, ``caption`` (W,) and ``pose_caption`` (W, L) indices into
    :attr:`MotionData.texts`, ``sample_id`` / ``frame_start`` (W,) of the first frame,
    ``source`` (W,) caption source, ``mirrored`` (W,) bool: a mirrored copy (training only)."""

    joints: np.ndarray
    features: np.ndarray
    clip: np.ndarray
    caption: np.ndarray
    pose_caption: np.ndarray
    sample_id: np.ndarray
    frame_start: np.ndarray
    source: np.ndarray
    mirrored: np.ndarray

    def __len__(self) -> int:
        return len(self.joints)

    def subset(self, mask) -> "WindowSet":
        return WindowSet(**{f.name: getattr(self, f.name)[mask] for f in dataclasses.fields(self)})


@dataclass
class MotionData:
    """Training data of the motion model: ``short`` (T-frame windows), ``long`` (max_frames
    windows, may be empty), ``texts`` (U,) the distinct captions and ``embeddings`` (U, 384),
    ``val_clips`` (the held-out clip keys), ``init_floor_mm``, ``fingerprint``, ``describer``."""

    short: WindowSet
    long: WindowSet
    texts: np.ndarray
    embeddings: np.ndarray | None
    val_clips: np.ndarray
    init_floor_mm: float
    fingerprint: str
    describer: dict
    skipped_clips: int
    n_clips: int
    text_model_id: str | None = None

    def split(self, ws: WindowSet) -> tuple[np.ndarray, np.ndarray]:
        """(train, validation) masks of ``ws``: the windows of validation clips are validation
        windows, their mirrored copies are used for neither."""
        held_out = np.isin(ws.clip, self.val_clips)
        return ~held_out, held_out & ~ws.mirrored


def _source_fps(ps: PoseSet, source: str) -> float:
    per = (ps.attrs or {}).get("per_source", {}).get(source, {})
    fps = per.get("fps") if isinstance(per, dict) else None
    return float(fps) if isinstance(fps, (int, float)) and fps > 0 else float(ps.fps)


def _check_poses(ps: PoseSet, cfg: MotionConfig) -> None:
    where = ps.attrs.get("imported_from") if isinstance(ps.attrs, dict) else None
    if ps.joints3d is None:
        raise DataError(where, "the motion model needs 3D poses (this pose set has no joints3d)")
    if ps.layout != mm.LAYOUT:
        raise DataError(where, f"the motion model needs {mm.LAYOUT} poses, this set is {ps.layout}")
    ps.check_finite(where)
    for src in np.unique(ps.source):
        fps = _source_fps(ps, str(src))
        if abs(fps - cfg.fps) > 1e-6:
            raise DataError(where, f"source {src} is at {fps:g} fps, the motion model at {cfg.fps:g} fps; "
                                   f"re-import it with --fps {cfg.fps:g}")


def _windows_of(ps: PoseSet, length: int, stride: int, describer: PoseDescriber, prefix: str,
                texts: dict[str, int], pose_ids: np.ndarray, ordered: np.ndarray, position: np.ndarray,
                features_desc: dict, phrases: dict, *, mirrored: bool = False) -> tuple[WindowSet, int]:
    """Windows of one pose set and their captions (indices into ``texts``, which grows).
    ``mirrored``: ``ps`` holds mirrored joints; its label phrases get left and right swapped."""
    w = motion_windows(ps, length=length, stride=stride)
    n = len(w.rows)
    if n == 0:
        empty = WindowSet(np.zeros((0, length, N_JOINTS, 3), np.float32), np.zeros((0, length, DIM), np.float32),
                          np.zeros(0, "<U1"), np.zeros(0, np.int64), np.zeros((0, length), np.int64),
                          np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, "<U1"), np.zeros(0, bool))
        return empty, w.skipped_clips
    # the describer wants [start, stop) rows of one array ordered by clip and frame
    first = position[w.rows[:, 0]]
    if not np.array_equal(ordered[first[:, None] + np.arange(length)[None, :]], w.rows):
        raise AssertionError("motion windows are not runs of the (clip, frame) order")  # pragma: no cover
    bounds = np.stack([first, first + length], axis=1)
    info = (ps.attrs or {}).get("clip_info", {}) or {}
    source = ps.source[w.rows[:, 0]]
    motion_text = np.empty(n, dtype=object)
    for src in np.unique(source):
        rows = np.flatnonzero(source == src)
        motion_text[rows] = describer.describe_windows(ps.joints3d[ordered], bounds[rows], fps=_source_fps(ps, str(src)),
                                                       features=features_desc)
    caption = np.empty(n, dtype=np.int64)
    caption_source = np.empty(n, dtype=object)
    for i, row in enumerate(w.rows[:, 0].tolist()):
        key = (str(ps.source[row]), str(ps.activity[row]), str(ps.clip[row]), mirrored)
        if key not in phrases:
            phrase = label_phrase(key[0], key[1], info.get(key[2]), clip=key[2])
            phrases[key] = swap_sides(phrase) if mirrored else phrase
        phrase = phrases[key]
        text = f"a person {phrase}; {motion_text[i]}" if phrase else str(motion_text[i])
        caption[i] = texts.setdefault(text, len(texts))
        caption_source[i] = "labels+describer" if phrase else "describer"
    out = WindowSet(joints=w.joints.astype(np.float32), features=joints_to_motion(w.joints),
                    clip=np.char.add(prefix, w.clip.astype(str)), caption=caption, pose_caption=pose_ids[w.rows],
                    sample_id=ps.sample_id[w.rows[:, 0]].astype(np.int64), frame_start=w.start.astype(np.int32),
                    source=caption_source.astype(str), mirrored=np.full(n, mirrored))
    return out, w.skipped_clips


_SIDE_WORD = re.compile(r"\b(left|right)\b")


def swap_sides(text: str) -> str:
    """"kicks with the left leg, turns right" -> "kicks with the right leg, turns left"."""
    return _SIDE_WORD.sub(lambda m: "right" if m.group(1) == "left" else "left", text)


def mirror_joints(joints) -> np.ndarray:
    """(..., 17, 3) world poses reflected through the vertical XZ plane (Y negated) with left and
    right joints swapped: the same motion done mirror-wise (a left kick becomes a right kick)."""
    out = np.asarray(joints)[..., H36M17.flip_permutation, :].copy()
    out[..., 1] *= -1
    return out


def _concat(parts: list[WindowSet]) -> WindowSet:
    return WindowSet(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(WindowSet)})


def split_clips(clips: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """The clip keys held out for validation: whole clips in a seeded random order until about
    ``val_fraction`` of the windows (at least one clip, always leaving one for training)."""
    names, counts = np.unique(clips, return_counts=True)
    if val_fraction <= 0 or len(names) < 2:
        return np.zeros(0, dtype=names.dtype)
    order = np.random.default_rng([seed, _SPLIT]).permutation(len(names))
    n_val = int(np.searchsorted(np.cumsum(counts[order]), val_fraction * len(clips)) + 1)
    return np.sort(names[order[:min(max(n_val, 1), len(names) - 1)]])


def prepare_motion_data(poses, config: MotionConfig, *, describer: PoseDescriber | None = None,
                        encoder=None, cache_path=None, embed: bool = True) -> MotionData:
    """Windows, features, captions and text embeddings of one or several pose sets (module
    docstring). ``encoder``: a text encoder (default ``load_text_encoder()``); ``embed=False``
    skips the embeddings (``embeddings`` None)."""
    sets = [poses] if isinstance(poses, PoseSet) else list(poses)
    if not sets:
        raise DataError(None, "no pose sets to train the motion model on")
    describer = describer or PoseDescriber()
    texts: dict[str, int] = {}
    phrases: dict = {}
    short_parts, long_parts, skipped, n_clips, floors = [], [], 0, 0, []
    for k, ps in enumerate(sets):
        if not isinstance(ps, PoseSet):
            raise TypeError(f"poses must be PoseSets, got {type(ps).__name__}")
        _check_poses(ps, config)
        prefix = f"{k}:" if len(sets) > 1 else ""
        names, clip_idx = np.unique(ps.clip, return_inverse=True)
        n_clips += len(names)
        ordered = np.lexsort((ps.frame, clip_idx.reshape(-1)))          # the order motion_windows uses
        position = np.empty(len(ordered), dtype=np.int64)
        position[ordered] = np.arange(len(ordered))
        floors.append(ps.joints3d[..., 2].min(axis=1))
        for mirrored in (False, True) if config.mirror else (False,):
            view = ps.replace(joints3d=mirror_joints(ps.joints3d)) if mirrored else ps
            features_desc = describer.features(view.joints3d[ordered])
            pose_ids = np.array([texts.setdefault(t, len(texts)) for t in describer.describe(view.joints3d)], dtype=np.int64)
            part, n_skip = _windows_of(view, config.window, config.stride, describer, prefix, texts, pose_ids, ordered,
                                       position, features_desc, phrases, mirrored=mirrored)
            short_parts.append(part)
            skipped += 0 if mirrored else n_skip
            if config.max_frames > config.window:
                part, _ = _windows_of(view, config.max_frames, config.long_stride, describer, prefix, texts, pose_ids,
                                      ordered, position, features_desc, phrases, mirrored=mirrored)
                long_parts.append(part)
    short = _concat(short_parts)
    if (~short.mirrored).sum() < 2:
        raise DataError(None, f"only {int((~short.mirrored).sum())} windows of {config.window} frames in the data (clips shorter than "
                              f"the window are left out: {skipped}); the motion model needs more motion")
    long = _concat(long_parts) if long_parts else short.subset(np.zeros(len(short), bool))
    text_list = sorted(texts, key=texts.get)
    val_clips = split_clips(short.clip[~short.mirrored], config.val_fraction, config.seed)
    h = hashlib.sha1()  # of the original windows (mirroring is a config option)
    h.update(np.ascontiguousarray(short.joints[~short.mirrored]).tobytes())
    h.update("\n".join(short.clip[~short.mirrored].tolist()).encode())
    h.update(np.ascontiguousarray(long.joints[~long.mirrored]).tobytes())
    data = MotionData(short=short, long=long, texts=np.array(text_list, dtype=str), embeddings=None,
                      val_clips=val_clips, init_floor_mm=float(np.median(np.concatenate(floors))),
                      fingerprint=h.hexdigest()[:16], describer=_describer_doc(describer), skipped_clips=skipped,
                      n_clips=n_clips)
    if embed:
        encoder = encoder or load_text_encoder()
        unique, emb, inverse = embed_unique(text_list, encoder, cache_path=cache_path)
        data.embeddings = emb[inverse]                                   # rows in the order of data.texts
        data.text_model_id = encoder.model_id
    return data


def _describer_doc(describer: PoseDescriber) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in describer.get_params().items()}


# ---------------------------------------------------------------------- init poses
def perturb_poses(poses: np.ndarray, rng: np.random.Generator, *, noise_mm: float, rotation_deg: float) -> np.ndarray:
    """(N, 17, 3) world mm -> each pose turned by a random angle in [-rotation_deg, rotation_deg]
    about a random axis through its pelvis, plus Gaussian noise of ``noise_mm`` per coordinate (a
    stand-in for an estimator's mis-prediction)."""
    poses = np.asarray(poses, dtype=np.float64)
    n = len(poses)
    axis = rng.normal(size=(n, 3))
    axis /= np.maximum(np.linalg.norm(axis, axis=1, keepdims=True), 1e-9)
    angle = np.radians(rotation_deg) * rng.uniform(-1.0, 1.0, size=n)
    # Rodrigues: R = I + sin(a) K + (1 - cos(a)) K^2
    k = np.zeros((n, 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k[:, 1, 0], k[:, 2, 0], k[:, 2, 1] = axis[:, 2], -axis[:, 1], axis[:, 0]
    rot = np.eye(3)[None] + np.sin(angle)[:, None, None] * k + (1 - np.cos(angle))[:, None, None] * (k @ k)
    root = poses[:, ROOT:ROOT + 1]
    turned = np.einsum("nij,nkj->nki", rot, poses - root) + root
    return turned + rng.normal(scale=noise_mm, size=turned.shape) if noise_mm > 0 else turned


# Smallest std of each feature kind for normalisation. Some features hardly vary in mocap (the
# hips' forward offset from the pelvis is 0 by the definition of the heading when the pelvis is
# the hips' midpoint): normalised by their ~0.01 mm std, a prediction's 2 mm would become 200 and
# swamp the encoder. Floors in the features' own units keep such deviations at their real size.
FEATURE_STD_FLOOR = {"root_height": 10.0, "root_velocity": 1.0, "heading_velocity": 0.005, "local_joints": 10.0,
                     "foot_contact": 0.1}


def feature_std_floor() -> np.ndarray:
    """(54,) the per-feature std floors of :data:`FEATURE_STD_FLOOR` (mm, mm/frame, rad/frame, 0/1)."""
    floor = np.empty(DIM, dtype=np.float32)
    for name, part in FEATURES.items():
        floor[part] = FEATURE_STD_FLOOR[name]
    return floor


def fit_normalizer(features: np.ndarray) -> MotionNormalizer:
    """The feature normaliser of training windows (W, T, 54), std floored per feature kind."""
    return MotionNormalizer(min_std=feature_std_floor()).fit(features)


def init_codes_of(windows: WindowSet, rng: np.random.Generator, cfg: MotionConfig, vqvae: MotionVQVAE,
                  normalizer: MotionNormalizer, floor_mm: float, device) -> tuple[np.ndarray, np.ndarray]:
    """For each window, its anchor frame (``cfg.init_anchor``: the first or a random one)
    perturbed (:func:`perturb_poses`), grounded, held still and encoded: (W,) frame index and
    (W, M) init codes."""
    frame = rng.integers(0, windows.joints.shape[1], size=len(windows))  # drawn either way: same streams
    if cfg.init_anchor == "first":
        frame[:] = 0
    poses = perturb_poses(windows.joints[np.arange(len(windows)), frame], rng, noise_mm=cfg.init_noise_mm,
                          rotation_deg=cfg.init_rotation_deg)
    codes = np.empty((len(windows), cfg.window // cfg.r), dtype=np.int64)
    for start in range(0, len(windows), 1024):  # bounded memory for the static features
        feats = mm.init_features(poses[start:start + 1024], cfg.window, floor_mm)
        codes[start:start + 1024] = mm.encode_features(vqvae, normalizer, feats, device=device)
    return frame, codes
