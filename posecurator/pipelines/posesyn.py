"""PoseSyn's loop for a 2D-to-3D lifter: error extraction -> captions -> motion synthesis ->
alignment and projection -> the 3D-error filter -> fine-tuning (PoseSyn Sec. 3, Tab. 3-5).

Stages of :func:`run_posesyn` (each cached, see "Resuming"):

==========  ==========================================================================================
``eem``     :func:`posecurator.pipelines.hard_samples.run_hard` on the 2D data with the estimator:
            hard / easy / random samples, predictions, root translations, captions and (when the
            motion model reads text) text embeddings
``msm``     motions for the hard samples (:func:`sample_motions`): the motion model
            (:mod:`posecurator.train.motion_model`) conditioned as the variant says, or real motion
            windows (:class:`posecurator.synthesis.real_motions.RealMotionBank`, the real-motion
            baseline, used when no motion model is given)
``pairs``   each motion aligned to a reference (easy) sample and projected through its camera
            (:func:`posecurator.synthesis.pairs.synthesized_pairs`)
``filter``  the estimator on every pair's 2D, Eq. 6 against the synthesized 3D, kept below ``tau``
            (:mod:`posecurator.selection.filter3d`), the tau sweep, and what the filter removes
``finetune``  the lifter on real + kept synthetic poses (:func:`finetune`): FT from the estimator's
            weights for a fraction of its schedule, or FS from scratch
==========  ==========================================================================================

Variants (Tab. 4 and Fig. 7 of the paper, and baselines): ``full`` (text + the mis-predicted pose
as init codes), ``no_init`` (text only), ``no_text`` (init codes only), ``mispredicted_only``
(no motion synthesis: the hard sample's predicted pose held still, PoseSyn's Fig. 7a),
``random_samples`` (random instead of hard samples: "w/o EEM"; the references stay the easy
samples, so only the one factor changes).

How the synthetic data trains the lifter: the kept pairs join the real training poses as 3D
(world frame, Z up, mm) and are seen, like every training pose, through the trainer's fresh
random cameras each epoch; the reference-camera 2D of the pairs is used for the filter (and for
the image-model export), not as fixed training pairs. The validation part is the real training
data's own clip split (the same cut the estimator's run made), so FT and FS are judged on real
poses only.

Output ``RUN_DIR``: ``lifter/`` (the final lifter run folder) with ``config.json`` and
``best.safetensors`` also at the top (so ``posecurator evaluate RUN_DIR DATA`` works like
``posecurator evaluate RUN_DIR/lifter DATA``), ``synthetic.pcs`` (the kept pairs), ``rejected.pcs``
(the removed ones), ``hard/`` (the error extraction output), ``summary.json``,
``plots/plot_data.json`` (each hard sample beside its synthesized motions; error before/after per
activity when a 3D test set is given), ``control/`` (with ``control``: the same fine-tuning on the
real poses alone), ``stages/``.

Resuming: stage ``NAME`` writes its folder ``RUN_DIR/stages/NAME-<key>`` under a temporary name
(``.NAME-<key>.partial``) and renames it when complete; ``<key>`` hashes the stage's inputs (the
keys of the stages before it, fingerprints of the data, weights and motion model it reads) and
its options. A rerun of the same command reuses every finished stage ("reusing stage NAME"), a
killed fine-tuning resumes from its last checkpoint (the lifter trains inside the partial folder
under the same key), and a changed option reruns from the first stage it changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from posecurator.errors import DataError, PoseCuratorError
from posecurator.fileio import atomic_link, atomic_write_json, json_default, output_lock, replace_dir, staged_dir, test_kill_point
from posecurator.poseset import PoseSet, read_meta, read_npz_arrays
from posecurator.selection.filter3d import DEFAULT_TAU_MM, TAU_SWEEP_MM, filter_by_3d_error, removal_evidence, tau_sweep
from posecurator.skeleton.layouts import H36M17
from posecurator.synthesis.alignment import up_in_camera, upright_from_camera
from posecurator.synthesis.motion_repr import canonicalize, static_motion
from posecurator.synthesis.pairs import ReferenceSet, camera_frame_joints, synthesized_pairs

VARIANTS = ("full", "no_init", "no_text", "mispredicted_only", "random_samples")
MODES = ("ft", "fs")
TEXT_VARIANTS = ("full", "no_init", "random_samples")
INIT_VARIANTS = ("full", "no_text", "random_samples")
DEFAULT_FRAMES_WITHOUT_MODEL = 32  # about one second at 30 fps, for real windows and still poses
REAL_MOTION_STRIDE = 4
GALLERY_SIZE = 12
GALLERY_FRAMES = 4
STAGE_VERSIONS = {"eem": 1, "msm": 1, "pairs": 1, "filter": 1, "finetune": 1, "control": 1}
HARD_FILES = ("summary.json", "hard.pcs", "easy.pcs", "random.pcs", "predictions.npz", "scores.npz", "captions.json")


def _one_line(e) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 120 else text[:117] + "..."



def _write_json(path: Path, obj) -> None:
    atomic_write_json(path, obj, default=json_default)


def _round_trip(obj):
    return json.loads(json.dumps(obj, default=json_default))


# ------------------------------------------------------------------------- the hard-sample folder
@dataclass
class HardSamples:
    """A `posecurator hard` output folder, read and checked (:func:`load_hard_dir`)."""

    path: Path
    hard: PoseSet
    easy: PoseSet
    random: PoseSet
    predictions: dict          # sample_id (sorted), joints3d (N, 17, 3), f, c
    translation: dict          # sample_id (sorted), translation (N, 3)
    captions: dict             # {sample id: caption}
    embeddings: dict | None    # {caption: (384,) float32} or None (the hard run had --no-embed)
    summary: dict
    embedding_model_id: str | None = None  # the sentence encoder the captions were embedded with

    def selection(self, which: str) -> PoseSet:
        """"hard", "easy" or "random" samples."""
        return {"hard": self.hard, "easy": self.easy, "random": self.random}[which]

    def _lookup(self, table: dict, key: str, ids, what: str, file: str) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        known = table["sample_id"]
        pos = np.clip(np.searchsorted(known, ids), 0, max(len(known) - 1, 0))
        found = (known[pos] == ids) if len(known) else np.zeros(len(ids), bool)
        if not found.all():
            raise DataError(self.path / file, f"no {what} for sample {int(ids[~found][0])} (a file from another hard run?)")
        return table[key][pos]

    def predictions_of(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """The estimator's root-relative camera-frame 3D (N, 17, 3) and the solved root
        translation (N, 3) of samples ``ids``."""
        pred = self._lookup(self.predictions, "joints3d", ids, "prediction", "predictions.npz").astype(np.float64)
        trans = self._lookup(self.translation, "translation", ids, "root translation", "scores.npz").astype(np.float64)
        return pred, trans

    def references(self) -> ReferenceSet:
        """The easy samples as PoseSyn's references."""
        pred, trans = self.predictions_of(self.easy.sample_id)
        return ReferenceSet(self.easy, pred, trans)

    def captions_of(self, ids) -> list[str]:
        """The caption of each sample; DataError naming captions.json and the first sample without one."""
        out = []
        for i in np.asarray(ids, dtype=np.int64).tolist():
            text = self.captions.get(int(i))
            if not text:
                raise DataError(self.path / "captions.json", f"no caption for sample {int(i)}: rerun `posecurator hard` "
                                                             "or give --captions with every hard sample")
            out.append(text)
        return out

    def text_embeddings_of(self, ids) -> np.ndarray:
        """(N, 384) float32 embeddings of the samples' captions."""
        texts = self.captions_of(ids)
        if self.embeddings is None:
            raise DataError(self.path / "text_embeddings.npz", "missing: the hard run was made with --no-embed, and the "
                                                               "motion model reads text; rerun `posecurator hard` without it")
        missing = [t for t in texts if t not in self.embeddings]
        if missing:
            raise DataError(self.path / "text_embeddings.npz", f"no embedding of the caption {missing[0][:60]!r}")
        return np.stack([self.embeddings[t] for t in texts]).astype(np.float32)


def load_hard_dir(path) -> HardSamples:
    """Read a `posecurator hard` output folder (one-line DataError when it is not one, is from
    another layout, or lacks a file)."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(path, "hard-sample folder not found (make one with `posecurator hard`)")
    missing = [f for f in HARD_FILES if not (path / f).exists()]
    if missing:
        raise DataError(path, f"not a `posecurator hard` output folder (missing {', '.join(missing)})")
    for name in ("hard.pcs", "easy.pcs", "random.pcs"):
        layout = read_meta(path / name).get("layout")
        if layout != H36M17.name:
            raise DataError(path / name, f"samples in layout {layout!r}, not {H36M17.name}: a hard-sample folder of another "
                                         f"layout; rerun `posecurator hard` with this posecurator")
    pred = read_npz_arrays(path / "predictions.npz", ["sample_id", "joints3d", "layout", "f", "c"], required=False)
    if "sample_id" not in pred or "joints3d" not in pred:
        raise DataError(path / "predictions.npz", "missing arrays sample_id / joints3d")
    if str(pred.get("layout", H36M17.name)) != H36M17.name or pred["joints3d"].shape[1:] != (H36M17.n_joints, 3):
        raise DataError(path / "predictions.npz", f"predictions in layout {str(pred.get('layout'))!r} with joints "
                                                  f"{pred['joints3d'].shape[1:]}, not {H36M17.name}: another layout")
    scores = read_npz_arrays(path / "scores.npz", ["sample_id", "translation"])
    try:
        summary = json.loads((path / "summary.json").read_text())
        cap = json.loads((path / "captions.json").read_text())
        captions = {int(i): str(t) for i, t in zip(cap["sample_id"], cap["text"])}
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(path, f"corrupt summary.json or captions.json: {_one_line(e)}") from None
    embeddings, model_id = None, None
    if (path / "text_embeddings.npz").is_file():
        emb = read_npz_arrays(path / "text_embeddings.npz", ["text", "embedding", "model_id"], required=False)
        if "text" not in emb or "embedding" not in emb:
            raise DataError(path / "text_embeddings.npz", "missing arrays text / embedding")
        embeddings = {str(t): v for t, v in zip(emb["text"].tolist(), emb["embedding"])}
        model_id = str(emb["model_id"]) if "model_id" in emb else None

    def sorted_table(ids, **cols):
        order = np.argsort(np.asarray(ids, dtype=np.int64), kind="stable")
        return {"sample_id": np.asarray(ids, dtype=np.int64)[order], **{k: np.asarray(v)[order] for k, v in cols.items()}}

    return HardSamples(path=path, hard=PoseSet.load(path / "hard.pcs"), easy=PoseSet.load(path / "easy.pcs"),
                       random=PoseSet.load(path / "random.pcs"),
                       predictions=sorted_table(pred["sample_id"], joints3d=pred["joints3d"]),
                       translation=sorted_table(scores["sample_id"], translation=scores["translation"]),
                       captions=captions, embeddings=embeddings, summary=summary, embedding_model_id=model_id)


# ---------------------------------------------------------------------------- motion sources
def load_motion_source(model_dir):
    """The motion model of ``model_dir`` (:func:`posecurator.train.motion_model.load_motion_model`),
    checked to be for the H36M17 layout; every failure to load it (another layout or format
    version, a checkpoint cut short, a missing module) is a one-line error naming the folder."""
    path = Path(model_dir)
    if not path.exists():
        raise DataError(path, "motion model folder not found")
    try:
        from posecurator.train.motion_model import load_motion_model
    except ModuleNotFoundError as e:
        if e.name not in ("posecurator.train.motion_model",):
            raise
        raise PoseCuratorError("this posecurator has no motion model yet (posecurator.train.motion_model); "
                               "use real motions (--real-motions) or --variant mispredicted_only") from None
    try:
        model = load_motion_model(path)
    except PoseCuratorError:
        raise
    except Exception as e:  # noqa: BLE001 - a truncated or foreign checkpoint raises anything; say so in one line
        raise DataError(path, f"cannot load the motion model (cut short, corrupt or of another version?): {_one_line(e)}") from None
    layout = getattr(model, "layout", H36M17.name)
    n_joints = getattr(model, "n_joints", H36M17.n_joints)
    if layout != H36M17.name or n_joints != H36M17.n_joints:
        raise DataError(path, f"the motion model was trained on layout {layout!r} ({n_joints} joints); PoseSyn here needs "
                              f"{H36M17.name} (17 joints)")
    return model


def reads_text(source) -> bool:
    """Whether a motion source is conditioned on text (a motion model is; real windows are not)."""
    return bool(getattr(source, "uses_text", True))


def motion_source_fingerprint(source, model_dir=None) -> str:
    """A hash of what a motion source samples from: the model folder's files, or the real windows."""
    h = hashlib.sha1()
    if model_dir is not None:
        for f in sorted(p for p in Path(model_dir).rglob("*") if p.is_file()):
            h.update(f.relative_to(model_dir).as_posix().encode())
            h.update(hashlib.sha1(f.read_bytes()).digest())
    elif source is not None and hasattr(source, "windows_"):
        h.update(np.ascontiguousarray(source.windows_).tobytes())
    return h.hexdigest()


def hard_poses_upright(hard: HardSamples, poses: PoseSet) -> np.ndarray:
    """(N, 17, 3) world mm: each sample's mis-predicted pose (the estimator's camera-frame 3D)
    turned upright with its camera's up direction, standing on the floor (the init pose PoseSyn
    gives the motion model)."""
    pred, _ = hard.predictions_of(poses.sample_id)
    table = poses.cameras
    up = np.stack([up_in_camera(table[int(i)] if 0 <= int(i) < len(table) else None) for i in poses.camera]) \
        if len(poses) else np.zeros((0, 3))
    return upright_from_camera(pred, up)


def sample_motions(source, hard: HardSamples, *, which: str = "hard", variant: str = "full", per_sample: int = 8,
                   n_frames: int | None = None, temperature: float = 1.0, top_k: int | None = None, seed: int = 0,
                   batch: int = 64, log=None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Motions for the ``which`` samples of a hard folder: (motions (H, S, L, 17, 3) float32
    canonical world mm, the samples' ids (H,), info: sampling time, sequences per second, what
    conditioned them). ``source``: a motion model or a :class:`RealMotionBank` (None only for
    ``mispredicted_only``, which needs no motion model)."""
    if variant not in VARIANTS:
        raise PoseCuratorError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    poses = hard.selection("random" if variant == "random_samples" else which)
    ids = poses.sample_id.astype(np.int64)
    upright = hard_poses_upright(hard, poses)
    t0 = time.perf_counter()
    if variant == "mispredicted_only":
        L = int(n_frames or getattr(source, "window_length", DEFAULT_FRAMES_WITHOUT_MODEL))
        still = canonicalize(static_motion(upright, L)).astype(np.float32)
        motions = np.repeat(still[:, None], per_sample, axis=1)
        info = {"conditioning": "none: the mis-predicted pose held still (no motion synthesis)"}
    else:
        if source is None:
            raise PoseCuratorError(f"variant {variant} needs a motion model or real motions")
        L = int(n_frames or source.window_length)
        uses_text = reads_text(source) and variant in TEXT_VARIANTS
        text = hard.text_embeddings_of(ids) if uses_text else None
        wanted = getattr(source, "text_model_id", None)
        if uses_text and wanted and hard.embedding_model_id and wanted != hard.embedding_model_id:
            raise DataError(hard.path / "text_embeddings.npz", f"captions embedded with {hard.embedding_model_id}, the motion "
                                                               f"model was trained with {wanted}; rerun `posecurator hard`")
        r, longest = int(getattr(source, "r", 1)), int(getattr(source, "max_frames", 0) or 0)
        if L % r or (longest and L > longest):
            raise PoseCuratorError(f"--frames must be a multiple of {r} up to {longest or L} for this motion model, got {L}")
        codes = source.encode_init(upright) if variant in INIT_VARIANTS else None
        if text is None and codes is None:
            # a source that reads no text, asked for a text-only variant: draw unconditioned
            text = np.zeros((len(ids), 384), np.float32)
        parts = []
        options = {} if top_k is None else {"top_k": int(top_k)}  # None: the sampler's own default
        for s in range(0, len(ids), batch):
            try:
                part = source.sample(None if text is None else text[s:s + batch], None if codes is None else codes[s:s + batch],
                                     n_per_sample=per_sample, n_frames=L, temperature=temperature, seed=seed + s, **options)
            except ValueError as e:  # the sampler's own check of its options (frames, temperature, top_k)
                raise PoseCuratorError(f"motion sampling: {_one_line(e)}") from None
            parts.append(np.asarray(part, dtype=np.float32))
        motions = np.concatenate(parts) if parts else np.zeros((0, per_sample, L, H36M17.n_joints, 3), np.float32)
        said = (["text"] if uses_text else []) + (["init codes of the mis-predicted pose"] if codes is not None else [])
        info = {"conditioning": " + ".join(said) or "none (unconditioned draws)"}
    elapsed = time.perf_counter() - t0
    expected = (len(ids), per_sample, L, H36M17.n_joints, 3)
    if motions.shape != expected:
        raise PoseCuratorError(f"the motion source returned motions of shape {motions.shape}, expected {expected}")
    n_seq = len(ids) * per_sample
    info.update({"source": getattr(source, "name", type(source).__name__) if source is not None else "none",
                 "samples": which if variant != "random_samples" else "random", "n_samples": len(ids), "per_sample": per_sample,
                 "frames": L, "sequences": n_seq, "sampling_s": elapsed, "sequences_per_s": n_seq / elapsed if elapsed > 0 else None})
    if log:
        log(f"[posesyn] {n_seq} motions of {L} frames for {len(ids)} samples in {elapsed:.1f} s ({info['conditioning']})")
    return motions, ids, info


# ------------------------------------------------------------------------------ the filter
def lift_and_filter(pairs: PoseSet, estimator, *, tau: float = DEFAULT_TAU_MM) -> dict:
    """The estimator on the pairs' 2D, Eq. 6 against their 3D: ``keep`` (N,), ``error`` (N,) mm,
    ``pred3d`` (N, 17, 3) root-relative camera frame, ``target3d`` likewise, ``sweep``."""
    pred = np.asarray(estimator.predict(pairs), dtype=np.float64)
    target = camera_frame_joints(pairs)
    target = target - target[:, :1]
    keep, error = filter_by_3d_error(pred, target, tau=tau)
    return {"keep": keep, "error": error, "pred3d": pred, "target3d": target, "sweep": tau_sweep(error, TAU_SWEEP_MM)}


# ------------------------------------------------------------------------------ fine-tuning
def run_train_config(run_dir):
    """The TrainConfig a lifter run was trained with (its config.json)."""
    from posecurator.train.checkpoint import read_json
    from posecurator.train.trainer import TrainConfig

    doc = read_json(Path(run_dir) / "config.json")
    if not isinstance(doc.get("train"), dict):
        raise DataError(Path(run_dir) / "config.json", "no training config (not a lifter run folder?)")
    try:
        return TrainConfig.from_dict(doc["train"])
    except (TypeError, ValueError) as e:
        raise DataError(Path(run_dir) / "config.json", f"bad training config: {_one_line(e)}") from None


def finetune(real: PoseSet, synthetic: PoseSet, *, real_run, out_dir, mode: str = "ft", config=None,
             epochs_fraction: float = 0.5, lr_factor: float = 1.0, progress: bool = False, resume: bool = True) -> dict:
    """The lifter on real + synthetic poses, written to ``out_dir`` (a lifter run folder).

    ``mode="ft"``: initialised from ``real_run``'s best weights, ``epochs_fraction`` of its
    schedule at ``lr_factor`` x its learning rate (as ADD's ``retrain="finetune"``); ``"fs"``: from
    scratch, the full schedule. ``config``: the TrainConfig (default: ``real_run``'s). The real
    poses are cut into train / validation parts by clip exactly as the trainer cut them for
    ``real_run``; the synthetic poses join the train part as 3D (world mm, seen through the
    trainer's random cameras like every pose); validation is on real poses only. Returns the
    trainer's summary plus ``n_real``, ``n_synthetic``, ``mode``, ``wall_s``."""
    from posecurator.pipelines.add import finetune_config
    from posecurator.train.trainer import LifterTrainer, split_by_clip

    if mode not in MODES:
        raise PoseCuratorError(f"unknown fine-tuning mode {mode!r}; known: {', '.join(MODES)}")
    if real.joints3d is None:
        raise DataError(None, "fine-tuning needs the real training poses in 3D")
    cfg = run_train_config(real_run) if config is None else config
    real3d = real.replace(joints2d=None, visibility=None, camera=None, bbox=None, cameras=[])
    real_part, val_part = split_by_clip(real3d, val_fraction=cfg.val_fraction, seed=cfg.seed, cut=cfg.val_cut)
    parts = [real_part]
    if synthetic is not None and len(synthetic):
        parts.append(synthetic.replace(joints2d=None, visibility=None, camera=None, bbox=None, cameras=[]))
    data = PoseSet.concatenate(parts, renumber=True)
    if mode == "ft":
        cfg = finetune_config(cfg, epochs_fraction=epochs_fraction, lr_factor=lr_factor)
    t0 = time.perf_counter()
    result = LifterTrainer(cfg).fit(data, out_dir=out_dir, val=val_part, init_from=real_run if mode == "ft" else None,
                                    resume=resume, progress=progress)
    result.update(n_real=len(real_part), n_synthetic=len(data) - len(real_part), mode=mode, wall_s=time.perf_counter() - t0,
                  train_config=cfg.to_dict())
    return result


# ------------------------------------------------------------------------------ stages
class StageFolders:
    """Stage folders ``root/NAME-<key>`` written under a temporary name and renamed when done
    (module docstring, "Resuming")."""

    def __init__(self, root: Path, *, log=None):
        self.root = Path(root)
        self.log = log or (lambda m: None)
        self.reused: dict[str, bool] = {}

    @staticmethod
    def key(name: str, **parts) -> str:
        text = json.dumps({"stage": name, "version": STAGE_VERSIONS.get(name, 1), **parts}, sort_keys=True,
                          default=json_default, separators=(",", ":"))
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def run(self, name: str, key: str, compute: Callable[[Path], dict], *, resumable: bool = False) -> tuple[Path, dict]:
        final = self.root / f"{name}-{key}"
        if (final / "stage.json").is_file():
            self.log(f"[posesyn] reusing stage {name}")
            self.reused[name] = True
            return final, json.loads((final / "stage.json").read_text())["result"]
        work = self.root / f".{name}-{key}.partial"
        if work.exists() and not resumable:
            shutil.rmtree(work)  # a killed run's half-made stage: made again
        work.mkdir(parents=True, exist_ok=True)
        result = _round_trip(compute(work))
        _write_json(work / "stage.json", {"stage": name, "key": key, "result": result})
        test_kill_point(f"posesyn-stage-{name}")
        if final.exists():
            shutil.rmtree(final)
        os.replace(work, final)
        self.reused[name] = False
        return final, result


def _file_sha1(*paths) -> str:
    h = hashlib.sha1()
    for p in paths:
        p = Path(p)
        h.update(p.read_bytes() if p.is_file() else b"-")
    return h.hexdigest()


def _poses_fingerprint(poses: PoseSet | None) -> str | None:
    if poses is None:
        return None
    h = hashlib.sha1()
    for name in ("joints3d", "joints2d", "visibility", "sample_id", "camera", "bbox"):
        value = getattr(poses, name)
        if value is not None:
            h.update(name.encode())
            h.update(np.ascontiguousarray(value).tobytes())
    h.update("\n".join(np.unique(poses.clip).tolist()).encode())
    h.update(json.dumps(poses.cameras, sort_keys=True, default=json_default).encode())
    return h.hexdigest()


def _quantiles(x) -> dict:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if not len(x):
        return {}
    qs = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
    return {f"q{int(q * 100):02d}": float(v) for q, v in zip(qs, np.quantile(x, qs))} | {"mean": float(x.mean()), "n": int(len(x))}


# ------------------------------------------------------------------------------ the loop
def run_posesyn(data_2d: PoseSet, *, estimator_run, train: PoseSet, motion_model_dir=None, out_dir,
                top: int = 500, bottom: int = 200, per_sample: int = 8, n_frames: int | None = None,
                tau: float = DEFAULT_TAU_MM, mode: str = "ft", seed: int = 0, variant: str = "full",
                real_motions: PoseSet | None = None, temperature: float = 1.0, top_k: int | None = None,
                n_random_cameras: int = 0, finetune_epochs: float = 0.5, finetune_lr: float = 1.0, train_config=None,
                test: PoseSet | None = None, captions_file=None, weights: dict | None = None, min_keypoints: int | None = 8,
                export_guidance_frames: int | None = None, control: bool = False, progress: bool = False,
                log=None) -> dict:
    """PoseSyn on ``data_2d`` (in-the-wild 2D, or a 3D set seen through random cameras) for the
    lifter of ``estimator_run`` trained on ``train``; writes ``out_dir`` (module docstring) and
    returns the summary (also ``out_dir/summary.json``).

    Motions: ``motion_model_dir`` (the motion model), else real motion windows of ``real_motions``
    (default: ``train``): the real-motion baseline. ``per_sample`` motions of ``n_frames`` frames
    (default: the model's window length, else 32) per hard sample; ``temperature``, ``top_k``
    passed to the sampler. ``top`` / ``bottom`` hard and easy samples (Eq. 2-3), ``tau`` the filter
    threshold (mm), ``mode`` "ft" | "fs", ``variant`` one of :data:`VARIANTS`,
    ``n_random_cameras`` extra random views per sequence (pairs only; training sees 3D),
    ``finetune_epochs`` / ``finetune_lr`` the FT schedule, ``train_config`` the TrainConfig
    (default: the estimator run's), ``test`` a 3D test set for the error before/after per
    activity, ``export_guidance_frames`` > 0 exports that many frames per kept sequence for
    image animation models (``guidance/``); ``control`` also fine-tunes on the real poses alone with
    the same schedule (``control/``), the comparison that tells the synthetic data's effect from
    the effect of more training."""
    if variant not in VARIANTS:
        raise PoseCuratorError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    if mode not in MODES:
        raise PoseCuratorError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    if top < 1 or bottom < 1 or per_sample < 1:
        raise PoseCuratorError(f"--top, --bottom and --per-sample must be >= 1, got {top}, {bottom}, {per_sample}")
    if not tau > 0:
        raise PoseCuratorError(f"tau must be > 0 mm, got {tau}")
    if train.joints3d is None or train.layout != H36M17.name:
        raise DataError(None, f"the training set must have 3D poses in {H36M17.name}")
    log = log or (lambda m: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with output_lock(out, wait=False):
        return _run(data_2d, out=out, estimator_run=Path(estimator_run), train=train, motion_model_dir=motion_model_dir,
                    top=top, bottom=bottom, per_sample=per_sample, n_frames=n_frames, tau=float(tau), mode=mode, seed=seed,
                    variant=variant, real_motions=real_motions, temperature=temperature, top_k=top_k,
                    n_random_cameras=n_random_cameras, finetune_epochs=finetune_epochs, finetune_lr=finetune_lr,
                    train_config=train_config, test=test, captions_file=captions_file, weights=weights,
                    min_keypoints=min_keypoints, export_guidance_frames=export_guidance_frames, control=control,
                    progress=progress, log=log)


def _run(data_2d, *, out: Path, estimator_run: Path, train, motion_model_dir, top, bottom, per_sample, n_frames, tau, mode,
         seed, variant, real_motions, temperature, top_k, n_random_cameras, finetune_epochs, finetune_lr, train_config, test,
         captions_file, weights, min_keypoints, export_guidance_frames, control, progress, log) -> dict:
    from posecurator.augment.plausibility import JointAnglePrior
    from posecurator.pipelines.hard_samples import run_hard
    from posecurator.synthesis.real_motions import RealMotionBank
    from posecurator.train.estimator import LifterEstimator

    t_start = time.perf_counter()
    estimator = LifterEstimator(estimator_run)  # a run folder cut short fails here, before any work
    cfg = run_train_config(estimator_run) if train_config is None else train_config
    stages = StageFolders(out / "stages", log=log)
    est_fp = _file_sha1(estimator_run / "best.safetensors", estimator_run / "config.json")
    train_fp = _poses_fingerprint(train)

    # the motion source first: a bad model folder is said before the error extraction runs
    source, source_desc = None, {"kind": "none"}
    if variant != "mispredicted_only":
        if motion_model_dir is not None:
            source = load_motion_source(motion_model_dir)
            source_desc = {"kind": "motion model", "path": str(motion_model_dir), "uses_text": reads_text(source)}
        else:
            bank_poses = train if real_motions is None else real_motions
            length = int(n_frames or DEFAULT_FRAMES_WITHOUT_MODEL)
            try:
                source = RealMotionBank.from_poses(bank_poses, length=length, stride=REAL_MOTION_STRIDE)
            except ValueError as e:
                raise DataError(None, f"real motions: {e}") from None
            source_desc = {"kind": "real motion windows (baseline)", "windows": int(len(source.windows_)), "uses_text": False,
                           "source": source.source}
    if n_frames is None:
        n_frames = int(getattr(source, "window_length", DEFAULT_FRAMES_WITHOUT_MODEL) or DEFAULT_FRAMES_WITHOUT_MODEL)
    needs_text = variant in TEXT_VARIANTS and source is not None and reads_text(source)

    # ---- EEM (+ captions and text embeddings)
    k_eem = stages.key("eem", data=_poses_fingerprint(data_2d), estimator=est_fp, top=top, bottom=bottom, seed=seed,
                       weights=weights, min_keypoints=min_keypoints, embed=needs_text,
                       captions=_file_sha1(captions_file) if captions_file else None)

    def eem(work: Path) -> dict:
        log(f"[posesyn] error extraction on {len(data_2d)} samples")
        t0 = time.perf_counter()
        summary = run_hard(data_2d, estimator, out_dir=work / "hard", top=top, bottom=bottom, weights=weights, seed=seed,
                           min_keypoints=min_keypoints, captions_file=captions_file, embed=needs_text, log=log)
        return {"eem_s": time.perf_counter() - t0, "n_scored": summary["n_scored"], "data": summary["data"]}

    eem_dir, eem_result = stages.run("eem", k_eem, eem)
    hard = load_hard_dir(eem_dir / "hard")

    # ---- MSM
    k_msm = stages.key("msm", eem=k_eem, source=motion_source_fingerprint(source, motion_model_dir), variant=variant,
                       per_sample=per_sample, n_frames=n_frames, temperature=temperature, top_k=top_k, seed=seed)

    def msm(work: Path) -> dict:
        motions, ids, info = sample_motions(source, hard, variant=variant, per_sample=per_sample, n_frames=n_frames,
                                            temperature=temperature, top_k=top_k, seed=seed, log=log)
        np.savez(work / "motions.npz", motions=motions, sample_id=ids)
        return info

    msm_dir, msm_info = stages.run("msm", k_msm, msm)

    # ---- align and project
    k_pairs = stages.key("pairs", msm=k_msm, seed=seed, views=n_random_cameras)

    def make_pairs(work: Path) -> dict:
        t0 = time.perf_counter()
        z = read_npz_arrays(msm_dir / "motions.npz", ["motions", "sample_id"])
        pairs = synthesized_pairs(z["motions"], z["sample_id"], hard.references(), seed=seed, captions=hard.captions,
                                  n_random_cameras=n_random_cameras)
        pairs.save(work / "pairs.pcs")
        return {"pairs_s": time.perf_counter() - t0, "n_pairs": len(pairs), **pairs.attrs["posesyn"]}

    pairs_dir, pairs_info = stages.run("pairs", k_pairs, make_pairs)
    pairs = PoseSet.load(pairs_dir / "pairs.pcs")
    log(f"[posesyn] {len(pairs)} pairs from {pairs_info['sequences']} sequences")

    # ---- filter (Eq. 6) and what it removes
    k_filter = stages.key("filter", pairs=k_pairs, estimator=est_fp, tau=tau, train=train_fp)

    def run_filter(work: Path) -> dict:
        t0 = time.perf_counter()
        res = lift_and_filter(pairs, estimator, tau=tau)
        keep = res["keep"]
        np.savez(work / "filter.npz", keep=keep, error=res["error"], sample_id=pairs.sample_id)
        if keep.any():  # an empty set has no chunk to write; the loader below knows an absent set is empty
            pairs.subset(keep).save(work / "kept.pcs")
        if (~keep).any():
            pairs.subset(~keep).save(work / "rejected.pcs")
        filter_s = time.perf_counter() - t0
        prior = JointAnglePrior().fit(train)
        evidence = removal_evidence(pairs.joints3d, keep, clip=pairs.clip, frame=pairs.frame, parents=H36M17.parents,
                                    visibility=pairs.visibility, prior=prior, real_poses=train.joints3d, seed=seed)
        evidence["error_mm"] = {"kept": _quantiles(res["error"][keep]), "removed": _quantiles(res["error"][~keep])}
        evidence["unliftable"] = int((~np.isfinite(res["error"])).sum())
        evidence["pass_rate_by_frame_quarter"] = _pass_by_quarter(keep, pairs.frame, int(pairs.frame.max()) + 1 if len(pairs) else 1)
        n = len(pairs)
        log(f"[posesyn] filter (tau {tau:g} mm): kept {int(keep.sum())} of {n} ({keep.mean() * 100 if n else 0:.1f} %)")
        return {"filter_s": filter_s, "tau_mm": tau, "n_pairs": n, "n_kept": int(keep.sum()),
                "pass_rate": float(keep.mean()) if n else None, "tau_sweep": res["sweep"],
                "error_mm": _quantiles(res["error"]), "what_it_removes": evidence}

    filter_dir, filter_info = stages.run("filter", k_filter, run_filter)
    kept = PoseSet.load(filter_dir / "kept.pcs") if (filter_dir / "kept.pcs").exists() else pairs.subset(slice(0, 0))

    # ---- fine-tuning
    train_cfg_doc = cfg.to_dict()
    k_ft = stages.key("finetune", filter=k_filter, train=train_fp, mode=mode, config=train_cfg_doc, estimator=est_fp,
                      epochs=finetune_epochs, lr=finetune_lr)

    def run_finetune(work: Path) -> dict:
        log(f"[posesyn] training the lifter ({mode.upper()}) on {len(train)} real + {len(kept)} synthetic poses")
        return finetune(train, kept, real_run=estimator_run, out_dir=work / "lifter", mode=mode, config=cfg,
                        epochs_fraction=finetune_epochs, lr_factor=finetune_lr, progress=progress, resume=True)

    ft_dir, ft_result = stages.run("finetune", k_ft, run_finetune, resumable=True)

    # ---- the control: the same schedule on the real poses alone (more training is not synthetic data's merit)
    control_result = None
    if control:
        k_ctl = stages.key("control", train=train_fp, mode=mode, config=train_cfg_doc, estimator=est_fp, epochs=finetune_epochs,
                           lr=finetune_lr)

        def run_control(work: Path) -> dict:
            log(f"[posesyn] control: the lifter ({mode.upper()}) on the {len(train)} real poses alone")
            return finetune(train, None, real_run=estimator_run, out_dir=work / "lifter", mode=mode, config=cfg,
                            epochs_fraction=finetune_epochs, lr_factor=finetune_lr, progress=progress, resume=True)

        ctl_dir, control_result = stages.run("control", k_ctl, run_control, resumable=True)
        _publish_dir(ctl_dir / "lifter", out / "control")

    # ---- the report: publish the lifter, the data, the summary and the plot data (cheap: always redone)
    _publish_lifter(ft_dir / "lifter", out)
    _publish_dir(eem_dir / "hard", out / "hard")
    for name in ("kept.pcs", "rejected.pcs"):
        target = out / ("synthetic.pcs" if name == "kept.pcs" else name)
        if (filter_dir / name).exists():
            _publish_dir(filter_dir / name, target)
        elif target.exists():
            shutil.rmtree(target)
    guidance = None
    if export_guidance_frames and len(kept):
        from posecurator.synthesis.pairs import export_guidance

        guidance = export_guidance(kept, out / "guidance", max_frames=export_guidance_frames)
    evaluation = _evaluate(test, estimator_run, out / "lifter", out / "control" if control else None) if test is not None else None
    filt = np.load(filter_dir / "filter.npz", allow_pickle=False)
    _write_plot_data(out / "plots", hard, pairs, filt["keep"], filt["error"], variant=variant, evaluation=evaluation)

    real_cfg_doc = json.loads((estimator_run / "config.json").read_text())
    from posecurator.train.trainer import data_fingerprint

    real_lifter = {"run": str(estimator_run), "best_val_mpjpe": _best_val(estimator_run),
                   "trained_on_this_train_set": real_cfg_doc.get("data", {}).get("fingerprint") == data_fingerprint(train)}
    times = {"eem_s": eem_result["eem_s"], "sampling_s": msm_info["sampling_s"], "sampling_sequences_per_s": msm_info["sequences_per_s"],
             "pairs_s": pairs_info["pairs_s"], "filter_s": filter_info["filter_s"], "finetune_s": ft_result["wall_s"],
             "loop_s": eem_result["eem_s"] + msm_info["sampling_s"] + pairs_info["pairs_s"] + filter_info["filter_s"] + ft_result["wall_s"],
             "this_call_s": time.perf_counter() - t_start}
    summary = {
        "method": "PoseSyn (lifting setting: rendering = projection through the reference camera)",
        "variant": variant, "mode": mode, "seed": seed,
        "options": {"top": top, "bottom": bottom, "per_sample": per_sample, "frames": n_frames, "tau_mm": tau,
                    "temperature": temperature, "top_k": top_k, "random_cameras": n_random_cameras,
                    "finetune_epochs": finetune_epochs, "finetune_lr": finetune_lr},
        "motion_source": {**source_desc, "conditioning": msm_info["conditioning"]},
        "data": {"input_samples": len(data_2d), "scored": eem_result["n_scored"], "hard": len(hard.hard), "easy": len(hard.easy),
                 "motion_samples": msm_info["n_samples"], "sequences": pairs_info["sequences"],
                 "dropped_sequences": pairs_info["dropped_sequences"], "frames_per_sequence": pairs_info["frames"],
                 "synthesized_pairs": filter_info["n_pairs"], "kept": filter_info["n_kept"], "pass_rate": filter_info["pass_rate"],
                 "real_training_poses": len(train),
                 "lifter_train_part": {"real": ft_result["n_real"], "synthetic": ft_result["n_synthetic"]}},
        "filter": {"tau_mm": tau, "error_mm": filter_info["error_mm"], "tau_sweep": filter_info["tau_sweep"],
                   "what_it_removes": filter_info["what_it_removes"]},
        "lifters": {"real": real_lifter,
                    "final": {k: ft_result.get(k) for k in ("best_val_mpjpe", "best_epoch", "epochs", "steps", "training_time_s",
                                                            "resumed")} | {"mode": mode},
                    "control_real_only": None if control_result is None else
                    {k: control_result.get(k) for k in ("best_val_mpjpe", "best_epoch", "epochs", "steps", "training_time_s")}},
        "training_data": "the kept synthetic poses join the real ones as 3D (world frame), seen through the trainer's random "
                         "cameras like every training pose; validation on the real clip split only",
        "evaluation": evaluation,
        "guidance": guidance,
        "times": times,
        "stages": {name: {"reused": reused} for name, reused in stages.reused.items()},
        "paths": {"lifter": "lifter", "control": "control" if control else None, "synthetic": "synthetic.pcs",
                  "rejected": "rejected.pcs", "hard": "hard",
                  "plots": "plots/plot_data.json", "evaluate": f"posecurator evaluate {out} DATASET"},
    }
    _write_json(out / "summary.json", summary)
    log(f"[posesyn] done: {filter_info['n_kept']} synthetic poses kept ({(filter_info['pass_rate'] or 0) * 100:.1f} %), "
        f"validation MPJPE {real_lifter['best_val_mpjpe']} -> {ft_result.get('best_val_mpjpe')} mm; results in {out}")
    return summary


def _pass_by_quarter(keep: np.ndarray, frame: np.ndarray, length: int) -> list:
    """Pass rate of the frames in each quarter of the motions (does it fall as a motion drifts from its start?)."""
    q = np.minimum((np.asarray(frame) * 4) // max(length, 1), 3)
    return [float(keep[q == k].mean()) if (q == k).any() else None for k in range(4)]


def _best_val(run_dir: Path):
    try:
        doc = json.loads((run_dir / "state.json").read_text())
        return doc.get("best_val_mpjpe")
    except (OSError, ValueError):
        return None


def _publish_dir(src: Path, dst: Path) -> None:
    """``dst`` becomes a copy of folder ``src`` (hard links where possible), replaced atomically."""
    tmp = dst.with_name(f".{dst.name}.publish")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, copy_function=_link_or_copy)
    replace_dir(tmp, dst)


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _publish_lifter(lifter_dir: Path, out: Path) -> None:
    """``out/lifter`` = the final lifter run folder; ``out/config.json`` and ``out/best.safetensors``
    name it too, so ``out`` itself is an evaluable run folder (as `posecurator add` does)."""
    _publish_dir(lifter_dir, out / "lifter")
    for name in ("best.safetensors", "config.json"):
        atomic_link(out / "lifter" / name, out / name)


def _evaluate(test: PoseSet, before_run: Path, after_run: Path, control_run: Path | None = None) -> dict:
    """The benchmark metrics of the estimator before and after (and of the real-only control),
    overall and per activity (MPJPE)."""
    from posecurator.train.evaluate import evaluate_run

    runs = {"before": before_run, "after": after_run, **({"control_real_only": control_run} if control_run else {})}
    res = {name: evaluate_run(run, test) for name, run in runs.items()}
    keys = [k for k in ("mpjpe", "pa_mpjpe", "pck3d", "auc", "pck_0.05", "pck_0.1") if k in res["before"]]
    out = {name: {k: r[k] for k in keys} for name, r in res.items()} | {"n_poses": res["before"].get("n_poses")}
    if "per_activity" in res["before"]:
        out["per_activity"] = {a: {name: r.get("per_activity", {}).get(a, {}).get("mpjpe") for name, r in res.items()}
                               for a in sorted(res["before"]["per_activity"])}
    return out


def _write_plot_data(folder: Path, hard: HardSamples, pairs: PoseSet, keep: np.ndarray, error: np.ndarray, *, variant: str,
                     evaluation: dict | None) -> None:
    """``plots/plot_data.json``: each of the first hard samples (hardest first) beside its
    synthesized motions (a few frames of each, 2D in the reference image and world 3D, kept or not,
    their error), and the error before/after per activity when a test set was evaluated."""
    folder.mkdir(parents=True, exist_ok=True)
    by_hard: dict[int, list[int]] = {}
    for r, h in enumerate(pairs.parents[:, 0].tolist()):
        by_hard.setdefault(int(h), []).append(r)
    pool = hard.random if variant == "random_samples" else hard.hard
    samples = []
    for i, sid in enumerate(pool.sample_id[:GALLERY_SIZE].tolist()):
        rows = np.asarray(by_hard.get(int(sid), []), dtype=np.int64)
        given = pool.joints2d[i] if pool.joints2d is not None else None
        vis = pool.visibility[i] if pool.visibility is not None else None
        motions = []
        for clip in dict.fromkeys(pairs.clip[rows].tolist()):
            seq = rows[pairs.clip[rows] == clip]
            seq = seq[np.argsort(pairs.frame[seq])]
            pick = seq[np.unique(np.linspace(0, len(seq) - 1, GALLERY_FRAMES).round().astype(int))]
            cam = pairs.cameras[int(pairs.camera[seq[0]])]
            motions.append({"clip": clip, "reference_sample_id": int(pairs.parents[seq[0], 1]), "width": cam["width"],
                            "height": cam["height"], "frames": pairs.frame[pick].tolist(),
                            "joints2d": np.where(np.isfinite(pairs.joints2d[pick]), pairs.joints2d[pick], None).tolist(),
                            "joints3d": np.round(pairs.joints3d[pick].astype(np.float64), 1).tolist(),
                            "kept": keep[pick].tolist(), "error_mm": [None if not np.isfinite(e) else round(float(e), 1)
                                                                      for e in error[pick]],
                            "sequence_pass_rate": float(keep[seq].mean())})
        samples.append({"sample_id": int(sid), "caption": hard.captions.get(int(sid), ""),
                        "given_2d": None if given is None else np.where((vis[:, None] > 0) & np.isfinite(given), given, None).tolist(),
                        "motions": motions})
    doc = {"bones": H36M17.bones.tolist(), "joints": list(H36M17.joints), "samples": samples,
           "per_activity": (evaluation or {}).get("per_activity")}
    _write_json(folder / "plot_data.json", doc)


# ------------------------------------------------------------------------------ synthesize only
def synthesize(hard_dir, *, source, out_dir, variant: str = "full", per_sample: int = 8, n_frames: int | None = None,
               temperature: float = 1.0, top_k: int | None = None, seed: int = 0, n_random_cameras: int = 0,
               export_frames: int | None = None, log=None) -> dict:
    """`posecurator synthesize`: motions for a hard folder's samples, aligned to its easy samples
    and projected; writes ``out_dir/pairs.pcs``, ``summary.json`` and (``export_frames``) the
    guidance export ``guidance/``. The folder is written under a temporary name and renamed."""

    hard = hard_dir if isinstance(hard_dir, HardSamples) else load_hard_dir(hard_dir)
    out = Path(out_dir)
    if out.exists() and not (out / "summary.json").is_file():
        raise DataError(out, "exists and is not a `posecurator synthesize` output; refusing to replace it")
    t0 = time.perf_counter()
    motions, ids, info = sample_motions(source, hard, variant=variant, per_sample=per_sample, n_frames=n_frames,
                                        temperature=temperature, top_k=top_k, seed=seed, log=log)
    pairs = synthesized_pairs(motions, ids, hard.references(), seed=seed, captions=hard.captions, n_random_cameras=n_random_cameras)
    with staged_dir(out) as tmp:
        pairs.save(tmp / "pairs.pcs")
        guidance = None
        if export_frames:
            from posecurator.synthesis.pairs import export_guidance

            guidance = export_guidance(pairs, tmp / "guidance", max_frames=export_frames)
        summary = {"hard_dir": str(hard.path), "variant": variant, "motions": info, "pairs": len(pairs), **pairs.attrs["posesyn"],
                   "guidance": guidance, "wall_s": time.perf_counter() - t0}
        _write_json(tmp / "summary.json", summary)
    return summary


def default_log(progress: bool):
    return (lambda m: print(m, file=sys.stderr)) if progress else (lambda m: None)


__all__ = ["VARIANTS", "MODES", "HardSamples", "load_hard_dir", "load_motion_source", "sample_motions", "lift_and_filter",
           "finetune", "run_posesyn", "synthesize", "run_train_config", "StageFolders"]
