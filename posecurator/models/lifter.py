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

Input modes (``input_mode``, chosen at training time and stored with the run):

- ``"absolute"`` (default, the benchmark protocol's lifter): the features above. They depend on
  where the person stands in the image and on the image size, which is right for the fixed
  evaluation rig and wrong for in-the-wild images of every size and focal length.
- ``"root_scale"`` (for in-the-wild 2D): every joint minus the root, divided by the pose's
  2D scale ``s`` = the root-mean-square distance of the labelled joints from the root, so the
  input does not change when the image is scaled, the camera zooms, the person moves in the
  image or stands farther away (any 2D similarity without rotation). Unlabelled joints are
  given as NaN: their features are 0 and a per-joint "labelled" flag goes in beside them
  ((J - 1) * 3 features), so one network lifts COCO annotations with missing ankles or an
  underived head top; train with ``joint_dropout`` so it has seen missing joints. The root must
  be labelled (a pose without it gets NaN out). Output as above, in mm: the absolute size comes
  from what the network learned of human proportions.

Architecture: the input features above, then ``Linear(J*2 -> width) + BN + ReLU + Dropout``, then ``blocks`` residual blocks of
two ``(Linear + BN + ReLU + Dropout)`` each, then ``Linear(width -> (J-1)*3)``. Optionally the
weights of every linear layer are held to a maximum L2 norm per output unit (Martinez's max-norm
constraint; the trainer calls :meth:`SimpleBaselineLifter.apply_max_norm` after each step).
"""

from __future__ import annotations

import torch
from torch import nn


INPUT_MODES = ("absolute", "root_scale")


def root_scale_features(x2d: torch.Tensor, *, root_joint: int, non_root: torch.Tensor) -> torch.Tensor:
    """(B, J, 2) 2D with NaN for unlabelled joints -> (B, (J-1)*3) features that do not depend on
    image size, focal length, distance or position: for every non-root joint, its offset from the
    root divided by the pose's 2D scale (the RMS offset of the labelled joints), 0 when
    unlabelled, then the (J-1) labelled flags. A pose whose root is unlabelled gives NaN."""
    root = x2d[:, root_joint:root_joint + 1]
    rel = x2d[:, non_root] - root
    labelled = torch.isfinite(rel).all(dim=-1)
    rel = torch.where(labelled[..., None], rel, torch.zeros_like(rel))
    n = labelled.sum(dim=1, keepdim=True).clamp(min=1)
    scale = torch.sqrt((rel**2).sum(dim=(1, 2)) / n[:, 0]).clamp(min=1e-6)[:, None, None]
    feats = torch.cat([(rel / scale).reshape(len(x2d), -1), labelled.to(x2d.dtype)], dim=1)
    root_ok = torch.isfinite(root).all(dim=-1)  # (B, 1)
    return torch.where(root_ok, feats, torch.full_like(feats, float("nan")))


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
                 relative_scale: float = 10.0, input_mode: str = "absolute"):
        super().__init__()
        if input_mode not in INPUT_MODES:
            raise ValueError(f"input_mode must be one of {', '.join(INPUT_MODES)}, got {input_mode!r}")
        if n_joints < 2 or width < 1 or blocks < 0 or not 0.0 <= dropout < 1.0:
            raise ValueError(f"bad lifter size: n_joints={n_joints} width={width} blocks={blocks} dropout={dropout}")
        if not 0 <= root_joint < n_joints:
            raise ValueError(f"root_joint {root_joint} outside 0..{n_joints - 1}")
        self.n_joints, self.width, self.blocks, self.dropout = n_joints, width, blocks, dropout
        self.max_norm, self.root_joint, self.output_scale = max_norm, root_joint, float(output_scale)
        self.relative_scale = float(relative_scale)
        self.input_mode = input_mode
        n_features = n_joints * 2 if input_mode == "absolute" else (n_joints - 1) * 3
        self.input_layer = nn.Sequential(
            nn.Linear(n_features, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.residual = nn.Sequential(*[_ResidualBlock(width, dropout) for _ in range(blocks)])
        self.output_layer = nn.Linear(width, (n_joints - 1) * 3)
        # rows of the full output that the network predicts (all but the root)
        self.register_buffer("_non_root", torch.tensor([j for j in range(n_joints) if j != root_joint]), persistent=False)

    def config(self) -> dict:
        """The constructor arguments, JSON-serialisable (stored in a run's config.json)."""
        config = {"n_joints": self.n_joints, "width": self.width, "blocks": self.blocks, "dropout": self.dropout,
                  "max_norm": self.max_norm, "root_joint": self.root_joint, "output_scale": self.output_scale,
                  "relative_scale": self.relative_scale}
        if self.input_mode != "absolute":  # left out at its default: configs of older runs stay as they were
            config["input_mode"] = self.input_mode
        return config

    def forward(self, x2d: torch.Tensor) -> torch.Tensor:
        """(B, J, 2) normalised 2D -> (B, J, 3) camera-frame 3D relative to the root joint, mm."""
        if x2d.ndim != 3 or x2d.shape[1:] != (self.n_joints, 2):
            raise ValueError(f"lifter input must be (B, {self.n_joints}, 2), got {tuple(x2d.shape)}")
        h = self.residual(self.input_layer(self.input_features(x2d)))
        out = self.output_layer(h).reshape(len(x2d), self.n_joints - 1, 3) * self.output_scale
        full = out.new_zeros(len(x2d), self.n_joints, 3)
        full[:, self._non_root] = out
        if self.input_mode == "root_scale":  # no root, no prediction: the whole pose is NaN, root row included
            no_root = ~torch.isfinite(x2d[:, self.root_joint]).all(dim=-1)
            full = torch.where(no_root[:, None, None], torch.full_like(full, float("nan")), full)
        return full

    def input_features(self, x2d: torch.Tensor) -> torch.Tensor:
        """(B, J, 2) normalised 2D -> (B, F) network input. Absolute mode: the root's position, then
        every other joint minus the root times ``relative_scale`` (a linear, invertible
        re-parametrisation), F = J*2. Root-scale mode: see :func:`root_scale_features`."""
        if self.input_mode == "root_scale":
            return root_scale_features(x2d, root_joint=self.root_joint, non_root=self._non_root)
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
