"""The VAE sampling pipelines (paper 002) end to end on real data: the ``difficulty`` command and its
scores driving ``train --sampler``, the bench methods at equal steps with EvalPose and the per-bin
(Fig. 4) analysis, the bandai-to-cmu split, and the 2D-only COCO case."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from posecurator.cli.main import main
from posecurator.poseset import PoseSet

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BANDAI = DATA / "bandai"
HDM05 = DATA / "hdm05" / "amc"
COCO = DATA / "coco"
pytestmark = pytest.mark.skipif(not (BANDAI.is_dir() and HDM05.is_dir() and COCO.is_dir()),
                                reason=f"real Bandai / HDM05 / COCO data not found under {DATA}")

# seven short Bandai clips of different activities (about 1,270 poses at 30 fps) as the source
SOURCE_CLIPS = ["dataset-1/data/dataset-1_bow_active_001", "dataset-1/data/dataset-1_bye_angry_001",
                "dataset-1/data/dataset-1_byebye_normal_001", "dataset-1/data/dataset-1_kick_normal_001",
                "dataset-1/data/dataset-1_punch_normal_001", "dataset-2/data/dataset-2_walk_normal_001",
                "dataset-2/data/dataset-2_raise-up-both-hands_normal_001"]
TARGET_CLIPS = ["HDM_dg_squat1Reps_025_120", "HDM_dg_kickLFront1Reps_013_120"]
# a tiny lifter: no cap on the epoch, so a third of the poses would mean a third of the steps
TINY = {"width": 64, "blocks": 1, "dropout": 0.0, "epochs": 2, "batch_size": 64, "max_epoch_pairs": None,
        "val_fraction": 0.15, "num_threads": 1}
TINY_VAE = {"epochs": 5}


def run_cli(capsys, *argv):
    code = main([*map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """The source clips and the target clips copied to temp folders (never into the repository)."""
    root = tmp_path_factory.mktemp("vae_data")
    src, tgt = root / "source", root / "target"
    src.mkdir()
    tgt.mkdir()
    for name in SOURCE_CLIPS:
        shutil.copy(BANDAI / f"{name}.bvh.gz", src)
    shutil.copy(DATA / "hdm05" / "asf" / "HDM_dg.asf", tgt)
    for name in TARGET_CLIPS:
        shutil.copy(HDM05 / f"{name}.amc.gz", tgt)
    return src, tgt


@pytest.fixture(scope="module")
def source_set(folders, tmp_path_factory) -> Path:
    from posecurator.io import import_path

    ds = tmp_path_factory.mktemp("vae_ds") / "source.pcs"
    import_path(folders[0], progress=False).save(ds)
    return ds


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vae_cfg") / "tiny.json"
    path.write_text(json.dumps(TINY))
    return path


# ------------------------------------------------------------------------------ difficulty
def test_difficulty_writes_outputs_and_scores_drive_train(tmp_path, capsys, source_set, tiny_config):
    out = tmp_path / "diff"
    code, stdout, err = run_cli(capsys, "difficulty", source_set, "-o", out, "--bins", "10", "--epochs", "20", "--quiet")
    assert code == 0, err
    for name in ("scores.npz", "bins.json", "summary.json", "heatmap.png", "histogram.png", "gallery.png",
                 "bins_gallery.png", "vae/fold0/vae.safetensors", "vae/fold4/vae.json", "vae/crossfit.json",
                 "plot_data.npz"):
        assert (out / name).is_file(), name  # scores cross-fitted by clip over 5 folds by default
    ps = PoseSet.load(source_set)
    with np.load(out / "scores.npz", allow_pickle=False) as z:
        ids, score, bins = z["sample_id"], z["score"], z["bin"]
    np.testing.assert_array_equal(ids, ps.sample_id)
    assert np.isfinite(score).all() and score.min() >= 0
    assert len(np.bincount(bins)) == 10 and np.ptp(np.bincount(bins)) <= 1  # equal-size bins
    doc = json.loads((out / "bins.json").read_text())
    assert doc["k"] == 10 and len(doc["bins"]) == 10 and sum(b["count"] for b in doc["bins"]) == len(ps)
    assert [b["score_mean"] for b in doc["bins"]] == sorted(b["score_mean"] for b in doc["bins"])
    sim = np.array(doc["similarity"], dtype=np.float64)
    assert sim.shape == (10, 10) and np.allclose(sim, sim.T, equal_nan=True) and np.nanmax(sim) <= 1.0 + 1e-9
    assert all(b["score_min"] <= b["score_median"] <= b["score_max"] for b in doc["bins"])

    # the scores drive the lifter's hard-mining sampler from the CLI
    run = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "train", source_set, "-o", run, "--config", tiny_config, "--sampler", "hard:0.33",
                                "--scores", out / "scores.npz", "--quiet")
    assert code == 0, err
    history = json.loads((run / "history.json").read_text())
    cfg = json.loads((run / "config.json").read_text())
    n_train = cfg["data"]["n_train"]
    pairs = [e["pairs"] for e in history["epochs"]]
    # a third of the training poses per epoch (whole batches of 64)
    assert all(p == (int(np.floor(0.33 * n_train + 0.5)) // 64) * 64 for p in pairs), (pairs, n_train)

    # unknown scores file -> one-line error
    code, stdout, err = run_cli(capsys, "train", source_set, "-o", tmp_path / "run2", "--config", tiny_config,
                                "--sampler", "hard:0.33", "--scores", tmp_path / "missing.npz", "--quiet")
    assert code == 2 and "missing.npz" in err and len(err.strip().splitlines()) == 1


def test_difficulty_rejects_bad_input(tmp_path, capsys):
    code, out, err = run_cli(capsys, "difficulty", COCO / "person_keypoints_val2017_subset2213.json", "-o", tmp_path / "x",
                             "--space", "3d", "--quiet")
    assert code == 2 and "2D poses only" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "vae.json"
    bad.write_text('{"epochz": 3}')
    code, out, err = run_cli(capsys, "difficulty", COCO / "person_keypoints_val2017_subset2213.json", "-o", tmp_path / "y",
                             "--config", bad, "--quiet")
    assert code == 2 and "epochz" in err and "vae.json" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_coco_difficulty_2d(tmp_path, capsys):
    out = tmp_path / "coco"
    code, stdout, err = run_cli(capsys, "difficulty", COCO / "person_keypoints_train2017_subset2155.json", "-o", out,
                                "--space", "2d", "--heldout", COCO / "person_keypoints_val2017_subset2213.json",
                                "--epochs", "30", "--quiet")
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["space"] == "2d" and summary["vae"]["config"]["space"] == "2d"
    for part in (out, out / "heldout"):
        doc = json.loads((part / "bins.json").read_text())
        assert len(doc["bins"]) == 25 and doc["n_scored"] + doc["n_unscored"] == doc["n_poses"]
        assert "visible_joints_mean" in doc["bins"][0] and "subject_top" not in doc["bins"][0]  # image ids are not counted
        assert (part / "heatmap.png").is_file() and (part / "gallery.png").is_file()
        with np.load(part / "scores.npz", allow_pickle=False) as z:
            # poses with too few labelled joints are unscored: NaN score, bin -1
            assert ((z["bin"] == -1) == ~np.isfinite(z["score"])).all() and (z["bin"] >= 0).sum() == doc["n_scored"]
    held = summary["heldout"]
    assert len(held["counts_in_reference_bins"]) == 25 and sum(held["counts_in_reference_bins"]) == held["n_scored"]


# ------------------------------------------------------------------------------ samplers at equal steps
def test_equal_length_sampler_keeps_subset_and_stretches_epochs():
    from posecurator.selection.samplers import EqualLengthSampler
    from posecurator.selection.samplers import CurriculumSampler, HardMiningSampler

    scores = np.linspace(0.0, 1.0, 300)[np.random.default_rng(0).permutation(300)]  # a permutation of ranks
    hard = EqualLengthSampler(HardMiningSampler(scores, fraction=0.33, k=25, seed=1), 300, seed=1)
    chosen = set(hard.base.selected_.tolist())
    for epoch in range(3):
        idx = hard.indices_for_epoch(epoch)
        assert len(idx) == 300 and set(idx.tolist()) == chosen
        counts = np.bincount(idx, minlength=300)[sorted(chosen)]
        assert counts.min() >= 3 and counts.max() <= 4  # whole reshuffled passes, then a part of one
    assert hard.total_length(4) == 1200 and hard.distinct_indices(4) == len(chosen) == 99
    np.testing.assert_array_equal(list(iter(hard)), hard.indices_for_epoch(0))
    curriculum = EqualLengthSampler(CurriculumSampler(scores, k=25, epochs=3, seed=0), 300, seed=0)
    assert [len(curriculum.indices_for_epoch(e)) for e in range(3)] == [300, 300, 300]
    assert curriculum.distinct_indices(3) == 300
    # an epoch longer than the target length is kept as it is
    assert len(EqualLengthSampler(HardMiningSampler(scores, fraction=1.0), 100).indices_for_epoch(0)) == 300


# ------------------------------------------------------------------------------ the experiment
def test_vae_bench_equal_steps_evalpose_and_per_bin(tmp_path, capsys, folders, tiny_config):
    src, tgt = folders
    vae_cfg = tmp_path / "vae.json"
    vae_cfg.write_text(json.dumps(TINY_VAE))
    out = tmp_path / "bench"
    code, stdout, err = run_cli(capsys, "vae-bench", "custom", "--train", src, "--test", tgt, "--seeds", "0",
                                "--config", tiny_config, "--vae-config", vae_cfg, "--bins", "5", "-o", out, "--quiet")
    assert code == 0, err
    assert "vae_hard33" in stdout and "EvalPose" in stdout
    doc = json.loads((out / "vae_results.json").read_text())
    bench_runs = json.loads((out / "results.json").read_text())["runs"]
    rows = {r["method"]: r for r in doc["runs"]}
    assert list(rows) == ["vae_all", "random33", "vae_hard33", "vae_curriculum"]
    # the same number of optimisation steps for every method, whatever the subset
    assert len({r["steps"] for r in doc["runs"]}) == 1 and rows["vae_all"]["steps"] > 0
    n_train = next(r for r in bench_runs if r["method"] == "vae_hard33")["n_train_part"]
    third = int(np.floor(0.33 * n_train + 0.5))
    assert rows["vae_hard33"]["train_poses"] == rows["random33"]["train_poses"] == third
    assert rows["vae_curriculum"]["train_poses"] == rows["vae_all"]["train_poses"] == n_train
    # the re-evaluation reproduces the bench's numbers, and adds EvalPose in (0, 1]
    for r in bench_runs:
        mine = next(m for m in doc["runs"] if m["method"] == r["method"] and m["seed"] == r["seed"])
        assert mine["mpjpe"] == pytest.approx(r["mpjpe"], rel=1e-9) and mine["pa_mpjpe"] == pytest.approx(r["pa_mpjpe"], rel=1e-9)
        assert 0.0 < mine["evalpose"] <= 1.0
    # per-bin (Fig. 4) data: (k,) curves for both binnings, every target pose in one bin
    from posecurator.pipelines.splits import load_dataset

    n_test = len(load_dataset(tgt, progress=False))
    for binning in ("source_edges", "target_quantiles"):
        per_bin = rows["vae_hard33"]["per_bin"][binning]
        assert all(len(per_bin[m]) == 5 for m in ("mpjpe", "pa_mpjpe", "evalpose", "counts"))
        assert sum(per_bin["counts"]) == n_test
        filled = np.array(per_bin["counts"]) > 0
        assert np.isfinite(np.array(per_bin["mpjpe"], dtype=np.float64)[filled]).all()
    assert np.ptp(rows["vae_all"]["per_bin"]["target_quantiles"]["counts"]) <= 1
    s = next(x for x in doc["summary"] if x["method"] == "vae_curriculum")
    assert len(s["per_bin"]["source_edges"]["mpjpe"]) == 5 and "mpjpe_std" in s["per_bin"]["source_edges"]
    for name in ("per_bin_mpjpe", "per_bin_delta", "per_bin_mpjpe_target_quantiles", "target_bins", "source_heatmap"):
        assert (out / doc["files"][name]).is_file(), name
    # one set of 5 fold VAEs per seed (cross-fitted by clip), trained on the source only, shared by the
    # hard and curriculum methods
    vaes = sorted((out / "runs").glob("vae-seed0-*"))
    assert len(vaes) == 1 and vaes[0].name.startswith("vae-seed0-cf5-")
    assert doc["vae_scoring"] == "crossfit 5" and doc["target_scoring"].startswith("out_of_sample: mean of the 5")
    cf_doc = json.loads((vaes[0] / "crossfit.json").read_text())
    n_source = len(load_dataset(src, progress=False))
    assert sum(cf_doc["fold_poses"]) == n_source
    for k, n_fold in enumerate(cf_doc["fold_poses"]):
        vae_doc = json.loads((vaes[0] / f"fold{k}" / "vae.json").read_text())
        assert vae_doc["history"]["n_train"] + vae_doc["history"]["n_val"] == n_source - n_fold
    assert {r.get("vae_dir") for r in bench_runs if r["method"] in ("vae_hard33", "vae_curriculum")} == {str(vaes[0])}
    table = (out / "vae_table.md").read_text()
    assert "vae_hard33 (gt)" in table and "seed spread" in table and "source scores crossfit 5" in table
    # the hard runs of this folder were trained on cross-fitted scores: an in-sample rerun here is refused
    code, stdout, err = run_cli(capsys, "vae-bench", "custom", "--train", src, "--test", tgt, "--seeds", "0",
                                "--config", tiny_config, "--vae-config", vae_cfg, "--bins", "5", "-o", out, "--quiet",
                                "--crossfit", "0")
    assert code == 2 and "in_sample" in err and len(err.strip().splitlines()) == 1


def test_bench_route_runs_vae_methods(tmp_path, capsys, folders, tiny_config):
    src, tgt = folders
    out = tmp_path / "bench"
    code, stdout, err = run_cli(capsys, "bench", "custom", "--train", src, "--test", tgt, "--methods", "vae_hard33",
                                "--seeds", "1", "--settings", "noisy", "--config", tiny_config, "-o", out, "--quiet")
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    (run,) = res["runs"]
    assert run["method"] == "vae_hard33" and run["sampler"] == "hard:0.33" and run["steps"] > 0
    assert run["vae_scoring"] == "crossfit 5"
    assert (Path(run["vae_dir"]) / "scores.npz").is_file() and Path(run["vae_dir"]).parent == out / "runs"


def test_per_bin_mean_of_evaluation_matches_plain_loop(tmp_path, folders, tiny_config):
    """evaluate_with_evalpose's batched per-bin means against a per-pose loop over the same run."""
    from posecurator.metrics import evalpose
    from posecurator.pipelines.splits import load_dataset
    from posecurator.pipelines.bench_vae import evaluate_with_evalpose
    from posecurator.skeleton import H36M17
    from posecurator.train import LifterTrainer, TrainConfig, load_lifter, predict
    from posecurator.train.pairs import evaluation_pairs

    src, tgt = load_dataset(folders[0], progress=False), load_dataset(folders[1], progress=False)
    cfg = TrainConfig(**{**TINY, "epochs": 1})
    LifterTrainer(cfg).fit(src, out_dir=tmp_path / "run", progress=False)
    bins = np.arange(len(tgt)) % 4
    res = evaluate_with_evalpose(tmp_path / "run", tgt, noise_px=5.0, seed=2, binnings={"b": bins}, k=4)
    model, _ = load_lifter(tmp_path / "run")
    pairs = evaluation_pairs(tgt, noise_px=5.0, seed=2)
    pred = predict(model, pairs.x2d)
    for b in range(4):
        errs, eps = [], []
        for i in range(len(pred)):
            if bins[pairs.pose_index[i]] == b:
                errs.append(float(np.linalg.norm(pred[i] - pairs.y3d[i], axis=1).mean()))
                eps.append(float(evalpose(pred[i], pairs.y3d[i], layout=H36M17)))
        assert res["per_bin"]["b"]["mpjpe"][b] == pytest.approx(np.mean(errs), rel=1e-5)
        assert res["per_bin"]["b"]["evalpose"][b] == pytest.approx(np.mean(eps), rel=1e-9)
    assert res["per_bin"]["b"]["counts"] == np.bincount(bins, minlength=4).tolist()


def test_bandai_to_cmu_split():
    from posecurator.pipelines.splits import SPLITS, resolve_split

    assert "bandai-to-cmu" in SPLITS
    split = resolve_split("bandai-to-cmu", DATA)
    assert split.train.sources == [DATA / "bandai"]
    assert split.test.sources == resolve_split("hdm05-to-cmu", DATA).test.sources
    assert not any(p.name == "01_01.bvh" for p in split.test.sources)


def test_help_lists_the_vae_commands(capsys):
    for argv in (["--help"], ["difficulty", "--help"], ["vae-bench", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "difficulty" in out and "vae-bench" in out and "--heldout" in out
