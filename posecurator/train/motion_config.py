"""The configuration of PoseSyn's motion model and its training (:class:`MotionConfig`) and its
named presets (:data:`PRESETS`); see :mod:`posecurator.train.motion_trainer`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from posecurator.config_base import from_known_keys, from_preset, without_later_defaults
from posecurator.synthesis.motion_repr import DIM
from posecurator.synthesis.text_embedding import EMBEDDING_DIM

INIT_ANCHORS = ("first", "random")
# fields added after models were trained -> their default (left out of config.json at it)
_LATER_FIELDS = {"epoch_windows": None, "val_windows": None}


@dataclass
class MotionConfig:
    """Everything that defines a motion model and its training (stored in config.json).

    Data: ``window`` T frames (a multiple of r = 2 ** vq_down; the init motion's length, so M =
    T / r init codes), windows every ``stride`` frames; the transformer also learns from windows
    of ``max_frames`` (every ``long_stride``), the longest motion it makes (a multiple of r, >= T);
    ``fps`` the frame rate the data must have; ``val_fraction`` of the windows' clips held out;
    ``mirror``: the training windows are also used mirrored (:func:`mirror_joints`; captions
    described from the mirrored motion, label phrases with left and right swapped).
    VQ-VAE: ``vq_width``, ``vq_depth`` (residual blocks per level), ``vq_down`` (r = 2 ** vq_down),
    ``codebook_size``, ``code_dim``, ``ema_decay``, ``dead_count`` (codes whose moving-average
    count falls below it are reset); AdamW with ``vq_lr`` (linear warm-up over ``warmup_steps``,
    cosine decay to a tenth), ``vq_batch_size``, ``vq_epochs``; loss weights ``commit_weight``,
    ``vel_weight``, ``pos_weight`` (module docstring); ``vq_p_static``: the fraction of training
    windows replaced by one of their frames held still and grounded, as :meth:`encode_init` feeds
    a pose, so that the codes of a still pose keep the pose.
    Transformer: ``tf_width``, ``tf_layers``, ``tf_heads``, ``tf_dropout``; AdamW with ``tf_lr``,
    ``tf_weight_decay``, ``tf_batch_size``, ``tf_epochs``; condition dropout ``p_text``,
    ``p_init``; ``p_corrupt`` input codes replaced at random; ``p_pose_text`` pose captions;
    init pose perturbation ``init_noise_mm`` (std per joint coordinate) and ``init_rotation_deg``;
    ``init_anchor``: which frame of a training window its init pose is: "first" (the motion starts
    at the pose: the transformer knows where the pose belongs, whatever length it generates) or
    "random" (any frame); ``init_code_vectors``: the init tokens also see the VQ-VAE's code
    vectors of the init codes (a projection of them), not only a learned embedding per code.
    ``epoch_windows``: at most this many training windows per epoch of each stage (a seeded
    random subset drawn afresh every epoch, split between the short and long windows in
    proportion), so that a large source (Bandai: 50x HDM05's windows) trains in bounded time;
    ``val_windows``: at most this many validation windows (one seeded subset, fixed for the run).
    None: all of them (both are left out of config.json when None, so earlier models' configs and
    fingerprints are unchanged).
    ``seed`` seeds everything; ``device`` ("cpu", "cuda"); ``num_threads`` torch CPU threads
    (None: leave torch's setting).
    """

    window: int = 32
    stride: int = 8
    max_frames: int = 64
    long_stride: int = 16
    fps: float = 30.0
    val_fraction: float = 0.1
    mirror: bool = True
    # stage 1: VQ-VAE
    vq_width: int = 256
    vq_depth: int = 2
    vq_down: int = 2
    codebook_size: int = 512
    code_dim: int = 256
    ema_decay: float = 0.99
    dead_count: float = 1.0
    vq_lr: float = 5e-4
    vq_batch_size: int = 64
    vq_epochs: int = 60
    commit_weight: float = 0.02
    vel_weight: float = 0.5
    pos_weight: float = 0.1
    vq_p_static: float = 0.1
    # stage 2: transformer
    tf_width: int = 256
    tf_layers: int = 4
    tf_heads: int = 4
    tf_dropout: float = 0.1
    tf_lr: float = 5e-4
    tf_weight_decay: float = 0.01
    tf_batch_size: int = 64
    tf_epochs: int = 60
    p_text: float = 0.1
    p_init: float = 0.1
    p_corrupt: float = 0.2
    p_pose_text: float = 0.2
    init_anchor: str = "first"
    init_code_vectors: bool = True
    init_noise_mm: float = 20.0
    init_rotation_deg: float = 10.0
    warmup_steps: int = 200
    epoch_windows: int | None = None
    val_windows: int | None = None
    seed: int = 0
    device: str = "cpu"
    num_threads: int | None = 1
    preset_name: str = field(default="", compare=False)

    def __post_init__(self):
        r = 2 ** self.vq_down
        if self.vq_down < 0 or self.window < 2 * r or self.window % r:
            raise ValueError(f"window must be a multiple of r = 2 ** vq_down = {r} and at least {2 * r}, got {self.window}")
        if self.max_frames < self.window or self.max_frames % r:
            raise ValueError(f"max_frames must be a multiple of {r} and >= window ({self.window}), got {self.max_frames}")
        if self.stride < 1 or self.long_stride < 1:
            raise ValueError("stride and long_stride must be >= 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        for name in ("p_text", "p_init", "p_corrupt", "p_pose_text", "vq_p_static"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if min(self.vq_epochs, self.tf_epochs, self.vq_batch_size, self.tf_batch_size) < 1:
            raise ValueError("epochs and batch sizes must be >= 1")
        if self.tf_width % self.tf_heads:
            raise ValueError(f"tf_width {self.tf_width} must be a multiple of tf_heads {self.tf_heads}")
        if self.init_anchor not in INIT_ANCHORS:
            raise ValueError(f"init_anchor must be one of {', '.join(INIT_ANCHORS)}, got {self.init_anchor!r}")
        for name in ("epoch_windows", "val_windows"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {getattr(self, name)}")
        if self.codebook_size < 2 or self.fps <= 0 or self.init_noise_mm < 0 or self.init_rotation_deg < 0:
            raise ValueError("codebook_size must be >= 2, fps > 0, init noise and rotation >= 0")

    @property
    def r(self) -> int:
        return 2 ** self.vq_down

    @classmethod
    def preset(cls, name: str, **overrides) -> "MotionConfig":
        """A named configuration ("cpu", "cpu-large", "gpu", "tiny"); fields may be overridden."""
        return from_preset(cls, PRESETS, name, "motion-model", **overrides)

    def to_dict(self) -> dict:
        return without_later_defaults(dataclasses.asdict(self), _LATER_FIELDS)

    @classmethod
    def from_dict(cls, d: dict) -> "MotionConfig":
        return from_known_keys(cls, d, "motion")

    def vqvae_kwargs(self) -> dict:
        return dict(dim=DIM, width=self.vq_width, depth=self.vq_depth, down=self.vq_down, codebook_size=self.codebook_size,
                    code_dim=self.code_dim, ema_decay=self.ema_decay, reset_dead=True, dead_count=self.dead_count)

    def transformer_kwargs(self) -> dict:
        return dict(n_codes=self.codebook_size, width=self.tf_width, layers=self.tf_layers, heads=self.tf_heads,
                    text_dim=EMBEDDING_DIM, n_init=self.window // self.r, max_codes=self.max_frames // self.r,
                    dropout=self.tf_dropout, code_dim=self.code_dim if self.init_code_vectors else None)


# "cpu": sized on all of HDM05 (11k poses: 1,328 training windows of 32 frames every 4 frames and
# their mirrored copies, 187 windows of 64, 17 validation clips) on the 2-core development machine
# with one torch thread. Measured (`posecurator motion-train ../shared/data/hdm05 --preset cpu`,
# lightly loaded machine): 11.8 min in all (captions and embeddings 0.3 min, VQ-VAE 4.1 min at
# ~11 steps/s, transformer 7.0 min at ~4.5 steps/s); the cores shared with other work made steps
# up to 2.5 times slower in earlier runs, so allow up to ~30 min. Quality: validation
# reconstruction MPJPE 99.8 mm (training windows 52 mm: HDM05 is little data), a still pose 102
# mm, 213 of 256 codes used by the training windows (perplexity 160); transformer validation top-1
# accuracy 52% (CE 2.15; without init codes 2.27, without text 2.49, without both 2.84); the best
# transformer epoch was 18 of 40. Experiments behind it (1,500 VQ-VAE steps each): width 128
# reached the validation error of width 256 at a third of the cost per step; more steps mattered
# more than width; 256 codes reconstruct as well as 512 on this little data and leave the
# transformer fewer classes; mirroring and stride 4 halved the train/validation gap. "dead_count"
# 0.1: with 512 latent vectors a batch, T2M-GPT's threshold of 1 (meant for 4096 a batch) reset
# ~100 codes every step.
# "cpu-large": the "cpu" model for a source far larger than HDM05 (Bandai: 417k poses, 50x HDM05's
# windows) in the same time: windows every 16 frames (long ones every 32), each epoch a fresh
# random 4,000 of the training windows (about the "cpu" preset's steps per epoch), validation on
# a fixed 600 windows.
# "gpu": larger model and longer training for a GPU and a large set (Bandai); not measured (no
# GPU on the development machine). "tiny": tests and smoke runs (seconds).
PRESETS: dict[str, dict] = {
    "cpu": dict(stride=4, mirror=True, vq_width=128, vq_depth=2, codebook_size=256, code_dim=128, dead_count=0.1,
                vq_epochs=70, vq_batch_size=64, vq_lr=1e-3, tf_width=192, tf_layers=4, tf_heads=4, tf_epochs=40,
                tf_batch_size=64, tf_lr=5e-4, warmup_steps=200, num_threads=1),
    "cpu-large": dict(stride=16, long_stride=32, mirror=True, vq_width=128, vq_depth=2, codebook_size=256, code_dim=128,
                      dead_count=0.1, vq_epochs=70, vq_batch_size=64, vq_lr=1e-3, tf_width=192, tf_layers=4, tf_heads=4,
                      tf_epochs=40, tf_batch_size=64, tf_lr=5e-4, warmup_steps=200, epoch_windows=4000, val_windows=600,
                      num_threads=1),
    "gpu": dict(stride=4, mirror=True, max_frames=128, long_stride=16, vq_width=512, vq_depth=3, codebook_size=512,
                code_dim=512, dead_count=1.0, vq_epochs=100, vq_batch_size=256, vq_lr=2e-4, tf_width=512, tf_layers=8,
                tf_heads=8, tf_epochs=100, tf_batch_size=128, tf_lr=2e-4, warmup_steps=1000, num_threads=None,
                device="cuda"),
    "tiny": dict(vq_width=32, vq_depth=1, codebook_size=32, code_dim=16, vq_epochs=3, vq_batch_size=32, vq_lr=2e-3,
                 tf_width=32, tf_layers=1, tf_heads=2, tf_epochs=2, tf_batch_size=32, tf_lr=2e-3, warmup_steps=5,
                 num_threads=1),
}
