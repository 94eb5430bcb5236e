"""Differentiable PyTorch twins of the NumPy camera functions (same conventions)."""

from __future__ import annotations

import torch


def world_to_camera_torch(x: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(..., J, 3) world points -> camera frame; R (..., 3, 3), t (..., 3)."""
    if x.shape[-1] != 3:
        raise ValueError(f"points must end in 3 coordinates, got {tuple(x.shape)}")
    return torch.einsum("...ij,...kj->...ki", R, x) + t.unsqueeze(-2)


def project_points_torch(x_cam: torch.Tensor, f: torch.Tensor, c: torch.Tensor,
                         k: torch.Tensor | None = None, p: torch.Tensor | None = None,
                         eps: float = 1e-6) -> torch.Tensor:
    """(..., J, 3) camera-frame points -> (..., J, 2) pixels; f, c (..., 2); k (..., 3); p (..., 2).

    Depth is clamped to ``eps`` so gradients stay finite for points behind the camera.
    """
    if x_cam.shape[-1] != 3:
        raise ValueError(f"points must end in 3 coordinates, got {tuple(x_cam.shape)}")
    xy = x_cam[..., :2] / x_cam[..., 2:3].clamp(min=eps)
    if k is not None or p is not None:
        r2 = (xy**2).sum(-1, keepdim=True)
        radial = 1.0
        if k is not None:
            k = k.unsqueeze(-2)
            radial = 1 + k[..., 0:1] * r2 + k[..., 1:2] * r2**2 + k[..., 2:3] * r2**3
        if p is not None:
            p = p.unsqueeze(-2)
            tan = (p.flip(-1) * xy).sum(-1, keepdim=True)  # OpenCV convention, see camera.core
            xy = xy * (radial + 2 * tan) + p.flip(-1) * r2
        else:
            xy = xy * radial
    return xy * f.unsqueeze(-2) + c.unsqueeze(-2)
