"""Real motions as a stand-in for PoseSyn's motion model: the real-motion baseline.

:class:`RealMotionBank` has the sampling interface of the motion model
(:mod:`posecurator.train.motion_model`: ``window_length``, ``n_init_codes``, ``encode_init``,
``sample``) but draws canonicalized windows of real motion capture
(:func:`posecurator.synthesis.motion_repr.motion_windows` + ``canonicalize``) instead of
generating motions:

* with init codes (a hard sample's mis-predicted pose), the ``top_k`` windows whose FIRST frame is
  nearest to that pose (root-relative, turned to face one way: :func:`pose_code`) are the
  candidates, and ``n_per_sample`` of them are drawn without replacement (seeded), so each
  motion starts near the pose the estimator got wrong ("retrieve real motions near the hard
  pose");
* without init codes, ``n_per_sample`` windows are drawn at random;
* the text embedding is ignored (a bank of mocap windows has no text to match), which the
  caller records.

It is the baseline "what if real motions near the hard poses were used instead of synthesized
ones", and it lets the whole loop run (and be tested) without a trained motion model.
"""

from __future__ import annotations

import numpy as np

from posecurator.poseset import PoseSet
from posecurator.skeleton.canonical import pose_features
from posecurator.synthesis.motion_repr import N_JOINTS, canonicalize, motion_windows


def pose_code(poses_world) -> np.ndarray:
    """(N, 17, 3) world mm (Z up) -> (N, 51) float32: root-relative joints with the hips turned to
    one direction (facing is not part of a pose), in metres so distances stay small numbers."""
    x = np.asarray(poses_world, dtype=np.float64)
    if x.ndim != 3 or x.shape[1:] != (N_JOINTS, 3):
        raise ValueError(f"poses must be (N, {N_JOINTS}, 3), got {x.shape}")
    return (pose_features(x, canonical_yaw=True) / 1000.0).astype(np.float32)


class RealMotionBank:
    """Canonical real motion windows with the motion model's sampling interface (module docstring).

    ``RealMotionBank.from_poses(poses, length=T, stride=s)``; attributes ``window_length``,
    ``n_init_codes`` (51), ``windows_`` (W, T, 17, 3) float32 canonical, ``clips_`` (W,),
    ``starts_`` (W,), ``name``."""

    name = "real-mocap-windows"
    uses_text = False

    def __init__(self, windows, *, clips=None, starts=None, source: str = ""):
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim != 4 or windows.shape[2:] != (N_JOINTS, 3) or len(windows) == 0:
            raise ValueError(f"windows must be (W > 0, T, {N_JOINTS}, 3), got {windows.shape}")
        self.windows_ = windows
        self.clips_ = np.asarray(clips if clips is not None else np.full(len(windows), ""), dtype=str)
        self.starts_ = np.asarray(starts if starts is not None else np.zeros(len(windows)), dtype=np.int64)
        self.window_length = int(windows.shape[1])
        self.n_init_codes = 3 * N_JOINTS
        self.layout = "h36m17"
        self.source = source
        self._keys = pose_code(windows[:, 0])

    @classmethod
    def from_poses(cls, poses: PoseSet, *, length: int = 64, stride: int = 8) -> "RealMotionBank":
        """Every window of ``length`` frames every ``stride`` frames of ``poses``' clips, canonicalized."""
        win = motion_windows(poses, length=length, stride=stride)
        if len(win.joints) == 0:
            raise ValueError(f"no clip has {length} consecutive frames: no real motion window to draw")
        return cls(canonicalize(win.joints).astype(np.float32), clips=win.clip, starts=win.start,
                   source=",".join(sorted(set(np.unique(poses.source).tolist()))))

    def encode_init(self, poses_world) -> np.ndarray:
        """(N, 17, 3) world mm -> (N, 51) codes (:func:`pose_code`)."""
        return pose_code(poses_world)

    def sample(self, text_emb=None, init_codes=None, *, n_per_sample: int = 1, n_frames: int | None = None,
               temperature: float = 1.0, top_k: int | None = None, seed: int = 0) -> np.ndarray:
        """(N, S, n_frames, 17, 3) float32 canonical world mm (see the module docstring). N is the
        number of rows of ``init_codes`` (or of ``text_emb`` when there are no codes)."""
        n_frames = self.window_length if n_frames is None else int(n_frames)
        if not 2 <= n_frames <= self.window_length:
            raise ValueError(f"n_frames must be in 2..{self.window_length} (the bank's window length), got {n_frames}")
        if init_codes is None and text_emb is None:
            raise ValueError("give init codes or text embeddings (one row per motion to draw)")
        n = len(init_codes) if init_codes is not None else len(text_emb)
        S = int(n_per_sample)
        rng = np.random.default_rng([int(seed), 41])
        W = len(self.windows_)
        if init_codes is None:
            choice = rng.integers(0, W, size=(n, S))
        else:
            codes = np.asarray(init_codes, dtype=np.float32)
            if codes.shape != (n, self.n_init_codes):
                raise ValueError(f"init codes must be ({n}, {self.n_init_codes}), got {codes.shape}")
            k = min(W, max(int(top_k or 0), S, 1))
            d = (codes ** 2).sum(1)[:, None] - 2.0 * codes @ self._keys.T + (self._keys ** 2).sum(1)[None, :]
            nearest = np.argsort(d, axis=1, kind="stable")[:, :k]                  # (N, k)
            # S of the k nearest, without replacement while k >= S (seeded)
            pick = np.argsort(rng.random((n, k)), axis=1)[:, :S] if k >= S else rng.integers(0, k, size=(n, S))
            choice = np.take_along_axis(nearest, pick, axis=1)
        return self.windows_[choice][:, :, :n_frames].copy()
