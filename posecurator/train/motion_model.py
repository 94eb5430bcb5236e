"""A trained PoseSyn motion model, loaded from its folder: :func:`load_motion_model` ->
:class:`MotionModel` (the VQ-VAE, the code transformer and the feature normaliser together).

What it does (PoseSyn Sec. 3.2, Fig. 4):

* :meth:`MotionModel.encode_init`: a mis-predicted pose (world mm, Z up) held still for T frames
  (``static_motion``), turned into features, normalised and encoded: its M = T / r initial-motion
  codes S_MR (Eq. 4);
* :meth:`MotionModel.sample`: the transformer generates codes from a caption's text embedding
  and/or S_MR (Eq. 5), the VQ-VAE decodes them, the features are de-normalised and integrated into
  joints (:func:`~posecurator.synthesis.motion_repr.motion_to_joints`): motions that start at the
  origin facing +X (canonical start), world mm, Z up;
* :meth:`MotionModel.reconstruct`: a motion through the VQ-VAE alone (its evaluation).

Before encoding, a pose is put on the ground the way the training init poses were: shifted
vertically so that its lowest joint is at ``init_floor_mm`` (the median height of the lowest
joint over the training frames, ~ankle height). A prediction from 2D has no floor of its own
(``camera_to_upright`` puts its lowest joint at 0), so the init codes then do not depend on where
a caller put the floor.

The folder (written by :func:`posecurator.train.motion_trainer.train_motion_model`):

=========================  ===================================================================
``config.json``            format name and version, ``complete``, the MotionConfig, layout
                           (h36m17), feature dims, r, M, the model keywords, the text encoder's
                           model_id, the describer's options, ``init_floor_mm``, the data
``normalizer.npz``         per-feature mean and std (D,) of the training windows
``vqvae.safetensors``      VQ-VAE weights and codebook buffers (best validation epoch)
``transformer.safetensors``  transformer weights (best validation epoch)
``history.json``           per-epoch figures of both stages
``captions.json``          the training captions and where they came from
``summary.json``           the run's figures (reconstruction MPJPE, codebook usage, accuracy, time)
=========================  ===================================================================
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from posecurator.errors import DataError
from posecurator.models.motion_transformer import MotionTransformer
from posecurator.models.motion_vqvae import MotionVQVAE
from posecurator.synthesis.motion_repr import (DIM, N_JOINTS, MotionNormalizer, joints_to_motion,
                                               motion_to_joints, static_motion)

MODEL_FORMAT = "posecurator-motion-model"
MODEL_VERSION = 1
LAYOUT = "h36m17"
CONFIG_FILE = "config.json"
NORMALIZER_FILE = "normalizer.npz"
VQVAE_FILE = "vqvae.safetensors"
TRANSFORMER_FILE = "transformer.safetensors"
HISTORY_FILE = "history.json"
CAPTIONS_FILE = "captions.json"
SUMMARY_FILE = "summary.json"


# ---------------------------------------------------------------------- shared helpers
def ground_poses(poses, floor_mm: float) -> np.ndarray:
    """(..., 17, 3) world mm -> the same poses shifted along Z so each one's lowest joint is at
    ``floor_mm`` (float64)."""
    poses = np.asarray(poses, dtype=np.float64)
    return poses + np.array([0.0, 0.0, 1.0]) * (floor_mm - poses[..., :, 2].min(axis=-1))[..., None, None]


def init_features(poses_world, length: int, floor_mm: float) -> np.ndarray:
    """(N, 17, 3) world mm poses -> (N, length, 54) raw features of each pose, grounded
    (:func:`ground_poses`), held still for ``length`` frames (PoseSyn's F(J (x) T))."""
    return joints_to_motion(static_motion(ground_poses(poses_world, floor_mm), length))


def check_poses(poses, what: str = "poses") -> np.ndarray:
    """(N, 17, 3) finite float64, else a one-line DataError."""
    arr = np.asarray(poses, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (N_JOINTS, 3):
        raise DataError(None, f"{what} must be (N, {N_JOINTS}, 3) h36m17 joints in mm, got {arr.shape}")
    if not np.isfinite(arr).all():
        bad = int(np.argmax(~np.isfinite(arr).all(axis=(1, 2))))
        raise DataError(None, f"{what} has NaN or infinite coordinates (row {bad})")
    return arr


@torch.no_grad()
def encode_features(vqvae: MotionVQVAE, normalizer: MotionNormalizer, features: np.ndarray, *,
                    device="cpu", batch_size: int = 512) -> np.ndarray:
    """(W, T, 54) raw features -> (W, T / r) int64 codes (normalised, encoded in batches, eval)."""
    vqvae.eval()
    out = np.empty((len(features), features.shape[1] // vqvae.r), dtype=np.int64)
    for start in range(0, len(features), batch_size):
        x = torch.from_numpy(normalizer.transform(features[start:start + batch_size])).to(device)
        out[start:start + batch_size] = vqvae.encode(x).cpu().numpy()
    return out


@torch.no_grad()
def decode_codes(vqvae: MotionVQVAE, normalizer: MotionNormalizer, codes, *, device="cpu",
                 batch_size: int = 512) -> np.ndarray:
    """(W, M) codes -> (W, M * r, 17, 3) float32 world mm joints, canonical start."""
    codes = torch.as_tensor(np.asarray(codes), dtype=torch.long)
    vqvae.eval()
    out = np.empty((len(codes), codes.shape[1] * vqvae.r, N_JOINTS, 3), dtype=np.float32)
    for start in range(0, len(codes), batch_size):
        z = vqvae.decode(codes[start:start + batch_size].to(device)).cpu().numpy()
        out[start:start + batch_size] = motion_to_joints(normalizer.inverse_transform(z))
    return out


# ---------------------------------------------------------------------- the model
class MotionModel:
    """A trained motion model (module docstring); build it with :func:`load_motion_model`.

    Attributes: ``window_length`` (T, frames), ``r`` (frames per code), ``n_init_codes``
    (M = T / r), ``max_frames`` (the longest motion :meth:`sample` makes), ``codebook_size``,
    ``text_dim`` (384), ``text_model_id`` (the sentence encoder the captions were embedded with),
    ``describer_params`` (the PoseDescriber options of the training captions), ``fps``,
    ``init_floor_mm``, ``config`` (the folder's config.json), ``device``, ``vqvae``,
    ``transformer``, ``normalizer``.
    """

    def __init__(self, vqvae: MotionVQVAE, transformer: MotionTransformer, normalizer: MotionNormalizer,
                 config: dict, *, device="cpu", model_dir=None):
        self.vqvae, self.transformer, self.normalizer = vqvae.eval(), transformer.eval(), normalizer
        self.config, self.device = config, torch.device(device)
        self.model_dir = None if model_dir is None else Path(model_dir)
        self.window_length = int(config["window_length"])
        self.r = int(vqvae.r)
        self.n_init_codes = self.window_length // self.r
        self.max_frames = int(transformer.max_codes) * self.r
        self.codebook_size = int(vqvae.codebook_size)
        self.text_dim = int(transformer.text_dim)
        self.text_model_id = config.get("text_encoder", {}).get("model_id")
        self.describer_params = config.get("describer", {})
        self.fps = float(config.get("fps", 30.0))
        self.init_floor_mm = float(config["init_floor_mm"])

    def __repr__(self) -> str:
        return (f"MotionModel(T={self.window_length}, r={self.r}, M={self.n_init_codes}, codes={self.codebook_size}, "
                f"max_frames={self.max_frames}, dir={str(self.model_dir)!r})")

    def encode_init(self, poses_world, *, batch_size: int = 512) -> np.ndarray:
        """(N, 17, 3) poses in a Z-up world, mm (e.g. ``camera_to_upright`` of a camera-frame
        prediction) -> (N, M) int64 initial-motion codes S_MR (Eq. 4): each pose grounded, held
        still for T frames, turned into features, normalised and encoded."""
        poses = check_poses(poses_world, "poses_world")
        feats = init_features(poses, self.window_length, self.init_floor_mm)
        return encode_features(self.vqvae, self.normalizer, feats, device=self.device, batch_size=batch_size)

    def sample(self, text_emb, init_codes, *, n_per_sample: int = 8, n_frames: int | None = None,
               temperature: float = 1.0, top_k: int | None = 50, seed: int = 0, batch_size: int = 512,
               n: int | None = None) -> np.ndarray:
        """Motions of N conditions -> (N, n_per_sample, n_frames, 17, 3) float32 world mm, Z up,
        each starting at the origin facing +X.

        text_emb: (N, 384) caption embeddings (the model's ``text_model_id`` encoder) or None
        ("no text"); init_codes: (N, M) from :meth:`encode_init` or None ("no init"); ``n``: the
        number of conditions when both are None (unconditional). n_frames: a multiple of r up to
        ``max_frames`` (default T). top_k (None: all codes) and temperature shape the sampling.
        Batched over all N * n_per_sample sequences (``batch_size`` at a time); seeded: the same
        seed gives the same motions, whatever ``batch_size``."""
        n_frames = self.window_length if n_frames is None else int(n_frames)
        if n_frames < self.r or n_frames % self.r or n_frames > self.max_frames:
            raise ValueError(f"n_frames must be a multiple of {self.r} between {self.r} and {self.max_frames}, got {n_frames}")
        if int(n_per_sample) < 1 or int(batch_size) < 1:
            raise ValueError(f"n_per_sample and batch_size must be >= 1, got {n_per_sample}, {batch_size}")
        text, init, count = self._conditions(text_emb, init_codes, n)
        n_codes = n_frames // self.r
        rows = count * int(n_per_sample)
        generator = torch.Generator().manual_seed(int(seed))
        # all the randomness up front, so the motions do not depend on batch_size
        uniforms = torch.rand(rows, n_codes, generator=generator, dtype=torch.float64)
        repeat = torch.arange(count).repeat_interleave(int(n_per_sample))
        codes = torch.empty(rows, n_codes, dtype=torch.long)
        for start in range(0, rows, int(batch_size)):
            idx = repeat[start:start + int(batch_size)]
            codes[start:start + len(idx)] = self.transformer.sample(
                None if text is None else text[idx].to(self.device), None if init is None else init[idx].to(self.device),
                n_codes=n_codes, temperature=temperature, top_k=top_k, uniforms=uniforms[start:start + len(idx)],
                n=len(idx)).cpu()
        joints = decode_codes(self.vqvae, self.normalizer, codes, device=self.device, batch_size=batch_size)
        return joints.reshape(count, int(n_per_sample), n_frames, N_JOINTS, 3)

    def _conditions(self, text_emb, init_codes, n):
        text = init = None
        counts = set()
        if text_emb is not None:
            text = torch.as_tensor(np.asarray(text_emb, dtype=np.float32))
            if text.ndim != 2 or text.shape[1] != self.text_dim:
                raise ValueError(f"text_emb must be (N, {self.text_dim}), got {tuple(text.shape)}")
            if not torch.isfinite(text).all():
                raise ValueError("text_emb has NaN or infinite values")
            counts.add(len(text))
        if init_codes is not None:
            init = torch.as_tensor(np.asarray(init_codes), dtype=torch.long)
            if init.ndim != 2 or init.shape[1] != self.n_init_codes:
                raise ValueError(f"init_codes must be (N, {self.n_init_codes}), got {tuple(init.shape)}")
            if len(init) and (int(init.min()) < 0 or int(init.max()) >= self.codebook_size):
                raise ValueError(f"init_codes must lie in 0..{self.codebook_size - 1}")
            counts.add(len(init))
        if len(counts) > 1:
            raise ValueError(f"text_emb and init_codes have different numbers of rows: {sorted(counts)}")
        if not counts:
            if n is None:
                raise ValueError("give text_emb, init_codes or both (or n for unconditional samples)")
            counts.add(int(n))
        return text, init, counts.pop()

    def reconstruct(self, joints, *, batch_size: int = 512) -> np.ndarray:
        """(W, T, 17, 3) world mm motions (T a multiple of r, T >= 2) -> (W, T, 17, 3) float32
        through the VQ-VAE (features, normalise, encode, decode, de-normalise, integrate); compare
        with ``canonicalize(joints)``."""
        joints = np.asarray(joints, dtype=np.float64)
        if joints.ndim != 4 or joints.shape[2:] != (N_JOINTS, 3) or joints.shape[1] % self.r or joints.shape[1] < 2:
            raise ValueError(f"joints must be (W, T, {N_JOINTS}, 3) with T a multiple of {self.r}, got {joints.shape}")
        codes = encode_features(self.vqvae, self.normalizer, joints_to_motion(joints), device=self.device,
                                batch_size=batch_size)
        return decode_codes(self.vqvae, self.normalizer, codes, device=self.device, batch_size=batch_size)


# ---------------------------------------------------------------------- loading
def read_model_config(model_dir) -> dict:
    """The folder's config.json, checked (format, version, layout, dims); a one-line DataError
    otherwise. Does not require the training to have finished."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise DataError(model_dir, "not a folder (a motion model is the folder posecurator motion-train writes)")
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        raise DataError(path, "missing: not a motion model folder (posecurator motion-train writes one)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(path, f"cannot read the model config: {' '.join(str(e).split())[:160]}") from None
    if not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise DataError(path, f"not a motion model (format {got!r}, expected {MODEL_FORMAT!r})")
    version = doc.get("version")
    if not isinstance(version, int) or version > MODEL_VERSION:
        raise DataError(path, f"motion model format version {version} is newer than this posecurator understands "
                              f"({MODEL_VERSION}); upgrade posecurator")
    if doc.get("layout") != LAYOUT or doc.get("feature_dim") != DIM:
        raise DataError(path, f"a model of layout {doc.get('layout')!r} with {doc.get('feature_dim')}-d features; "
                              f"this posecurator's motion model is {LAYOUT} with {DIM}-d features")
    for key in ("window_length", "vqvae", "transformer", "init_floor_mm"):
        if key not in doc:
            raise DataError(path, f"lacks {key!r} (damaged model folder)")
    return doc


def _load_weights(module: torch.nn.Module, path: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise DataError(path, "missing (damaged model folder, or training did not finish: rerun posecurator motion-train)")
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise DataError(path, f"cannot read weights: {' '.join(str(e).split())[:160]}") from None
    try:
        module.load_state_dict(weights)
    except RuntimeError as e:
        raise DataError(path, f"weights do not fit the model in {CONFIG_FILE}: {str(e).splitlines()[0][:160]}") from None


def load_normalizer(path) -> MotionNormalizer:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "missing (damaged model folder)")
    try:
        with np.load(path, allow_pickle=False) as z:
            return MotionNormalizer.from_arrays({"mean": z["mean"], "std": z["std"]})
    except Exception as e:  # zip, key, shape or pickle-refusal errors all mean a bad file
        raise DataError(path, f"cannot read the feature normaliser: {' '.join(str(e).split())[:160]}") from None


def load_motion_model(model_dir, device: str = "cpu") -> MotionModel:
    """The trained motion model in ``model_dir`` on ``device`` (eval mode). A folder of another
    format, layout or newer version, an unfinished training or missing / damaged files give a
    one-line DataError naming the file."""
    model_dir = Path(model_dir)
    doc = read_model_config(model_dir)
    if not doc.get("complete"):
        progress = doc.get("progress") or "an earlier stage"
        raise DataError(model_dir / CONFIG_FILE, f"training did not finish (stopped in {progress}); rerun "
                                                 f"posecurator motion-train with -o {model_dir} to finish it")
    try:
        vqvae = MotionVQVAE(**doc["vqvae"])
        transformer = MotionTransformer(**doc["transformer"])
    except (TypeError, ValueError) as e:
        raise DataError(model_dir / CONFIG_FILE, f"bad model keywords: {' '.join(str(e).split())[:160]}") from None
    if vqvae.dim != DIM or transformer.n_codes != vqvae.codebook_size or \
            transformer.n_init * vqvae.r != int(doc["window_length"]):
        raise DataError(model_dir / CONFIG_FILE, "the VQ-VAE, transformer and window length do not fit together")
    _load_weights(vqvae, model_dir / VQVAE_FILE)
    _load_weights(transformer, model_dir / TRANSFORMER_FILE)
    normalizer = load_normalizer(model_dir / NORMALIZER_FILE)
    device = torch.device(device)
    return MotionModel(vqvae.to(device), transformer.to(device), normalizer, doc, device=device, model_dir=model_dir)


def model_files(model_dir) -> dict[str, Path]:
    """The public files of a model folder by role (for callers that copy or list them)."""
    model_dir = Path(os.fspath(model_dir))
    return {"config": model_dir / CONFIG_FILE, "normalizer": model_dir / NORMALIZER_FILE,
            "vqvae": model_dir / VQVAE_FILE, "transformer": model_dir / TRANSFORMER_FILE,
            "history": model_dir / HISTORY_FILE, "captions": model_dir / CAPTIONS_FILE,
            "summary": model_dir / SUMMARY_FILE}
