"""Adapting the lifter to a target known only by its unlabeled 2D: self-training with
reprojection consistency and a bone-length prior.

The method is the semi-supervised objective of VideoPose3D (Pavllo et al., CVPR 2019, Sec. 4),
adapted from video to single poses and from one camera to each sample's own camera: every step
the lifter sees a batch of labelled source pairs (MPJPE against their 3D) and a batch of the
target's 2D, for which nothing is known but the 2D. For those it predicts root-relative 3D;

* **reprojection**: the prediction is placed in the sample's camera by the root translation that
  best fits the 2D (the linear least-squares solution of :mod:`posecurator.camera.placement`,
  here in torch so the loss differentiates through it) and projected; the loss is the distance
  between projected and given joints, converted to mm at each joint's depth (so it is on the
  scale of the source MPJPE). Pavllo's trajectory model is not needed: the translation is
  solved, not predicted.
* **bone lengths**: reprojection alone is met by any depth of every joint; as in VideoPose3D, the
  mean bone lengths of the target batch's predictions are pulled to the mean bone lengths of the
  source batch's ground truth (a pose prior that keeps the skeleton's proportions).

* **rotation cycle** (``adapt_cycle_weight`` > 0; the geometric self-supervision of Chen et al.,
  "Unsupervised 3D Pose Estimation with Geometric Self-Supervision", CVPR 2019): reprojection and
  bone lengths leave each bone's depth free (a flipped forearm reprojects as well), and a lifter
  trained on them alone drifts to depths that hold for the target's 2D only. The placed
  prediction is turned about the camera's vertical axis by a random angle, projected into the
  same camera as a new 2D view, lifted again; the second lift must give the turned pose
  (``cycle_mm``), and turned back it must reproject onto the original 2D. A wrong depth shows in
  the other view.

Loss per step: ``MPJPE(source) + adapt_weight * (reprojection_mm + adapt_bone_weight * bone_gap_mm
+ adapt_cycle_weight * (cycle_mm + back_reprojection_mm))``.

Shapes: ``pred`` (B, J, 3) camera-frame mm relative to the root; ``uv`` (B, J, 2) normalised image
coordinates ``((x - c) / f)``; ``mask`` (B, J) bool, the labelled joints. Lower = better for
every loss here. Batched, any B; :func:`reprojection_error_mm_reference` is the plain per-pose
version tested to agree.
"""

from __future__ import annotations

import numpy as np
import torch

from posecurator.camera import normalize_screen_coordinates
from posecurator.camera.pairs import root_joint_of
from posecurator.camera.placement import MIN_DEPTH_MM, default_intrinsics, sample_cameras
from posecurator.errors import DataError
from posecurator.poseset import PoseSet

ADAPT_METHODS = ("none", "reprojection")


def _check(pred, uv, mask):
    if pred.ndim != 3 or pred.shape[-1] != 3 or uv.shape != pred.shape[:-1] + (2,) or mask.shape != pred.shape[:-1]:
        raise ValueError(f"pred (B, J, 3), uv (B, J, 2), mask (B, J) expected, got {tuple(pred.shape)}, "
                         f"{tuple(uv.shape)}, {tuple(mask.shape)}")


def solve_translation_torch(pred: torch.Tensor, uv: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3) root translation (mm) placing ``pred`` on ``uv`` in least squares (the rows
    ``[1, 0, -u] t = u z - x`` and ``[0, 1, -v] t = v z - y`` of every labelled joint), and (B,)
    bool: solvable (two labelled joints, a non-singular system, every joint in front of the camera)."""
    _check(pred, uv, mask)
    w = mask.to(pred.dtype)
    uv = torch.where(mask[..., None], uv, torch.zeros_like(uv))
    p = torch.where(mask[..., None], pred, torch.zeros_like(pred))
    u, v = uv[..., 0], uv[..., 1]
    px, py, pz = p[..., 0], p[..., 1], p[..., 2]

    def s(a):
        return (w * a).sum(-1)

    n = s(torch.ones_like(u))
    zero = torch.zeros_like(n)
    ata = torch.stack([torch.stack([n, zero, -s(u)], -1), torch.stack([zero, n, -s(v)], -1),
                       torch.stack([-s(u), -s(v), s(u * u + v * v)], -1)], -2)
    bx, by = u * pz - px, v * pz - py
    atb = torch.stack([s(bx), s(by), -s(u * bx + v * by)], -1)
    det = torch.linalg.det(ata)
    enough = (mask.sum(-1) >= 2) & (det.abs() > 1e-12)
    eye = torch.eye(3, dtype=pred.dtype, device=pred.device).expand_as(ata)
    t = torch.linalg.solve(torch.where(enough[:, None, None], ata, eye), atb[..., None])[..., 0]
    depth = pred[..., 2] + t[:, None, 2]
    in_front = torch.where(mask, depth > MIN_DEPTH_MM, torch.ones_like(mask)).all(-1)
    return t, enough & in_front


def reprojection_error_mm(pred: torch.Tensor, uv: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) mean distance (mm at each joint's depth) between the labelled 2D and the prediction
    placed by :func:`solve_translation_torch` and projected, and (B,) bool: placeable (samples
    that are not get 0 and should be left out)."""
    t, ok = solve_translation_torch(pred, uv, mask)
    placed = pred + t[:, None]
    depth = placed[..., 2].clamp(min=MIN_DEPTH_MM)
    proj = placed[..., :2] / depth[..., None]
    dist = torch.linalg.norm(proj - torch.where(mask[..., None], uv, proj.detach()), dim=-1) * depth
    w = (mask & ok[:, None]).to(pred.dtype)
    err = (dist * w).sum(-1) / w.sum(-1).clamp(min=1)
    return torch.where(ok, err, torch.zeros_like(err)), ok


def reprojection_error_mm_reference(pred: np.ndarray, uv: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Plain per-pose version of :func:`reprojection_error_mm` (NaN where not placeable)."""
    out = np.full(len(pred), np.nan)
    for b in range(len(pred)):
        rows, rhs = [], []
        for j in range(pred.shape[1]):
            if mask[b, j]:
                x, y, z = pred[b, j]
                u, v = uv[b, j]
                rows += [[1.0, 0.0, -u], [0.0, 1.0, -v]]
                rhs += [u * z - x, v * z - y]
        if len(rows) < 4:
            continue
        t = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
        dists = []
        for j in range(pred.shape[1]):
            if mask[b, j]:
                p = pred[b, j] + t
                if p[2] <= MIN_DEPTH_MM:
                    break
                dists.append(np.linalg.norm(p[:2] / p[2] - uv[b, j]) * p[2])
        else:
            out[b] = float(np.mean(dists))
    return out


def bone_length_gap_mm(pred: torch.Tensor, reference: torch.Tensor, parents) -> torch.Tensor:
    """Mean over bones of |mean bone length of ``pred`` (B, J, 3) - mean bone length of
    ``reference`` (B', J, 3)| in mm (VideoPose3D's bone-length term; the reference is held fixed)."""
    parents = torch.as_tensor([p for p in parents], device=pred.device)
    child = torch.nonzero(parents >= 0)[:, 0]

    def lengths(x):
        return torch.linalg.norm(x[:, child] - x[:, parents[child]], dim=-1).mean(0)

    return (lengths(pred) - lengths(reference).detach()).abs().mean()


def target_inputs(target: PoseSet, *, input_mode: str) -> dict[str, np.ndarray]:
    """What the adaptation needs of an unlabeled target: ``x`` (N, J, 2) float32 lifter input
    (pixels normalised as the trainer's pairs, NaN for unlabelled joints), ``uv`` (N, J, 2)
    float32 normalised image coordinates, ``mask`` (N, J) bool labelled, ``rows`` (N,) the
    target rows kept. Intrinsics from each sample's camera; a sample without one gets the
    image-size default (focal = larger side, principal point = centre). Left out: samples with
    no image size, fewer than 4 labelled joints or an unlabelled root, and, for an ``absolute``
    lifter (which cannot take a missing joint), any sample with an unlabelled joint."""
    if target.joints2d is None:
        raise DataError(None, "the target has no 2D poses (joints2d): adaptation needs the target's 2D")
    cams = sample_cameras(target)
    width, height = cams["width"], cams["height"]
    f, c = cams["f"], cams["c"]
    default_f, default_c = default_intrinsics(np.nan_to_num(width, nan=1.0), np.nan_to_num(height, nan=1.0))
    no_cam = ~np.isfinite(f).all(-1)
    f = np.where(no_cam[:, None], default_f, f)
    c = np.where(no_cam[:, None], default_c, c)
    x = np.asarray(target.joints2d, dtype=np.float64)
    mask = np.isfinite(x).all(-1)
    if target.visibility is not None:
        mask &= np.asarray(target.visibility) > 0
    root = root_joint_of(target)
    keep = np.isfinite(width) & np.isfinite(height) & (mask.sum(-1) >= 4) & mask[:, root]
    if input_mode == "absolute":
        keep &= mask.all(-1)
    x = np.where(mask[..., None], x, np.nan)
    xn = normalize_screen_coordinates(x, np.where(np.isfinite(width), width, 1.0), np.where(np.isfinite(height), height, 1.0))
    uv = (x - c[:, None]) / f[:, None]
    rows = np.flatnonzero(keep)
    return {"x": xn[rows].astype(np.float32), "uv": np.nan_to_num(uv[rows]).astype(np.float32),
            "mask": mask[rows], "rows": rows, "f": f[rows].astype(np.float32), "c": c[rows].astype(np.float32),
            "wh": np.stack([width, height], -1)[rows].astype(np.float32)}


def turn_about_camera_vertical(pose: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """(B, J, 3) root-relative camera-frame poses turned by ``angle`` (B,) radians about the
    camera's vertical (y) axis through the root."""
    c, s = torch.cos(angle)[:, None], torch.sin(angle)[:, None]
    x, y, z = pose[..., 0], pose[..., 1], pose[..., 2]
    return torch.stack([c * x + s * z, y, -s * x + c * z], dim=-1)


def project_to_input(placed: torch.Tensor, f: torch.Tensor, c: torch.Tensor, wh: torch.Tensor) -> torch.Tensor:
    """(B, J, 3) camera-frame mm -> (B, J, 2) lifter input (pixels through ``f``, ``c``, then
    normalised by the image size as :func:`posecurator.camera.normalize_screen_coordinates`)."""
    depth = placed[..., 2:3].clamp(min=MIN_DEPTH_MM)
    px = placed[..., :2] / depth * f[:, None] + c[:, None]
    w, h = wh[:, None, 0:1], wh[:, None, 1:2]
    return torch.cat([px[..., 0:1] / w * 2 - 1, px[..., 1:2] / w * 2 - h / w], dim=-1)


def rotation_cycle_mm(model, pred: torch.Tensor, uv: torch.Tensor, mask: torch.Tensor, f: torch.Tensor, c: torch.Tensor,
                      wh: torch.Tensor, angle: torch.Tensor, *, hide_unlabelled: bool) -> torch.Tensor:
    """The rotation-cycle term (module docstring), mm: MPJPE between the second lift and the turned
    first prediction, plus the reprojection error of the second lift turned back. Poses that
    cannot be placed are left out. ``hide_unlabelled``: the new view hides the joints the
    original 2D did not label (for lifters that take missing joints)."""
    t, ok = solve_translation_torch(pred, uv, mask)
    turned = turn_about_camera_vertical(pred, angle)
    x_new = project_to_input(turned + t[:, None], f, c, wh)
    if hide_unlabelled:
        x_new = torch.where(mask[..., None], x_new, torch.full_like(x_new, float("nan")))
    again = model(x_new)
    ok = ok & torch.isfinite(again).all(-1).all(-1)
    if not bool(ok.any()):
        return pred.sum() * 0.0
    cycle = torch.linalg.norm(again[ok] - turned[ok], dim=-1).mean()
    back = turn_about_camera_vertical(again[ok], -angle[ok])
    back_err, back_ok = reprojection_error_mm(back, uv[ok], mask[ok])
    return cycle + back_err.sum() / back_ok.sum().clamp(min=1)


TARGET_SPLIT_STREAM = 31  # seed-sequence tag of the target's held-out clips (shared with the trainer)


def held_out_target_clips(clips: np.ndarray, *, fraction: float, seed: int) -> np.ndarray:
    """(N,) bool: the rows of the target's held-out clips, ``fraction`` of its distinct clips
    (at least one, never all when there are two or more), drawn from ``seed``. The trainer never
    adapts on them; they give the target validation figure."""
    clips = np.asarray(clips).astype(str)
    names = np.unique(clips)
    n_val = int(round(fraction * len(names)))
    if fraction > 0 and len(names) > 1:
        n_val = min(max(n_val, 1), len(names) - 1)
    held = np.random.default_rng([int(seed), TARGET_SPLIT_STREAM]).choice(names, size=n_val, replace=False)
    return np.isin(clips, held)


@torch.no_grad()
def mean_reprojection_mm(model: torch.nn.Module, part: dict, *, device="cpu", batch: int = 8192) -> float:
    """Mean reprojection error (mm) of ``model``'s placed predictions over a target part
    (``x``, ``uv``, ``mask`` of :func:`target_inputs`); poses that cannot be placed are left out."""
    model.eval()
    total, n = 0.0, 0
    for s in range(0, len(part["x"]), batch):
        x = torch.from_numpy(part["x"][s:s + batch]).to(device)
        err, ok = reprojection_error_mm(model(x).double(), torch.from_numpy(part["uv"][s:s + batch]).to(device).double(),
                                        torch.from_numpy(part["mask"][s:s + batch]).to(device))
        total += float(err[ok].sum())
        n += int(ok.sum())
    return total / max(n, 1)


def target_validation_mm(model: torch.nn.Module, target: PoseSet, *, seed: int, fraction: float) -> float:
    """The target validation figure of any lifter: :func:`mean_reprojection_mm` on the held-out
    clips of ``target`` that a run of seed ``seed`` (and ``target_val_fraction`` ``fraction``)
    never adapts on. Uses no 3D of the target: a figure every method can be judged by."""
    return target_validation_figures(model, target, seed=seed, fraction=fraction)["val_target_reproj_mm"]


@torch.no_grad()
def target_validation_figures(model: torch.nn.Module, target: PoseSet, *, seed: int, fraction: float,
                              batch: int = 8192) -> dict[str, float]:
    """Every validation figure of a lifter on the held-out target clips of a run of ``seed``
    (:func:`held_out_target_clips`), from the target's 2D only (lower = better for each):

    * ``val_target_reproj_mm``: :func:`mean_reprojection_mm`. Blind to depth: any depth of each
      joint reprojects the same, and a lifter trained on reprojection games it.
    * ``val_target_bone_cv``: :func:`posecurator.skeleton.bones.bone_length_variation` of the
      predictions within each held-out clip (a person's bones keep their length, wrong depths do
      not); NaN for a target without clips of several poses (single-image annotations).
    * ``val_target_bone_asym``: the mean :func:`posecurator.skeleton.bones.bone_asymmetry` of the
      predictions (left and right bones equally long).
    """
    from posecurator.skeleton.bones import bone_asymmetry, bone_length_variation

    t = target_inputs(target, input_mode=getattr(model, "input_mode", "absolute"))
    clips = np.asarray(target.clip)[t["rows"]]
    is_val = held_out_target_clips(clips, fraction=fraction, seed=seed)
    part = {k: t[k][is_val] for k in ("x", "uv", "mask")}
    model.eval()
    pred = np.concatenate([model(torch.from_numpy(part["x"][s:s + batch])).double().numpy()
                           for s in range(0, len(part["x"]), batch)] or [np.zeros((0, 17, 3))])
    return {"val_target_reproj_mm": mean_reprojection_mm(model, part, batch=batch),
            "val_target_bone_cv": bone_length_variation(pred, clips[is_val]),
            "val_target_bone_asym": float(bone_asymmetry(pred).mean()) if len(pred) else float("nan")}
