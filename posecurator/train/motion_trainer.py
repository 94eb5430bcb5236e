"""Training of PoseSyn's motion model (Sec. 3.2; T2M-GPT's two stages) into a model folder that
:func:`posecurator.train.motion_model.load_motion_model` reads.

Data (:func:`~posecurator.train.motion_data.prepare_motion_data`): every clip is cut into windows
of T frames every ``stride`` frames (:func:`~posecurator.synthesis.motion_repr.motion_windows`)
and, for the transformer to learn motions longer than T, into windows of ``max_frames`` every
``long_stride`` frames where a clip is long enough; with ``mirror`` the windows are also used
mirrored left-right. Each window gets a caption, "a person <label phrase of its clip>; <the
describer's text of the window's motion>" (:func:`~posecurator.synthesis.captions.label_phrase`
and :meth:`PoseDescriber.describe_windows`, the describer whose options are stored in the model's
config.json so that captions at use are made alike), and every frame a pose caption (the
describer's text of that one pose, which is what a caption of a single mis-predicted pose looks
like at use). Captions are embedded with the sentence encoder of
:mod:`~posecurator.synthesis.text_embedding` (required: the error names the pip command). A
validation part is cut by clip (seeded; mirrored copies of its windows are used for neither
part). The feature normaliser is fit on the training windows, each feature's std floored
(:data:`~posecurator.train.motion_data.FEATURE_STD_FLOOR`).

Stage 1, VQ-VAE (:class:`~posecurator.models.motion_vqvae.MotionVQVAE`) on normalised windows:
smooth-L1 reconstruction of the features + ``vel_weight`` x smooth-L1 of their frame-to-frame
differences (T2M-GPT's velocity loss, on the local joints) + ``pos_weight`` x the joint error
after integrating the features (mm / 100) + ``commit_weight`` x the commitment loss. A fraction
``vq_p_static`` of the training windows is replaced by one of their frames held still (grounded,
exactly as ``encode_init`` feeds a pose), so that the codes of a still pose keep that pose. Reported
per epoch: reconstruction MPJPE (mm) on the validation windows (decoded, de-normalised,
``motion_to_joints`` vs ``canonicalize`` of the original), the same for still poses (the validation
windows' first frames held still), and codebook usage (fraction of codes used, perplexity).

Stage 2, transformer (:class:`~posecurator.models.motion_transformer.MotionTransformer`) on the
frozen VQ-VAE's codes of the windows: teacher-forced cross-entropy. The init condition of a
window is one of its own frames (``init_anchor``: the first, so generated motions start near the
given pose; or a random one), perturbed afresh each epoch (Gaussian joint noise of
``init_noise_mm`` and a random rotation of up to ``init_rotation_deg`` about a random axis through
the pelvis, like an estimator's mis-prediction), grounded, held still and encoded (Eq. 4); the
init tokens see the codes' embedding and (``init_code_vectors``) their VQ-VAE code vectors. The
text is the window's caption, or with probability ``p_pose_text`` the pose caption of that init
frame. Text and init codes are replaced by the learned "no text" / "no init" vectors with
probabilities ``p_text`` / ``p_init``; a fraction ``p_corrupt`` of the teacher-forced input codes
are replaced by random codes (T2M-GPT's trick against exposure bias). Reported per epoch:
validation cross-entropy and top-1 accuracy (fixed seeded init poses); at the end also for the
"no text", "no init" and "neither" modes of the same model (the ablations).

Checkpoints: after every epoch of a stage its weights and optimiser (safetensors) and then
``state-<stage>.json`` (the commit, naming those files with size and SHA-1) are written
atomically; a rerun resumes from the last committed epoch, a finished stage is not redone, and a
finished model is left as it is. Reproducibility: the randomness of epoch e of a stage is seeded
from (seed, stage, e) alone, so the same seed gives the same weights on the same machine and
thread count, and a resumed run ends where an uninterrupted one does. One process at a time
writes a model folder (:func:`posecurator.fileio.output_lock`).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from posecurator.errors import DataError, PoseCuratorError
from posecurator.fileio import atomic_savez, atomic_write_json, output_lock, remove_stale_temps
from posecurator.metrics import mpjpe
from posecurator.models.motion_transformer import MotionTransformer
from posecurator.models.motion_vqvae import MotionVQVAE, perplexity_of
from posecurator.poseset import PoseSet
from posecurator.synthesis.captions import CaptionTable
from posecurator.synthesis.describe import PoseDescriber
from posecurator.synthesis.motion_repr import (DIM, FEATURES, N_JOINTS, NON_ROOT, ROOT, MotionNormalizer,
                                               canonicalize, motion_to_joints)
from posecurator.synthesis.text_embedding import EMBEDDING_DIM, load_text_encoder
from posecurator.train import checkpoint as ckpt
from posecurator.train import motion_model as mm
from posecurator.train.motion_config import PRESETS, MotionConfig
from posecurator.train.motion_data import (MotionData, WindowSet, fit_normalizer, init_codes_of, mirror_joints, perturb_poses,
                                           prepare_motion_data, split_clips, swap_sides)

__all__ = ["MotionConfig", "PRESETS", "train_motion_model", "prepare_motion_data", "MotionData", "WindowSet",
           "features_to_joints_torch", "init_codes_of", "mirror_joints", "perturb_poses", "split_clips", "swap_sides"]

# seed-sequence tags, so the streams of different purposes never coincide
# (31: the validation split, posecurator.train.motion_data)
_VQ_INIT, _VQ_EPOCH, _TF_INIT, _TF_EPOCH, _TF_VAL, _VAL_CAP = 37, 41, 43, 47, 53, 59
STAGES = ("vqvae", "transformer")
STATE_FORMAT = "posecurator-motion-state"
STATE_VERSION = 1
EMBEDDING_CACHE = "text_embeddings.npz"
# config fields that may change between a run and its resumption (they do not change the result)
_RESUMABLE_CHANGES = {"device", "num_threads", "preset_name"}


# ---------------------------------------------------------------------- torch helpers
_STATS: dict = {}


def features_to_joints_torch(features: torch.Tensor) -> torch.Tensor:
    """(B, T, 54) de-normalised features -> (B, T, 17, 3) joints, differentiable (torch version
    of :func:`~posecurator.synthesis.motion_repr.motion_to_joints`: frame 0 at the origin
    facing +X)."""
    dtheta = features[..., FEATURES["heading_velocity"]][..., 0]
    theta = torch.cat([torch.zeros_like(dtheta[:, :1]), torch.cumsum(dtheta[:, :-1], dim=1)], dim=1)
    c, s = torch.cos(theta), torch.sin(theta)
    vel = features[..., FEATURES["root_velocity"]]
    vx, vy = c * vel[..., 0] - s * vel[..., 1], s * vel[..., 0] + c * vel[..., 1]
    x = torch.cat([torch.zeros_like(vx[:, :1]), torch.cumsum(vx[:, :-1], dim=1)], dim=1)
    y = torch.cat([torch.zeros_like(vy[:, :1]), torch.cumsum(vy[:, :-1], dim=1)], dim=1)
    root = torch.stack([x, y, features[..., 0]], dim=-1)                     # (B, T, 3)
    local = features[..., FEATURES["local_joints"]].reshape(*features.shape[:2], N_JOINTS - 1, 3)
    c, s = c[..., None], s[..., None]
    world = torch.stack([c * local[..., 0] - s * local[..., 1], s * local[..., 0] + c * local[..., 1], local[..., 2]], -1)
    stacked = torch.cat([root[:, :, None], world + root[:, :, None]], dim=2)  # root first, then NON_ROOT
    order = np.empty(N_JOINTS, dtype=np.int64)
    order[np.r_[ROOT, NON_ROOT]] = np.arange(N_JOINTS)
    return stacked[:, :, torch.as_tensor(order, device=features.device)]


def _lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to a tenth of ``base`` at ``total``."""
    warm = min(1.0, (step + 1) / max(warmup, 1))
    progress = min(step / max(total, 1), 1.0)
    return base * warm * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _seed_from(*key) -> int:
    return int(np.random.default_rng(list(key)).integers(2**62))


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A seeded shuffle of range(n) cut into batches; a last incomplete batch is dropped when
    there is at least one full one (its statistics would be noise)."""
    perm = rng.permutation(n)
    n_used = n - n % batch_size if n >= batch_size else n
    return [perm[i:i + batch_size] for i in range(0, n_used, batch_size)]


def _epoch_quotas(sizes: dict[str, int], cap: int | None) -> dict[str, int]:
    """Training windows per epoch of each group under ``epoch_windows`` = ``cap`` (in proportion
    to the groups' sizes, at least one each; None or enough room: all)."""
    total = sum(sizes.values())
    if cap is None or total <= cap:
        return dict(sizes)
    return {k: min(n, max(1, round(cap * n / total))) if n else 0 for k, n in sizes.items()}


def _epoch_rows(n: int, quota: int, rng: np.random.Generator) -> np.ndarray | None:
    """The sorted rows an epoch trains on (a fresh random subset of ``quota`` of ``n``), or None
    for all of them (then nothing is drawn, so uncapped runs keep their random streams)."""
    if quota >= n:
        return None
    return np.sort(rng.choice(n, size=quota, replace=False))


def _capped_mask(mask: np.ndarray, cap: int | None, seed: int, tag: int) -> np.ndarray:
    """``mask`` with at most ``cap`` True entries (a seeded subset, fixed for the run)."""
    rows = np.flatnonzero(mask)
    if cap is None or len(rows) <= cap:
        return mask
    keep = np.zeros_like(mask)
    keep[np.sort(np.random.default_rng([seed, tag]).choice(rows, size=cap, replace=False))] = True
    return keep


# ---------------------------------------------------------------------- checkpoints of a stage
def _state_path(out_dir: Path, stage: str) -> Path:
    return out_dir / f"state-{stage}.json"


def _epoch_name(stage: str, kind: str, epoch: int) -> str:
    return f"{stage}-{kind}-{int(epoch):05d}.safetensors"


def _is_motion_file(name: str) -> bool:
    return (name in (mm.CONFIG_FILE, mm.NORMALIZER_FILE, mm.VQVAE_FILE, mm.TRANSFORMER_FILE, mm.HISTORY_FILE,
                     mm.CAPTIONS_FILE, mm.SUMMARY_FILE, EMBEDDING_CACHE)
            or any(name == _state_path(Path(), s).name or (name.startswith(f"{s}-") and name.endswith(".safetensors"))
                   for s in STAGES))


def _remove_stage_epoch_files(out_dir: Path, stage: str, keep: set[str]) -> None:
    for path in out_dir.iterdir():
        if path.name.startswith(f"{stage}-") and path.name.endswith(".safetensors") and path.name not in keep:
            path.unlink(missing_ok=True)


def _checked_state(out_dir: Path, stage: str, meta: dict) -> dict | None:
    """The committed state document of ``stage`` in ``out_dir`` (None: there is none), refused
    with a one-line error when it belongs to another config or other data."""
    path = _state_path(out_dir, stage)
    if not path.is_file():
        return None
    doc = ckpt.read_json(path)
    if doc.get("format") != STATE_FORMAT or doc.get("stage") != stage:
        raise DataError(path, f"not a motion-model training state of stage {stage}")
    old, new = doc.get("config", {}), meta["config"]
    changed = sorted(k for k in set(old) | set(new) if k not in _RESUMABLE_CHANGES and old.get(k) != new.get(k))
    if changed:
        raise PoseCuratorError(f"{out_dir} holds a motion model of another config ({', '.join(changed)}); "
                               "use another output folder or start afresh (resume=False, --fresh)")
    if doc.get("fingerprint") != meta["fingerprint"]:
        raise PoseCuratorError(f"{out_dir} holds a motion model trained on other data; "
                               "use another output folder or start afresh (resume=False, --fresh)")
    return doc


def _after_epoch(stage: str, epoch: int) -> None:
    """Test hook: called after each committed epoch (tests replace it to interrupt a run)."""


class _Stage:
    """Epoch loop, checkpoints and resume of one training stage (module docstring)."""

    def __init__(self, name: str, out_dir: Path, model: torch.nn.Module, optimizer, *, epochs: int, meta: dict,
                 public_file: str):
        self.name, self.out_dir, self.model, self.optimizer = name, out_dir, model, optimizer
        self.epochs, self.meta, self.public_file = epochs, meta, public_file

    def load(self) -> dict | None:
        """The committed state of this stage loaded into model and optimiser, or None."""
        path = _state_path(self.out_dir, self.name)
        if not path.is_file():
            return None
        doc = _checked_state(self.out_dir, self.name, self.meta)
        if doc.get("done"):
            mm._load_weights(self.model, self.out_dir / self.public_file)
        else:
            files = doc["files"]
            for record in files.values():
                ckpt.verified_file(self.out_dir, record)
            self.model.load_state_dict(ckpt.load_tensors(self.out_dir / files["last"]["name"]))
            self.optimizer.load_state_dict(ckpt.optimizer_from_files(
                ckpt.load_tensors(self.out_dir / files["optimizer"]["name"]), doc["optimizer"]))
            _remove_stage_epoch_files(self.out_dir, self.name, {r["name"] for r in files.values()})
        return doc

    def fresh(self) -> dict:
        return {"epoch": -1, "step": 0, "best_epoch": None, "best_score": None, "train_time_s": 0.0,
                "history": [], "files": {}, "done": False}

    def save(self, state: dict, improved: bool) -> None:
        """Write the epoch's files, then state-<stage>.json naming them (the commit), then
        remove the files it no longer names."""
        epoch, out = state["epoch"], self.out_dir
        files = dict(state["files"])
        weights = self.model.state_dict()
        ckpt.save_tensors(out / _epoch_name(self.name, "last", epoch), weights)
        tensors, opt_meta = ckpt.optimizer_to_files(self.optimizer.state_dict())
        ckpt.save_tensors(out / _epoch_name(self.name, "optimizer", epoch), tensors)
        files["last"] = ckpt.file_record(out / _epoch_name(self.name, "last", epoch))
        files["optimizer"] = ckpt.file_record(out / _epoch_name(self.name, "optimizer", epoch))
        if improved:
            ckpt.save_tensors(out / _epoch_name(self.name, "best", epoch), weights)
            files["best"] = ckpt.file_record(out / _epoch_name(self.name, "best", epoch))
        self._commit({**state, "files": files}, optimizer=opt_meta)
        state["files"] = files
        _remove_stage_epoch_files(out, self.name, {r["name"] for r in files.values()})

    def finish(self, state: dict) -> None:
        """Load the best epoch into the model, publish it as the stage's weights file and
        commit the stage as done (its epoch files are then removed)."""
        best = state["files"].get("best")
        if best is not None:
            self.model.load_state_dict(ckpt.load_tensors(self.out_dir / best["name"]))
        ckpt.save_tensors(self.out_dir / self.public_file, self.model.state_dict(),
                          metadata={"format": mm.MODEL_FORMAT, "stage": self.name, "epoch": state["best_epoch"]})
        state.update(done=True, files={})
        self._commit(state, optimizer=None)
        _remove_stage_epoch_files(self.out_dir, self.name, set())

    def _commit(self, state: dict, *, optimizer) -> None:
        doc = {"format": STATE_FORMAT, "version": STATE_VERSION, "stage": self.name, **state,
               "optimizer": optimizer, "config": self.meta["config"], "fingerprint": self.meta["fingerprint"],
               "rng": "epoch e is seeded from (seed, stage tag, e) alone; model init from (seed, stage tag)"}
        ckpt.write_json(_state_path(self.out_dir, self.name), doc)

    def run(self, run_epoch, validate, score_key: str, steps_per_epoch: int, *, progress: bool, resume: bool,
            on_progress=None) -> dict:
        state = self.load() if resume else None
        resumed = state is not None
        state = {k: state[k] for k in self.fresh()} if resumed else self.fresh()
        if state["done"]:  # finished by an earlier run: its best weights are loaded
            state.update(resumed=True, skipped=True)
            return state
        bar = tqdm(total=self.epochs * steps_per_epoch, initial=min(state["step"], self.epochs * steps_per_epoch),
                   desc=self.name, unit="step", disable=not progress, leave=False, dynamic_ncols=True)
        try:
            for epoch in range(state["epoch"] + 1, self.epochs):
                if on_progress is not None:
                    on_progress(f"{self.name} epoch {epoch + 1} of {self.epochs}")
                t0 = time.perf_counter()
                record = {"epoch": epoch, **run_epoch(epoch, state, bar)}
                record.update(validate())
                record["time_s"] = time.perf_counter() - t0
                state["train_time_s"] += record["time_s"]
                state["history"].append(record)
                score = record.get(score_key)
                improved = score is None or state["best_score"] is None or score < state["best_score"]
                if improved:
                    state["best_epoch"], state["best_score"] = epoch, score
                state["epoch"] = epoch
                self.save(state, improved)
                bar.set_postfix({k: f"{v:.3g}" for k, v in record.items() if k in _SHOWN and v is not None})
                _after_epoch(self.name, epoch)
        finally:
            bar.close()
        self.finish(state)
        state.update(resumed=resumed, skipped=False)
        return state


_SHOWN = ("loss", "val_mpjpe_mm", "val_codes_used", "val_ce", "val_acc")


# ---------------------------------------------------------------------- stage 1
def _vqvae_loss(model: MotionVQVAE, x: torch.Tensor, cfg: MotionConfig, mean: torch.Tensor, std: torch.Tensor):
    recon, commit, perplexity = model(x)
    loss = F.smooth_l1_loss(recon, x)
    local = FEATURES["local_joints"]
    if cfg.vel_weight > 0:
        loss = loss + cfg.vel_weight * F.smooth_l1_loss(recon[:, 1:, local] - recon[:, :-1, local],
                                                        x[:, 1:, local] - x[:, :-1, local])
    if cfg.pos_weight > 0:
        pred = features_to_joints_torch(recon * std + mean)
        true = features_to_joints_torch(x * std + mean)
        loss = loss + cfg.pos_weight * (pred - true).norm(dim=-1).mean() / 100.0
    return loss + cfg.commit_weight * commit, perplexity


def _train_vqvae(data: MotionData, normalizer: MotionNormalizer, cfg: MotionConfig, out_dir: Path, meta: dict,
                 *, device, progress: bool, resume: bool, on_progress) -> tuple[MotionVQVAE, dict]:
    torch.manual_seed(_seed_from(cfg.seed, _VQ_INIT))
    model = MotionVQVAE(**cfg.vqvae_kwargs()).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.vq_lr, betas=(0.9, 0.99), weight_decay=0.0)
    is_train, is_val = data.split(data.short)
    is_val = _capped_mask(is_val, cfg.val_windows, cfg.seed, _VAL_CAP)
    x_train = torch.from_numpy(normalizer.transform(data.short.features[is_train])).to(device)
    train_joints = data.short.joints[is_train]
    val = data.short.subset(is_val)
    target_val = canonicalize(val.joints)
    # static holds of the validation windows' first frames: what encode_init feeds the VQ-VAE
    static_val = mm.init_features(val.joints[:, 0], cfg.window, data.init_floor_mm)
    static_target = motion_to_joints(static_val)
    mean = torch.from_numpy(normalizer.mean_).to(device)
    std = torch.from_numpy(normalizer.std_).to(device)
    n_train = len(x_train)
    n_epoch = _epoch_quotas({"short": n_train}, cfg.epoch_windows)["short"]
    steps_per_epoch = max(len(_batches(n_epoch, cfg.vq_batch_size, np.random.default_rng(0))), 1)
    total = cfg.vq_epochs * steps_per_epoch

    def run_epoch(epoch: int, state: dict, bar) -> dict:
        rng = np.random.default_rng([cfg.seed, _VQ_EPOCH, epoch])
        torch.manual_seed(int(rng.integers(2**62)))
        model.quantizer.generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        model.train()
        loss_sum = ppl_sum = resets = 0.0
        lr = None
        rows = _epoch_rows(n_train, n_epoch, rng)
        batches = _batches(n_epoch, cfg.vq_batch_size, rng)
        if rows is not None:
            batches = [rows[b] for b in batches]
        for idx in batches:
            lr = _lr_at(state["step"], total, cfg.vq_lr, cfg.warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x = x_train[torch.as_tensor(idx, device=device)]
            static = np.flatnonzero(rng.random(len(idx)) < cfg.vq_p_static)
            if len(static):  # a few windows become a frame of theirs held still (module docstring)
                frames = rng.integers(0, train_joints.shape[1], size=len(static))
                held = mm.init_features(train_joints[idx[static], frames], cfg.window, data.init_floor_mm)
                x = x.clone()
                x[torch.as_tensor(static, device=device)] = torch.from_numpy(normalizer.transform(held)).to(device)
            loss, perplexity = _vqvae_loss(model, x, cfg, mean, std)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            state["step"] += 1
            loss_sum += float(loss.detach())
            ppl_sum += float(perplexity)
            resets += model.quantizer.last_resets
            bar.update(1)
        n = max(len(batches), 1)
        return {"loss": loss_sum / n, "perplexity": ppl_sum / n, "resets_per_step": resets / n, "lr": lr}

    def validate() -> dict:
        if len(val) == 0:
            return {"val_mpjpe_mm": None}
        codes = mm.encode_features(model, normalizer, val.features, device=device)
        recon = mm.decode_codes(model, normalizer, codes, device=device)
        counts = np.bincount(codes.reshape(-1), minlength=cfg.codebook_size)
        static = mm.decode_codes(model, normalizer, mm.encode_features(model, normalizer, static_val, device=device),
                                 device=device)
        return {"val_mpjpe_mm": float(mpjpe(recon, target_val)), "val_static_mpjpe_mm": float(mpjpe(static, static_target)),
                "val_codes_used": float(np.count_nonzero(counts) / cfg.codebook_size),
                "val_perplexity": float(perplexity_of(torch.from_numpy(codes), cfg.codebook_size))}

    stage = _Stage("vqvae", out_dir, model, optimizer, epochs=cfg.vq_epochs, meta=meta, public_file=mm.VQVAE_FILE)
    state = stage.run(run_epoch, validate, "val_mpjpe_mm", steps_per_epoch, progress=progress, resume=resume,
                      on_progress=on_progress)
    return model.eval(), state


# ---------------------------------------------------------------------- stage 2
def _stage2_inputs(data: MotionData, vqvae: MotionVQVAE, normalizer: MotionNormalizer, cfg: MotionConfig,
                   device) -> dict:
    """Codes of every window by the frozen VQ-VAE, split into train / validation groups by length
    (validation capped at ``cfg.val_windows`` in all, in proportion to the groups)."""
    val_sizes = {name: int(data.split(ws)[1].sum()) for name, ws in (("short", data.short), ("long", data.long))}
    val_caps = _epoch_quotas(val_sizes, cfg.val_windows) if cfg.val_windows is not None else {}
    groups = {}
    for name, ws in (("short", data.short), ("long", data.long)):
        if len(ws) == 0:
            continue
        codes = mm.encode_features(vqvae, normalizer, ws.features, device=device)
        is_train, is_val = data.split(ws)
        is_val = _capped_mask(is_val, val_caps.get(name), cfg.seed, _VAL_CAP)
        groups[name] = {"train": (ws.subset(is_train), codes[is_train]), "val": (ws.subset(is_val), codes[is_val])}
    return groups


def _text_rows(ws: WindowSet, frame: np.ndarray, rng: np.random.Generator | None, p_pose_text: float) -> np.ndarray:
    """Caption index per window: the window's caption, or (probability p_pose_text) the pose
    caption of its init frame."""
    ids = ws.caption.copy()
    if rng is not None and p_pose_text > 0:
        use_pose = rng.random(len(ws)) < p_pose_text
        ids[use_pose] = ws.pose_caption[np.flatnonzero(use_pose), frame[use_pose]]
    return ids


@torch.no_grad()
def _evaluate_transformer(model: MotionTransformer, batches: list[tuple], *, text: bool = True, init: bool = True) -> dict:
    """Teacher-forced cross-entropy and top-1 accuracy over (text_emb, init_codes, codes) batches."""
    model.eval()
    ce_sum = correct = tokens = 0.0
    for text_emb, init_codes, codes in batches:
        logits = model(text_emb if text else None, init_codes if init else None, codes)
        ce_sum += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), codes.reshape(-1), reduction="sum"))
        correct += float((logits.argmax(-1) == codes).sum())
        tokens += codes.numel()
    return {"ce": ce_sum / max(tokens, 1), "acc": correct / max(tokens, 1)}


def _train_transformer(data: MotionData, vqvae: MotionVQVAE, normalizer: MotionNormalizer, cfg: MotionConfig,
                       out_dir: Path, meta: dict, *, device, progress: bool, resume: bool, on_progress
                       ) -> tuple[MotionTransformer, dict, dict]:
    torch.manual_seed(_seed_from(cfg.seed, _TF_INIT))
    model = MotionTransformer(**cfg.transformer_kwargs()).to(device)
    if model.code_vectors is not None:
        model.set_code_vectors(vqvae.quantizer.codebook)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.tf_lr, betas=(0.9, 0.99), weight_decay=cfg.tf_weight_decay)
    groups = _stage2_inputs(data, vqvae, normalizer, cfg, device)
    embeddings = torch.from_numpy(np.asarray(data.embeddings, dtype=np.float32)).to(device)
    # validation: fixed seeded init poses, the windows' own captions
    val_rng = np.random.default_rng([cfg.seed, _TF_VAL])
    val_batches = []
    for g in groups.values():
        ws, codes = g["val"]
        if len(ws) == 0:
            continue
        _, init = init_codes_of(ws, val_rng, cfg, vqvae, normalizer, data.init_floor_mm, device)
        for start in range(0, len(ws), 256):
            sl = slice(start, start + 256)
            val_batches.append((embeddings[torch.as_tensor(ws.caption[sl], device=device)],
                                torch.as_tensor(init[sl], device=device), torch.as_tensor(codes[sl], device=device)))
    train_sizes = {name: len(g["train"][0]) for name, g in groups.items()}
    quotas = _epoch_quotas(train_sizes, cfg.epoch_windows)
    steps_per_epoch = max(sum(len(_batches(n, cfg.tf_batch_size, np.random.default_rng(0))) for n in quotas.values()), 1)
    total = cfg.tf_epochs * steps_per_epoch

    def run_epoch(epoch: int, state: dict, bar) -> dict:
        rng = np.random.default_rng([cfg.seed, _TF_EPOCH, epoch])
        torch.manual_seed(int(rng.integers(2**62)))
        plan = []
        for name in sorted(groups):
            ws, codes = groups[name]["train"]
            if len(ws) == 0:
                continue
            rows = _epoch_rows(len(ws), quotas[name], rng)
            if rows is not None:
                ws, codes = ws.subset(rows), codes[rows]
            frame, init = init_codes_of(ws, rng, cfg, vqvae, normalizer, data.init_floor_mm, device)
            text_ids = _text_rows(ws, frame, rng, cfg.p_pose_text)
            text_keep = rng.random(len(ws)) >= cfg.p_text
            init_keep = rng.random(len(ws)) >= cfg.p_init
            corrupt = rng.random(codes.shape) < cfg.p_corrupt
            noisy = np.where(corrupt, rng.integers(0, cfg.codebook_size, size=codes.shape), codes)
            arrays = (text_ids, init, codes, noisy, text_keep, init_keep)
            plan += [(arrays, idx) for idx in _batches(len(ws), cfg.tf_batch_size, rng)]
        order = rng.permutation(len(plan))
        model.train()
        loss_sum = correct = tokens = 0.0
        for b in order:
            (text_ids, init, codes, noisy, text_keep, init_keep), idx = plan[b]
            lr = _lr_at(state["step"], total, cfg.tf_lr, cfg.warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            t = lambda a, dtype=None: torch.as_tensor(a[idx], device=device, dtype=dtype)  # noqa: E731
            target = t(codes, torch.long)
            logits = model(embeddings[t(text_ids, torch.long)], t(init, torch.long), t(noisy, torch.long),
                           text_keep=t(text_keep), init_keep=t(init_keep))
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            state["step"] += 1
            loss_sum += float(loss.detach()) * target.numel()
            correct += float((logits.detach().argmax(-1) == target).sum())
            tokens += target.numel()
            bar.update(1)
        return {"loss": loss_sum / max(tokens, 1), "train_acc": correct / max(tokens, 1)}

    def validate() -> dict:
        if not val_batches:
            return {"val_ce": None, "val_acc": None}
        r = _evaluate_transformer(model, val_batches)
        return {"val_ce": r["ce"], "val_acc": r["acc"]}

    stage = _Stage("transformer", out_dir, model, optimizer, epochs=cfg.tf_epochs, meta=meta,
                   public_file=mm.TRANSFORMER_FILE)
    state = stage.run(run_epoch, validate, "val_ce", steps_per_epoch, progress=progress, resume=resume,
                      on_progress=on_progress)
    ablation = {}
    if val_batches:  # the ablation modes of the one model, on the validation windows
        for key, kwargs in (("text_and_init", {}), ("no_text", {"text": False}), ("no_init", {"init": False}),
                            ("neither", {"text": False, "init": False})):
            ablation[key] = _evaluate_transformer(model, val_batches, **kwargs)
    return model.eval(), state, ablation


# ---------------------------------------------------------------------- the whole run
def _config_doc(cfg: MotionConfig, data: MotionData, text_model_id: str | None, *, complete: bool, progress: str | None,
                n_sets: int) -> dict:
    return {"format": mm.MODEL_FORMAT, "version": mm.MODEL_VERSION, "complete": complete, "progress": progress,
            "layout": mm.LAYOUT, "n_joints": N_JOINTS, "feature_dim": DIM, "fps": cfg.fps,
            "window_length": cfg.window, "r": cfg.r, "n_init_codes": cfg.window // cfg.r, "max_frames": cfg.max_frames,
            "init_floor_mm": data.init_floor_mm, "config": cfg.to_dict(),
            "vqvae": cfg.vqvae_kwargs(), "transformer": cfg.transformer_kwargs(),
            "text_encoder": {"name": "minilm", "model_id": text_model_id, "dim": EMBEDDING_DIM},
            "describer": data.describer,
            "data": {"n_sets": n_sets, "fingerprint": data.fingerprint, "clips": data.n_clips,
                     "skipped_clips": data.skipped_clips, "windows": len(data.short), "long_windows": len(data.long),
                     "val_clips": data.val_clips.tolist()},
            "features": "posecurator.synthesis.motion_repr (HumanML3D-style, 54-d); inputs normalised by normalizer.npz",
            "output": "sample(): (N, S, frames, 17, 3) world mm, Z up, frame 0 pelvis over the origin facing +X"}


def _captions_table(data: MotionData, cfg: MotionConfig) -> CaptionTable:
    parts = [(data.short, cfg.window), (data.long, cfg.max_frames)]
    text = np.concatenate([data.texts[ws.caption] for ws, _ in parts]) if len(data.texts) else np.zeros(0, str)
    pose_ids, pose_counts = np.unique(np.concatenate([data.short.pose_caption.reshape(-1)]), return_counts=True)
    return CaptionTable(sample_id=np.concatenate([ws.sample_id for ws, _ in parts]), text=text,
                        source=np.concatenate([ws.source for ws, _ in parts]),
                        clip=np.concatenate([ws.clip for ws, _ in parts]),
                        frame_start=np.concatenate([ws.frame_start for ws, _ in parts]),
                        frame_stop=np.concatenate([ws.frame_start + length for ws, length in parts]),
                        attrs={"per": "window", "window": cfg.window, "long_window": cfg.max_frames,
                               "windows": len(data.short), "long_windows": len(data.long),
                               "val_clips": data.val_clips.tolist(),
                               "pose_captions": {"source": "describer", "p_pose_text": cfg.p_pose_text,
                                                 "texts": data.texts[pose_ids].tolist(),
                                                 "frames": pose_counts.tolist()}})


def _history_doc(states: dict) -> dict:
    return {stage: {"epochs": s["history"], "best_epoch": s["best_epoch"], "best_score": s["best_score"],
                    "steps": s["step"], "training_time_s": s["train_time_s"]} for stage, s in states.items()}


def _codebook_usage(vqvae: MotionVQVAE, normalizer: MotionNormalizer, features: np.ndarray, n_codes: int, device) -> dict:
    codes = mm.encode_features(vqvae, normalizer, features, device=device)
    counts = np.bincount(codes.reshape(-1), minlength=n_codes)
    return {"codes_used": int(np.count_nonzero(counts)), "fraction_used": float(np.count_nonzero(counts) / n_codes),
            "perplexity": float(perplexity_of(torch.from_numpy(codes), n_codes))}


def train_motion_model(poses, *, out_dir, config: MotionConfig | None = None, progress: bool = True,
                       resume: bool = True, describer: PoseDescriber | None = None, encoder=None, log=None) -> dict:
    """Train the motion model on ``poses`` (a PoseSet or a list of them: 3D, h36m17, 30 fps) into
    ``out_dir`` (module docstring; the folder layout: :mod:`posecurator.train.motion_model`).

    resume: continue a run of the same config and data in ``out_dir`` (a finished stage is not
    redone; a finished model is returned as it is); False starts afresh, removing its files.
    describer: the PoseDescriber of the captions (default options; stored in config.json).
    encoder: the text encoder (default ``load_text_encoder()``; its package is required).
    log: called with short progress lines (None: quiet). Returns the summary dict (also
    ``summary.json``)."""
    cfg = config or MotionConfig()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(out_dir, "exists and is not a folder")
    old_threads = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    try:
        with torch.random.fork_rng(devices=[]), output_lock(out_dir, wait=False):
            return _train(poses, out_dir, cfg, progress=progress, resume=resume, describer=describer, encoder=encoder,
                          log=log or (lambda message: None))
    finally:
        torch.set_num_threads(old_threads)


def _train(poses, out_dir: Path, cfg: MotionConfig, *, progress, resume, describer, encoder, log) -> dict:
    wall0 = time.perf_counter()
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise PoseCuratorError(f"device {cfg.device!r} asked for, but torch sees no CUDA GPU (use --device cpu)")
    device = torch.device(cfg.device)
    encoder = encoder or load_text_encoder(num_threads=cfg.num_threads, device=str(device))  # fails early (pip hint) without the package
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir, _is_motion_file)
    if not resume:
        for path in out_dir.iterdir():
            if _is_motion_file(path.name):
                path.unlink(missing_ok=True)
    sets = [poses] if isinstance(poses, PoseSet) else list(poses)

    # a finished model of the same config and data: nothing to do
    finished = _finished_summary(out_dir, cfg) if resume else None
    log("preparing windows, captions and text embeddings")
    t0 = time.perf_counter()
    data = prepare_motion_data(sets, cfg, describer=describer, encoder=encoder, embed=finished is None,
                               cache_path=out_dir / EMBEDDING_CACHE)
    if finished is not None and finished.get("data", {}).get("fingerprint") == data.fingerprint:
        return {**finished, "resumed": True, "stages_trained": []}
    prep_s = time.perf_counter() - t0
    if finished is not None:  # finished on other data: the stage check below says so
        data = prepare_motion_data(sets, cfg, describer=describer, encoder=encoder, cache_path=out_dir / EMBEDDING_CACHE)
    meta = {"config": {k: v for k, v in cfg.to_dict().items() if k not in _RESUMABLE_CHANGES},
            "fingerprint": data.fingerprint}
    if resume:  # refuse another config's or data's folder before anything in it is rewritten
        for stage in STAGES:
            _checked_state(out_dir, stage, meta)
    is_train, is_val = data.split(data.short)
    normalizer = fit_normalizer(data.short.features[is_train])
    atomic_savez(out_dir / mm.NORMALIZER_FILE, **normalizer.to_arrays())
    _captions_table(data, cfg).to_json(out_dir / mm.CAPTIONS_FILE)
    text_model_id = data.text_model_id

    def write_config(complete: bool, progress_text: str | None) -> None:
        atomic_write_json(out_dir / mm.CONFIG_FILE, _config_doc(cfg, data, text_model_id, complete=complete,
                                                                progress=progress_text, n_sets=len(sets)))

    write_config(False, "stage 1 (VQ-VAE)")
    log(f"{int(is_train.sum())} training windows of {cfg.window} frames (mirrored copies included), {int(is_val.sum())} "
        f"validation ({len(data.val_clips)} clips), "
        f"{len(data.long)} of {cfg.max_frames}; {len(data.texts)} distinct captions ({prep_s:.0f} s)")
    stages_trained = []
    vqvae, vq_state = _train_vqvae(data, normalizer, cfg, out_dir, meta, device=device, progress=progress, resume=resume,
                                   on_progress=lambda p: write_config(False, p))
    if not vq_state["skipped"]:
        stages_trained.append("vqvae")
    usage = _codebook_usage(vqvae, normalizer, data.short.features[is_train & ~data.short.mirrored], cfg.codebook_size, device)
    log(f"VQ-VAE: validation reconstruction {_fmt(vq_state['best_score'])} mm; {usage['codes_used']} of "
        f"{cfg.codebook_size} codes used, perplexity {usage['perplexity']:.0f}")
    write_config(False, "stage 2 (transformer)")
    transformer, tf_state, ablation = _train_transformer(data, vqvae, normalizer, cfg, out_dir, meta, device=device,
                                                         progress=progress, resume=resume,
                                                         on_progress=lambda p: write_config(False, p))
    if not tf_state["skipped"]:
        stages_trained.append("transformer")
    states = {"vqvae": vq_state, "transformer": tf_state}
    ckpt.write_json(out_dir / mm.HISTORY_FILE, _history_doc(states))
    vq_best = _best_record(vq_state)
    tf_best = _best_record(tf_state)
    summary = {
        "model_dir": str(out_dir), "preset": cfg.preset_name or None, "seed": cfg.seed, "device": cfg.device,
        "data": {"clips": data.n_clips, "skipped_clips": data.skipped_clips, "windows": len(data.short),
                 "train_windows": int(is_train.sum()), "mirrored_train_windows": int((is_train & data.short.mirrored).sum()),
                 "val_windows": int(is_val.sum()),
                 "long_windows": len(data.long), "val_clips": len(data.val_clips), "captions": len(data.texts),
                 "fingerprint": data.fingerprint},
        "vqvae": {"val_mpjpe_mm": vq_state["best_score"], "best_epoch": vq_state["best_epoch"], "epochs": cfg.vq_epochs,
                  "val_codes_used": vq_best.get("val_codes_used"), "val_perplexity": vq_best.get("val_perplexity"),
                  "val_static_mpjpe_mm": vq_best.get("val_static_mpjpe_mm"),
                  "train_codebook": usage, "training_time_s": vq_state["train_time_s"]},
        "transformer": {"val_ce": tf_state["best_score"], "val_acc": tf_best.get("val_acc"),
                        "best_epoch": tf_state["best_epoch"], "epochs": cfg.tf_epochs, "val_modes": ablation,
                        "training_time_s": tf_state["train_time_s"]},
        "training_time_s": vq_state["train_time_s"] + tf_state["train_time_s"],
        "wall_time_s": time.perf_counter() - wall0, "prep_time_s": prep_s,
        "resumed": bool(vq_state["resumed"] or tf_state["resumed"]), "stages_trained": stages_trained,
        "text_model_id": text_model_id,
    }
    atomic_write_json(out_dir / mm.SUMMARY_FILE, summary)
    write_config(True, None)
    return summary


def _best_record(state: dict) -> dict:
    for record in state["history"]:
        if record["epoch"] == state["best_epoch"]:
            return record
    return {}


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def _finished_summary(out_dir: Path, cfg: MotionConfig) -> dict | None:
    """summary.json of a finished model of this config in ``out_dir`` (None otherwise)."""
    try:
        doc = mm.read_model_config(out_dir)
    except DataError:
        return None
    if not doc.get("complete"):
        return None
    old = {k: v for k, v in doc.get("config", {}).items() if k not in _RESUMABLE_CHANGES}
    new = {k: v for k, v in cfg.to_dict().items() if k not in _RESUMABLE_CHANGES}
    if old != new or not (out_dir / mm.SUMMARY_FILE).is_file():
        return None
    try:
        summary = json.loads((out_dir / mm.SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None
