"""PoseSyn from motions to training pairs on real data: orientation-aligned motion guidance (Eq. 9),
synthesized pairs (exact projection, world frame, lineage), the guidance export and the import of
an image model's predictions, the 3D-error filter (Eq. 6) and its tau sweep, fine-tuning (FT and
FS), `posecurator synthesize` / `posecurator posesyn` with their one-line errors, and a killed
posesyn run resumed. Real HDM05 mocap and real COCO annotations; motions are real mocap windows
(canonicalized) and, where the motion model module exists, a tiny trained motion model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from posecurator.camera import RandomCameraSampler, project_points, world_to_camera
from posecurator.camera.placement import sample_cameras
from posecurator.errors import DataError
from posecurator.poseset import PoseSet
from posecurator.selection.filter3d import (TAU_SWEEP_MM, filter_by_3d_error, filter_by_3d_error_reference,
                                            removal_evidence, tau_sweep)
from posecurator.skeleton import H36M17
from posecurator.synthesis.alignment import (align_motion, align_motion_reference, body_frame, bone_length_sum,
                                             is_placeholder_camera, size_matched_translation, up_in_camera,
                                             upright_from_camera)
from posecurator.synthesis.motion_repr import camera_to_upright, canonicalize, heading, motion_windows
from posecurator.synthesis.pairs import (LEVEL_CAMERA_R, OPENPOSE_COLORS, ReferenceSet, camera_frame_joints, draw_openpose,
                                         export_guidance, import_predictions, openpose18, synthesized_pairs)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HDM05 = DATA / "hdm05" / "amc"
COCO_TRAIN = DATA / "coco" / "person_keypoints_train2017_subset2155.json"
CLIPS = {"HDM_bd_squat1Reps": 2, "HDM_bd_kickLFront1Reps": 2, "HDM_bd_lieDownFloor": 1,
         "HDM_bd_jogLeftCircle4StepsRstart": 1, "HDM_bd_throwBasketball": 1, "HDM_bd_grabHighR": 1}
FRAMES = 16
pytestmark = pytest.mark.skipif(not HDM05.is_dir() or not COCO_TRAIN.is_file(), reason="real data not found in ../shared/data")


def _has_motion_model() -> bool:
    try:
        import posecurator.train.motion_model  # noqa: F401
        import posecurator.train.motion_trainer  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def hdm05() -> PoseSet:
    from posecurator.io import import_path

    files = [f for prefix, n in CLIPS.items() for f in sorted(HDM05.glob(f"{prefix}_*.amc.gz"))[:n]]
    return PoseSet.concatenate([import_path(f, progress=False) for f in files], renumber=True)


@pytest.fixture(scope="module")
def real_motions(hdm05) -> np.ndarray:
    """Canonicalized windows of real mocap: (W, 16, 17, 3) world mm, frame 0 at the origin facing +X."""
    return canonicalize(motion_windows(hdm05, length=FRAMES, stride=8).joints)


@pytest.fixture(scope="module")
def wild_run(hdm05, tmp_path_factory) -> Path:
    """A tiny root-scale lifter (as tests/test_eem.py's)."""
    from posecurator.train.trainer import LifterTrainer, TrainConfig

    out = tmp_path_factory.mktemp("wild")
    cfg = TrainConfig(width=64, blocks=1, dropout=0.0, lr=3e-3, batch_size=64, epochs=3, val_fraction=0.2,
                      num_threads=1, input_mode="root_scale", joint_dropout=0.2)
    LifterTrainer(cfg).fit(hdm05, out_dir=out, progress=False)
    return out


@pytest.fixture(scope="module")
def coco() -> PoseSet:
    from posecurator.io.coco import read_coco

    return read_coco(COCO_TRAIN).subset(np.arange(400))


@pytest.fixture(scope="module")
def hard_coco(coco, wild_run, tmp_path_factory) -> Path:
    """`posecurator hard` on 400 real COCO annotations (placeholder cameras), with text embeddings."""
    from posecurator.pipelines.hard_samples import run_hard
    from posecurator.train.estimator import LifterEstimator

    out = tmp_path_factory.mktemp("hardcoco") / "hard"
    run_hard(coco, LifterEstimator(wild_run), out_dir=out, top=6, bottom=5, seed=0, log=lambda m: None)
    return out


@pytest.fixture(scope="module")
def hard_3d(hdm05, wild_run, tmp_path_factory) -> Path:
    """`posecurator hard` on the HDM05 poses seen through random cameras (real extrinsics)."""
    from posecurator.pipelines.hard_samples import run_hard
    from posecurator.train.estimator import LifterEstimator

    out = tmp_path_factory.mktemp("hard3d") / "hard"
    run_hard(hdm05, LifterEstimator(wild_run), out_dir=out, top=6, bottom=5, seed=0, embed=False, log=lambda m: None)
    return out


@pytest.fixture(scope="module")
def motion_model(hdm05, tmp_path_factory) -> Path:
    if not _has_motion_model():
        pytest.skip("posecurator.train.motion_model is not in this tree yet")
    from posecurator.train.motion_trainer import MotionConfig, train_motion_model

    out = tmp_path_factory.mktemp("motion") / "model"
    cfg = MotionConfig.preset("tiny", window=FRAMES, max_frames=FRAMES, stride=8, long_stride=8)
    train_motion_model(hdm05, out_dir=out, config=cfg, progress=False)
    return out


def _camera_frame_refs(hdm05, n, seed):
    """n real poses seen through random cameras: root-relative camera-frame poses, root positions, up directions."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(hdm05), n, replace=False)
    joints = hdm05.joints3d[rows].astype(np.float64)
    cams = RandomCameraSampler().sample(joints[:, 0], rng)
    cam = world_to_camera(joints, cams.R, cams.t)
    return cam - cam[:, :1], cam[:, 0], cams.R[:, :, 2], cams


# ------------------------------------------------------------------------------ alignment (Eq. 9)
def test_alignment_agrees_with_reference_faces_reference_and_is_upright(hdm05, real_motions):
    n = 12
    motions = real_motions[:n]
    ref, trans, up, _ = _camera_frame_refs(hdm05, n, seed=1)
    fast = align_motion(motions, ref, trans, up)
    slow = align_motion_reference(motions, ref, trans, up)
    assert fast.shape == motions.shape and np.allclose(fast, slow, atol=1e-6)
    # frame 0: pelvis at the reference's root, facing the reference's facing direction, up = the camera's up
    assert np.allclose(fast[:, 0, 0], trans, atol=1e-6)
    assert np.allclose(body_frame(fast[:, 0], up), body_frame(ref, up), atol=1e-9)
    # upright: heights above frame 0's pelvis along the camera's up are the motion's world Z heights
    rel_up = np.einsum("nljk,nk->nlj", fast - trans[:, None, None], up)
    assert np.allclose(rel_up, motions[..., 2] - motions[:, :1, :1, 2], atol=1e-6)
    # one rigid motion: bone lengths, and each frame's heading change relative to frame 0, are kept
    assert np.allclose(bone_length_sum(fast), bone_length_sum(motions), atol=1e-6)
    frames_cam = body_frame(fast, up[:, None])                     # (n, L, 3, 3)
    cos_cam = np.einsum("nlk,nk->nl", frames_cam[:, :, 0], frames_cam[:, 0, 0])
    h = heading(motions)
    assert np.allclose(cos_cam, np.cos(h - h[:, :1]), atol=1e-6)
    # a level (placeholder) camera: up = -y; batched over extra leading dimensions too
    level = align_motion(motions.reshape(3, 4, FRAMES, 17, 3), ref.reshape(3, 4, 17, 3), trans.reshape(3, 4, 3), (0.0, -1.0, 0.0))
    assert np.allclose(level.reshape(fast.shape), align_motion_reference(motions, ref, trans, np.tile([0.0, -1.0, 0.0], (n, 1))),
                       atol=1e-6)


def test_up_in_camera_placeholders_and_upright(coco, hard_3d):
    coco_cam = coco.cameras[int(coco.camera[0])]
    assert coco_cam.get("assumed_intrinsics") and is_placeholder_camera(coco_cam) and is_placeholder_camera(None)
    assert up_in_camera(coco_cam).tolist() == [0.0, -1.0, 0.0]
    easy = PoseSet.load(hard_3d / "easy.pcs")
    cam = easy.cameras[int(easy.camera[0])]
    assert not is_placeholder_camera(cam)
    R = np.asarray(cam["R"])
    assert np.allclose(up_in_camera(cam), R @ [0, 0, 1])
    # the batched upright transform agrees with motion_repr's one-camera version
    pred = np.random.default_rng(2).normal(0, 300, (5, 17, 3))
    for u in ([0.0, -1.0, 0.0], R @ [0, 0, 1]):
        assert np.allclose(upright_from_camera(pred, u), camera_to_upright(pred, up_cam=u), atol=1e-9)


def test_size_matched_translation_keeps_the_pelvis_pixel(hdm05):
    ref, trans, _, cams = _camera_frame_refs(hdm05, 6, seed=3)
    small = ref * 0.8  # a lifter that shrinks people is placed too close by the solved translation
    t_small = trans * 0.8
    t = size_matched_translation(t_small, small, ref)
    assert np.allclose(t, trans, atol=1e-6)
    px = project_points(t[:, None], cams.f, cams.c)
    assert np.allclose(px, project_points(t_small[:, None], cams.f, cams.c), atol=1e-6)


# ------------------------------------------------------------------------------ pairs
def _references(hard_dir) -> ReferenceSet:
    from posecurator.pipelines.posesyn import load_hard_dir

    return load_hard_dir(hard_dir).references()


@pytest.mark.parametrize("which", ["coco", "3d"])
def test_pairs_project_exactly_world_frame_and_lineage(which, hard_coco, hard_3d, real_motions, tmp_path):
    from posecurator.pipelines.posesyn import load_hard_dir

    hard = load_hard_dir(hard_coco if which == "coco" else hard_3d)
    refs = hard.references()
    H, S = 3, 4
    motions = real_motions[:H * S].reshape(H, S, FRAMES, 17, 3)
    ids = hard.hard.sample_id[:H]
    pairs = synthesized_pairs(motions, ids, refs, seed=0, captions=hard.captions, n_random_cameras=1)
    assert len(pairs) == H * S * 2 * FRAMES
    path = tmp_path / "pairs.pcs"
    pairs.save(path)
    back = PoseSet.load(path)
    # the stored world 3D through the stored camera rows reproduces the stored 2D exactly
    cams = sample_cameras(back)
    px = project_points(world_to_camera(back.joints3d.astype(np.float64), cams["R"], cams["t"]), cams["f"], cams["c"])
    vis = back.visibility > 0
    assert vis.mean() > 0.3
    assert np.array_equal(px.astype(np.float32)[vis], back.joints2d[vis]) and np.isnan(back.joints2d[~vis]).all()
    inside = (px[..., 0] >= 0) & (px[..., 0] < cams["width"][:, None]) & (px[..., 1] >= 0) & (px[..., 1] < cams["height"][:, None])
    assert np.array_equal(vis, inside & np.isfinite(px).all(-1))
    # Z-up world, floor at Z = 0: every frame's heights are the canonical motion's (the motion stands on the floor)
    ref_view = back.subset(np.char.find(back.clip.astype(str), "-v") < 0)
    z = ref_view.joints3d[..., 2].reshape(H, S, FRAMES, 17)
    assert np.allclose(z, motions[..., 2], atol=0.05)
    # lineage
    assert set(back.operator.tolist()) == {"posesyn"} and (back.generation == 1).all() and set(back.source.tolist()) == {"posesyn"}
    assert set(back.parents[:, 0].tolist()) == set(ids.tolist()) and set(back.parents[:, 1].tolist()) <= set(refs.poses.sample_id.tolist())
    first = back.subset(back.frame == 0)
    for row in range(len(first)):
        h, r = first.parents[row]
        assert first.clip[row].startswith(f"syn-h{h}-r{r}-s") and first.subject[row] == str(r)
        assert first.activity[row] == (hard.captions.get(int(h)) or "posesyn")
    assert sorted(set(back.frame.tolist())) == list(range(FRAMES)) and len(set(back.sample_id.tolist())) == len(back)
    assert sum(c.endswith("-v1") for c in np.unique(back.clip)) == H * S
    # the aligned first frame faces the reference person's facing direction, upright in the camera
    cam0 = camera_frame_joints(first)
    refs_row = {int(i): k for k, i in enumerate(refs.poses.sample_id)}
    for row in np.flatnonzero(np.char.find(first.clip.astype(str), "-v") < 0):
        k = refs_row[int(first.parents[row, 1])]
        cam_row = refs.poses.cameras[int(refs.poses.camera[k])]
        up = up_in_camera(cam_row)
        assert np.allclose(body_frame(cam0[row], up), body_frame(refs.pred3d[k], up), atol=1e-4)
        if which == "coco":
            assert np.allclose(np.asarray(first.cameras[int(first.camera[row])]["R"]), LEVEL_CAMERA_R)
            assert first.cameras[int(first.camera[row])]["virtual_level"] is True
        else:  # the reference camera's own rotation
            assert np.allclose(np.asarray(first.cameras[int(first.camera[row])]["R"]), np.asarray(cam_row["R"]))
        # frame 0's pelvis is on the ray of the reference's solved root (same pixel), at the motion's body size
        t_ref = refs.translation[k]
        assert np.allclose(cam0[row, 0] / np.linalg.norm(cam0[row, 0]), t_ref / np.linalg.norm(t_ref), atol=1e-5)


def test_guidance_export_and_imported_predictions(hard_coco, real_motions, tmp_path):
    from PIL import Image

    from posecurator.io.predictions import write_predictions

    refs = _references(hard_coco)
    motions = real_motions[:4].reshape(2, 2, FRAMES, 17, 3)
    pairs = synthesized_pairs(motions, np.array([11, 22]), refs, seed=1)
    kp = openpose18(pairs.joints2d, pairs.visibility)
    assert kp.shape == (len(pairs), 18, 3) and (kp[:, 14:, 2] == 0).all()
    assert np.allclose(kp[:, 0, :2][kp[:, 0, 2] > 0], pairs.joints2d[:, H36M17.index("neck")][kp[:, 0, 2] > 0])
    index = export_guidance(pairs, tmp_path / "guidance", max_frames=3)
    assert index["n_sequences"] == 4 and index["n_frames"] == 12
    clip = str(pairs.clip[0])
    doc = json.loads((tmp_path / "guidance" / f"{clip}.json").read_text())
    assert doc["hard_sample_id"] == 11 and len(doc["frames"]) == 3 and len(doc["frames"][0]["pose_keypoints_2d"]) == 54
    img = np.asarray(Image.open(tmp_path / "guidance" / clip / "frame_00000.png"))
    assert img.shape == (doc["height"], doc["width"], 3)
    row = np.flatnonzero((pairs.clip == clip) & (pairs.frame == 0))[0]
    for k in range(14):  # a visible keypoint's disc has its OpenPose colour (unless a later disc covers it)
        if kp[row, k, 2] > 0:
            x, y = int(kp[row, k, 0]), int(kp[row, k, 1])
            later = [j for j in range(k + 1, 18) if kp[row, j, 2] > 0 and abs(kp[row, j, 0] - x) < 9 and abs(kp[row, j, 1] - y) < 9]
            if not later:
                assert tuple(img[y, x].tolist()) == OPENPOSE_COLORS[k]
    assert (img[0, 0] == 0).all()  # black background
    assert np.array_equal(img, draw_openpose(kp[row], doc["width"], doc["height"]))
    # an image model's predictions on the rendered frames come back aligned with the pairs
    true = camera_frame_joints(pairs)
    pred = true - true[:, :1] + np.random.default_rng(0).normal(0, 5, true.shape)
    write_predictions(tmp_path / "pred.npz", pairs.sample_id, pred)
    back = import_predictions(pairs, tmp_path / "pred.npz")
    got = camera_frame_joints(back)
    assert np.allclose(got - got[:, :1], pred - pred[:, :1], atol=0.05)
    keep, err = filter_by_3d_error(got, true, tau=60)
    assert keep.all() and (err < 20).all()
    write_predictions(tmp_path / "few.npz", pairs.sample_id[:5], pred[:5])
    with pytest.raises(DataError, match="few.npz"):
        import_predictions(pairs, tmp_path / "few.npz")


# ------------------------------------------------------------------------------ the filter (Eq. 6)
def test_filter_matches_reference_tau_sweep_and_evidence(hdm05, real_motions):
    rng = np.random.default_rng(4)
    target = hdm05.joints3d[::3].astype(np.float64)
    pred = target + rng.normal(0, 1, (len(target), 1, 1)) * rng.normal(0, 60, target.shape)
    pred[:3] = np.nan  # not liftable: fails
    keep, err = filter_by_3d_error(pred, target, tau=120)
    keep_r, err_r = filter_by_3d_error_reference(pred, target, tau=120)
    assert np.array_equal(keep, keep_r) and np.allclose(err, err_r, equal_nan=True)
    assert not keep[:3].any() and np.isnan(err[:3]).all() and 0 < keep.mean() < 1
    # root-relative: a translation of the prediction changes nothing
    assert np.allclose(filter_by_3d_error(pred + [100.0, -50.0, 3000.0], target)[1], err, equal_nan=True)
    sweep = tau_sweep(err, TAU_SWEEP_MM)
    rates = [row["pass_rate"] for row in sweep]
    assert [row["tau_mm"] for row in sweep] == [60.0, 90.0, 120.0, 150.0, 200.0, "inf"]
    assert rates == sorted(rates) and sweep[2]["kept"] == int(keep.sum())
    assert sweep[-1]["kept"] == len(err) - 3
    with pytest.raises(ValueError):
        filter_by_3d_error(pred, target, tau=0)
    # what the filter removes: stretched, floating, skating frames against real ones
    from posecurator.augment.plausibility import JointAnglePrior

    motions = real_motions[:6].reshape(-1, 17, 3).copy()
    clip = np.repeat(np.arange(6), FRAMES).astype(str)
    frame = np.tile(np.arange(FRAMES), 6)
    bad = clip.astype(int) >= 3
    motions[bad, 16] += [0.0, 0.0, 400.0]            # a stretched forearm
    motions[bad, :, 2] -= 200.0                        # sunk into the floor (ankles are ~100 mm above it)
    ev = removal_evidence(motions, ~bad, clip=clip, frame=frame, parents=H36M17.parents,
                          prior=JointAnglePrior().fit(hdm05), real_poses=hdm05.joints3d)
    assert ev["n_kept"] == ev["n_removed"] == 3 * FRAMES
    assert ev["floor_penetration_mm"]["removed"]["median"] > ev["floor_penetration_mm"]["kept"]["median"] + 40
    assert ev["implausible_fraction"]["removed"] > ev["implausible_fraction"]["kept"]
    assert ev["nearest_real_pose_mm"]["removed"]["median"] > ev["nearest_real_pose_mm"]["kept"]["median"]


# ------------------------------------------------------------------------------ fine-tuning
def test_finetune_ft_and_fs_give_evaluable_lifters(hdm05, wild_run, hard_3d, real_motions, tmp_path):
    from posecurator.pipelines.posesyn import finetune, run_train_config
    from posecurator.train.checkpoint import read_json
    from posecurator.train.evaluate import evaluate_run

    refs = _references(hard_3d)
    synthetic = synthesized_pairs(real_motions[:8].reshape(4, 2, FRAMES, 17, 3), np.arange(4), refs, seed=0)
    test = hdm05.subset(hdm05.clip == hdm05.clip[0])
    base = run_train_config(wild_run)
    for mode in ("ft", "fs"):
        res = finetune(hdm05, synthetic, real_run=wild_run, out_dir=tmp_path / mode, mode=mode)
        assert res["n_synthetic"] == len(synthetic) and res["mode"] == mode
        cfg = read_json(tmp_path / mode / "config.json")
        assert cfg["init_from"] == (str(wild_run) if mode == "ft" else None)
        assert res["epochs"] == (max(1, round(base.epochs * 0.5)) if mode == "ft" else base.epochs)
        assert cfg["data"]["val_given"] and cfg["data"]["n_val"] > 0
        r = evaluate_run(tmp_path / mode, test)
        assert np.isfinite(r["mpjpe"]) and r["n_poses"] == 4 * len(test)


# ------------------------------------------------------------------------------ the loop
def test_posesyn_with_the_motion_model_is_evaluable(coco, hdm05, wild_run, motion_model, tmp_path):
    from posecurator.pipelines.posesyn import run_posesyn
    from posecurator.train.evaluate import evaluate_run

    out = tmp_path / "run"
    test = hdm05.subset(hdm05.clip == hdm05.clip[-1])
    s = run_posesyn(coco, estimator_run=wild_run, train=hdm05, motion_model_dir=motion_model, out_dir=out, top=4, bottom=3,
                    per_sample=2, tau=1000.0, seed=0, variant="full", test=test, control=True)
    d = s["data"]
    assert d["hard"] == 4 and d["sequences"] == 8 and d["synthesized_pairs"] == 8 * FRAMES
    assert s["motion_source"]["conditioning"] == "text + init codes of the mis-predicted pose"
    assert d["kept"] == len(PoseSet.load(out / "synthetic.pcs")) and d["kept"] > 0
    assert d["lifter_train_part"]["synthetic"] == d["kept"]
    assert [r["tau_mm"] for r in s["filter"]["tau_sweep"]][-1] == "inf"
    assert {"implausible_fraction", "nearest_real_pose_mm", "foot_skating_mm_per_frame"} <= set(s["filter"]["what_it_removes"])
    assert s["times"]["sampling_sequences_per_s"] > 0 and s["times"]["loop_s"] > 0
    assert set(s["evaluation"]["per_activity"]) and "mpjpe" in s["evaluation"]["after"]
    assert set(s["evaluation"]) >= {"before", "after", "control_real_only"}
    assert s["lifters"]["control_real_only"]["epochs"] == s["lifters"]["final"]["epochs"]
    for run in (out, out / "lifter", out / "control"):
        assert np.isfinite(evaluate_run(run, test)["mpjpe"])
    plots = json.loads((out / "plots" / "plot_data.json").read_text())
    assert len(plots["samples"]) == 4 and len(plots["samples"][0]["motions"]) == 2


def test_variants_condition_as_said(hard_coco, hdm05, motion_model):
    from posecurator.pipelines.posesyn import load_hard_dir, load_motion_source, sample_motions
    from posecurator.synthesis.real_motions import RealMotionBank

    hard = load_hard_dir(hard_coco)
    model = load_motion_source(motion_model)
    said = {}
    for variant in ("full", "no_init", "no_text", "random_samples"):
        motions, ids, info = sample_motions(model, hard, variant=variant, per_sample=2, seed=0)
        assert motions.shape == (len(ids), 2, FRAMES, 17, 3) and np.isfinite(motions).all()
        said[variant] = info["conditioning"]
        expected = hard.random.sample_id if variant == "random_samples" else hard.hard.sample_id
        assert np.array_equal(ids, expected)
    assert said["no_init"] == "text" and said["no_text"] == "init codes of the mis-predicted pose"
    still, ids, info = sample_motions(None, hard, variant="mispredicted_only", per_sample=2, n_frames=8)
    assert still.shape == (len(ids), 2, 8, 17, 3) and np.allclose(still, still[:, :, :1], atol=1e-3)
    # the real-motion baseline: windows whose first frame is nearest to the hard pose
    bank = RealMotionBank.from_poses(hdm05, length=FRAMES, stride=4)
    real, _, info = sample_motions(bank, hard, variant="full", per_sample=3, seed=0)
    assert info["conditioning"] == "init codes of the mis-predicted pose"
    assert all(any(np.allclose(m, w, atol=1e-3) for w in bank.windows_[:, :FRAMES]) for m in real[0])


# ------------------------------------------------------------------------------ the CLI
def _one_line_error(capsys, argv) -> str:
    from posecurator.cli.main import main

    assert main(argv + ["-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "internal error" not in err, err
    return err


def test_cli_synthesize_and_bad_inputs_one_line(hard_coco, hdm05, motion_model, wild_run, coco, tmp_path, capsys):
    from posecurator.cli.main import main

    data = tmp_path / "hdm05.pcs"
    hdm05.save(data)
    out = tmp_path / "syn"
    assert main(["synthesize", str(hard_coco), "--model", str(motion_model), "-o", str(out), "--per-sample", "2",
                 "--export-guidance", "2", "-q"]) == 0
    pairs = PoseSet.load(out / "pairs.pcs")
    assert len(pairs) == 6 * 2 * FRAMES and (out / "guidance" / "guidance.json").is_file()
    assert main(["synthesize", str(hard_coco), "--real-motions", str(data), "-o", str(tmp_path / "syn-real"), "--per-sample",
                 "2", "--frames", "8", "-q"]) == 0
    capsys.readouterr()

    # a hard-sample folder of another layout
    other = tmp_path / "hard-other"
    shutil.copytree(hard_coco, other)
    shutil.rmtree(other / "hard.pcs")
    coco.subset(np.arange(5)).save(other / "hard.pcs")  # COCO-17 layout
    err = _one_line_error(capsys, ["synthesize", str(other), "--model", str(motion_model), "-o", str(tmp_path / "o1")])
    assert "coco17" in err and "hard.pcs" in err
    # captions missing for a sample
    nocap = tmp_path / "hard-nocap"
    shutil.copytree(hard_coco, nocap)
    caps = json.loads((nocap / "captions.json").read_text())
    gone = PoseSet.load(nocap / "hard.pcs").sample_id[0]
    keep = [i for i, s in enumerate(caps["sample_id"]) if s != gone]
    (nocap / "captions.json").write_text(json.dumps({k: [v[i] for i in keep] for k, v in caps.items()}))
    err = _one_line_error(capsys, ["synthesize", str(nocap), "--model", str(motion_model), "-o", str(tmp_path / "o2")])
    assert "captions.json" in err and str(gone) in err
    # a motion model of another layout, and of a newer version
    for change, word in (({"layout": "smpl22"}, "smpl22"), ({"version": 99}, "version")):
        bad = tmp_path / f"model-{word}"
        shutil.copytree(motion_model, bad)
        doc = json.loads((bad / "config.json").read_text())
        (bad / "config.json").write_text(json.dumps({**doc, **change}))
        err = _one_line_error(capsys, ["synthesize", str(hard_coco), "--model", str(bad), "-o", str(tmp_path / "o3")])
        assert word in err and "config.json" in err
    # checkpoints cut short: the motion model's, and the estimator's for posesyn
    cut = tmp_path / "model-cut"
    shutil.copytree(motion_model, cut)
    w = cut / "transformer.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    err = _one_line_error(capsys, ["synthesize", str(hard_coco), "--model", str(cut), "-o", str(tmp_path / "o4")])
    assert "transformer.safetensors" in err
    run_cut = tmp_path / "run-cut"
    shutil.copytree(wild_run, run_cut)
    b = run_cut / "best.safetensors"
    data_b = b.read_bytes()
    b.unlink()  # best.safetensors is a hard link of an epoch file: replace it, do not truncate the shared file
    b.write_bytes(data_b[: len(data_b) // 3])
    err = _one_line_error(capsys, ["posesyn", str(COCO_TRAIN), "--estimator", str(run_cut), "--train", str(data),
                                   "--real-motions", "-o", str(tmp_path / "o5")])
    assert "best.safetensors" in err
    err = _one_line_error(capsys, ["posesyn", str(COCO_TRAIN), "--estimator", str(wild_run), "--train", str(data),
                                   "--model", str(cut), "-o", str(tmp_path / "o6")])
    assert "transformer.safetensors" in err
    assert not any((tmp_path / f"o{k}").exists() for k in range(1, 7))


def test_killed_posesyn_rerun_reuses_finished_stages(coco, hdm05, wild_run, tmp_path, capsys):
    from posecurator.cli.main import main
    from posecurator.fileio import KILL_POINT_ENV

    data, train = tmp_path / "coco.pcs", tmp_path / "hdm05.pcs"
    coco.save(data)
    hdm05.save(train)
    argv = ["posesyn", str(data), "--estimator", str(wild_run), "--train", str(train), "--real-motions", "-o",
            str(tmp_path / "run"), "--top", "4", "--bottom", "3", "--per-sample", "2", "--frames", "8", "--tau", "1000", "-q"]
    # killed (as SIGKILL would) after the first epoch of the fine-tuning was committed
    env = {**os.environ, KILL_POINT_ENV: "lifter-state:0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "posecurator.cli.main", *argv], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 137, proc.stderr
    stages = sorted(p.name.split("-")[0] for p in (tmp_path / "run" / "stages").iterdir() if not p.name.startswith("."))
    assert stages == ["eem", "filter", "msm", "pairs"]
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out[-1])["reused_stages"] == ["eem", "msm", "pairs", "filter"]
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["lifters"]["final"]["resumed"] is True and not s["stages"]["finetune"]["reused"]
    assert main(argv) == 0  # a third run: everything is reused
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["reused_stages"] == ["eem", "msm", "pairs", "filter",
                                                                                               "finetune"]
