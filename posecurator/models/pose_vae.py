"""Pose variational auto-encoder: the difficulty model of the VAE sampling method (paper 002).

The VAE is an MLP encoder/decoder on flattened keypoints: 2D (J x 2, as in the paper) or 3D
(J x 3). It is trained with the paper's Eq. 1,

    L = sum_j ||y_j - y^_j||^2 + lambda * KL[N(mu, sigma) || N(0, I)],

and a pose's difficulty is its reconstruction error (Eq. 2), ``sum_j ||y_j - y^_j||^2``, computed
deterministically from the mean latent code (``decode(mu)``).

Input normalisation (why: difficulty must reflect the pose *configuration*, not where the person
stands, how tall they are or which way they face):

* **root-relative**: 3D poses are centred on a root joint (the pelvis of H36M17); 2D poses, whose
  root may be unlabelled, on the centroid of their visible joints;
* **scale-normalised**: divided by the pose's RMS joint distance from that centre (over visible
  joints), so a normalised pose has RMS size 1 and errors are unitless fractions of body size
  (``score = 0.01`` means an RMS joint error of about 0.01 / J ** 0.5 of the body's RMS size);
* **heading-aligned** (3D only, optional): rotated about the vertical (Z) axis so that the
  right-hip -> left-hip vector points along +X. Uprightness is kept: lying down stays different
  from standing. 2D poses are not rotated (image-plane rotation is part of a 2D pose's difficulty).

Visibility masks (2D): joints with visibility 0 (COCO ``v = 0``) are zeroed in the input, the mask
is appended to the input so the encoder knows which joints are missing, and they are excluded from
the reconstruction loss and error. So that poses with few labelled joints do not look easy, the
masked sum is rescaled to J joints: ``err = J / n_visible * sum_{visible j} ||y_j - y^_j||^2``
(identical to Eq. 2 when every joint is visible).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

# Poses with fewer visible joints than this carry too little shape to score; they get NaN.
MIN_VISIBLE_JOINTS = 4
_SCALE_EPS = 1e-6


# ---------------------------------------------------------------------- normalisation
@dataclass(frozen=True)
class PoseNormalization:
    """How raw keypoints become VAE inputs (see the module docstring).

    ``root_joint``: index of the centring joint, or None for the visibility-weighted centroid.
    ``heading_joints``: (right_hip, left_hip) indices for 3D heading alignment, or None.
    """

    root_joint: int | None = None
    heading_joints: tuple[int, int] | None = None

    def to_dict(self) -> dict:
        return {"root_joint": self.root_joint,
                "heading_joints": None if self.heading_joints is None else list(self.heading_joints)}

    @classmethod
    def from_dict(cls, d: dict) -> "PoseNormalization":
        hj = d.get("heading_joints")
        return cls(root_joint=d.get("root_joint"), heading_joints=None if hj is None else (int(hj[0]), int(hj[1])))

    @classmethod
    def for_layout(cls, layout, dim: int, *, align_heading: bool = True) -> "PoseNormalization":
        """Defaults for a layout: 3D centred on its root (pelvis) and heading-aligned on the hips;
        2D centred on the visible-joint centroid and not rotated."""
        if dim == 2:
            return cls(root_joint=None, heading_joints=None)
        root = layout.parents.index(-1)
        heading = None
        if align_heading and "right_hip" in layout.joints and "left_hip" in layout.joints:
            heading = (layout.index("right_hip"), layout.index("left_hip"))
        return cls(root_joint=root, heading_joints=heading)


def normalize_poses(x: np.ndarray, visibility: np.ndarray | None = None, *,
                    norm: PoseNormalization = PoseNormalization()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched normalisation of raw poses.

    x: (N, J, D) float, D = 2 (pixels) or 3 (mm, Z up). visibility: (N, J), 1 = labelled, 0 = not
    (None = all labelled). Returns ``(normed (N, J, D) float32`` with unlabelled joints set to 0,
    ``mask (N, J) float32``, ``valid (N,) bool)``; ``valid`` is False where fewer than
    ``MIN_VISIBLE_JOINTS`` joints are labelled or the pose has no extent (those rows are all 0).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[2] not in (2, 3):
        raise ValueError(f"poses must be (N, J, 2|3), got {x.shape}")
    n, j, d = x.shape
    mask = np.ones((n, j)) if visibility is None else (np.asarray(visibility, dtype=np.float64) > 0).astype(np.float64)
    if mask.shape != (n, j):
        raise ValueError(f"visibility must be ({n}, {j}), got {mask.shape}")
    x = np.where(mask[..., None] > 0, x, 0.0)
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    count = mask.sum(axis=1)
    if norm.root_joint is not None:
        center = x[:, norm.root_joint]
    else:
        center = (mask[..., None] * x).sum(axis=1) / np.maximum(count, 1.0)[:, None]
    y = (x - center[:, None]) * mask[..., None]
    if norm.heading_joints is not None and d == 3:
        r, l = norm.heading_joints
        hip = y[:, l, :2] - y[:, r, :2]
        yaw = np.arctan2(hip[:, 1], hip[:, 0])
        c, s = np.cos(-yaw), np.sin(-yaw)
        xr = c[:, None] * y[..., 0] - s[:, None] * y[..., 1]
        yr = s[:, None] * y[..., 0] + c[:, None] * y[..., 1]
        y = np.stack([xr, yr, y[..., 2]], axis=-1)
    scale = np.sqrt((y ** 2).sum(axis=(1, 2)) / np.maximum(count, 1.0))
    valid = (count >= min(MIN_VISIBLE_JOINTS, j)) & (scale > _SCALE_EPS)
    y = np.where(valid[:, None, None], y / np.where(valid, scale, 1.0)[:, None, None], 0.0)
    return y.astype(np.float32), (mask * valid[:, None]).astype(np.float32), valid


def normalize_pose_reference(x: np.ndarray, visibility: np.ndarray | None = None, *,
                             norm: PoseNormalization = PoseNormalization()):
    """Plain per-pose twin of :func:`normalize_poses` (one (J, D) pose), kept to test the batched one."""
    x = np.asarray(x, dtype=np.float64)
    j, d = x.shape
    vis = [True] * j if visibility is None else [float(v) > 0 for v in visibility]
    pts = [x[i].copy() if vis[i] and np.isfinite(x[i]).all() else np.zeros(d) for i in range(j)]
    n_vis = sum(vis)
    if norm.root_joint is not None:
        center = pts[norm.root_joint].copy()
    else:
        center = sum(pts[i] for i in range(j) if vis[i]) / max(n_vis, 1) if n_vis else np.zeros(d)
    pts = [(p - center) if vis[i] else np.zeros(d) for i, p in enumerate(pts)]
    if norm.heading_joints is not None and d == 3:
        r, l = norm.heading_joints
        yaw = math.atan2(pts[l][1] - pts[r][1], pts[l][0] - pts[r][0])
        rot = np.array([[math.cos(-yaw), -math.sin(-yaw), 0], [math.sin(-yaw), math.cos(-yaw), 0], [0, 0, 1]])
        pts = [rot @ p for p in pts]
    scale = math.sqrt(sum(float(p @ p) for p in pts) / max(n_vis, 1))
    valid = n_vis >= min(MIN_VISIBLE_JOINTS, j) and scale > _SCALE_EPS
    out = np.stack([p / scale if valid else np.zeros(d) for p in pts])
    mask = np.array([1.0 if (v and valid) else 0.0 for v in vis])
    return out.astype(np.float32), mask.astype(np.float32), bool(valid)


# ---------------------------------------------------------------------- model
def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(a, b), nn.SiLU()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


class PoseVAE(nn.Module):
    """MLP VAE on normalised (N, J, D) keypoints.

    ``masked``: append the (N, J) visibility mask to the encoder input (2D data with unlabelled
    joints); without it the mask is only used in the loss. ``normalization`` is stored with the
    model so a loaded model prepares raw poses exactly as it was trained.
    """

    def __init__(self, *, n_joints: int, dim: int, hidden: tuple[int, ...] = (256, 256), latent_dim: int = 16,
                 masked: bool = False, layout: str = "h36m17",
                 normalization: PoseNormalization = PoseNormalization()):
        super().__init__()
        if dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {dim}")
        self.n_joints, self.dim, self.latent_dim = int(n_joints), int(dim), int(latent_dim)
        self.hidden, self.masked, self.layout = tuple(int(h) for h in hidden), bool(masked), layout
        self.normalization = normalization
        n_in = self.n_joints * self.dim + (self.n_joints if self.masked else 0)
        self.encoder = _mlp([n_in, *self.hidden, 2 * self.latent_dim])
        self.decoder = _mlp([self.latent_dim, *reversed(self.hidden), self.n_joints * self.dim])

    @property
    def hparams(self) -> dict:
        """JSON-serialisable constructor arguments (saved next to the weights)."""
        return {"n_joints": self.n_joints, "dim": self.dim, "hidden": list(self.hidden), "latent_dim": self.latent_dim,
                "masked": self.masked, "layout": self.layout, "normalization": self.normalization.to_dict()}

    @classmethod
    def from_hparams(cls, h: dict) -> "PoseVAE":
        return cls(n_joints=h["n_joints"], dim=h["dim"], hidden=tuple(h["hidden"]), latent_dim=h["latent_dim"],
                   masked=h["masked"], layout=h.get("layout", "h36m17"),
                   normalization=PoseNormalization.from_dict(h.get("normalization", {})))

    def encode(self, y: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """y: (B, J, D) normalised poses, mask (B, J) -> (mu, logvar), each (B, latent_dim)."""
        if y.shape[1:] != (self.n_joints, self.dim):
            raise ValueError(f"expected (B, {self.n_joints}, {self.dim}) poses, got {tuple(y.shape)}")
        if mask is None:
            mask = torch.ones(y.shape[:2], dtype=y.dtype, device=y.device)
        inp = (y * mask[..., None]).flatten(1)
        if self.masked:
            inp = torch.cat([inp, mask], dim=1)
        h = self.encoder(inp)
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, latent_dim) -> (B, J, D) normalised poses."""
        return self.decoder(z).view(-1, self.n_joints, self.dim)

    def forward(self, y: torch.Tensor, mask: torch.Tensor | None = None, *, sample: bool | None = None):
        """-> (recon (B, J, D), mu, logvar). Samples z by the reparameterisation trick in training
        mode (or when ``sample=True``); decodes the mean otherwise (deterministic scoring)."""
        mu, logvar = self.encode(y, mask)
        if sample if sample is not None else self.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        else:
            z = mu
        return self.decode(z), mu, logvar


def masked_reconstruction_error(recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 2 per sample: (B,) sum over joints of squared error, over labelled joints rescaled to J
    (equal to the plain sum when every joint is labelled). Rows with no labelled joint give 0."""
    sq = ((recon - target) ** 2).sum(dim=2)  # (B, J)
    if mask is None:
        return sq.sum(dim=1)
    j = sq.shape[1]
    return (sq * mask).sum(dim=1) * (j / mask.sum(dim=1).clamp(min=1.0))


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """(B,) KL[N(mu, diag(exp(logvar))) || N(0, I)], summed over latent dimensions."""
    return 0.5 * (mu ** 2 + logvar.exp() - 1.0 - logvar).sum(dim=1)


def vae_loss(recon, target, mu, logvar, mask=None, *, lambda_kl: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 1 averaged over the batch: returns (total, reconstruction term, KL term), scalars."""
    rec = masked_reconstruction_error(recon, target, mask).mean()
    kl = kl_divergence(mu, logvar).mean()
    return rec + lambda_kl * kl, rec, kl


@torch.no_grad()
def reconstruction_errors(model: PoseVAE, normed: np.ndarray, mask: np.ndarray, valid: np.ndarray | None = None,
                          *, batch_size: int = 8192) -> np.ndarray:
    """Deterministic Eq. 2 score of already-normalised poses: (N,) float64, decoding the mean latent.
    Rows with ``valid == False`` score NaN."""
    was_training = model.training
    model.eval()
    out = np.empty(len(normed), dtype=np.float64)
    try:
        for s in range(0, len(normed), batch_size):
            y = torch.from_numpy(np.ascontiguousarray(normed[s:s + batch_size]))
            m = torch.from_numpy(np.ascontiguousarray(mask[s:s + batch_size]))
            recon, _, _ = model(y, m, sample=False)
            out[s:s + batch_size] = masked_reconstruction_error(recon, y, m).double().numpy()
    finally:
        model.train(was_training)
    if valid is not None:
        out[~np.asarray(valid, dtype=bool)] = np.nan
    return out


@torch.no_grad()
def reconstruction_error_reference(model: PoseVAE, pose: np.ndarray, mask: np.ndarray) -> float:
    """Per-pose twin of :func:`reconstruction_errors` for one normalised (J, D) pose."""
    model.eval()
    y = torch.from_numpy(np.asarray(pose, dtype=np.float32))[None]
    m = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None]
    mu, _ = model.encode(y, m)
    recon = model.decode(mu)[0].double().numpy()
    total, n_vis = 0.0, 0
    for j in range(model.n_joints):
        if mask[j] > 0:
            total += float(((recon[j] - np.asarray(pose[j], dtype=np.float64)) ** 2).sum())
            n_vis += 1
    return total * model.n_joints / max(n_vis, 1)


# ---------------------------------------------------------------------- pose-set inputs
# Deterministic "scoring cameras" for VAEs on the 2D projections of 3D sets: one camera per sample,
# keyed by its sample_id (so a pose scores the same in any set, in any order). Position and scale
# are normalised away, so only the viewing direction matters: azimuth uniform over 360 degrees,
# camera height 0.5-2.5 m, 5 m away, aimed 1 m above the floor over the pelvis.
_PROJ_DISTANCE, _PROJ_HEIGHT, _PROJ_TARGET, _PROJ_FOCAL, _PROJ_SIZE = 5000.0, (500.0, 2500.0), 1000.0, 1145.0, 1000.0


def _hash_uniform(keys: np.ndarray, salt: int) -> np.ndarray:
    """(N,) uint64-hashed keys -> (N,) floats in [0, 1) (SplitMix64 finaliser; vectorised, order-free)."""
    with np.errstate(over="ignore"):
        z = np.asarray(keys, dtype=np.int64).astype(np.uint64) + np.uint64((salt * 0x9E3779B97F4A7C15) % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


def project_for_scoring(joints3d: np.ndarray, sample_id: np.ndarray, *, seed: int = 0, root_joint: int = 0) -> np.ndarray:
    """(N, J, 3) world mm, Z up -> (N, J, 2) pixels through one deterministic camera per sample_id."""
    from posecurator.camera import look_at, project_points, world_to_camera

    joints3d = np.asarray(joints3d, dtype=np.float64)
    n = len(joints3d)
    az = 2 * np.pi * _hash_uniform(sample_id, 2 * seed + 1)
    height = _PROJ_HEIGHT[0] + (_PROJ_HEIGHT[1] - _PROJ_HEIGHT[0]) * _hash_uniform(sample_id, 2 * seed + 2)
    root = joints3d[:, root_joint]
    eye = np.stack([root[:, 0] + _PROJ_DISTANCE * np.cos(az), root[:, 1] + _PROJ_DISTANCE * np.sin(az), height], axis=1)
    target = np.stack([root[:, 0], root[:, 1], np.full(n, _PROJ_TARGET)], axis=1)
    R, t = look_at(eye, target)
    return project_points(world_to_camera(joints3d, R, t), np.full((n, 2), _PROJ_FOCAL), np.full((n, 2), _PROJ_SIZE / 2))


def pose_arrays(poses, dim: int, *, projection_seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """Raw keypoints of a PoseSet for a VAE of dimension ``dim``: ((N, J, dim), visibility (N, J) or None).

    dim 3: ``joints3d``. dim 2: ``joints2d`` with its visibility when the set has 2D; otherwise the
    3D joints projected through :func:`project_for_scoring` (all joints visible).
    """
    if dim == 3:
        if poses.joints3d is None:
            raise ValueError("a 3D pose VAE needs joints3d; this set is 2D only (use space='2d')")
        return poses.joints3d, None
    if poses.joints2d is not None:
        return poses.joints2d, poses.visibility
    from posecurator.skeleton import get_layout

    root = get_layout(poses.layout).parents.index(-1)
    return project_for_scoring(poses.joints3d, poses.sample_id, seed=projection_seed, root_joint=root), None
