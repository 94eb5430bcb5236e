"""The CLI end to end on a small real clip, and its one-line errors on bad input."""

from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import pytest

from posecurator import PoseSet
from posecurator.cli.main import main

TINY = {"width": 64, "blocks": 1, "epochs": 2, "batch_size": 64, "dropout": 0.1, "val_fraction": 0.5}



def run_cli(capsys, *argv):
    code = main([*map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_import_info_export_train_evaluate(tmp_path, capsys, cmu_clip):
    ds = tmp_path / "cmu.pcs"
    code, out, err = run_cli(capsys, "import", cmu_clip, "-o", ds, "--quiet")
    assert code == 0, err
    code, out, err = run_cli(capsys, "info", ds, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert {"frames", "clips", "subjects", "activities"} <= set(info)
    assert info["clips"] == 2 and sorted(info["subjects"]) == ["01", "11"]
    # 120 fps -> 30 fps keeps every 4th frame
    assert info["frames"] == len(range(0, 597, 4)) + len(range(0, 2751, 4))

    for fmt in ("videopose3d", "mmpose"):
        code, out, err = run_cli(capsys, "export", ds, "--format", fmt, "-o", tmp_path / f"{fmt}.npz")
        assert code == 0, err
        assert (tmp_path / f"{fmt}.npz").is_file()

    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", ds, "-o", run, "--config", cfg, "--seed", "3", "--quiet")
    assert code == 0, err
    assert (run / "best.safetensors").is_file() and (run / "config.json").is_file()
    assert "val_cut" not in json.loads((run / "config.json").read_text())["train"]
    code, out, err = run_cli(capsys, "train", ds, "-o", tmp_path / "run-nb", "--config", cfg, "--val-cut", "neighbourhood",
                             "--quiet")
    assert code == 0, err
    assert json.loads((tmp_path / "run-nb" / "config.json").read_text())["train"]["val_cut"] == "neighbourhood"

    code, out, err = run_cli(capsys, "evaluate", run, ds, "--noise", "5", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert {"mpjpe", "pa_mpjpe", "pck3d", "auc", "n_poses", "per_activity"} <= set(res)
    assert res["n_poses"] == 4 * info["frames"]
    assert 0 < res["pa_mpjpe"] <= res["mpjpe"] < 2000
    assert 0 <= res["pck3d"] <= 1 and 0 <= res["auc"] <= 1


def test_bench_custom_runs_the_protocol(tmp_path, capsys, cmu_clip, shared_data):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    out_dir = tmp_path / "bench"
    code, out, err = run_cli(capsys, "bench", "custom", "--train", cmu_clip / "01_01.amc", "--test", cmu_clip / "11_01.amc",
                             "--seeds", "0", "1", "--settings", "gt", "--config", cfg, "-o", out_dir, "--quiet")
    assert code == 0, err
    assert "| baseline | gt |" in out
    res = json.loads((out_dir / "results.json").read_text())
    assert len(res["runs"]) == 2 and res["summary"][0]["n_seeds"] == 2
    assert res["summary"][0]["mpjpe_std"] >= 0
    # the validation MPJPE each lifter was chosen by is reported beside the test figures
    assert all(r["val_mpjpe"] > 0 for r in res["runs"]) and res["summary"][0]["val_mpjpe"] > 0


def test_bench_jobs_give_the_sequential_numbers(tmp_path, capsys, cmu_clip, shared_data):
    """--jobs runs (setting, seed) pairs in worker processes; the table is the sequential one."""
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    base = ["bench", "custom", "--train", cmu_clip / "01_01.amc", "--test", cmu_clip / "11_01.amc", "--seeds", "0", "1",
            "--settings", "gt", "--config", cfg, "--quiet"]
    results = {}
    for jobs in ("1", "2"):
        code, out, err = run_cli(capsys, *base, "--jobs", jobs, "-o", tmp_path / f"jobs{jobs}")
        assert code == 0, err
        assert "| baseline | gt |" in out
        runs = json.loads((tmp_path / f"jobs{jobs}" / "results.json").read_text())["runs"]
        results[jobs] = {r["seed"]: (r["mpjpe"], r["pa_mpjpe"]) for r in runs}
    assert results["1"] == results["2"] and sorted(results["2"]) == [0, 1]
    code, out, err = run_cli(capsys, *base, "--jobs", "0")
    assert code == 2 and "--jobs" in err


def _expect_error(capsys, argv, *needles):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1, err
    for n in needles:
        assert str(n) in lines[0]
    return lines[0]


def test_bad_input_one_line_errors_and_nothing_written(tmp_path, capsys, shared_data):
    out = tmp_path / "out.pcs"
    # truncated BVH
    src = gzip.open(shared_data / "bandai" / "dataset-1" / "data" / "dataset-1_bow_active_001.bvh.gz", "rt").read()
    bad = tmp_path / "trunc.bvh"
    bad.write_text(src[: len(src) // 2])
    _expect_error(capsys, ["import", bad, "-o", out, "--quiet"], "trunc.bvh")
    assert not out.exists() and not list(tmp_path.glob(".out.pcs*"))
    # AMC without its ASF
    amc = tmp_path / "lonely_01.amc"
    shutil.copy(shared_data / "cmu" / "11_01.amc", amc)
    _expect_error(capsys, ["import", amc, "-o", out, "--quiet"], "lonely_01.amc")
    # empty folder
    (tmp_path / "empty").mkdir()
    _expect_error(capsys, ["import", tmp_path / "empty", "-o", out, "--quiet"], "empty")
    # mapping that names a joint the skeleton does not have
    mapping = tmp_path / "map.yaml"
    mapping.write_text("pelvis: NoSuchJoint\n")
    _expect_error(capsys, ["import", shared_data / "cmu" / "01_01.bvh", "-o", out, "--mapping", mapping, "--quiet"], "map.yaml")
    assert not out.exists()
    # a dataset from a newer format version
    ds = tmp_path / "new.pcs"
    ps = PoseSet(joints3d=np.zeros((2, 17, 3), np.float32))
    ps.save(ds)
    meta = json.loads((ds / "posecurator.json").read_text())
    meta["version"] = 99
    (ds / "posecurator.json").write_text(json.dumps(meta))
    _expect_error(capsys, ["info", ds], "newer")
    # NaN coordinates in a BVH
    lines = src.splitlines()
    i = next(k for k, l in enumerate(lines) if l.startswith("Frame Time")) + 3
    vals = lines[i].split()
    vals[7] = "nan"
    lines[i] = " ".join(vals)
    nan_file = tmp_path / "nan.bvh"
    nan_file.write_text("\n".join(lines) + "\n")
    _expect_error(capsys, ["import", nan_file, "-o", out, "--quiet"], "nan.bvh")
    assert not out.exists()


def test_cli_val_cuts_are_the_trainers():
    from posecurator.cli.common import VAL_CUTS
    from posecurator.train import trainer

    assert VAL_CUTS == trainer.VAL_CUTS


def test_help_has_examples(capsys):
    for cmd in ("import", "info", "export", "train", "evaluate", "bench", "demo"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
        assert "examples:" in capsys.readouterr().out


def test_train_adapts_to_unlabeled_coco_2d_and_says_what_is_missing(tmp_path, capsys, cmu_clip, shared_data):
    coco = shared_data / "coco" / "person_keypoints_val2017_subset2213.json"
    if not coco.is_file():
        pytest.skip(f"{coco} is absent")
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({**TINY, "input_mode": "root_scale", "joint_dropout": 0.2}))
    run = tmp_path / "adapted"
    code, out, err = run_cli(capsys, "train", cmu_clip, "-o", run, "--config", cfg, "--target", coco, "--adapt",
                             "reprojection", "--adapt-weight", "0.5", "--quiet")
    assert code == 0, err
    doc = json.loads((run / "config.json").read_text())
    assert doc["train"]["adapt"] == "reprojection" and doc["train"]["adapt_weight"] == 0.5
    assert doc["data"]["target"]["n_adapt"] > 0  # COCO-17 was mapped to the lifter's layout
    epochs = json.loads((run / "history.json").read_text())["epochs"]
    assert all(e["val_target_reproj_mm"] > 0 and e["target_reproj_mm"] > 0 for e in epochs)
    code, out, err = run_cli(capsys, "train", cmu_clip, "-o", tmp_path / "x", "--config", cfg, "--adapt", "reprojection")
    assert code == 2 and "--target" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
