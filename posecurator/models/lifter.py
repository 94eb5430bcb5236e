"""The 2D-to-3D lifter: the residual MLP "simple baseline" of Martinez et al. (ICCV 2017).

Input and output (../shared/BENCHMARK.md):

- input ``x2d`` (B, J, 2) float32: the 2D joints in pixels normalised as VideoPose3D does,
  ``x / w * 2 - [1, h / w]`` (:func:`posecurator.camera.normalize_screen_coordinates`). Inside,
  the network sees the root joint's position and the other joints relative to it, multiplied by
  ``relative_scale`` (10): the same information as the absolute 2D (the position of the person in
  the image tells the direction of the viewing ray, which the network needs to undo the
  perspective of cameras not centred on the person), but with the body's shape at a scale of
  order one rather than a few tenths. On HDM05 bd+bk (validation clips, random cameras) this
  gave 2-4 mm lower MPJPE than feeding the absolute 2D as Martinez's code does, and about the
  same as root-centred 2D alone, which throws the ray direction away.
- output (B, J, 3) float32: the joints in the camera frame (OpenCV: x right, y down, z forward),
  relative to the root joint (pelvis), in millimetres. The root row is exactly zero. The last
  layer predicts metres (``output_scale`` = 1000 turns them into mm) so its outputs and initial
  weights are of order one.

Architecture: the J*2 input features above, then ``Linear(J*2 -> width) + BN + ReLU + Dropout``, then ``blocks`` residual blocks of
two ``(Linear + BN + ReLU + Dropout)`` each, then ``Linear(width -> (J-1)*3)``. Optionally the
weights of every linear layer are held to a maximum L2 norm per output unit (Martinez's max-norm
constraint; the trainer calls :meth:`SimpleBaselineLifter.apply_max_norm` after each step).
"""

from __future__ import annotations

import torch
from torch import nn


class _ResidualBlock(nn.Module):
    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True), nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class SimpleBaselineLifter(nn.Module):
    """Residual MLP from normalised 2D (B, J, 2) to root-relative camera-frame 3D (B, J, 3) in mm.

    Parameters (keyword-only): ``n_joints`` (17 for H36M17), ``width`` (hidden units, Martinez:
    1024), ``blocks`` (residual blocks, Martinez: 2), ``dropout`` (Martinez: 0.5; 0.1 trains faster
    on the small sets here), ``max_norm`` (None = off; Martinez: 1.0), ``root_joint`` (index of
    the joint the output is relative to; 0 = pelvis in H36M17), ``output_scale`` (mm per output
    unit of the last layer; 1000 = the network predicts metres), ``relative_scale`` (factor on the
    root-relative 2D input features).
    """

    def __init__(self, *, n_joints: int = 17, width: int = 1024, blocks: int = 2, dropout: float = 0.1,
                 max_norm: float | None = None, root_joint: int = 0, output_scale: float = 1000.0,
                 relative_scale: float = 10.0):
        super().__init__()
        if n_joints < 2 or width < 1 or blocks < 0 or not 0.0 <= dropout < 1.0:
            raise ValueError(f"bad lifter size: n_joints={n_joints} width={width} blocks={blocks} dropout={dropout}")
        if not 0 <= root_joint < n_joints:
            raise ValueError(f"root_joint {root_joint} outside 0..{n_joints - 1}")
        self.n_joints, self.width, self.blocks, self.dropout = n_joints, width, blocks, dropout
        self.max_norm, self.root_joint, self.output_scale = max_norm, root_joint, float(output_scale)
        self.relative_scale = float(relative_scale)
        self.input_layer = nn.Sequential(
            nn.Linear(n_joints * 2, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.residual = nn.Sequential(*[_ResidualBlock(width, dropout) for _ in range(blocks)])
        self.output_layer = nn.Linear(width, (n_joints - 1) * 3)
        # rows of the full output that the network predicts (all but the root)
        self.register_buffer("_non_root", torch.tensor([j for j in range(n_joints) if j != root_joint]), persistent=False)

    def config(self) -> dict:
        """The constructor arguments, JSON-serialisable (stored in a run's config.json)."""
        return {"n_joints": self.n_joints, "width": self.width, "blocks": self.blocks, "dropout": self.dropout,
                "max_norm": self.max_norm, "root_joint": self.root_joint, "output_scale": self.output_scale,
                "relative_scale": self.relative_scale}

    def forward(self, x2d: torch.Tensor) -> torch.Tensor:
        """(B, J, 2) normalised 2D -> (B, J, 3) camera-frame 3D relative to the root joint, mm."""
        if x2d.ndim != 3 or x2d.shape[1:] != (self.n_joints, 2):
            raise ValueError(f"lifter input must be (B, {self.n_joints}, 2), got {tuple(x2d.shape)}")
        h = self.residual(self.input_layer(self.input_features(x2d)))
        out = self.output_layer(h).reshape(len(x2d), self.n_joints - 1, 3) * self.output_scale
        full = out.new_zeros(len(x2d), self.n_joints, 3)
        full[:, self._non_root] = out
        return full

    def input_features(self, x2d: torch.Tensor) -> torch.Tensor:
        """(B, J, 2) normalised 2D -> (B, J*2): the root's position, then every other joint minus
        the root times ``relative_scale`` (a linear, invertible re-parametrisation)."""
        root = x2d[:, self.root_joint:self.root_joint + 1]
        relative = (x2d[:, self._non_root] - root) * self.relative_scale
        return torch.cat([root, relative], dim=1).reshape(len(x2d), -1)

    @torch.no_grad()
    def apply_max_norm(self) -> None:
        """Rescale each linear layer's weight rows to L2 norm <= ``max_norm`` (no-op when None)."""
        if self.max_norm is None:
            return
        for module in self.modules():
            if isinstance(module, nn.Linear):
                module.weight.copy_(torch.renorm(module.weight, p=2, dim=0, maxnorm=self.max_norm))
