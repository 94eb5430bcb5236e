"""Metrics: hand-computed cases, agreement of the batched functions with the per-pose loops of
posecurator.metrics.reference on real poses (../shared/data), and NumPy / PyTorch agreement."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from posecurator.metrics import (
    auc3d,
    bbox_size,
    evalpose,
    evalpose_matrix,
    evalpose_mean,
    head_size_coco17,
    head_size_from_headbox,
    joint_angles,
    layout_triplets,
    mpjpe,
    mpjpe_torch,
    n_mpjpe,
    n_mpjpe_torch,
    pa_mpjpe,
    pa_mpjpe_torch,
    pck2d,
    pck3d,
    pckh,
    per_joint_errors,
    procrustes_align,
    procrustes_align_torch,
    torso_size,
)
from posecurator.metrics import reference as ref
from posecurator.skeleton import COCO17, H36M17, Layout

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


# ------------------------------------------------------------------------------ real data
def _load_real_3d() -> SimpleNamespace:
    """Real mocap poses, root-relative, mm. Through the project's readers when they can read them
    (H36M17 layout: import_path, else the ASF/AMC reader), else raw BVH joint positions (every joint
    of the file's skeleton, in its own layout). The metrics only need real poses and a kinematic tree."""
    attempts = []
    try:
        from posecurator.io import import_path

        clips = [DATA / "cmu" / "01_01.amc", *sorted((DATA / "hdm05" / "amc").glob("HDM_dg_*.amc*"))[:1]]
        poses = np.concatenate([import_path(path).joints3d for path in clips])
        return _root_relative(poses, H36M17, "import_path")
    except Exception as exc:  # reader not ready or cannot read this file yet
        attempts.append(f"import_path: {exc!r}")
    try:
        from posecurator.io.asf_amc import read_amc

        return _root_relative(read_amc(DATA / "cmu" / "01_01.amc").joints3d, H36M17, "read_amc")
    except Exception as exc:
        attempts.append(f"read_amc: {exc!r}")
    try:
        from posecurator.io.bvh import bvh_positions, load_bvh

        data = load_bvh(DATA / "cmu" / "01_01.bvh")
        poses = bvh_positions(data.skeleton, data.motion[::4]) * 56.444  # CMU lengths: 1/0.45 inch -> mm
        layout = Layout(name="cmu-bvh", joints=tuple(data.skeleton.names),
                        parents=tuple(int(p) for p in data.skeleton.parents))
        return _root_relative(poses, layout, "raw bvh")
    except Exception as exc:
        attempts.append(f"raw bvh: {exc!r}")
    pytest.skip("no reader for real 3D poses is available yet: " + "; ".join(attempts))


def _root_relative(poses, layout, how: str) -> SimpleNamespace:
    poses = np.asarray(poses, dtype=np.float64)
    return SimpleNamespace(poses=poses - poses[:, :1], layout=layout, how=how)


@pytest.fixture(scope="module")
def real3d() -> SimpleNamespace:
    if not (DATA / "cmu").is_dir():
        pytest.skip(f"real data folder {DATA / 'cmu'} is absent")
    return _load_real_3d()


@pytest.fixture(scope="module")
def coco() -> SimpleNamespace:
    """Real COCO-17 keypoints (N, 17, 2) pixels and visibility flags (N, 17), parsed directly."""
    path = DATA / "coco" / "person_keypoints_val2017_subset2213.json"
    if not path.is_file():
        pytest.skip(f"real COCO annotations {path} are absent")
    with open(path) as f:
        annotations = json.load(f)["annotations"]
    kp = np.array([a["keypoints"] for a in annotations if a.get("num_keypoints", 0) >= 5], dtype=np.float64)
    kp = kp.reshape(len(kp), 17, 3)
    return SimpleNamespace(xy=kp[..., :2], v=kp[..., 2])


def _rotation(rng, n: int) -> np.ndarray:
    """(n, 3, 3) uniformly random proper rotations (QR of Gaussian matrices)."""
    q, r = np.linalg.qr(rng.standard_normal((n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[np.linalg.det(q) < 0, :, 0] *= -1
    return q


def _pairs(real3d, n: int, noise_mm: float, seed: int):
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(real3d.poses), size=min(n, len(real3d.poses)), replace=False)
    target = real3d.poses[idx]
    pred = target + rng.normal(0.0, noise_mm, target.shape)
    return pred, target


# ------------------------------------------------------------------------ hand-computed 3D
def test_mpjpe_of_a_10mm_shift_is_10(real3d):
    target = real3d.poses[:20]
    pred = target + np.array([10.0, 0.0, 0.0])
    assert mpjpe(pred, target) == pytest.approx(10.0, abs=1e-9)
    per_pose = mpjpe(pred.reshape(4, 5, *pred.shape[1:]), target.reshape(4, 5, *target.shape[1:]), reduce="none")
    assert per_pose.shape == (4, 5)
    np.testing.assert_allclose(per_pose, 10.0, atol=1e-9)
    np.testing.assert_allclose(per_joint_errors(pred, target, reduce="mean"), 10.0, atol=1e-9)
    assert float(mpjpe_torch(torch.tensor(pred), torch.tensor(target))) == pytest.approx(10.0, abs=1e-9)


def test_pa_mpjpe_removes_rotation_scale_translation(real3d):
    rng = np.random.default_rng(0)
    target = real3d.poses[rng.choice(len(real3d.poses), 50, replace=False)]
    R = _rotation(rng, len(target))
    pred = 1.3 * np.einsum("nij,nkj->nki", R, target) + rng.normal(0, 500, (len(target), 1, 3))
    assert mpjpe(pred, target) > 100.0
    assert pa_mpjpe(pred, target) < 1e-6
    np.testing.assert_allclose(procrustes_align(pred, target), target, atol=1e-6)
    assert float(pa_mpjpe_torch(torch.tensor(pred), torch.tensor(target))) < 1e-6
    # scale-only alignment does not undo a rotation
    assert n_mpjpe(pred, target) > 10.0
    assert n_mpjpe(1.2 * target, target) < 1e-9


def test_pa_mpjpe_does_not_align_a_mirror_image(real3d):
    rng = np.random.default_rng(1)
    target = real3d.poses[rng.choice(len(real3d.poses), 30, replace=False)]
    mirrored = target * np.array([-1.0, 1.0, 1.0])
    errors = pa_mpjpe(mirrored, target, reduce="none")
    assert np.all(errors > 1.0), "a reflection must not be aligned away (det(R) = +1)"
    np.testing.assert_allclose(errors, ref.pa_mpjpe_loop(mirrored, target), rtol=1e-9, atol=1e-9)
    torch_errors = pa_mpjpe_torch(torch.tensor(mirrored), torch.tensor(target), reduce="none").numpy()
    np.testing.assert_allclose(torch_errors, errors, rtol=1e-9, atol=1e-9)
    # without the fix the mirror would match perfectly: check that an improper map does
    H = np.einsum("nji,njk->nik", target - target.mean(1, keepdims=True), mirrored - mirrored.mean(1, keepdims=True))
    U, _, Vt = np.linalg.svd(H)
    improper = np.einsum("nij,njk->nik", Vt.transpose(0, 2, 1), U.transpose(0, 2, 1))
    assert np.all(np.linalg.det(improper) < 0)


def test_pck3d_and_auc3d_are_exact_at_the_boundaries():
    target = np.zeros((1, 4, 3))
    pred = np.array([[[90.0, 120.0, 0.0],  # exactly 150 mm: counts (<=)
                      [0.0, 0.0, 150.0 + 1e-9],  # just over: does not
                      [0.0, 0.0, 0.0],
                      [0.0, 75.0, 0.0]]])
    assert pck3d(pred, target) == 0.75
    assert pck3d(pred, target, threshold=75.0) == 0.5
    np.testing.assert_array_equal(pck3d(pred, target, reduce="none"), [0.75])
    # errors 150, 150+, 0, 75 over thresholds 0, 5, ..., 150: 1 + 0 + 31 + 16 hits of 4 * 31
    assert auc3d(pred, target) == pytest.approx((1 + 0 + 31 + 16) / (4 * 31), abs=1e-12)
    assert auc3d(pred, target, thresholds=[75.0, 150.0]) == pytest.approx((1 + 0 + 2 + 2) / 8)
    np.testing.assert_array_equal(pck3d(pred, target), ref.pck3d_loop(pred, target, 150.0)[0])


def test_metrics_check_shapes():
    with pytest.raises(ValueError, match="same shape"):
        mpjpe(np.zeros((2, 17, 3)), np.zeros((3, 17, 3)))
    with pytest.raises(ValueError, match="J, 2 or 3"):
        pa_mpjpe(np.zeros((2, 17, 4)), np.zeros((2, 17, 4)))
    with pytest.raises(ValueError, match="reduce"):
        mpjpe(np.zeros((2, 17, 3)), np.zeros((2, 17, 3)), reduce="sum")
    with pytest.raises(ValueError, match="same shape"):
        mpjpe_torch(torch.zeros(2, 17, 3), torch.zeros(2, 16, 3))
    with pytest.raises(ValueError, match="visibility"):
        pck2d(np.zeros((2, 17, 2)), np.zeros((2, 17, 2)), visibility=np.ones((2, 16)))
    with pytest.raises(ValueError, match="joints"):
        evalpose(np.zeros((2, 16, 3)), np.zeros((2, 16, 3)), layout=H36M17)


# -------------------------------------------------------- batched vs reference, real poses
def test_3d_metrics_agree_with_per_pose_loops_on_real_poses(real3d):
    pred, target = _pairs(real3d, 300, noise_mm=40.0, seed=2)
    np.testing.assert_allclose(mpjpe(pred, target, reduce="none"), ref.mpjpe_loop(pred, target), rtol=1e-10)
    np.testing.assert_allclose(pa_mpjpe(pred, target, reduce="none"), ref.pa_mpjpe_loop(pred, target), rtol=1e-8)
    np.testing.assert_allclose(n_mpjpe(pred, target, reduce="none"), ref.n_mpjpe_loop(pred, target), rtol=1e-10)
    np.testing.assert_array_equal(pck3d(pred, target, threshold=60.0, reduce="none"),
                                  ref.pck3d_loop(pred, target, 60.0))
    thresholds = np.linspace(0.0, 150.0, 31)
    np.testing.assert_allclose(auc3d(pred, target, reduce="none"), ref.auc3d_loop(pred, target, thresholds),
                               atol=1e-12)
    aligned = procrustes_align(pred, target)
    for i in range(0, len(pred), 37):
        np.testing.assert_allclose(aligned[i], ref.umeyama_align_one(pred[i], target[i]), atol=1e-8)
    loop_joint = np.array([[math.dist(p, t) for p, t in zip(pp, tt)] for pp, tt in zip(pred[:20], target[:20])])
    np.testing.assert_allclose(per_joint_errors(pred[:20], target[:20]), loop_joint, rtol=1e-10)
    # Procrustes minimises the squared error, so that (not the mean distance) can only go down
    assert np.all((per_joint_errors(aligned, target) ** 2).sum(-1) <= (per_joint_errors(pred, target) ** 2).sum(-1))


def test_leading_dims_chunks_and_float32_give_the_same_result(real3d):
    pred, target = _pairs(real3d, 240, noise_mm=25.0, seed=3)
    for fn in (mpjpe, pa_mpjpe, n_mpjpe, pck3d, auc3d):
        flat = fn(pred, target, reduce="none")
        shaped = fn(pred.reshape(4, 6, 10, *pred.shape[1:]), target.reshape(4, 6, 10, *target.shape[1:]),
                    reduce="none")
        assert shaped.shape == (4, 6, 10)
        np.testing.assert_allclose(shaped.ravel(), flat, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(fn(pred, target, reduce="none", chunk=7), flat, rtol=1e-12, atol=1e-12)
        assert fn(pred, target) == pytest.approx(float(flat.mean()), rel=1e-12)
    pa32 = pa_mpjpe(pred.astype(np.float32), target.astype(np.float32), reduce="none")
    np.testing.assert_allclose(pa32, pa_mpjpe(pred, target, reduce="none"), rtol=1e-4, atol=1e-3)
    assert procrustes_align(pred.astype(np.float32), target.astype(np.float32)).dtype == np.float32


def test_torch_twins_agree_with_numpy(real3d):
    pred, target = _pairs(real3d, 200, noise_mm=30.0, seed=4)
    # scale and rotate part of the predictions so that the alignments have work to do
    pred[:100] = 0.9 * np.einsum("nij,nkj->nki", _rotation(np.random.default_rng(5), 100), pred[:100])
    p64, t64 = torch.tensor(pred), torch.tensor(target)
    for fn_np, fn_t in ((mpjpe, mpjpe_torch), (n_mpjpe, n_mpjpe_torch), (pa_mpjpe, pa_mpjpe_torch)):
        np.testing.assert_allclose(fn_t(p64, t64, reduce="none").numpy(), fn_np(pred, target, reduce="none"),
                                   rtol=1e-9, atol=1e-9)
        mean32 = float(fn_t(p64.float(), t64.float()))
        assert mean32 == pytest.approx(fn_np(pred, target), rel=1e-4)
    np.testing.assert_allclose(procrustes_align_torch(p64, t64).numpy(), procrustes_align(pred, target), atol=1e-8)
    leaf = p64.clone().requires_grad_(True)
    loss = mpjpe_torch(leaf, t64) + n_mpjpe_torch(leaf, t64)
    loss.backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()


# ---------------------------------------------------------------------------------- 2D
def test_pck2d_boundary_and_reference_lengths_by_hand():
    target = np.array([[[0.0, 0.0], [100.0, 0.0], [100.0, 40.0], [50.0, 20.0]]])  # bbox 100 x 40
    pred = target.copy()
    pred[0, 0] += [3.0, 4.0]  # exactly 5 = 0.05 * 100: correct
    pred[0, 1] += [0.0, 5.0 + 1e-9]  # just over: wrong
    pred[0, 2] += [0.0, 7.0]  # wrong, but not labelled below
    visibility = np.array([[2, 1, 0, 2]])
    assert pck2d(pred, target) == 0.5
    assert pck2d(pred, target, visibility=visibility) == pytest.approx(2 / 3)
    np.testing.assert_allclose(pck2d(pred, target, visibility=visibility, reduce="joint"), [1, 0, np.nan, 1])
    assert pck2d(pred, target, normalize="none", threshold=5.0) == 0.5
    assert pck2d(pred, target, normalize=np.array([120.0])) == 0.75  # radius 6
    assert pckh(pred, target, head_size=10.0, threshold=0.5) == 0.5  # radius 5
    np.testing.assert_allclose(bbox_size(target, visibility), [100.0])
    assert head_size_from_headbox(np.array([[0.0, 0.0], [30.0, 40.0]])) == pytest.approx(30.0)
    # a pose with a single labelled joint has no box: no valid joint, NaN per pose
    assert np.isnan(pck2d(pred, target, visibility=np.array([[0, 0, 0, 1]]), reduce="none")[0])


def test_pck2d_and_pckh_agree_with_loops_on_real_coco(coco):
    rng = np.random.default_rng(6)
    target, visibility = coco.xy, coco.v
    pred = target + rng.normal(0.0, 6.0, target.shape)
    reference = bbox_size(target, visibility)
    np.testing.assert_allclose(reference, ref.bbox_size_loop(target, visibility), equal_nan=True)
    correct, valid = ref.pck2d_loop(pred, target, visibility, reference, 0.05)
    assert pck2d(pred, target, visibility=visibility) == pytest.approx(correct / valid, abs=1e-12)
    # an unlabelled joint does not count, wherever its prediction is
    moved = pred.copy()
    moved[visibility == 0] += 1e4
    assert pck2d(moved, target, visibility=visibility) == pck2d(pred, target, visibility=visibility)
    heads = head_size_coco17(target, visibility)
    assert np.nanmedian(heads) > 5.0
    correct, valid = ref.pck2d_loop(pred, target, visibility, heads, 0.5)
    assert pckh(pred, target, head_size=heads, visibility=visibility) == pytest.approx(correct / valid, abs=1e-12)
    torso = torso_size(target, visibility, layout=COCO17)
    correct, valid = ref.pck2d_loop(pred, target, visibility, torso, 0.2)
    assert pck2d(pred, target, visibility=visibility, normalize="torso", layout=COCO17, threshold=0.2) == \
        pytest.approx(correct / valid, abs=1e-12)
    per_pose = pck2d(pred, target, visibility=visibility, reduce="none")
    assert per_pose.shape == (len(target),) and np.nanmin(per_pose) >= 0 and np.nanmax(per_pose) <= 1


# ------------------------------------------------------------------------------- EvalPose
def test_evalpose_hand_computed_chain():
    chain = Layout(name="chain4", joints=("a", "b", "c", "d"), parents=(-1, 0, 1, 2))
    np.testing.assert_array_equal(layout_triplets(chain), [[0, 1, 2], [1, 2, 3]])
    bent_then_straight = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [1.0, 2.0]])  # angles pi/2, pi
    straight_then_bent = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [2.0, 1.0]])  # angles pi, pi/2
    np.testing.assert_allclose(joint_angles(bent_then_straight, layout=chain), [math.pi / 2, math.pi])
    # (pi/2 * pi + pi * pi/2) / (pi^2 (1/4 + 1)) = 0.8
    assert evalpose(bent_then_straight, straight_then_bent, layout=chain) == pytest.approx(0.8)
    assert evalpose(bent_then_straight, 3.0 * bent_then_straight + 7.0, layout=chain) == pytest.approx(1.0)


def test_evalpose_h36m_triplets():
    triplets = layout_triplets(H36M17)
    assert len(triplets) == 13  # joints with a parent and a child, thorax counted once per child
    assert [1, 2, 3] in triplets.tolist() and [7, 8, 11] in triplets.tolist()
    assert ref.triplets_loop(H36M17.parents) == [tuple(t) for t in triplets.tolist()]


def test_evalpose_is_invariant_and_agrees_with_loop_on_real_3d(real3d):
    rng = np.random.default_rng(7)
    pred, target = _pairs(real3d, 60, noise_mm=50.0, seed=8)
    rotated = np.einsum("nij,nkj->nki", _rotation(rng, len(target)), target)
    moved = 0.7 * rotated + rng.normal(0, 300, (len(target), 1, 3))
    np.testing.assert_allclose(evalpose(moved, target, layout=real3d.layout), 1.0, atol=1e-9)
    values = evalpose(pred, target, layout=real3d.layout)
    triplets = ref.triplets_loop(real3d.layout.parents)
    np.testing.assert_allclose(values, [ref.evalpose_loop(p, t, triplets) for p, t in zip(pred, target)], atol=1e-12)
    assert np.all((values >= 0) & (values <= 1 + 1e-12))
    matrix = evalpose_matrix(pred[:25], target[:30], layout=real3d.layout, chunk=7)
    assert matrix.shape == (25, 30)
    for i, k in [(0, 0), (3, 17), (24, 29), (11, 2)]:
        assert matrix[i, k] == pytest.approx(ref.evalpose_loop(pred[i], target[k], triplets), abs=1e-12)
    assert evalpose_mean(pred[:25], target[:30], layout=real3d.layout) == pytest.approx(matrix.mean(), abs=1e-12)
    # a pose is more similar to its own noisy copy than to most other poses
    assert np.mean(np.diag(evalpose_matrix(pred[:30], target[:30], layout=real3d.layout)) >= matrix.mean()) > 0.5


def test_evalpose_with_visibility_on_real_coco(coco):
    rng = np.random.default_rng(9)
    idx = rng.choice(len(coco.xy), 40, replace=False)
    a, va = coco.xy[idx[:20]], coco.v[idx[:20]]
    b, vb = coco.xy[idx[20:]], coco.v[idx[20:]]
    triplets = ref.triplets_loop(COCO17.parents)
    pair = evalpose(a, b, layout=COCO17, visibility_a=va, visibility_b=vb)
    expected = [ref.evalpose_loop(a[i], b[i], triplets, va[i], vb[i]) for i in range(20)]
    np.testing.assert_allclose(pair, expected, atol=1e-12, equal_nan=True)
    matrix = evalpose_matrix(a, b, layout=COCO17, visibility_a=va, visibility_b=vb, chunk=6)
    for i in range(0, 20, 3):
        for k in range(0, 20, 4):
            want = ref.evalpose_loop(a[i], b[k], triplets, va[i], vb[k])
            assert (np.isnan(want) and np.isnan(matrix[i, k])) or matrix[i, k] == pytest.approx(want, abs=1e-12)
    np.testing.assert_allclose(np.diag(matrix), pair, atol=1e-12, equal_nan=True)
    assert evalpose_mean(a, b, layout=COCO17, visibility_a=va, visibility_b=vb) == \
        pytest.approx(np.nanmean(matrix), abs=1e-12)
    # an unlabelled joint's coordinates do not matter
    a_moved = a.copy()
    a_moved[va == 0] = rng.normal(0, 1e3, a_moved[va == 0].shape)
    np.testing.assert_allclose(evalpose(a_moved, b, layout=COCO17, visibility_a=va, visibility_b=vb), pair,
                               atol=1e-12, equal_nan=True)
