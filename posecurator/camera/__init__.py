"""Pinhole cameras (optional Brown-Conrady distortion), the fixed evaluation rig of
../shared/BENCHMARK.md, a seeded random camera sampler for training, and batched projection
in NumPy and (differentiable) PyTorch.

Conventions: ``X_cam = R @ X_world + t`` (OpenCV camera frame: x right, y down, z forward);
world frame Z up; millimetres; pixels with the origin at the top-left image corner.
"""

from posecurator.camera.core import (
    Camera,
    CameraBatch,
    RandomCameraSampler,
    camera_to_world,
    evaluation_rig,
    image_to_normalized,
    look_at,
    normalize_screen_coordinates,
    project_points,
    world_to_camera,
)
from posecurator.camera.torch_ops import project_points_torch, world_to_camera_torch

__all__ = [
    "Camera", "CameraBatch", "RandomCameraSampler", "evaluation_rig", "look_at",
    "world_to_camera", "camera_to_world", "project_points", "normalize_screen_coordinates",
    "image_to_normalized", "project_points_torch", "world_to_camera_torch",
]
