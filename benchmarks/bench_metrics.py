"""Throughput of the pose metrics on real poses: MPJPE, PA-MPJPE (NumPy and PyTorch), N-MPJPE,
and the plain per-pose reference loop, for 10^4, 10^5 and 10^6 poses (17 x 3, float32).

Usage::

    python benchmarks/bench_metrics.py [--data ROOT] [--sizes 10000 100000 1000000]

ROOT is a folder or file that :func:`posecurator.io.import_path` reads (default
../shared/data/hdm05) or a pose-set folder (``posecurator.json`` inside). If the reader cannot
load it, the script says so and reads the folder's ASF/AMC files with
:func:`posecurator.io.asf_amc.read_amc`, or last the raw joint positions of the CMU BVH files in
../shared/data/cmu (17 of their joints: real motion, not the H36M17 layout; the timings depend only
on the array shape). The real poses are made root-relative and tiled up to the largest size, each
copy turned by a small random rotation (up to 10 degrees); predictions are the targets turned by
another small rotation, scaled by 0.9-1.1 and given 30 mm Gaussian noise, so that the Procrustes
alignment has work to do.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from posecurator.metrics import mpjpe, n_mpjpe, pa_mpjpe, pa_mpjpe_torch
from posecurator.metrics import reference as ref

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TORCH_CHUNK = 65_536
REFERENCE_POSES = 2_000


def load_real_poses(root: Path) -> tuple[np.ndarray, str]:
    """(N, 17, 3) float32 root-relative real poses and a line saying where they came from."""
    from posecurator.poseset import META_FILE, PoseSet

    try:
        if (root / META_FILE).is_file():
            ps = PoseSet.load(root, columns=["joints3d"])
        else:
            from posecurator.io import import_path

            ps = import_path(root)
        poses, what = np.asarray(ps.joints3d, dtype=np.float32), f"{len(ps)} poses from {root} ({ps.layout})"
    except Exception as exc:  # reader not ready or the path is unreadable: say so, fall back
        print(f"note: cannot load {root} ({type(exc).__name__}: {exc})", file=sys.stderr)
        try:
            poses, what = _amc_poses(root)
        except Exception as exc2:
            print(f"note: no ASF/AMC poses in {root} ({type(exc2).__name__}: {exc2}); using raw CMU BVH joints",
                  file=sys.stderr)
            poses, what = _raw_bvh_poses(DATA / "cmu")
    poses = poses - poses[:, :1]
    return poses, what


def _amc_poses(root: Path) -> tuple[np.ndarray, str]:
    from posecurator.io.asf_amc import read_amc

    files = sorted(root.rglob("*.amc*")) if root.is_dir() else [root]
    if not files:
        raise FileNotFoundError(f"no .amc files under {root}")
    poses = np.concatenate([read_amc(path).joints3d for path in files]).astype(np.float32)
    return poses, f"{len(poses)} poses from {len(files)} AMC files under {root} (read_amc, h36m17)"


def _raw_bvh_poses(folder: Path) -> tuple[np.ndarray, str]:
    from posecurator.io.bvh import bvh_positions, load_bvh

    clips = []
    for path in sorted(folder.glob("*.bvh")):
        data = load_bvh(path)
        positions = bvh_positions(data.skeleton, data.motion[::4])
        # 17 joints with distinct positions (skip zero-length bones and end sites), spread over the body
        parents = data.skeleton.parents
        bone = np.linalg.norm(positions[0] - positions[0, np.maximum(parents, 0)], axis=-1)
        keep = [j for j in range(len(parents)) if j == 0 or (bone[j] > 1e-6 and not data.skeleton.is_end_site[j])]
        keep = np.array(keep)[np.linspace(0, len(keep) - 1, 17).round().astype(int)]
        clips.append(positions[:, keep] * 56.444)  # CMU lengths: ASF units (1/0.45 inch) -> mm
    if not clips:
        raise SystemExit("no real poses found: give --data (a folder import_path reads, or a pose-set folder)")
    poses = np.concatenate(clips).astype(np.float32)
    return poses, f"{len(poses)} poses from raw CMU BVH joints in {folder} (not the H36M17 layout)"


def small_rotations(rng: np.random.Generator, n: int, max_deg: float) -> np.ndarray:
    """(n, 3, 3) rotations about random axes by up to ``max_deg`` degrees (Rodrigues)."""
    axis = rng.standard_normal((n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angle = np.radians(rng.uniform(-max_deg, max_deg, n))[:, None, None]
    K = np.zeros((n, 3, 3))
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    K -= K.transpose(0, 2, 1)
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * (K @ K)


def make_pairs(poses: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tile real poses to n, each copy slightly rotated; predictions perturbed as the docstring says."""
    rng = np.random.default_rng(seed)
    target = np.empty((n, *poses.shape[1:]), dtype=np.float32)
    pred = np.empty_like(target)
    step = 65_536
    for start in range(0, n, step):
        m = min(step, n - start)
        base = poses[rng.integers(0, len(poses), m)].astype(np.float64)
        t = np.einsum("nij,nkj->nki", small_rotations(rng, m, 10.0), base)
        p = rng.uniform(0.9, 1.1, (m, 1, 1)) * np.einsum("nij,nkj->nki", small_rotations(rng, m, 10.0), t)
        target[start:start + m] = t
        pred[start:start + m] = p + rng.normal(0.0, 30.0, t.shape)
    return pred, target


def timed(fn, *args) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, value): CPU time shows contention on a shared machine."""
    start, cpu = time.perf_counter(), time.process_time()
    value = fn(*args)
    return time.perf_counter() - start, time.process_time() - cpu, value


def pa_mpjpe_torch_chunked(pred: np.ndarray, target: np.ndarray) -> float:
    import torch

    total = 0.0
    for start in range(0, len(pred), TORCH_CHUNK):
        p = torch.from_numpy(pred[start:start + TORCH_CHUNK])
        t = torch.from_numpy(target[start:start + TORCH_CHUNK])
        total += float(pa_mpjpe_torch(p, t, reduce="none").double().sum())
    return total / len(pred)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA / "hdm05",
                        help="folder/file import_path reads, or a pose-set folder (default: %(default)s)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args(argv)

    import torch

    poses, what = load_real_poses(args.data)
    print(f"data: {what}; poses tiled with small random rotations")
    print(f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads)")
    pred_all, target_all = make_pairs(poses, max(args.sizes))

    sub_p = pred_all[:REFERENCE_POSES].astype(np.float64)
    sub_t = target_all[:REFERENCE_POSES].astype(np.float64)
    ref_mpjpe_s, _, _ = timed(ref.mpjpe_loop, sub_p, sub_t)
    ref_pa_s, _, ref_pa = timed(ref.pa_mpjpe_loop, sub_p, sub_t)
    check = abs(float(np.mean(ref_pa)) - pa_mpjpe(sub_p, sub_t))
    print(f"reference loops on {REFERENCE_POSES} poses: mpjpe {REFERENCE_POSES / ref_mpjpe_s:,.0f} poses/s, "
          f"pa_mpjpe {REFERENCE_POSES / ref_pa_s:,.0f} poses/s (|batched - loop| = {check:.2e} mm)")

    header = f"{'poses':>9} | {'metric':<18} | {'seconds':>8} | {'cpu s':>7} | {'poses/s':>12} | value (mm)"
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        pred, target = pred_all[:n], target_all[:n]
        rows = [
            ("mpjpe", mpjpe, (pred, target)),
            ("n_mpjpe", n_mpjpe, (pred, target)),
            ("pa_mpjpe (numpy)", pa_mpjpe, (pred, target)),
            ("pa_mpjpe (torch)", pa_mpjpe_torch_chunked, (pred, target)),
        ]
        for name, fn, fn_args in rows:
            seconds, cpu, value = timed(fn, *fn_args)
            print(f"{n:>9,} | {name:<18} | {seconds:>8.3f} | {cpu:>7.2f} | {n / seconds:>12,.0f} | {value:.3f}")
        est = n / (REFERENCE_POSES / ref_pa_s)
        print(f"{n:>9,} | {'pa_mpjpe (loop)':<18} | {est:>8.1f} | {'':>7} | {REFERENCE_POSES / ref_pa_s:>12,.0f} | "
              f"(extrapolated from {REFERENCE_POSES} poses)")


if __name__ == "__main__":
    main()
