"""The ADD pipeline end to end (run_add, the CLI commands add / augment / score, the benchmark
methods, the report plots) on a few real HDM05 clips of actor bd, with a tiny lifter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from posecurator.poseset import PoseSet

# tiny lifter: seconds, not minutes (the numbers it reaches are meaningless; the plumbing is tested)
TINY = {"width": 64, "blocks": 1, "epochs": 2, "batch_size": 64, "dropout": 0.0, "val_fraction": 0.3,
        "max_epoch_pairs": 2000}
CLIPS = {"HDM_bd_squat1Reps": 2, "HDM_bd_kickLFront1Reps": 2, "HDM_bd_grabHighR": 2}


@pytest.fixture(scope="module")
def poses(shared_data) -> PoseSet:
    from posecurator.io import import_path

    amc = shared_data / "hdm05" / "amc"
    files = [f for prefix, n in CLIPS.items() for f in sorted(amc.glob(f"{prefix}_*.amc.gz"))[:n]]
    assert len(files) == sum(CLIPS.values()), f"expected HDM05 files missing in {amc}"
    return PoseSet.concatenate([import_path(f, progress=False) for f in files], renumber=True)


@pytest.fixture(scope="module")
def dataset(poses, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "bd.pcs"
    poses.save(path)
    return path


def tiny_config(**changes):
    from posecurator.pipelines.add import ADDConfig

    return ADDConfig(lifter=dict(TINY), **changes)


@pytest.fixture(scope="module")
def add_run(poses, tmp_path_factory):
    from posecurator.pipelines.add import run_add
    from posecurator.report.plots import render_add_plots

    out = tmp_path_factory.mktemp("add") / "run"
    summary = run_add(poses, out, tiny_config(seed=1), progress=False, log=lambda m: None, render=render_add_plots)
    return out, summary


# ------------------------------------------------------------------------------------ run_add
def test_run_add_writes_everything(add_run, poses):
    from posecurator.train.evaluate import evaluate_run

    out, summary = add_run
    for name in ("distilled.pcs", "lifter/best.safetensors", "reference/best.safetensors", "summary.json",
                 "add_config.json", "config.json", "best.safetensors", "plots/plot_data.npz",
                 "plots/score_histogram.png", "plots/pca_map.png", "plots/gallery.png"):
        assert (out / name).exists(), name
    assert {"config", "sizes", "generations", "scores", "chosen", "lifters", "times", "validation_clips"} <= set(summary)
    assert json.loads((out / "summary.json").read_text())["sizes"] == summary["sizes"]
    sizes = summary["sizes"]
    # scale distillation stops at multiplier x the train part
    assert sizes["train_part"] + sizes["distilled"] == round(1.6 * sizes["train_part"])
    for g in summary["generations"]:
        assert {"made", "rejected", "rejection_rate", "distilled", "kept"} <= set(g)
    assert summary["scores"]["score"]["kept"]["mean"] < summary["scores"]["score"]["dropped"]["mean"]
    assert summary["scores"]["lifter_error_mm"]["kept"]["n"] == sizes["distilled"]
    for k in ("reference_training", "generation", "scoring", "final_training", "total"):
        assert summary["times"][k] >= 0
    assert summary["paths"]["plots"]["gallery"] == "plots/gallery.png"

    # the distilled dataset: original (generation 0) + distilled children, unique ids, lineage resolvable
    ds = PoseSet.load(out / "distilled.pcs")
    assert len(ds) == len(poses) + sizes["distilled"]
    assert len(np.unique(ds.sample_id)) == len(ds)
    children = ds.generation > 0
    assert children.sum() == sizes["distilled"] and set(ds.operator[children]) - {""}
    ids = set(ds.sample_id.tolist())
    assert all(int(p) in ids for p in ds.parents[children].ravel() if p >= 0)
    # nothing was bred from the validation clips
    val_ids = set(ds.sample_id[np.isin(ds.clip, summary["validation_clips"])].tolist())
    assert val_ids and not val_ids & set(ds.parents[children].ravel().tolist())

    # the final lifter: evaluable as OUT/lifter and as OUT itself, same numbers
    test = poses.subset(np.isin(poses.clip, summary["validation_clips"]))
    a = evaluate_run(out / "lifter", test)
    b = evaluate_run(out, test)
    assert a["mpjpe"] == b["mpjpe"] and np.isfinite(a["mpjpe"])


def test_add_config_json_roundtrip_and_errors(tmp_path):
    from posecurator.errors import DataError, PoseCuratorError
    from posecurator.pipelines.add import ADDConfig

    cfg = tiny_config(w=0.3, search="bayes", n_trials=3)
    path = cfg.save(tmp_path / "c.json")
    back = ADDConfig.load(path)
    assert back.to_dict() == cfg.to_dict()
    assert back.train_config().width == 64 and back.train_config().seed == cfg.seed
    with pytest.raises(PoseCuratorError, match="unknown ADD config keys: multiplyer"):
        ADDConfig.from_dict({"multiplyer": 2})
    with pytest.raises(PoseCuratorError, match="keep"):
        ADDConfig(keep=1.5)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="bad.json"):
        ADDConfig.load(tmp_path / "bad.json")
    # --val-cut reaches the lifter config, whose validation part the searches judge by
    import argparse

    from posecurator.cli.commands_add import _add_config

    shifted = _add_config(argparse.Namespace(config=str(path), val_cut="neighbourhood", seed=5))
    assert shifted.train_config().val_cut == "neighbourhood" and shifted.lifter["width"] == 64 and shifted.seed == 5


def test_renumber_children_keeps_lineage():
    from posecurator.pipelines.add import renumber_children

    joints = np.zeros((3, 17, 3), np.float32)
    children = PoseSet(joints3d=joints, sample_id=[10, 11, 12], parents=[[0, -1], [10, 3], [11, 10]], generation=[1, 2, 3])
    out = renumber_children(children, first_id=100)
    assert out.sample_id.tolist() == [100, 101, 102]
    assert out.parents.tolist() == [[0, -1], [100, 3], [101, 100]]


def test_renumbering_block_by_block_is_the_whole_sets():
    from posecurator.pipelines.add import ChildRenumbering, renumber_children

    rng = np.random.default_rng(0)
    for ids in (np.arange(50, 90, dtype=np.int64) * 2, rng.permutation(40).astype(np.int64) + 7):  # sorted and not
        parents = np.stack([rng.choice(np.concatenate([ids, np.arange(5)]), 40), rng.choice([-1, *ids.tolist()], 40)], axis=1)
        children = PoseSet(joints3d=np.zeros((40, 17, 3), np.float32), sample_id=ids, parents=parents, generation=np.ones(40))
        whole = renumber_children(children, first_id=1000)
        ren = ChildRenumbering(ids, first_id=1000)
        blocks = [ren.apply(children.subset(slice(a, a + 15)), start=a) for a in range(0, 40, 15)]
        np.testing.assert_array_equal(np.concatenate([b.sample_id for b in blocks]), whole.sample_id)
        np.testing.assert_array_equal(np.concatenate([b.parents for b in blocks]), whole.parents)


def test_distilled_set_is_written_chunk_by_chunk_as_one_save(add_run, poses, tmp_path):
    """distilled.pcs from the stored augmentation, one chunk at a time = concatenate + save."""
    import filecmp

    from posecurator.augment import next_sample_id
    from posecurator.pipelines.add import renumber_children, write_distilled_set
    from posecurator.poseset import PoseStore

    out, _ = add_run
    store = PoseStore(out / "stages" / "distill" / "augmented.pcs")
    augmented = store.load()
    attrs = {"add": {"seed": 1}}
    whole = PoseSet.concatenate([poses.replace(joints2d=None, visibility=None, camera=None),
                                 renumber_children(augmented, first_id=next_sample_id(poses))])
    whole.attrs = attrs
    whole.save(tmp_path / "whole.pcs", chunk_size=100)
    import posecurator.poseset as poseset_module

    default = poseset_module.DEFAULT_CHUNK
    poseset_module.DEFAULT_CHUNK = 100  # small chunks: the stored augmentation spans several
    try:
        store_small = tmp_path / "aug-small.pcs"
        augmented.save(store_small, chunk_size=33)
        write_distilled_set(tmp_path / "streamed.pcs", poses, PoseStore(store_small), attrs=attrs)
    finally:
        poseset_module.DEFAULT_CHUNK = default
    names = sorted(f.name for f in (tmp_path / "whole.pcs").iterdir())
    assert len(names) > 3 and names == sorted(f.name for f in (tmp_path / "streamed.pcs").iterdir())
    assert all(filecmp.cmp(tmp_path / "whole.pcs" / f, tmp_path / "streamed.pcs" / f, shallow=False) for f in names)
    # and the run's own distilled.pcs is that set with the run's attributes
    np.testing.assert_array_equal(PoseSet.load(out / "distilled.pcs").parents, whole.parents)


def test_add_on_a_stored_set_reads_it_lazily_with_the_same_results(add_run, dataset, tmp_path):
    """A stored training set stays on disk (train part a selection, fits chunk by chunk, lifters
    from the store): the same lifters, distilled set and plot data as the set in memory."""
    import filecmp

    from posecurator.pipelines.add import run_add
    from posecurator.poseset import PoseStore
    from posecurator.report.plots import render_add_plots

    mem, summary = add_run
    lazy = tmp_path / "lazy"
    summary2 = run_add(PoseStore(dataset), lazy, tiny_config(seed=1), progress=False, log=lambda m: None,
                       render=render_add_plots)
    for name in ("reference/best.safetensors", "lifter/best.safetensors", "plots/plot_data.npz"):
        assert filecmp.cmp(mem / name, lazy / name, shallow=False), name
    names = sorted(f.name for f in (mem / "distilled.pcs").iterdir())
    assert all(filecmp.cmp(mem / "distilled.pcs" / f, lazy / "distilled.pcs" / f, shallow=False) for f in names)
    for key in ("sizes", "scores", "chosen", "validation_clips"):
        assert summary2[key] == summary[key], key
    assert [{k: v for k, v in g.items() if not k.endswith("seconds")} for g in summary2["generations"]] == \
        [{k: v for k, v in g.items() if not k.endswith("seconds")} for g in summary["generations"]]


# ------------------------------------------------------------------------------------ layering
def test_camera_pairs_match_training_pairs(poses):
    from posecurator.camera import RandomCameraSampler
    from posecurator.camera.pairs import sample_training_pairs as camera_pairs
    from posecurator.train.pairs import sample_training_pairs as train_pairs

    sampler = RandomCameraSampler()
    a = camera_pairs(poses, rng=np.random.default_rng(5), sampler=sampler, n_views=2, noise_px=5.0)
    b = train_pairs(poses, rng=np.random.default_rng(5), sampler=sampler, n_views=2, noise_px=5.0)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_lifter_error_scorer_from_run_and_from_module(add_run, poses):
    import subprocess
    import sys

    from posecurator.pipelines.add import lifter_error_scorer
    from posecurator.scoring.lifter_error import LifterErrorScorer
    from posecurator.train.checkpoint import load_lifter

    out, _ = add_run
    err = lifter_error_scorer(out / "reference", seed=0).score_samples(poses)
    assert err.shape == (len(poses),) and np.all(np.isfinite(err)) and np.all(err > 0)
    model, config = load_lifter(out / "reference")
    same = LifterErrorScorer(model=model, camera=config["train"]["camera"], seed=0).fit().score_samples(poses)
    np.testing.assert_allclose(same, err, rtol=1e-5)
    with pytest.raises(ValueError):
        LifterErrorScorer()
    # the scoring layer must not pull in the training layer or the models
    code = ("import sys, posecurator.scoring.registry, posecurator.selection; "
            "bad = [m for m in sys.modules if m.startswith(('posecurator.train', 'posecurator.models', 'posecurator.report'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    # nor does the pipeline pull in the report layer above it
    code = ("import sys, posecurator.pipelines.add; "
            "bad = [m for m in sys.modules if m.startswith('posecurator.report')]; print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


# ------------------------------------------------------------------------------------ CLI
def run_cli(capsys, *argv):
    from posecurator.cli.main import main

    code = main([*map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_augment_score_add(dataset, add_run, tmp_path, capsys):
    from posecurator.selection.bins import load_scores

    code, out, err = run_cli(capsys, "augment", dataset, "-o", tmp_path / "aug.pcs", "--multiplier", "1.5", "--seed", "2", "-q")
    assert code == 0, err
    aug = PoseSet.load(tmp_path / "aug.pcs")
    n0 = len(PoseSet.load(dataset))
    assert len(aug) == round(1.5 * n0) and (aug.generation > 0).sum() == len(aug) - n0
    stats = json.loads((tmp_path / "aug.pcs" / "augment_stats.json").read_text())
    assert stats["generated"] == len(aug) - n0 and "rejection_rate" in stats["generations"][0]

    code, out, err = run_cli(capsys, "score", tmp_path / "aug.pcs", "--scorer", "density", "--reference", dataset,
                             "-o", tmp_path / "d.npz", "-q")
    assert code == 0, err
    ids, sc = load_scores(tmp_path / "d.npz")
    assert np.array_equal(ids, aug.sample_id) and np.all((sc >= 0) & (sc <= 1)) and "density" in out
    # a stored set with --reference is streamed chunk by chunk: the same scores as in memory
    from posecurator.scoring.density import DensityScorer

    assert np.array_equal(sc, DensityScorer(seed=0).fit(PoseSet.load(dataset)).score_samples(aug))

    run, _ = add_run
    code, out, err = run_cli(capsys, "score", dataset, "--scorer", "lifter_error", "--run", run / "reference",
                             "-o", tmp_path / "e.json", "-q")
    assert code == 0, err
    ids, sc = load_scores(tmp_path / "e.json")
    assert len(ids) == n0 and np.all(sc > 0)

    cfg = tmp_path / "add.json"
    tiny_config().save(cfg)
    code, out, err = run_cli(capsys, "add", dataset, "-o", tmp_path / "addrun", "--config", cfg, "--search", "bayes",
                             "--n-trials", "2", "--multiplier", "1.3", "--keep", "0.7", "--seed", "4", "-q")
    assert code == 0, err
    summary = json.loads((tmp_path / "addrun" / "summary.json").read_text())
    assert summary["config"]["seed"] == 4 and len(summary["search"]["history"]) == 2
    assert (tmp_path / "addrun" / "plots" / "pca_map.png").is_file()
    assert summary["chosen"] == summary["search"]["best"]
    code, out, err = run_cli(capsys, "evaluate", tmp_path / "addrun", dataset, "--json")
    assert code == 0, err and "mpjpe" in json.loads(out)


@pytest.mark.parametrize("argv, message", [
    (["score", "{data}", "--scorer", "lifter_error", "-o", "{tmp}/s.npz"], "needs --run"),
    (["score", "{data}", "--scorer", "density", "-o", "{tmp}/s.csv"], ".npz or .json"),
    (["score", "{tmp}/missing.pcs", "--scorer", "density", "-o", "{tmp}/s.npz"], "no such file"),
    (["augment", "{data}", "-o", "{tmp}/a.pcs", "--multiplier", "0.5"], "--multiplier must be >= 1"),
    (["add", "{tmp}/missing.pcs", "-o", "{tmp}/r"], "no such file"),
    (["add", "{data}", "-o", "{tmp}/r", "--keep", "1.5"], "keep must lie in"),
    (["add", "{data}", "-o", "{tmp}/r", "--config", "{tmp}/bad.json"], "unknown option 'multiplyer'"),
])
def test_cli_bad_input_is_one_line(argv, message, dataset, tmp_path, capsys):
    (tmp_path / "bad.json").write_text(json.dumps({"multiplyer": 2}))
    argv = [a.format(data=dataset, tmp=tmp_path) for a in argv]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err


@pytest.mark.parametrize("stored", [True, False])
def test_cli_add_refuses_non_finite_poses_before_writing_anything(poses, tmp_path, capsys, stored):
    """A NaN in the training set: one line naming the file and the sample, and no run folder."""
    bad = poses.replace(joints3d=poses.joints3d.copy())
    bad.joints3d[123, 5, 2] = np.nan
    data = tmp_path / "bad.pcs" if stored else tmp_path / "files" / "bad.pcs"
    bad.save(data, chunk_size=50)
    if not stored:  # a folder of files is imported into memory (the importer names the file inside)
        data = data.parent
    code, out, err = run_cli(capsys, "add", data, "-o", tmp_path / "run", "-q")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "NaN or infinite" in lines[0] and "sample 123" in lines[0], err
    assert str(data) in lines[0] and "np.str_" not in lines[0]
    assert not (tmp_path / "run").exists()


def test_cli_help_has_examples(capsys):
    from posecurator.cli.main import main

    for name in ("add", "augment", "score"):
        with pytest.raises(SystemExit):
            main([name, "--help"])
        out, _ = capsys.readouterr()
        assert "examples:" in out and f"posecurator {name}" in out


# ------------------------------------------------------------------------------------ bench
def test_bench_methods_run_and_share(poses, tmp_path):
    from posecurator.pipelines import bench_add
    from posecurator.pipelines.bench import METHODS, MethodContext, _load_method_modules
    from posecurator.train.trainer import TrainConfig

    _load_method_modules()
    names = ("full_aug", "random_subset", "quality_only", "scale_only", "add", "add_scratch", "add_optuna")
    assert set(names) <= set(METHODS)
    old = bench_add.BENCH_CONFIG
    bench_add.BENCH_CONFIG = old.replace(n_trials=2, search_epochs=0.5, full_multiple=2.0)
    try:
        rows = {}
        for name in names:
            cfg = TrainConfig(**TINY, seed=1, noise_px_train=5.0)
            ctx = MethodContext(train=poses, work_dir=tmp_path / "runs" / f"{name}-noisy-seed1", seed=1, noise_px=5.0,
                                config=cfg, progress=False)
            rows[name] = METHODS[name](ctx)
        again = METHODS["random_subset"](MethodContext(train=poses, work_dir=tmp_path / "runs" / "again", seed=1,
                                                       noise_px=5.0, config=TrainConfig(**TINY, seed=1, noise_px_train=5.0),
                                                       progress=False))
    finally:
        bench_add.BENCH_CONFIG = old
    n = len(poses)
    for name, row in rows.items():
        assert (Path(row["run_dir"]) / "best.safetensors").is_file(), name
        assert {"train_poses", "train_time_s", "gen_time_s", "data_amount"} <= set(row), name
        assert row["train_poses"] == n + row["augmented_poses"]
    assert rows["full_aug"]["data_amount"] == pytest.approx(2.0, abs=0.01)
    assert rows["random_subset"]["augmented_poses"] == rows["add"]["augmented_poses"] == rows["scale_only"]["augmented_poses"]
    assert rows["quality_only"]["augmented_poses"] == round(0.8 * rows["full_aug"]["augmented_poses"])
    assert rows["add"]["train_time_s"] > rows["add"]["reference_time_s"] > 0
    # add_scratch distils the same set as add and only trains the final lifter differently
    assert rows["add_scratch"]["augmented_poses"] == rows["add"]["augmented_poses"]
    assert (rows["add"]["retrain"], rows["add_scratch"]["retrain"]) == ("finetune", "scratch")
    add_cfg = json.loads((Path(rows["add"]["run_dir"]) / "config.json").read_text())["train"]
    scratch_cfg = json.loads((Path(rows["add_scratch"]["run_dir"]) / "config.json").read_text())["train"]
    assert scratch_cfg["epochs"] == TINY["epochs"] > add_cfg["epochs"]  # fine-tuning runs finetune_epochs of it
    shared = tmp_path / "runs" / "shared-noisy-seed1"
    assert len(list(shared.glob("reference-*"))) == 1 and len(list(shared.glob("full-aug-*.pcs"))) == 1
    assert again["augmented_poses"] == rows["random_subset"]["augmented_poses"]


def test_bench_reference_reuses_the_finished_baseline(poses, tmp_path):
    """The bench's baseline run is the reference lifter (same data, config and validation cut), so
    the ADD rows reuse it instead of training it again; a baseline of another config is not reused."""
    import dataclasses

    import torch

    from posecurator.pipelines import bench_add
    from posecurator.pipelines.bench import METHODS, MethodContext, _load_method_modules
    from posecurator.train.checkpoint import load_tensors
    from posecurator.train.trainer import TrainConfig

    _load_method_modules()
    cfg = TrainConfig(**TINY, seed=2)

    def ctx(name, config=cfg):
        return MethodContext(train=poses, work_dir=tmp_path / "runs" / f"{name}-gt-seed2", seed=2, noise_px=0.0,
                             config=config, progress=False)

    assert bench_add._Shared(ctx("add"))._finished_baseline() is None  # no baseline yet
    METHODS["baseline"](ctx("baseline"))
    shared = bench_add._Shared(ctx("add"))
    ref_dir, ref_s = shared.reference()
    assert Path(ref_dir) == tmp_path / "runs" / "baseline-gt-seed2" and ref_s > 0
    assert not list((tmp_path / "runs").glob("shared-gt-seed2/reference-*"))
    # trained on its own, the reference is the same lifter, weight for weight
    bench_add.train_lifter(shared.ctx.train_part, tmp_path / "fresh", cfg, val=shared.ctx.val_part)
    a, b = load_tensors(Path(ref_dir) / "best.safetensors"), load_tensors(tmp_path / "fresh" / "best.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = dataclasses.replace(cfg, lr=cfg.lr / 2)
    assert bench_add._Shared(ctx("add", other))._finished_baseline() is None


# ------------------------------------------------------------------------------------ plots
def test_generic_plots(poses, tmp_path):
    from posecurator.report.plots import heatmap, per_bin_curve, skeleton_gallery

    p = heatmap(np.arange(12.0).reshape(3, 4), tmp_path / "h.png", xlabels=list("abcd"), ylabels=list("xyz"), title="t")
    q = per_bin_curve(np.arange(5), {"a": np.arange(5.0), "b": np.ones(5)}, tmp_path / "c.png", errors={"a": np.ones(5)})
    r = skeleton_gallery(poses.joints3d[:2, :, :2], ["a", "b"], "h36m17", tmp_path / "g2d.png", row_labels=["2d"])
    for f in (p, q, r):
        assert f.is_file() and f.read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob(".*tmp*"))


# ------------------------------------------------------------------------------------ ADD towards a target
def test_unit_interval_score_maps_a_target_score_and_keeps_nan():
    from posecurator.selection.distill import UnitIntervalScore

    class Fixed:
        score_range = (-2.0, 2.0)
        scores_ = np.array([-2.0, 0.0, 2.0, np.nan, 3.0])

        def score_samples(self, poses):
            return self.scores_

    got = UnitIntervalScore(Fixed()).score_samples(None)
    assert np.allclose(got[[0, 1, 2, 4]], [0.0, 0.5, 1.0, 1.0]) and np.isnan(got[3])
    with pytest.raises(ValueError, match="score_range"):
        UnitIntervalScore(object())


def test_add_with_a_target_keeps_the_children_the_target_needs(dataset, shared_data, tmp_path, capsys):
    """``add --target``: quality distillation ranks the children by the target score (w = 1: by it
    alone), so the children it keeps score lower than those it drops, on the target's own scorer."""
    from posecurator.io import import_path
    from posecurator.scoring.target2d import TargetNoveltyScorer

    coco = shared_data / "coco" / "person_keypoints_val2017_subset2213.json"
    cfg = tmp_path / "add.json"
    tiny_config(plots=False).save(cfg)
    common = ["add", dataset, "--config", cfg, "--w", "1", "--multiplier", "1.3", "--seed", "3", "-q"]
    code, out, err = run_cli(capsys, *common, "-o", tmp_path / "target", "--target", coco)
    assert code == 0, err
    summary = json.loads((tmp_path / "target" / "summary.json").read_text())
    assert summary["config"]["target_score"] == "novelty" and "target_novelty" in summary["scores"]["diversity_term"]
    code, out, err = run_cli(capsys, *common, "-o", tmp_path / "plain")
    assert code == 0, err
    assert "target_score" not in json.loads((tmp_path / "plain" / "summary.json").read_text())["config"]

    train = PoseSet.load(dataset)
    scorer = TargetNoveltyScorer(seed=3).fit(import_path(coco, progress=False), source=train)
    with np.load(tmp_path / "target" / "stages" / "distill" / "scores.npz") as z:
        kept, dropped = z["kept_novelty"], z["dropped_novelty"]
    assert np.nanmax(kept) <= np.nanmin(dropped) + 1e-12  # w = 1: the kept are the lowest of each generation's term
    target_kept = PoseSet.load(tmp_path / "target" / "distilled.pcs")
    plain_kept = PoseSet.load(tmp_path / "plain" / "distilled.pcs")
    assert np.nanmean(scorer.score_samples(target_kept)) < np.nanmean(scorer.score_samples(plain_kept))

    code, out, err = run_cli(capsys, "add", dataset, "-o", tmp_path / "bad", "--target-score", "coverage", "-q")
    assert code == 2 and "--target-score goes with --target" in err and len(err.strip().splitlines()) == 1
