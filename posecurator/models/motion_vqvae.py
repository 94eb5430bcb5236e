"""Motion VQ-VAE of PoseSyn's motion model (T2M-GPT's VQ-VAE, Zhang et al. 2023, on our 54-d
features): a motion of T frames becomes T / r discrete codes and back.

Inputs are NORMALISED motion features (``MotionNormalizer.transform`` of
:func:`posecurator.synthesis.motion_repr.joints_to_motion`): (B, T, D) float32, D = 54, T a
multiple of the temporal downsampling factor ``r = 2 ** down``.

Architecture (as T2M-GPT's ``Encoder`` / ``Decoder`` / ``QuantizeEMAReset``, sizes scaled down):

* encoder: Conv1d(D -> width, k3) + ReLU, then ``down`` times [Conv1d(k4, stride 2) + a stack of
  ``depth`` residual blocks with dilations 1, 3, 9, ...], then Conv1d(width -> code_dim, k3);
* quantiser (:class:`EMAQuantizer`): each of the T / r latent vectors is replaced by its nearest
  codebook vector (Eq. 4 of PoseSyn); the codebook is not learned by gradients but is the
  exponential moving average (``ema_decay``) of the encoder outputs assigned to each code; codes
  whose moving-average count falls below ``dead_count`` (unused for a while) are re-initialised
  from random encoder outputs of the current batch (``reset_dead``); gradients pass straight
  through (``z + (z_q - z).detach()``); the commitment loss is ``mean((z - sg(z_q))^2)``;
* decoder: Conv1d(code_dim -> width, k3) + ReLU, then ``down`` times [residual stack (dilations
  reversed), nearest upsampling x2, Conv1d(k3)], then Conv1d + ReLU + Conv1d(width -> D).

Randomness of the quantiser (codebook initialisation and dead-code resets) is drawn from
``quantizer.generator`` (a CPU ``torch.Generator`` the trainer seeds per epoch; None = torch's
global generator), so training is reproducible.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DILATION_GROWTH = 3  # T2M-GPT's dilation_growth_rate


# ---------------------------------------------------------------------- convolutional parts
class ResBlock1D(nn.Module):
    """x + Conv1x1(ReLU(Conv3(ReLU(x), dilation))): (B, W, T) -> (B, W, T)."""

    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(width, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


def _res_stack(width: int, depth: int, *, reverse: bool = False) -> nn.Sequential:
    dilations = [DILATION_GROWTH ** i for i in range(depth)]
    if reverse:
        dilations = dilations[::-1]
    return nn.Sequential(*[ResBlock1D(width, d) for d in dilations])


class MotionEncoder(nn.Module):
    """(B, D, T) -> (B, code_dim, T / 2**down)."""

    def __init__(self, dim: int, width: int, depth: int, down: int, code_dim: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(dim, width, 3, 1, 1), nn.ReLU()]
        for _ in range(down):
            layers += [nn.Conv1d(width, width, 4, 2, 1), _res_stack(width, depth)]
        layers.append(nn.Conv1d(width, code_dim, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MotionDecoder(nn.Module):
    """(B, code_dim, M) -> (B, D, M * 2**down)."""

    def __init__(self, dim: int, width: int, depth: int, down: int, code_dim: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(code_dim, width, 3, 1, 1), nn.ReLU()]
        for _ in range(down):
            layers += [_res_stack(width, depth, reverse=True), nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv1d(width, width, 3, 1, 1)]
        layers += [nn.Conv1d(width, width, 3, 1, 1), nn.ReLU(), nn.Conv1d(width, dim, 3, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


# ---------------------------------------------------------------------- nearest-code search
def nearest_codes(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """(N, C) vectors, (K, C) codebook -> (N,) long index of the nearest code (Eq. 4:
    argmin_q ||z - c_q||_2), batched as ||z||^2 - 2 z.c + ||c||^2 in one matrix product."""
    distance = (z * z).sum(1, keepdim=True) - 2.0 * z @ codebook.t() + (codebook * codebook).sum(1)[None, :]
    return distance.argmin(dim=1)


def nearest_codes_reference(z, codebook) -> np.ndarray:
    """Plain per-vector version of :func:`nearest_codes` (tests): for each vector, the squared
    distance to every code in float64, the first smallest. Returns (N,) int64."""
    z = np.asarray(torch.as_tensor(z).detach().cpu(), dtype=np.float64)
    codebook = np.asarray(torch.as_tensor(codebook).detach().cpu(), dtype=np.float64)
    out = np.empty(len(z), dtype=np.int64)
    for i, vector in enumerate(z):
        best, best_d = 0, np.inf
        for q, code in enumerate(codebook):
            d = float(((vector - code) ** 2).sum())
            if d < best_d:
                best, best_d = q, d
        out[i] = best
    return out


def perplexity_of(codes: torch.Tensor, n_codes: int) -> torch.Tensor:
    """exp(entropy) of the code usage distribution of ``codes`` (any shape): n_codes when every
    code is used equally, 1 when a single code is used."""
    counts = torch.bincount(codes.reshape(-1), minlength=n_codes).float()
    prob = counts / counts.sum().clamp(min=1.0)
    return torch.exp(-(prob * torch.log(prob + 1e-7)).sum())


# ---------------------------------------------------------------------- the quantiser
class EMAQuantizer(nn.Module):
    """Codebook of ``n_codes`` vectors of ``code_dim``, updated by exponential moving averages
    (decay ``ema_decay``) with dead-code reset (T2M-GPT's ``QuantizeEMAReset``).

    Buffers (saved with the weights): ``codebook`` (K, C), ``code_sum`` (K, C) and
    ``code_count`` (K,) (the moving averages), ``initialised`` (0 until the first training batch
    has set the codebook from its encoder outputs).

    ``forward(z (N, C))`` -> (z_q straight-through (N, C), codes (N,), commit_loss, perplexity).
    In training mode it also updates the codebook (no gradients flow into it)."""

    def __init__(self, n_codes: int, code_dim: int, *, ema_decay: float = 0.99, reset_dead: bool = True,
                 dead_count: float = 1.0):
        super().__init__()
        if n_codes < 2 or code_dim < 1 or not 0.0 < ema_decay < 1.0:
            raise ValueError(f"bad quantiser: n_codes={n_codes} code_dim={code_dim} ema_decay={ema_decay}")
        self.n_codes, self.code_dim = int(n_codes), int(code_dim)
        self.ema_decay, self.reset_dead, self.dead_count = float(ema_decay), bool(reset_dead), float(dead_count)
        self.register_buffer("codebook", torch.zeros(n_codes, code_dim))
        self.register_buffer("code_sum", torch.zeros(n_codes, code_dim))
        self.register_buffer("code_count", torch.ones(n_codes))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.uint8))
        self.generator: torch.Generator | None = None  # CPU generator for inits and resets (None: global)
        self.last_resets = 0  # dead codes reset by the last training batch (for monitoring)

    def _random_rows(self, z: torch.Tensor, k: int) -> torch.Tensor:
        """``k`` encoder outputs drawn at random (with a tiny jitter, so that codes reset from
        one vector still differ), from this quantiser's generator."""
        idx = torch.randint(0, len(z), (k,), generator=self.generator)
        jitter = torch.randn(k, self.code_dim, generator=self.generator) * (0.01 / np.sqrt(self.code_dim))
        return z[idx.to(z.device)] + jitter.to(device=z.device, dtype=z.dtype)

    @torch.no_grad()
    def _init_codebook(self, z: torch.Tensor) -> None:
        self.codebook.copy_(self._random_rows(z, self.n_codes))
        self.code_sum.copy_(self.codebook)
        self.code_count.fill_(1.0)
        self.initialised.fill_(1)

    @torch.no_grad()
    def _update(self, z: torch.Tensor, codes: torch.Tensor) -> None:
        onehot = F.one_hot(codes, self.n_codes).to(z.dtype)          # (N, K)
        batch_sum = onehot.t() @ z                                   # (K, C)
        batch_count = onehot.sum(0)                                  # (K,)
        mu = self.ema_decay
        self.code_sum.mul_(mu).add_(batch_sum, alpha=1 - mu)
        self.code_count.mul_(mu).add_(batch_count, alpha=1 - mu)
        updated = self.code_sum / self.code_count.clamp(min=1e-6)[:, None]
        if self.reset_dead:
            dead = self.code_count < self.dead_count
            n_dead = int(dead.sum())
            self.last_resets = n_dead
            if n_dead:
                fresh = self._random_rows(z, n_dead)
                updated[dead] = fresh
                # the reset code starts a new average at its new place
                self.code_sum[dead] = fresh
                self.code_count[dead] = 1.0
        self.codebook.copy_(updated)

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """(N, C) -> (N,) nearest codes (no update)."""
        return nearest_codes(z, self.codebook)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """(...) long -> (..., C) code vectors."""
        return F.embedding(codes, self.codebook)

    def forward(self, z: torch.Tensor):
        if self.training and not bool(self.initialised):
            self._init_codebook(z.detach())
        codes = self.quantize(z.detach())
        z_q = self.dequantize(codes)
        if self.training:
            self._update(z.detach(), codes)
        commit = F.mse_loss(z, z_q.detach())
        return z + (z_q - z).detach(), codes, commit, perplexity_of(codes, self.n_codes)


# ---------------------------------------------------------------------- the VQ-VAE
class MotionVQVAE(nn.Module):
    """Motion VQ-VAE (module docstring). ``r = 2 ** down`` frames per code.

    ``encode(x (B, T, D)) -> codes (B, T / r) long``; ``decode(codes (B, M)) -> (B, M * r, D)``;
    ``forward(x) -> (recon (B, T, D), commit_loss, perplexity)``. :meth:`config` gives the
    constructor's keywords (stored beside the weights)."""

    def __init__(self, *, dim: int = 54, width: int = 256, depth: int = 2, down: int = 2, codebook_size: int = 512,
                 code_dim: int = 256, ema_decay: float = 0.99, reset_dead: bool = True, dead_count: float = 1.0):
        super().__init__()
        if dim < 1 or width < 1 or depth < 0 or down < 0:
            raise ValueError(f"bad VQ-VAE size: dim={dim} width={width} depth={depth} down={down}")
        self._config = dict(dim=int(dim), width=int(width), depth=int(depth), down=int(down),
                            codebook_size=int(codebook_size), code_dim=int(code_dim), ema_decay=float(ema_decay),
                            reset_dead=bool(reset_dead), dead_count=float(dead_count))
        self.dim, self.r, self.codebook_size, self.code_dim = int(dim), 2 ** int(down), int(codebook_size), int(code_dim)
        self.encoder = MotionEncoder(dim, width, depth, down, code_dim)
        self.decoder = MotionDecoder(dim, width, depth, down, code_dim)
        self.quantizer = EMAQuantizer(codebook_size, code_dim, ema_decay=ema_decay, reset_dead=reset_dead,
                                      dead_count=dead_count)

    def config(self) -> dict:
        return dict(self._config)

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[-1] != self.dim or x.shape[1] % self.r or x.shape[1] == 0:
            raise ValueError(f"motion must be (B, T, {self.dim}) with T a positive multiple of {self.r}, got {tuple(x.shape)}")

    def latents(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T / r, code_dim) encoder outputs before quantisation."""
        self._check(x)
        return self.encoder(x.transpose(1, 2)).transpose(1, 2)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) normalised features -> (B, T / r) long codes (Eq. 4)."""
        z = self.latents(x)
        b, m, c = z.shape
        return self.quantizer.quantize(z.reshape(b * m, c)).reshape(b, m)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, M) long codes -> (B, M * r, D) normalised features."""
        if codes.ndim != 2:
            raise ValueError(f"codes must be (B, M), got {tuple(codes.shape)}")
        return self.decoder(self.quantizer.dequantize(codes).transpose(1, 2)).transpose(1, 2)

    def forward(self, x: torch.Tensor):
        z = self.latents(x)
        b, m, c = z.shape
        z_q, _, commit, perplexity = self.quantizer(z.reshape(b * m, c))
        recon = self.decoder(z_q.reshape(b, m, c).transpose(1, 2)).transpose(1, 2)
        return recon, commit, perplexity
