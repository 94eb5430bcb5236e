"""Training of the 2D-to-3D lifter on 3D poses seen through random cameras.

Every epoch the trainer draws fresh random cameras (:class:`posecurator.camera.RandomCameraSampler`)
for the training poses, so the lifter sees many views of each pose; the fixed evaluation cameras
of ../shared/BENCHMARK.md are never used. A validation part is cut from the TRAINING data by
clip (adjacent frames of one clip are nearly identical, so a split by frame would leak), seeded;
it is seen through a fixed set of seeded random cameras, and the epoch with the lowest validation
MPJPE is kept as ``best.safetensors``. The test set is never looked at.

Reproducibility: the randomness of epoch ``e`` (cameras, shuffling, 2D noise, dropout) is seeded
from ``(seed, e)`` alone, the validation pairs from ``seed`` alone, and samplers are told the
epoch (``set_epoch``), so a run resumed from its last checkpoint ends with the same weights, bit
for bit, as an uninterrupted one, and the same seed gives the same weights (on the same machine
and thread count). A run may be killed at any instant, also while it writes a checkpoint: the
checkpoint is committed by ``state.json`` alone (:mod:`posecurator.train.checkpoint`), so the
rerun resumes from the last complete one. One process at a time writes a run folder
(:func:`posecurator.fileio.output_lock`; a second fails at once).

Test hook (tests/test_resume.py only): with ``POSECURATOR_TEST_KILL_POINT=lifter-POINT:EPOCH``
the process ends (``os._exit(137)``, as SIGKILL) during the checkpoint write of epoch ``EPOCH`` at
``POINT``: ``weights`` (``last-E``/``optimizer-E`` written), ``best`` (``best-E`` written too, on
an improving epoch), ``temp`` (half of the ``state.json`` temporary file written), ``state``
(``state.json`` written, public names not yet) or ``published`` (older epoch files not yet removed).

Run folder layout: see :mod:`posecurator.train.checkpoint`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from posecurator.camera import RandomCameraSampler
from posecurator.camera.pairs import sample_training_pairs_from_store
from posecurator.config_base import from_known_keys, from_preset, without_later_defaults
from posecurator.errors import DataError, PoseCuratorError
from posecurator.fileio import (KILL_POINT_ENV, atomic_link, atomic_write_text, output_lock, remove_stale_temps,
                                temp_path, test_kill_point)
from posecurator.metrics import mpjpe, mpjpe_torch
from posecurator.models.lifter import INPUT_MODES
from posecurator.poseset import PoseSet, PoseStore
from posecurator.skeleton.canonical import pose_features
from posecurator.skeleton.layouts import LAYOUTS, get_layout
from posecurator.train import checkpoint as ckpt
from posecurator.train.adaptation import (ADAPT_METHODS, bone_length_gap_mm, held_out_target_clips, mean_reprojection_mm,
                                          reprojection_error_mm, rotation_cycle_mm, target_inputs)
from posecurator.train.evaluate import predict
from posecurator.train.pairs import root_joint_of, sample_training_pairs

# Seed-sequence tags, so the streams of different purposes never coincide.
_SPLIT_STREAM, _VAL_STREAM, _EPOCH_STREAM, _INIT_STREAM, _PASS_STREAM = 11, 13, 17, 19, 23
_TARGET_STREAM = 29  # (31: the target's held-out clips, posecurator.train.adaptation)

_RUN_FILES = ("best.safetensors", "last.safetensors", ckpt.OPTIMIZER_FILE, ckpt.STATE_FILE,
              ckpt.HISTORY_FILE, ckpt.CONFIG_FILE)


def _is_run_file(name: str) -> bool:
    """A file the trainer writes into a run folder (public or epoch-stamped)."""
    return name in _RUN_FILES or bool(ckpt.EPOCH_FILE_RE.match(name))
# Config fields that may change between a run and its resumption (they only extend or cap it).
_RESUMABLE_CHANGES = {"epochs", "max_steps", "device", "num_threads"}


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the run's config.json).

    Model: ``width``, ``blocks``, ``dropout``, ``max_norm`` (see
    :class:`posecurator.models.SimpleBaselineLifter`). Optimiser: Adam with ``lr``,
    ``weight_decay``; the learning rate of epoch e is ``lr * lr_decay ** e``. ``batch_size``
    pairs per step; ``epochs``; ``max_steps`` caps the total number of steps (None = no cap).
    ``max_epoch_pairs`` caps the pairs of one epoch (None = every pose ``n_views`` times): on a
    large set an epoch is then the next slice of a stream of seeded shuffles, so training time
    is bounded by ``epochs * max_epoch_pairs`` whatever the size of the data.
    Data: every epoch each training pose is seen through ``n_views`` fresh random cameras
    (ranges: ``camera``, keyword arguments of :class:`RandomCameraSampler`, None = its defaults),
    with ``noise_px_train`` px of Gaussian 2D noise (0 = exact projections). Validation:
    ``val_fraction`` of the training poses, whole clips chosen as ``val_cut`` says ("clip": at random,
    "neighbourhood": a region of pose space; :func:`split_by_clip`), each seen through ``val_views`` fixed
    random cameras, with the same 2D noise as training (seeded, fixed). ``input_mode``: what the
    lifter sees of the 2D ("absolute": the benchmark protocol's normalised pixels; "root_scale":
    root-centred, scale-normalised, for in-the-wild 2D of any image; see
    :mod:`posecurator.models.lifter`); ``joint_dropout``: in root-scale mode, the probability that
    each non-root joint of a pair is hidden (given as unlabelled), in training and validation
    alike, so the lifter learns to lift annotations with missing joints. ``seed`` seeds everything. ``num_threads`` (None = leave torch's setting).
    Adaptation to an unlabeled target (``fit(..., target=)``; :mod:`posecurator.train.adaptation`):
    ``adapt`` ("none" | "reprojection": self-training with reprojection consistency and the
    bone-length prior), ``adapt_weight`` (weight of the target terms against the source MPJPE),
    ``adapt_bone_weight`` (weight of the bone-length term inside them), ``adapt_cycle_weight`` and
    ``adapt_cycle_deg`` (the rotation-cycle term and the largest turn, uniform in +-deg),
    ``target_val_fraction``
    (clips of the target 2D held out for the target validation figure, never trained on).
    """

    # defaults = the "default" preset
    width: int = 512
    blocks: int = 2
    dropout: float = 0.1
    max_norm: float | None = None
    lr: float = 1e-3
    lr_decay: float = 0.96
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 100
    max_steps: int | None = None
    max_epoch_pairs: int | None = 20_000
    n_views: int = 1
    val_fraction: float = 0.1
    val_cut: str = "clip"
    val_views: int = 2
    max_val_pairs: int | None = None
    camera: dict | None = None
    noise_px_train: float = 0.0
    input_mode: str = "absolute"
    joint_dropout: float = 0.0
    adapt: str = "none"
    adapt_weight: float = 1.0
    adapt_bone_weight: float = 1.0
    adapt_cycle_weight: float = 0.0
    adapt_cycle_deg: float = 60.0
    target_val_fraction: float = 0.1
    seed: int = 0
    device: str = "cpu"
    num_threads: int | None = 1
    preset_name: str = field(default="", compare=False)

    def __post_init__(self):
        if self.width < 1 or self.blocks < 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"bad model size: width={self.width} blocks={self.blocks} dropout={self.dropout}")
        if self.batch_size < 2:
            raise ValueError("batch_size must be >= 2 (batch normalisation needs two samples)")
        if self.epochs < 1 or self.n_views < 1 or self.val_views < 1:
            raise ValueError("epochs, n_views and val_views must be >= 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.val_cut not in VAL_CUTS:
            raise ValueError(f"val_cut must be one of {', '.join(VAL_CUTS)}, got {self.val_cut!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max_steps must be >= 1 or None")
        if self.max_epoch_pairs is not None and self.max_epoch_pairs < self.batch_size:
            raise ValueError("max_epoch_pairs must be >= batch_size or None")
        if self.input_mode not in INPUT_MODES:
            raise ValueError(f"input_mode must be one of {', '.join(INPUT_MODES)}, got {self.input_mode!r}")
        if not 0.0 <= self.joint_dropout < 1.0:
            raise ValueError(f"joint_dropout must be in [0, 1), got {self.joint_dropout}")
        if self.adapt not in ADAPT_METHODS:
            raise ValueError(f"adapt must be one of {', '.join(ADAPT_METHODS)}, got {self.adapt!r}")
        if min(self.adapt_weight, self.adapt_bone_weight, self.adapt_cycle_weight) < 0 or not 0.0 <= self.target_val_fraction < 1.0:
            raise ValueError("adapt_weight, adapt_bone_weight and adapt_cycle_weight must be >= 0, target_val_fraction in [0, 1)")
        if not 0.0 <= self.adapt_cycle_deg <= 180.0:
            raise ValueError(f"adapt_cycle_deg must be in [0, 180], got {self.adapt_cycle_deg}")
        if self.joint_dropout > 0 and self.input_mode != "root_scale":
            raise ValueError("joint_dropout needs input_mode 'root_scale' (the absolute input has no way to mark a missing joint)")

    @classmethod
    def preset(cls, name: str, **overrides) -> "TrainConfig":
        """A named configuration: "fast" (benchmarks, CI), "default", "large"; fields may be overridden."""
        return from_preset(cls, PRESETS, name, "training", **overrides)

    def to_dict(self) -> dict:
        # fields added later are left out at their default, so the config (and every hash and
        # resume check made from it) of a run trained before they existed stays the same
        return without_later_defaults(dataclasses.asdict(self), _LATER_FIELDS)

    def to_json(self, path: str | Path | None = None) -> str:
        """The config as JSON text; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            atomic_write_text(path, text)
        return text

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return from_known_keys(cls, d, "training")

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> "TrainConfig":
        """From JSON text or from a path to a JSON file."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            path = Path(text_or_path)
            try:
                text = path.read_text()
            except OSError as e:
                raise DataError(path, f"cannot read training config: {e}") from None
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise DataError(None, f"training config is not valid JSON: {e}") from None

    def camera_sampler(self) -> RandomCameraSampler:
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in (self.camera or {}).items()}
        return RandomCameraSampler(**kwargs)

    def model_config(self, *, n_joints: int, root_joint: int) -> dict:
        config = {"n_joints": n_joints, "width": self.width, "blocks": self.blocks, "dropout": self.dropout,
                  "max_norm": self.max_norm, "root_joint": root_joint, "output_scale": 1000.0}
        if self.input_mode != "absolute":
            config["input_mode"] = self.input_mode
        return config


# Measured on HDM05 bd+bk (7,859 poses at 30 fps, 10% validation clips) on the 2-core CPU of the
# development machine, one thread (under load from other processes two threads were up to 30x
# slower, idle at most 1.5x faster): "fast" ~45 s, best validation MPJPE ~43 mm; "default"
# ~140 s, ~35 mm. More steps mattered more than width: at equal time, width 256-512 with small
# batches beat width 1024 (1024 x 20 epochs: 79 mm in 135 s). max_epoch_pairs bounds the time
# on large sets (an epoch is then a slice of a stream of shuffles). "large" (Martinez's width) is
# for a free machine or a GPU: all threads, roughly 10-15 min on 10k poses here.
PRESETS: dict[str, dict] = {
    "fast": dict(width=256, blocks=2, dropout=0.1, lr=1e-3, lr_decay=0.95, batch_size=64, epochs=60,
                 max_epoch_pairs=10_000, num_threads=1),
    "default": dict(width=512, blocks=2, dropout=0.1, lr=1e-3, lr_decay=0.96, batch_size=128, epochs=100,
                    max_epoch_pairs=20_000, num_threads=1),
    "large": dict(width=1024, blocks=2, dropout=0.25, lr=1e-3, lr_decay=0.98, batch_size=128, epochs=200,
                  max_epoch_pairs=50_000, num_threads=None),
}


# ------------------------------------------------------------------------------- data split
VAL_CUTS = ("clip", "neighbourhood")
_LATER_FIELDS = {"val_cut": "clip", "input_mode": "absolute", "joint_dropout": 0.0, "adapt": "none",
                 "adapt_weight": 1.0, "adapt_bone_weight": 1.0, "adapt_cycle_weight": 0.0, "adapt_cycle_deg": 60.0,
                 "target_val_fraction": 0.1}  # field -> default, see TrainConfig.to_dict


def split_by_clip(poses: PoseSet | PoseStore, *, val_fraction: float, seed: int,
                  cut: str = "clip") -> tuple[PoseSet | PoseStore, PoseSet | PoseStore | None]:
    """Cut whole clips until about ``val_fraction`` of the poses are in the validation part.
    Returns (train part, validation part or None when val_fraction is 0). A stored set opened
    lazily (:class:`PoseStore`) gives the same cut as its loaded set, as two selections of it
    (row indices only), reading its clip column (and the 3D joints chunk by chunk for the
    neighbourhood cut's clip means).

    ``cut`` says which clips:

    ========================  =====================================================================
    ``"clip"`` (default)      clips in seeded random order: the validation part looks like the
                              training part (same activities), so it measures in-distribution error
    ``"neighbourhood"``       a seeded random clip and then the clips whose mean pose is nearest to
                              it: the validation part is a region of pose space (for example every
                              squat) that the training part then lacks, so it carries a shift like a
                              new activity does, without needing activity labels
    ========================  =====================================================================

    With a single clip there is nothing to cut by clip; the last ``val_fraction`` of its frames
    become the validation part (with a warning: neighbouring frames at the cut leak a little).
    """
    is_val = validation_mask(poses, val_fraction=val_fraction, seed=seed, cut=cut)
    if is_val is None:
        return poses, None
    if isinstance(poses, PoseStore):
        return poses.select(~is_val), poses.select(is_val)
    return poses.subset(~is_val), poses.subset(is_val)


def validation_mask(poses: PoseSet | PoseStore, *, val_fraction: float, seed: int, cut: str = "clip") -> np.ndarray | None:
    """(N,) bool: the poses :func:`split_by_clip` puts in the validation part (None when
    ``val_fraction`` is 0)."""
    if cut not in VAL_CUTS:
        raise PoseCuratorError(f"unknown validation cut {cut!r}; known: {', '.join(VAL_CUTS)}")
    if val_fraction <= 0:
        return None
    n = len(poses)
    names, inverse = np.unique(_column(poses, "clip"), return_inverse=True)
    inverse = inverse.reshape(-1)
    if len(names) < 2:
        warnings.warn("one clip only: the validation part is the last frames of that clip", stacklevel=4)
        order = np.argsort(_column(poses, "frame"), kind="stable")
        n_val = min(max(1, int(round(val_fraction * n))), n - 2)
        is_val = np.zeros(n, bool)
        is_val[order[n - n_val:]] = True
    else:
        rng = np.random.default_rng([seed, _SPLIT_STREAM])
        sizes = np.bincount(inverse, minlength=len(names))
        order = rng.permutation(len(names))
        if cut == "neighbourhood":
            means = clip_mean_poses(poses, inverse, len(names))
            dist = np.linalg.norm(means - means[order[0]], axis=1)
            order = np.lexsort((np.argsort(order), dist))  # nearest first; ties in the seeded order
        cum = np.cumsum(sizes[order])
        n_clips = int(np.searchsorted(cum, val_fraction * n) + 1)  # first count reaching the fraction
        n_clips = min(max(n_clips, 1), len(names) - 1)
        is_val = np.isin(inverse, order[:n_clips])
    return is_val


def _column(poses: PoseSet | PoseStore, name: str):
    """One column of a pose set, or of a stored set read alone (no other column is loaded)."""
    return poses.column(name) if isinstance(poses, PoseStore) else getattr(poses, name)


def clip_mean_poses(poses: PoseSet | PoseStore, inverse: np.ndarray, n_clips: int) -> np.ndarray:
    """(n_clips, 3J) mean pose of each clip (``inverse``: clip index of each pose), root-relative
    and, where the layout names both hips, turned about the vertical so the hips face one way
    (the way a person faces says nothing about what they do). A :class:`PoseStore` is read chunk
    by chunk, with the same result bit for bit."""
    counts = np.bincount(inverse, minlength=n_clips).astype(np.float64)
    if isinstance(poses, PoseStore):
        sums, start = None, 0
        for chunk in poses.iter_chunks(columns=["joints3d"]):
            flat = _mean_features(chunk)
            if sums is None:
                sums = np.zeros((n_clips, flat.shape[1]))
            # np.add.at adds row after row, as bincount does over the whole set: identical sums
            np.add.at(sums, inverse[start:start + len(chunk)], flat)
            start += len(chunk)
        return sums / np.maximum(counts, 1.0)[:, None]
    flat = _mean_features(poses)
    sums = np.stack([np.bincount(inverse, weights=flat[:, d], minlength=n_clips) for d in range(flat.shape[1])], axis=1)
    return sums / np.maximum(counts, 1.0)[:, None]


def _mean_features(poses: PoseSet) -> np.ndarray:
    """(N, 3J) float64 features of :func:`clip_mean_poses` (row by row: chunks give the same rows)."""
    layout = get_layout(poses.layout) if poses.layout in LAYOUTS else None
    root, hips = 0, (None, None)
    if layout is not None and len(layout.joints) == poses.n_joints:
        root = layout.parents.index(-1)
        hips = tuple(layout.joints.index(h) if h in layout.joints else None for h in ("right_hip", "left_hip"))
    return pose_features(poses.joints3d, canonical_yaw=None not in hips, right_hip=hips[0] or 0,
                         left_hip=hips[1] or 0, root=root)


def hide_joints(x2d: np.ndarray, p: float, rng: np.random.Generator, *, root_joint: int) -> np.ndarray:
    """(M, J, 2) 2D with each non-root joint set to NaN ("unlabelled") with probability ``p``.
    ``p`` = 0 returns the input untouched and draws nothing (older runs keep their random streams)."""
    if p <= 0:
        return x2d
    hidden = rng.random(x2d.shape[:2]) < p
    hidden[:, root_joint] = False
    out = x2d.copy()
    out[hidden] = np.nan
    return out


def data_fingerprint(poses: PoseSet | PoseStore) -> str:
    """A short hash of the training poses, so a resumed run refuses different data (a
    :class:`PoseStore` is hashed chunk by chunk: the same bytes in the same order, the same hash)."""
    h = hashlib.sha1()
    if isinstance(poses, PoseStore):
        for chunk in poses.iter_chunks(columns=["joints3d"]):
            h.update(np.ascontiguousarray(chunk.joints3d).tobytes())
    else:
        h.update(np.ascontiguousarray(poses.joints3d).tobytes())
    h.update("\n".join(np.unique(_column(poses, "clip")).tolist()).encode())
    return h.hexdigest()[:16]


def check_finite_store(store: PoseStore) -> None:
    """:meth:`PoseSet.check_finite` of a stored set, chunk by chunk: the same error (the first bad
    sample of joints3d, else of joints2d, numbered within the store), naming the store's folder."""
    first: dict[str, int] = {}
    start = 0
    for chunk in store.iter_chunks(columns=["joints3d", "joints2d", "visibility"]):
        for name in ("joints3d", "joints2d"):
            arr = getattr(chunk, name)
            if arr is None or name in first:
                continue
            bad = ~np.isfinite(arr).all(axis=(1, 2))
            if name == "joints2d" and chunk.visibility is not None:
                bad = ~(np.isfinite(arr).all(axis=2) | (chunk.visibility == 0)).all(axis=1)
            if bad.any():
                first[name] = start + int(np.argmax(bad))
        if "joints3d" in first:  # reported before any joints2d error, as check_finite does
            break
        start += len(chunk)
    for name in ("joints3d", "joints2d"):
        if name in first:
            i = first[name]
            row = store.take(np.array([i]), columns=["clip", "frame"])
            raise DataError(store.path, f"{name} has NaN or infinite coordinates (sample {i}, clip {str(row.clip[0])!r}, "
                                        f"frame {int(row.frame[0])})")


def _n_joints(poses: PoseSet | PoseStore) -> int:
    if isinstance(poses, PoseStore):  # one row read
        return int(poses.take(np.zeros(1, np.int64), columns=["joints3d"]).n_joints)
    return int(poses.n_joints)


# ------------------------------------------------------------------------------- the trainer
class LifterTrainer:
    """Train a :class:`SimpleBaselineLifter` into a run folder; resumable; seeded.

    After :meth:`fit`: ``model_`` (best weights, eval mode), ``history_`` (per-epoch records),
    ``run_dir_``, ``best_epoch_``, ``best_val_mpjpe_`` (None without validation).
    """

    def __init__(self, config: TrainConfig | None = None):
        self.config = TrainConfig() if config is None else config

    def fit(self, train: PoseSet | PoseStore | str | os.PathLike, *, out_dir, val: PoseSet | None = None,
            sampler=None, resume: bool = True, progress: bool = True, init_from=None, target: PoseSet | None = None) -> dict:
        """Train on ``train`` (3D poses, world mm) and write the run to ``out_dir``.

        ``train`` may be a stored set opened lazily (:meth:`PoseSet.open`, or its folder's path):
        the run is then the same, bit for bit (weights, history, checkpoints), as on the loaded
        set, while memory holds per-row index arrays (clip codes, the epoch's shuffle), the rows
        each epoch draws and their pairs, and the validation part's rows and pairs; checks, the
        clip cut and the data fingerprint read the set chunk by chunk. A sampler factory needs the
        train part in memory and is refused for a stored set (an iterable of indices is fine).

        val: explicit validation poses; default: ``config.val_fraction`` of ``train`` cut by clip.
        sampler: which training poses each epoch uses, and how often: a
            ``torch.utils.data.Sampler`` (any iterable of indices) whose indices are rows of the
            TRAIN PART (``train`` minus the validation clips), or a factory
            ``sampler(train_part: PoseSet) -> Sampler`` that the trainer calls once with that part
            (as ``sampler(train_part, epochs=config.epochs, seed=config.seed)`` when the factory
            has ``accepts_epochs = True``, e.g. :func:`posecurator.selection.samplers.parse_sampler_spec`).
            If the sampler has ``set_epoch(epoch)`` it is called before each epoch. Its order is
            kept (each index is seen through ``n_views`` cameras in a row). Default: every train
            pose ``n_views`` times per epoch, uniformly shuffled.
        resume: continue from ``out_dir``'s last checkpoint when it holds a run of this config
            and data; False starts afresh (removing that run's files).
        init_from: a run folder whose best weights initialise the model (fine-tuning); the
            architecture is then that run's. Ignored when resuming a run already started.
        target: unlabeled 2D of the domain the lifter is for (its 3D, if any, is never used).
            ``config.target_val_fraction`` of its clips are held out and every epoch records
            ``val_target_reproj_mm`` on them (the reprojection error of the placed predictions, a
            validation figure that carries the shift); with ``config.adapt = "reprojection"``
            the rest is trained on (:mod:`posecurator.train.adaptation`).
        Returns a summary dict (run_dir, best_val_mpjpe, best_epoch, epochs, steps,
        training_time_s, poses_per_s, n_train, n_val, resumed).
        """
        cfg = self.config
        if isinstance(train, (str, os.PathLike)):
            train = PoseSet.open(train)
        if isinstance(val, (str, os.PathLike)):
            val = PoseSet.open(val)
        if isinstance(val, PoseStore):  # given validation poses are few: in memory
            val = val.load()
        if isinstance(train, PoseStore):
            if "joints3d" not in train.columns:
                raise DataError(train.path, "training needs 3D poses (the pose set has no joints3d)")
            if sampler is not None and callable(sampler) and not (hasattr(sampler, "__iter__") and not isinstance(sampler, type)):
                raise PoseCuratorError("a sampler factory needs the training poses in memory; pass a loaded PoseSet "
                                       "(PoseSet.load) or a sampler of row indices with a stored set")
            check_finite_store(train)
        else:
            if train.joints3d is None:
                raise DataError(None, "training needs 3D poses (the pose set has no joints3d)")
            train.check_finite()
        if cfg.adapt != "none" and target is None:
            raise PoseCuratorError(f"adapt={cfg.adapt!r} needs the target's unlabeled 2D (target=...)")
        if val is not None:
            if val.joints3d is None or len(val) == 0:
                raise DataError(None, "the validation pose set is empty or has no joints3d")
            val.check_finite()
        out_dir = Path(out_dir)
        old_threads = torch.get_num_threads()
        if cfg.num_threads:
            torch.set_num_threads(int(cfg.num_threads))
        try:
            # the run seeds torch's global generator (weight init, dropout); fork it so the
            # caller's random state is the same before and after
            with torch.random.fork_rng(devices=[]), output_lock(out_dir, wait=False):
                return self._fit(train, out_dir=out_dir, val=val, sampler=sampler, resume=resume,
                                 progress=progress, init_from=init_from, target=target)
        finally:
            torch.set_num_threads(old_threads)

    # ----------------------------------------------------------------------------------------
    def _fit(self, train, *, out_dir, val, sampler, resume, progress, init_from, target) -> dict:
        cfg = self.config
        device = torch.device(cfg.device)
        if val is None:
            train_part, val_part = split_by_clip(train, val_fraction=cfg.val_fraction, seed=cfg.seed, cut=cfg.val_cut)
        else:
            train_part, val_part = train, val
        if len(train_part) < 2:
            raise DataError(None, f"too few training poses ({len(train_part)}) after the validation split")
        root = root_joint_of(train)
        camera_sampler = cfg.camera_sampler()
        fingerprint = data_fingerprint(train)
        n_joints = _n_joints(train)

        model_config = cfg.model_config(n_joints=n_joints, root_joint=root)
        init_weights = None
        if init_from is not None:
            source_model, _ = ckpt.load_lifter(init_from)
            if source_model.n_joints != n_joints:
                raise PoseCuratorError(f"init_from {init_from}: its lifter has {source_model.n_joints} joints, the data {n_joints}")
            model_config = {**source_model.config(), "dropout": cfg.dropout, "max_norm": cfg.max_norm}
            init_weights = source_model.state_dict()

        torch.manual_seed(int(np.random.default_rng([cfg.seed, _INIT_STREAM]).integers(2**62)))
        model = ckpt.build_lifter(model_config).to(device)
        if init_weights is not None:
            model.load_state_dict(init_weights)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

        # validation pairs: fixed, seeded random cameras (never the evaluation rig)
        val_pairs = None
        if val_part is not None and len(val_part):
            vrng = np.random.default_rng([cfg.seed, _VAL_STREAM])
            # a stored set's validation rows are read (their 3D joints only): the pairs of all of
            # them are drawn at once, as the loaded set's are, so that the random stream is the same
            make = sample_training_pairs_from_store if isinstance(val_part, PoseStore) else sample_training_pairs
            vx, vy, _ = make(val_part, rng=vrng, sampler=camera_sampler, n_views=cfg.val_views, noise_px=cfg.noise_px_train)
            if cfg.max_val_pairs is not None and len(vx) > cfg.max_val_pairs:
                # validation cost should not grow with a huge source (Bandai: 80k pairs per epoch)
                keep = np.sort(vrng.choice(len(vx), cfg.max_val_pairs, replace=False))
                vx, vy = vx[keep], vy[keep]
            vx = hide_joints(vx, cfg.joint_dropout, vrng, root_joint=root)
            val_pairs = (vx, vy)

        adapt_data = self._target_parts(target, model.input_mode, train) if target is not None else None

        run_meta = {
            "train": cfg.to_dict(),
            # the training camera ranges in full (RandomCameraSampler fields), for scorers that
            # must see poses as this lifter saw them
            "camera": dataclasses.asdict(camera_sampler),
            "layout": train.layout,
            "n_joints": n_joints,
            "data": {"n_train": len(train_part), "n_val": 0 if val_part is None else len(val_part),
                     "val_clips": [] if val_part is None or val is not None else sorted(np.unique(_column(val_part, "clip")).tolist()),
                     "val_given": val is not None, "fingerprint": fingerprint},
            "init_from": None if init_from is None else str(init_from),
        }
        if adapt_data is not None:  # only then: runs without a target keep their metadata as before
            run_meta["data"]["target"] = adapt_data["meta"]

        state = self._load_resume_state(out_dir, model, optimizer, run_meta) if resume else None
        if state is None:
            _remove_run_files(out_dir)  # a fresh start must not mix with an older run's files
            state = {"epoch": -1, "step": 0, "best_epoch": None, "best_val_mpjpe": None,
                     "train_time_s": 0.0, "pairs_seen": 0, "history": [], "files": {}}
        resumed = state["epoch"] >= 0
        data_sampler = self._resolve_sampler(sampler, train_part)
        if resumed and data_sampler is not None and not hasattr(data_sampler, "set_epoch"):
            warnings.warn("resuming with a sampler that has no set_epoch(epoch): its order restarts from its first "
                          "epoch, so the run may end with other weights than an uninterrupted one", stacklevel=3)

        start_epoch = state["epoch"] + 1
        total_steps = self._total_steps(data_sampler, train_part)
        bar = tqdm(total=total_steps, initial=min(state["step"], total_steps), desc="lifter", unit="step",
                   disable=not progress, leave=False, dynamic_ncols=True)
        try:
            for epoch in range(start_epoch, cfg.epochs):
                if cfg.max_steps is not None and state["step"] >= cfg.max_steps:
                    break
                record = self._train_epoch(epoch, model, optimizer, train_part, data_sampler, camera_sampler, state, bar, device,
                                           adapt_data=adapt_data)
                if val_pairs is not None:
                    record["val_mpjpe"] = float(mpjpe(predict(model, val_pairs[0], device=device), val_pairs[1]))
                    bar.set_postfix(loss=f"{record['train_loss']:.1f}", val=f"{record['val_mpjpe']:.1f}")
                else:
                    record["val_mpjpe"] = None
                if adapt_data is not None and adapt_data["val"] is not None:
                    record["val_target_reproj_mm"] = mean_reprojection_mm(model, adapt_data["val"], device=device)
                state["history"].append(record)
                improved = record["val_mpjpe"] is None or state["best_val_mpjpe"] is None or record["val_mpjpe"] < state["best_val_mpjpe"]
                if improved:
                    state["best_epoch"], state["best_val_mpjpe"] = epoch, record["val_mpjpe"]
                state["epoch"] = epoch
                self._save_checkpoint(out_dir, model, optimizer, state, run_meta, improved=improved)
        finally:
            bar.close()

        if state["epoch"] < 0:
            raise PoseCuratorError(f"{out_dir}: nothing was trained (max_steps={cfg.max_steps}, epochs={cfg.epochs})")
        best_record = state["files"].get("best")
        best = ckpt.load_tensors(out_dir / best_record["name"] if best_record else out_dir / "best.safetensors")
        model.load_state_dict(best)
        self.model_ = model.eval()
        self.history_ = state["history"]
        self.run_dir_ = out_dir
        self.best_epoch_ = state["best_epoch"]
        self.best_val_mpjpe_ = state["best_val_mpjpe"]
        return {"run_dir": str(out_dir), "best_val_mpjpe": state["best_val_mpjpe"], "best_epoch": state["best_epoch"],
                "epochs": state["epoch"] + 1, "steps": state["step"], "training_time_s": state["train_time_s"],
                "poses_per_s": _rate(state), "n_train": len(train_part),
                "n_val": 0 if val_part is None else len(val_part), "resumed": resumed}

    # ----------------------------------------------------------------------------------------
    def _target_parts(self, target: PoseSet, input_mode: str, train: PoseSet) -> dict:
        """The target's lifter inputs cut by clip into an adaptation part and a held-out part."""
        cfg = self.config
        if target.layout != train.layout:
            raise DataError(None, f"the target's layout is {target.layout}, the training data's {train.layout}")
        t = target_inputs(target, input_mode=input_mode)
        if len(t["rows"]) < 2:
            raise DataError(None, f"the target has {len(t['rows'])} usable 2D poses (need labelled root, 4+ joints, an image size)")
        is_val = held_out_target_clips(np.asarray(target.clip)[t["rows"]], fraction=cfg.target_val_fraction, seed=cfg.seed)

        def part(mask):
            return {k: t[k][mask] for k in ("x", "uv", "mask", "f", "c", "wh")} if mask.any() else None

        h = hashlib.sha1()
        for arr in (target.joints2d, target.sample_id):
            h.update(np.ascontiguousarray(arr).tobytes())
        return {"train": part(~is_val), "val": part(is_val),
                "meta": {"fingerprint": h.hexdigest()[:16], "n_target": len(target), "n_usable": int(len(t["rows"])),
                         "n_adapt": int((~is_val).sum()), "n_val": int(is_val.sum())}}

    def _train_epoch(self, epoch, model, optimizer, train_part, data_sampler, camera_sampler, state, bar, device,
                     adapt_data: dict | None = None) -> dict:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, _EPOCH_STREAM, epoch])
        torch.manual_seed(int(rng.integers(2**62)))  # dropout of this epoch
        lr = cfg.lr * cfg.lr_decay**epoch
        for group in optimizer.param_groups:
            group["lr"] = lr
        if data_sampler is None:
            index = self._uniform_epoch_index(epoch, len(train_part))
        else:
            if hasattr(data_sampler, "set_epoch"):
                data_sampler.set_epoch(epoch)
            index = np.repeat(self._sampler_indices(data_sampler, len(train_part)), cfg.n_views)
            if cfg.max_epoch_pairs is not None and len(index) > cfg.max_epoch_pairs:
                # a seeded subset, in the sampler's order
                index = index[np.sort(rng.choice(len(index), cfg.max_epoch_pairs, replace=False))]
        # a stored set: only the rows this epoch draws are read (same pairs, same random draws)
        make = sample_training_pairs_from_store if isinstance(train_part, PoseStore) else sample_training_pairs
        x2d, y3d, _ = make(train_part, rng=rng, sampler=camera_sampler, index=index, noise_px=cfg.noise_px_train)
        x2d = hide_joints(x2d, cfg.joint_dropout, rng, root_joint=root_joint_of(train_part))
        x2d, y3d = torch.from_numpy(x2d).to(device), torch.from_numpy(y3d).to(device)
        n = len(x2d)
        # drop a last incomplete batch (batch norm statistics of a handful of pairs are noise)
        n_used = n - n % cfg.batch_size if n >= cfg.batch_size else n
        adapt = cfg.adapt != "none" and adapt_data is not None and adapt_data["train"] is not None
        if adapt:  # the target rows of every batch of this epoch, drawn from their own stream
            tgt = {k: torch.from_numpy(v).to(device) for k, v in adapt_data["train"].items()}
            trng = np.random.default_rng([cfg.seed, _TARGET_STREAM, epoch])
            t_index = trng.integers(0, len(tgt["x"]), size=(max(n_used // cfg.batch_size, 1), cfg.batch_size))
            if cfg.adapt_cycle_weight > 0:  # drawn after the rows: runs without the cycle keep their streams
                t_angle = np.radians(trng.uniform(-cfg.adapt_cycle_deg, cfg.adapt_cycle_deg, size=t_index.shape))
            parents = get_layout(train_part.layout).parents
        model.train()
        t0 = time.perf_counter()
        loss_sum, pairs = 0.0, 0
        target_sums = {"reproj": 0.0, "bone": 0.0, "cycle": 0.0, "n": 0}
        for b, start in enumerate(range(0, n_used, cfg.batch_size)):
            if cfg.max_steps is not None and state["step"] >= cfg.max_steps:
                break
            xb, yb = x2d[start:start + cfg.batch_size], y3d[start:start + cfg.batch_size]
            if len(xb) < 2:
                break
            if adapt:
                ti = torch.from_numpy(t_index[b % len(t_index)]).to(device)
                # one forward pass over source and target: batch normalisation sees both domains
                out = model(torch.cat([xb, tgt["x"][ti]]))
                pred_s, pred_t = out[:len(xb)], out[len(xb):]
                reproj, ok = reprojection_error_mm(pred_t, tgt["uv"][ti], tgt["mask"][ti])
                reproj = reproj.sum() / ok.sum().clamp(min=1)
                bone = bone_length_gap_mm(pred_t, yb, parents)
                target_loss = reproj + cfg.adapt_bone_weight * bone
                if cfg.adapt_cycle_weight > 0:
                    angle = torch.from_numpy(t_angle[b % len(t_angle)]).to(device, dtype=pred_t.dtype)
                    cycle = rotation_cycle_mm(model, pred_t, tgt["uv"][ti], tgt["mask"][ti], tgt["f"][ti], tgt["c"][ti],
                                              tgt["wh"][ti], angle, hide_unlabelled=model.input_mode == "root_scale")
                    target_loss = target_loss + cfg.adapt_cycle_weight * cycle
                    target_sums["cycle"] += float(cycle.detach())
                loss = mpjpe_torch(pred_s, yb) + cfg.adapt_weight * target_loss
                target_sums["reproj"] += float(reproj.detach())
                target_sums["bone"] += float(bone.detach())
                target_sums["n"] += 1
            else:
                loss = mpjpe_torch(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            model.apply_max_norm()
            state["step"] += 1
            loss_sum += float(loss.detach()) * len(xb)
            pairs += len(xb)
            bar.update(1)
        seconds = time.perf_counter() - t0
        state["train_time_s"] += seconds
        state["pairs_seen"] += pairs
        record = {"epoch": epoch, "train_loss": loss_sum / max(pairs, 1), "lr": lr, "pairs": pairs,
                  "steps": state["step"], "time_s": seconds, "poses_per_s": pairs / seconds if seconds > 0 else None}
        if adapt and target_sums["n"]:
            record["target_reproj_mm"] = target_sums["reproj"] / target_sums["n"]
            record["target_bone_gap_mm"] = target_sums["bone"] / target_sums["n"]
            if cfg.adapt_cycle_weight > 0:
                record["target_cycle_mm"] = target_sums["cycle"] / target_sums["n"]
        return record

    def _uniform_epoch_index(self, epoch: int, n_poses: int) -> np.ndarray:
        """Pose rows of epoch ``epoch`` without a sampler: every pose ``n_views`` times in a seeded
        shuffle; with ``max_epoch_pairs`` the epoch's slice of an endless stream of such shuffles."""
        cfg = self.config
        per_pass = n_poses * cfg.n_views
        size = per_pass if cfg.max_epoch_pairs is None else min(cfg.max_epoch_pairs, per_pass)
        start, stop = epoch * size, (epoch + 1) * size
        parts = []
        for k in range(start // per_pass, (stop - 1) // per_pass + 1):
            shuffle = np.random.default_rng([cfg.seed, _PASS_STREAM, k]).permutation(per_pass)
            parts.append(shuffle[max(start - k * per_pass, 0):min(stop - k * per_pass, per_pass)])
        return np.concatenate(parts) % n_poses  # pair j of a pass is pose j mod n_poses

    def _resolve_sampler(self, sampler, train_part):
        if sampler is None:
            return None
        if hasattr(sampler, "__iter__") and not isinstance(sampler, type):
            return sampler
        if callable(sampler):  # a function or a class taking the train part
            if getattr(sampler, "accepts_epochs", False):
                # factories of posecurator.selection.samplers: a curriculum needs the run's epochs,
                # and the sampler's randomness follows the run's seed
                made = sampler(train_part, epochs=self.config.epochs, seed=self.config.seed)
            else:
                made = sampler(train_part)
            if not hasattr(made, "__iter__"):
                raise PoseCuratorError(f"the sampler factory returned {type(made).__name__}, not an iterable of indices")
            return made
        raise PoseCuratorError(f"sampler must be a torch Sampler (iterable of indices) or a factory, got {type(sampler).__name__}")

    @staticmethod
    def _sampler_indices(data_sampler, n: int) -> np.ndarray:
        index = np.fromiter((int(i) for i in iter(data_sampler)), dtype=np.int64)
        if len(index) == 0:
            raise PoseCuratorError("the sampler yielded no indices")
        if index.min() < 0 or index.max() >= n:
            raise PoseCuratorError(f"the sampler yielded indices outside the {n} rows of the training part "
                                   f"({index.min()}..{index.max()}); indices are rows of the train part after the validation split")
        return index

    def _total_steps(self, data_sampler, train_part) -> int:
        """Optimisation steps of the whole run (for the progress bar). Samplers whose epochs differ
        in length (e.g. a curriculum) are asked per epoch (``indices_for_epoch``), else for the
        total (``total_length(epochs)``, then capped at ``epochs * max_epoch_pairs``: exact when
        every epoch is above or every epoch below the cap)."""
        cfg = self.config
        cap = cfg.max_epoch_pairs if cfg.max_epoch_pairs is not None else float("inf")
        if data_sampler is not None and hasattr(data_sampler, "indices_for_epoch"):
            total = sum(max(int(min(len(data_sampler.indices_for_epoch(e)) * cfg.n_views, cap)) // cfg.batch_size, 1)
                        for e in range(cfg.epochs))
        elif data_sampler is not None and hasattr(data_sampler, "total_length"):
            pairs = int(min(int(data_sampler.total_length(cfg.epochs)) * cfg.n_views, cap * cfg.epochs))
            total = max(pairs // cfg.batch_size, 1)
        else:
            total = (self._pairs_per_epoch(data_sampler, train_part) // cfg.batch_size or 1) * cfg.epochs
        return total if cfg.max_steps is None else min(cfg.max_steps, total)

    def _pairs_per_epoch(self, data_sampler, train_part) -> int:
        n = len(train_part) * self.config.n_views
        if data_sampler is not None and hasattr(data_sampler, "__len__"):
            n = len(data_sampler) * self.config.n_views
        return n if self.config.max_epoch_pairs is None else min(n, self.config.max_epoch_pairs)

    def _save_checkpoint(self, out_dir: Path, model, optimizer, state: dict, run_meta: dict, *, improved: bool) -> None:
        """Write the checkpoint of ``state["epoch"]``: its files first, ``state.json`` (naming
        them) last, as the commit; then the public names and the clean-up (see the module
        docstring of :mod:`posecurator.train.checkpoint`)."""
        epoch = state["epoch"]
        files = dict(state["files"])
        weights = model.state_dict()
        ckpt.save_tensors(out_dir / ckpt.epoch_file("last", epoch), weights, metadata={"format": ckpt.RUN_FORMAT})
        tensors, opt_meta = ckpt.optimizer_to_files(optimizer.state_dict())
        ckpt.save_tensors(out_dir / ckpt.epoch_file("optimizer", epoch), tensors)
        files["last"] = ckpt.file_record(out_dir / ckpt.epoch_file("last", epoch))
        files["optimizer"] = ckpt.file_record(out_dir / ckpt.epoch_file("optimizer", epoch))
        _kill_point("weights", epoch)
        if improved:
            ckpt.save_tensors(out_dir / ckpt.epoch_file("best", epoch), weights, metadata={"epoch": epoch})
            files["best"] = ckpt.file_record(out_dir / ckpt.epoch_file("best", epoch))
            _kill_point("best", epoch)
        doc = {
            "format": "posecurator-lifter-state", "version": ckpt.STATE_VERSION,
            "epoch": epoch, "step": state["step"], "best_epoch": state["best_epoch"],
            "best_val_mpjpe": state["best_val_mpjpe"], "train_time_s": state["train_time_s"],
            "pairs_seen": state["pairs_seen"], "optimizer": opt_meta,
            # the RNG state of every epoch is a function of these (see _train_epoch)
            "rng": {"numpy_seed_sequence_of_next_epoch": [self.config.seed, _EPOCH_STREAM, epoch + 1],
                    "torch": "manual_seed drawn from that numpy stream"},
            "fingerprint": run_meta["data"]["fingerprint"],
            "files": files, "history": state["history"], "run": run_meta, "model": model.config(),
        }
        _kill_point("temp", epoch, partial=(out_dir / ckpt.STATE_FILE, json.dumps(doc, indent=1)))
        ckpt.write_json(out_dir / ckpt.STATE_FILE, doc)  # the commit
        state["files"] = files
        _kill_point("state", epoch)
        _publish(out_dir, doc)
        _kill_point("published", epoch)
        _remove_unnamed(out_dir, files)

    def _load_resume_state(self, out_dir: Path, model, optimizer, run_meta: dict) -> dict | None:
        """The state of ``out_dir``'s last checkpoint, loaded into ``model`` and ``optimizer``;
        None when there is none (a fresh start). Refuses a run of another config or data."""
        state_path = out_dir / ckpt.STATE_FILE
        if not state_path.is_file():
            return None
        state_doc = ckpt.read_json(state_path)
        named = isinstance(state_doc.get("files"), dict)  # False: a run of the first format
        if not named and not (out_dir / "last.safetensors").is_file():
            return None
        stored = state_doc["run"] if named else ckpt.read_json(out_dir / ckpt.CONFIG_FILE)
        old_train = dict(stored.get("train", {}))
        new_train = run_meta["train"]
        changed = sorted(k for k in set(old_train) | set(new_train)
                         if k not in _RESUMABLE_CHANGES | {"preset_name"} and old_train.get(k) != new_train.get(k))
        if changed:
            raise PoseCuratorError(f"{out_dir} holds a run with a different training config ({', '.join(changed)}); "
                                   "use another output folder or resume=False to start afresh")
        if state_doc.get("fingerprint") != run_meta["data"]["fingerprint"]:
            raise PoseCuratorError(f"{out_dir} holds a run trained on different data; use another output folder or resume=False")
        if named:
            files = state_doc["files"]
            for record in files.values():
                ckpt.verified_file(out_dir, record)
            last, opt, history = out_dir / files["last"]["name"], out_dir / files["optimizer"]["name"], state_doc["history"]
        else:
            files = _adopt_first_format(out_dir, state_doc)
            last, opt = out_dir / "last.safetensors", out_dir / ckpt.OPTIMIZER_FILE
            history = ckpt.read_json(out_dir / ckpt.HISTORY_FILE).get("epochs", [])
        model.load_state_dict(ckpt.load_tensors(last))
        optimizer.load_state_dict(ckpt.optimizer_from_files(ckpt.load_tensors(opt), state_doc["optimizer"]))
        if named:  # a kill may have come before the public names or the clean-up: redo them
            _publish(out_dir, state_doc)
            _remove_unnamed(out_dir, files)
        return {"epoch": int(state_doc["epoch"]), "step": int(state_doc["step"]), "best_epoch": state_doc["best_epoch"],
                "best_val_mpjpe": state_doc["best_val_mpjpe"], "train_time_s": float(state_doc["train_time_s"]),
                "pairs_seen": int(state_doc["pairs_seen"]), "history": list(history), "files": files}


def _kill_point(point: str, epoch: int, *, partial: tuple[Path, str] | None = None) -> None:
    """The test hook of the module docstring. ``partial`` = (file, text): first leave half of
    ``text`` in a temporary file of ``file``, as a kill in the middle of its write would."""
    name = f"lifter-{point}:{epoch}"
    if partial is not None and os.environ.get(KILL_POINT_ENV) == name:
        path, text = partial
        temp_path(path).write_text(text[: len(text) // 2])
    test_kill_point(name)


def _publish(out_dir: Path, doc: dict) -> None:
    """Derive the public files from a committed ``state.json`` document: ``last``/``best``/
    ``optimizer.safetensors`` name its epoch files; ``history.json`` and ``config.json``."""
    for kind, record in doc["files"].items():
        atomic_link(out_dir / record["name"], out_dir / ckpt.PUBLIC_WEIGHTS[kind])
    history = _history_doc(doc)
    ckpt.write_json(out_dir / ckpt.HISTORY_FILE, history)
    ckpt.write_json(out_dir / ckpt.CONFIG_FILE, ckpt.run_config_doc({**doc["run"], "history": history}, doc["model"]))


def _remove_unnamed(out_dir: Path, files: dict) -> None:
    """Remove epoch files that the committed checkpoint does not name (older epochs, or those of
    an epoch whose commit a kill prevented) and temporary files a kill left behind."""
    keep = {record["name"] for record in files.values()}
    for path in out_dir.iterdir():
        if ckpt.EPOCH_FILE_RE.match(path.name) and path.name not in keep:
            path.unlink(missing_ok=True)
    remove_stale_temps(out_dir, _is_run_file)


def _remove_run_files(out_dir: Path) -> None:
    """Remove every file the trainer writes from ``out_dir`` (a fresh start)."""
    if not out_dir.is_dir():
        return
    for path in out_dir.iterdir():
        if _is_run_file(path.name):
            path.unlink(missing_ok=True)
    remove_stale_temps(out_dir, _is_run_file)


def _adopt_first_format(out_dir: Path, state_doc: dict) -> dict:
    """Resuming a run of the first format (public files only): give its best weights an epoch
    name, so the next checkpoint can name them whether or not its epoch improves."""
    remove_stale_temps(out_dir, _is_run_file)
    best = out_dir / "best.safetensors"
    if not best.is_file() or state_doc.get("best_epoch") is None:
        return {}
    stamped = out_dir / ckpt.epoch_file("best", state_doc["best_epoch"])
    atomic_link(best, stamped)
    return {"best": ckpt.file_record(stamped)}


def _rate(state: dict) -> float | None:
    return state["pairs_seen"] / state["train_time_s"] if state["train_time_s"] > 0 else None


def _history_doc(state: dict) -> dict:
    """The content of history.json (``state``: the trainer's state or a state.json document)."""
    return {"epochs": state["history"], "best_epoch": state["best_epoch"], "best_val_mpjpe": state["best_val_mpjpe"],
            "steps": state["step"], "training_time_s": state["train_time_s"], "pairs_seen": state["pairs_seen"],
            "poses_per_s": _rate(state)}


SamplerFactory = Callable[[PoseSet], "torch.utils.data.Sampler"]
