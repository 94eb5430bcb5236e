"""Training, saving and loading the pose VAE (:mod:`posecurator.models.pose_vae`).

:func:`train_vae` fits a VAE on a pose set with the paper's Eq. 1 (Adam, cosine-decayed learning
rate, seeded). A validation split *by clip* (whole clips held out, so neighbouring frames do not
leak) is monitored in the history; the model of the last epoch is returned. Cost: about
``epochs * N`` pose forward/backward passes through a small MLP; on 2 CPU cores the defaults train
a 100k-pose 3D set in roughly a minute.

On disk (``out_dir``): ``vae.safetensors`` (weights) and ``vae.json`` (format, model
hyper-parameters, :class:`VAEConfig`, history); both written under temporary names and renamed.

Resumable training (``train_vae(..., resumable=True)``): every ``max(1, epochs // 20)`` epochs a
checkpoint goes to ``out_dir``: ``checkpoint-EEEEE.safetensors`` (weights, Adam tensors, torch's
global RNG state and the shuffling generator's state) and then ``checkpoint.json`` (epoch,
history, Adam and learning-rate schedule hyper-parameters, the config, a fingerprint of the
training tensors, and the checkpoint file's size and SHA-1), which commits it. A rerun of the same
training continues from the committed checkpoint and ends with the same weights, bit for bit, as
an uninterrupted one; the checkpoint files are removed once ``vae.safetensors`` is written. Test
hook (tests/test_resume.py): ``POSECURATOR_TEST_KILL_POINT=vae-weights:E`` / ``vae-state:E`` ends
the process after epoch E's checkpoint weights / its ``checkpoint.json`` are written.

The ``vae_recon`` scorer of the scoring layer takes the VAE through injected functions (scoring
sits below this layer); :func:`make_vae_scorer` / :func:`load_vae_scorer` build it with this
module's training and scoring, and :func:`vae_score_fn` gives the ``score_fn`` of the difficulty
samplers (:func:`posecurator.selection.samplers.resolve_scores`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from posecurator.errors import DataError
from posecurator.fileio import atomic_write, atomic_write_json, output_lock, remove_stale_temps, test_kill_point
from posecurator.models.pose_vae import (PoseNormalization, PoseVAE, normalize_poses, pose_arrays,
                                         reconstruction_errors, vae_loss)
from posecurator.poseset import PoseSet
from posecurator.scoring.vae import VAEReconstructionScorer
from posecurator.skeleton import get_layout

VAE_FORMAT = "posecurator-pose-vae"
VAE_VERSION = 1
WEIGHTS_FILE = "vae.safetensors"
CONFIG_FILE = "vae.json"
CHECKPOINT_FILE = "checkpoint.json"
CHECKPOINT_FORMAT = "posecurator-vae-checkpoint"


@dataclass
class VAEConfig:
    """Options of the pose VAE and its training.

    space: "3d" (joints3d) or "2d" (joints2d with visibility, or the 3D joints projected through
        deterministic per-sample cameras when the set has no 2D).
    lambda_kl: weight of the KL term of Eq. 1. The paper does not state its value; 0.01 keeps the
        posterior from collapsing on normalised poses (unit RMS size) while regularising the latent.
    hidden, latent_dim: MLP widths (decoder mirrors the encoder) and latent size.
    max_samples: train on at most this many poses (a seeded random subset) to bound the cost on
        very large sets; None = all.
    num_threads: torch CPU threads while training/scoring (None = leave torch's setting). One
        thread is the fastest for this small MLP and does not collapse when other processes share
        the cores (2 threads on 2 busy cores measured 15x slower).
    """

    space: str = "3d"
    hidden: tuple[int, ...] = (256, 256)
    latent_dim: int = 16
    lambda_kl: float = 0.01
    lr: float = 4e-3
    weight_decay: float = 0.0
    epochs: int = 20
    batch_size: int = 512
    seed: int = 0
    val_fraction: float = 0.1
    align_heading: bool = True
    projection_seed: int = 0
    max_samples: int | None = None
    num_threads: int | None = 1

    def __post_init__(self):
        if self.space not in ("2d", "3d"):
            raise ValueError(f"space must be '2d' or '3d', got {self.space!r}")
        self.hidden = tuple(int(h) for h in self.hidden)
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.epochs < 1 or self.batch_size < 1 or self.latent_dim < 1:
            raise ValueError("epochs, batch_size and latent_dim must be positive")

    @property
    def dim(self) -> int:
        return 2 if self.space == "2d" else 3

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "VAEConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Temporarily run torch on ``n`` CPU threads (None: unchanged)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def split_by_clip(clip: np.ndarray, val_fraction: float, *, seed: int) -> np.ndarray:
    """(N,) bool validation mask holding out whole clips (seeded) until ``val_fraction`` of the
    samples; falls back to a random sample split when the set has a single clip."""
    clip = np.asarray(clip)
    n = len(clip)
    val = np.zeros(n, dtype=bool)
    if val_fraction <= 0 or n < 2:
        return val
    rng = np.random.default_rng(seed)
    names, inverse, counts = np.unique(clip, return_inverse=True, return_counts=True)
    if len(names) < 2:
        val[rng.permutation(n)[: max(1, int(round(val_fraction * n)))]] = True
        return val
    order = rng.permutation(len(names))
    cum = np.cumsum(counts[order])
    n_val_clips = int(np.searchsorted(cum, val_fraction * n)) + 1
    n_val_clips = min(n_val_clips, len(names) - 1)  # always keep a training clip
    val_clips = np.zeros(len(names), dtype=bool)
    val_clips[order[:n_val_clips]] = True
    return val_clips[inverse.reshape(-1)]


def training_split(clip: np.ndarray, valid: np.ndarray, config: VAEConfig) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, validation rows) of :func:`train_vae`: the poses with enough labelled
    joints (``valid``), a seeded subset of ``config.max_samples`` of them when there are more,
    then whole clips held out for validation (:func:`split_by_clip`). Rows in neither part are
    never seen by the VAE."""
    rng = np.random.default_rng(config.seed)
    usable = np.flatnonzero(valid)
    if len(usable) < 2:
        raise DataError(None, f"only {len(usable)} poses with at least the minimum of labelled joints; cannot train a VAE")
    if config.max_samples is not None and len(usable) > config.max_samples:
        usable = np.sort(rng.choice(usable, config.max_samples, replace=False))
    val_mask = split_by_clip(np.asarray(clip)[usable], config.val_fraction, seed=config.seed)
    return usable[~val_mask], usable[val_mask]


def prepare_inputs(poses: PoseSet, config: VAEConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, PoseNormalization]:
    """Normalised VAE inputs of a pose set: (normed (N, J, D), mask (N, J), valid (N,), normalisation)."""
    layout = get_layout(poses.layout)
    norm = PoseNormalization.for_layout(layout, config.dim, align_heading=config.align_heading)
    raw, vis = pose_arrays(poses, config.dim, projection_seed=config.projection_seed)
    normed, mask, valid = normalize_poses(raw, vis, norm=norm)
    return normed, mask, valid, norm


def _epoch_pass(model, opt, y, m, batch_size, lambda_kl, generator) -> tuple[float, float, float]:
    model.train()
    perm = torch.randperm(len(y), generator=generator)
    tot = rec = kl = 0.0
    for s in range(0, len(y), batch_size):
        idx = perm[s:s + batch_size]
        yb, mb = y[idx], m[idx]
        recon, mu, logvar = model(yb, mb)
        loss, r, k = vae_loss(recon, yb, mu, logvar, mb, lambda_kl=lambda_kl)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        w = len(idx)
        tot, rec, kl = tot + loss.item() * w, rec + r.item() * w, kl + k.item() * w
    n = max(len(y), 1)
    return tot / n, rec / n, kl / n


@torch.no_grad()
def _evaluate(model, y, m, lambda_kl, generator) -> tuple[float, float, float]:
    """Eq. 1 terms on held-out poses (with a sampled z, as in training, so the losses compare)."""
    model.eval()
    mu, logvar = model.encode(y, m)
    z = mu + torch.randn(mu.shape, generator=generator) * torch.exp(0.5 * logvar)
    loss, r, k = vae_loss(model.decode(z), y, mu, logvar, m, lambda_kl=lambda_kl)
    return loss.item(), r.item(), k.item()


def train_vae(poses: PoseSet, config: VAEConfig | None = None, *, out_dir: str | os.PathLike | None = None,
              progress: bool = True, resumable: bool = False) -> tuple[PoseVAE, dict]:
    """Train a pose VAE on ``poses``; returns (model in eval mode, history).

    history: lists per epoch ``epoch, train_loss, train_recon, train_kl, val_loss, val_recon,
    val_kl, seconds`` (val_* are NaN without a validation split) plus ``n_train``, ``n_val``.
    Poses with too few labelled joints (see ``MIN_VISIBLE_JOINTS``) are left out of training.
    ``resumable`` (needs ``out_dir``): write checkpoints and continue from one of the same training
    left by an interrupted call (module docstring); one process at a time may then use ``out_dir``.
    """
    config = config or VAEConfig()
    if resumable and out_dir is None:
        raise ValueError("resumable training needs out_dir (where the checkpoints go)")
    with torch_threads(config.num_threads):
        if not resumable:
            return _train_vae(poses, config, out_dir=out_dir, progress=progress, checkpoints=None)
        with output_lock(out_dir, wait=False):
            return _train_vae(poses, config, out_dir=out_dir, progress=progress, checkpoints=Path(out_dir))


def _train_vae(poses: PoseSet, config: VAEConfig, *, out_dir, progress: bool, checkpoints: Path | None) -> tuple[PoseVAE, dict]:
    torch.manual_seed(config.seed)
    normed, mask, valid, norm = prepare_inputs(poses, config)
    tr, va = training_split(poses.clip, valid, config)
    masked = config.dim == 2  # 2D: the encoder always sees which joints are labelled
    model = PoseVAE(n_joints=normed.shape[1], dim=config.dim, hidden=config.hidden, latent_dim=config.latent_dim,
                    masked=masked, layout=poses.layout, normalization=norm)
    y_tr, m_tr = torch.from_numpy(normed[tr]), torch.from_numpy(mask[tr])
    y_va, m_va = torch.from_numpy(normed[va]), torch.from_numpy(mask[va])
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs, eta_min=config.lr * 0.05)
    gen = torch.Generator().manual_seed(config.seed)
    hist = {k: [] for k in ("epoch", "train_loss", "train_recon", "train_kl", "val_loss", "val_recon", "val_kl", "seconds")}
    hist.update(n_train=int(len(tr)), n_val=int(len(va)))
    start, fingerprint = 0, None
    if checkpoints is not None:
        fingerprint = _training_fingerprint(config, y_tr, m_tr, y_va, m_va)
        loaded = _load_checkpoint(checkpoints, fingerprint, model, opt, sched, gen)
        if loaded is not None:
            start, hist = loaded
    every = max(1, config.epochs // 20)  # at most ~20 checkpoints, whatever the epochs
    epochs = range(start, config.epochs)
    if progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc="pose VAE", unit="epoch", initial=start, total=config.epochs)
    for epoch in epochs:
        t0 = time.perf_counter()
        tl, tr_rec, tk = _epoch_pass(model, opt, y_tr, m_tr, config.batch_size, config.lambda_kl, gen)
        sched.step()
        vl = vr = vk = math.nan
        if len(va):
            vl, vr, vk = _evaluate(model, y_va, m_va, config.lambda_kl, gen)
        for k, v in zip(hist, (epoch, tl, tr_rec, tk, vl, vr, vk, time.perf_counter() - t0)):
            hist[k].append(v)
        if progress:
            epochs.set_postfix(loss=f"{tl:.4f}", val=f"{vl:.4f}", kl=f"{tk:.2f}")
        if checkpoints is not None and (epoch + 1) % every == 0 and epoch + 1 < config.epochs:
            _save_checkpoint(checkpoints, epoch, model, opt, sched, gen, hist, fingerprint, config)
    model.eval()
    if out_dir is not None:
        save_vae(model, config, out_dir, history=hist)
    if checkpoints is not None:  # the finished VAE is saved: its checkpoints are done with
        _remove_checkpoints(checkpoints, keep=None)
        (checkpoints / CHECKPOINT_FILE).unlink(missing_ok=True)
    return model, hist


# ---------------------------------------------------------------------- checkpoints of train_vae
def _training_fingerprint(config: VAEConfig, *tensors: torch.Tensor) -> str:
    """SHA-1 of the config and the exact training / validation tensors: a checkpoint is resumed
    only by the training that wrote it."""
    h = hashlib.sha1(json.dumps(config.to_dict(), sort_keys=True).encode())
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _checkpoint_name(epoch: int) -> str:
    return f"checkpoint-{int(epoch):05d}.safetensors"


def _save_checkpoint(folder: Path, epoch: int, model, opt, sched, gen, hist: dict, fingerprint: str,
                     config: VAEConfig) -> None:
    """Epoch ``epoch``'s checkpoint: the tensors first, ``checkpoint.json`` naming them last (the commit)."""
    from posecurator.train.checkpoint import file_record, optimizer_to_files, save_tensors

    opt_tensors, opt_meta = optimizer_to_files(opt.state_dict())
    tensors = {**{f"model.{k}": v for k, v in model.state_dict().items()},
               **{f"optimizer.{k}": v for k, v in opt_tensors.items()},
               # dropout-free, but the reparameterisation draws from torch's global generator
               "rng.torch": torch.get_rng_state(), "rng.shuffle": gen.get_state()}
    name = _checkpoint_name(epoch)
    save_tensors(folder / name, tensors)
    test_kill_point(f"vae-weights:{epoch}")
    atomic_write_json(folder / CHECKPOINT_FILE, {
        "format": CHECKPOINT_FORMAT, "version": 1, "epoch": int(epoch), "config": config.to_dict(),
        "fingerprint": fingerprint, "history": hist, "optimizer": opt_meta, "scheduler": sched.state_dict(),
        "file": file_record(folder / name)})
    test_kill_point(f"vae-state:{epoch}")
    _remove_checkpoints(folder, keep=name)


def _load_checkpoint(folder: Path, fingerprint: str, model, opt, sched, gen) -> tuple[int, dict] | None:
    """(first epoch to train, history) from ``folder``'s committed checkpoint of this training,
    with the model, optimizer, schedule and both generators restored; None (and stale checkpoint
    files removed) when there is none."""
    from posecurator.train.checkpoint import load_tensors, optimizer_from_files, verified_file

    try:
        doc = json.loads((folder / CHECKPOINT_FILE).read_text())
    except (OSError, ValueError):
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT or doc.get("fingerprint") != fingerprint:
        _remove_checkpoints(folder, keep=None)
        (folder / CHECKPOINT_FILE).unlink(missing_ok=True)
        return None
    tensors = load_tensors(verified_file(folder, doc["file"]))
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    opt.load_state_dict(optimizer_from_files({k[len("optimizer."):]: v for k, v in tensors.items()
                                              if k.startswith("optimizer.")}, doc["optimizer"]))
    sched.load_state_dict(doc["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    gen.set_state(tensors["rng.shuffle"])
    _remove_checkpoints(folder, keep=doc["file"]["name"])
    return int(doc["epoch"]) + 1, doc["history"]


def _remove_checkpoints(folder: Path, *, keep: str | None) -> None:
    """Remove checkpoint files other than ``keep`` and temporary files a kill left behind."""
    if not folder.is_dir():
        return
    for path in folder.glob("checkpoint-*.safetensors"):
        if path.name != keep:
            path.unlink(missing_ok=True)
    remove_stale_temps(folder, lambda name: name.startswith("checkpoint") or name in (WEIGHTS_FILE, CONFIG_FILE))


def save_vae(model: PoseVAE, config: VAEConfig, out_dir: str | os.PathLike, *, history: dict | None = None) -> Path:
    """Write ``vae.safetensors`` and ``vae.json`` into ``out_dir`` (each atomically)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"format": VAE_FORMAT, "version": VAE_VERSION, "model": model.hparams, "config": config.to_dict(),
            "history": _json_safe(history or {})}
    weights = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    atomic_write(out / WEIGHTS_FILE, lambda tmp: save_file(weights, str(tmp)))
    atomic_write_json(out / CONFIG_FILE, meta, indent=1)
    return out


def load_vae(model_dir: str | os.PathLike) -> tuple[PoseVAE, VAEConfig]:
    """Read a VAE saved by :func:`train_vae` / :func:`save_vae`: (model in eval mode, its config)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    d = Path(model_dir)
    cfg_path, w_path = d / CONFIG_FILE, d / WEIGHTS_FILE
    if not cfg_path.is_file() or not w_path.is_file():
        raise DataError(d, f"not a pose VAE folder (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        meta = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(cfg_path, f"corrupt VAE header: {e}") from None
    if meta.get("format") != VAE_FORMAT:
        raise DataError(cfg_path, f"not a pose VAE header (format={meta.get('format')!r})")
    if not isinstance(meta.get("version"), int) or meta["version"] > VAE_VERSION:
        raise DataError(cfg_path, f"pose VAE format version {meta.get('version')} is newer than this posecurator understands")
    try:
        model = PoseVAE.from_hparams(meta["model"])
        config = VAEConfig.from_dict(meta.get("config", {}))
        state = load_file(str(w_path))
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError, SafetensorError) as e:
        raise DataError(w_path, f"cannot load pose VAE: {str(e).splitlines()[0]}") from None
    model.eval()
    return model, config


def score_poses(model: PoseVAE, poses: PoseSet, *, projection_seed: int = 0, batch_size: int = 8192,
                num_threads: int | None = 1) -> np.ndarray:
    """(N,) float64 Eq. 2 reconstruction errors of a pose set under a trained VAE (NaN for poses
    with too few labelled joints). Higher = harder."""
    if poses.layout != model.layout or poses.n_joints != model.n_joints:
        raise ValueError(f"VAE was trained on layout {model.layout} ({model.n_joints} joints); "
                         f"got {poses.layout} ({poses.n_joints} joints)")
    raw, vis = pose_arrays(poses, model.dim, projection_seed=projection_seed)
    normed, mask, valid = normalize_poses(raw, vis, norm=model.normalization)
    with torch_threads(num_threads):
        return reconstruction_errors(model, normed, mask, valid, batch_size=batch_size)


# ---------------------------------------------------------------------- the vae_recon scorer and score_fn
def resolve_vae_config(config: VAEConfig | dict | None = None, *, space: str | None = None,
                       **config_fields) -> VAEConfig:
    """A :class:`VAEConfig` from ``config`` (a VAEConfig, a dict of its fields or None), then
    ``space`` (None: the config's, else "3d") and any VAEConfig field as a keyword; raises
    ``TypeError("unknown vae_recon option(s): ...")`` for anything else."""
    d = config.to_dict() if isinstance(config, VAEConfig) else dict(config or {})
    unknown = (set(d) | set(config_fields)) - set(VAEConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown vae_recon option(s): {', '.join(sorted(unknown))}")
    d["space"] = space or d.get("space", "3d")
    d.update(config_fields)
    return VAEConfig.from_dict(d)


def _scorer_functions(config: VAEConfig, *, batch_size: int) -> dict:
    return {"errors_fn": partial(score_poses, projection_seed=config.projection_seed, batch_size=batch_size,
                                 num_threads=config.num_threads),
            "save_fn": save_vae}


def make_vae_scorer(config: VAEConfig | dict | None = None, *, space: str | None = None, progress: bool = False,
                    out_dir: str | os.PathLike | None = None, batch_size: int = 8192,
                    **config_fields) -> VAEReconstructionScorer:
    """An unfitted ``vae_recon`` scorer whose ``fit(reference)`` trains a pose VAE (:func:`train_vae`,
    saved to ``out_dir`` when given) and whose ``score_samples`` gives its Eq. 2 errors (higher =
    harder). ``config`` / ``space`` / ``config_fields``: as :func:`resolve_vae_config` (unknown
    options fail here, before any training); ``config_`` of the fitted scorer is that VAEConfig."""
    cfg = resolve_vae_config(config, space=space, **config_fields)

    def fit_fn(reference: PoseSet) -> tuple[PoseVAE, dict]:
        return train_vae(reference, cfg, out_dir=out_dir, progress=progress)

    return VAEReconstructionScorer(fit_fn=fit_fn, config=cfg, space=cfg.space, **_scorer_functions(cfg, batch_size=batch_size))


def load_vae_scorer(model_dir: str | os.PathLike, *, batch_size: int = 8192) -> VAEReconstructionScorer:
    """A fitted ``vae_recon`` scorer from a folder written by ``train_vae(out_dir=...)`` or
    :func:`save_vae` (``DataError`` when it is not one)."""
    model, cfg = load_vae(model_dir)
    return VAEReconstructionScorer(model=model, config=cfg, space=cfg.space, **_scorer_functions(cfg, batch_size=batch_size))


def vae_score_fn(config: VAEConfig | dict | None = None, *, space: str | None = None,
                 progress: bool = False) -> Callable[[PoseSet], np.ndarray]:
    """``score_fn(poses) -> (N,) float64``: train a pose VAE on ``poses`` themselves and score them
    (higher = harder), for :func:`posecurator.selection.samplers.resolve_scores` /
    ``parse_sampler_spec(score_fn=...)``. ``space`` None: "3d" when the poses have 3D, else "2d"
    (overriding the config's). Cost: ``config.epochs`` passes over the set, about a minute per
    100k poses on 2 CPU cores with the defaults (bound it with ``max_samples``)."""
    resolve_vae_config(config)  # fail early on unknown options

    def score_fn(poses: PoseSet) -> np.ndarray:
        sp = space or ("3d" if poses.joints3d is not None else "2d")
        return make_vae_scorer(config, space=sp, progress=progress).fit_score(poses)

    return score_fn


def _json_safe(obj):
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (np.floating, np.integer)):
        return _json_safe(obj.item())
    return obj
