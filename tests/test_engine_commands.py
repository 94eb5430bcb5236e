"""The heavy commands on an engine (issue 12 item 3): bench pairs, the ADD search's trials and
sharded generations, and difficulty's cross-fitted fold VAEs give the same results on every engine.

The local tests run everywhere and cheaply: the engine paths through :class:`LocalEngine` and
through an engine that runs its tasks in reverse order (so no task may lean on state an earlier
one left behind) equal the plain loops, and ``search_batch: 1`` is the sequential search of
before. The Ray tests (difficulty folds, one bench pair, sharded ADD generations, ADD search trials;
Ray against the local engine) run inside a private network namespace, started by
:func:`test_ray_commands_in_a_private_network` with the helper of ``tests/test_engine.py``, and
skip with a reason where Ray or namespaces are absent. Data: a few real HDM05 and CMU clips, tiny
VAEs and lifters.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_engine import INSIDE, assert_listening_on_loopback_only, inside_only, netns_problem, run_inside_private_network

from posecurator.engine import LocalEngine
from posecurator.poseset import PoseSet

TINY_VAE = {"hidden": (32,), "latent_dim": 4, "epochs": 3, "batch_size": 128, "num_threads": 1}
TINY_LIFTER = {"width": 64, "blocks": 1, "epochs": 2, "batch_size": 64, "dropout": 0.0, "val_fraction": 0.3,
               "max_epoch_pairs": 2000}
MOTIONS = ("jogLeftCircle4StepsRstart", "sneak2StepsLStart", "grabHighR", "squat1Reps")


class ReverseEngine:
    """Every task in this process, the last first; results in the order of the items (an engine's
    contract). A task that depended on what an earlier task left behind would come out different."""

    name = "reverse"
    parallel = True
    num_workers = 2

    def map(self, fn, items, *, shared=None):
        items = list(items)
        results = [fn(shared, item) for item in reversed(items)]
        return iter(results[::-1])

    def describe(self):
        return {"engine": "reverse", "workers": 2}

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture(scope="module")
def hdm(shared_data) -> PoseSet:
    """8 clips of HDM05 (one take of four motions by bd and by bk)."""
    from posecurator.io import import_path

    amc = shared_data / "hdm05" / "amc"
    files = [f for a in ("bd", "bk") for m in MOTIONS for f in sorted(amc.glob(f"HDM_{a}_{m}_*.amc*"))[:1]]
    assert len(files) == 8, f"HDM05 files missing in {amc}"
    return PoseSet.concatenate([import_path(f, progress=False) for f in files], renumber=True)



def _vae():
    from posecurator.train.vae_trainer import make_vae_scorer

    return make_vae_scorer(config=dict(TINY_VAE))


def _difficulty(main, ds: Path, out: Path, cfg: Path, *extra) -> None:
    assert main(["difficulty", str(ds), "-o", str(out), "--bins", "4", "--config", str(cfg), "--crossfit", "3",
                 "--gallery", "1", "-q", *extra]) == 0


def _same_difficulty(a: Path, b: Path) -> None:
    with np.load(a / "scores.npz", allow_pickle=False) as x, np.load(b / "scores.npz", allow_pickle=False) as y:
        assert x.files == y.files
        for name in x.files:
            assert np.array_equal(x[name], y[name]), name
    ba, bb = ({k: v for k, v in json.loads((d / "bins.json").read_text()).items() if not k.endswith("_s")}  # timings
              for d in (a, b))
    assert ba == bb
    for k in range(3):
        assert (a / "vae" / f"fold{k}" / "vae.safetensors").read_bytes() == (b / "vae" / f"fold{k}" / "vae.safetensors").read_bytes()


# ------------------------------------------------------------------------------ local engines
def test_crossfit_folds_through_an_engine_equal_the_loop(hdm):
    from posecurator.scoring.crossfit import CrossFitScorer, fold_engine

    plain = CrossFitScorer(_vae, folds=3, seed=5).fit(hdm)
    for engine in (LocalEngine(), ReverseEngine()):
        cf = CrossFitScorer(_vae, folds=3, seed=5, engine=engine).fit(hdm)
        assert cf.oof_scores_.tobytes() == plain.oof_scores_.tobytes() and np.array_equal(cf.fold_, plain.fold_)
        assert cf.score_samples(hdm.subset(slice(0, 50))).tobytes() == plain.score_samples(hdm.subset(slice(0, 50))).tobytes()
    with fold_engine(ReverseEngine()):  # what `difficulty --engine` uses: the pipeline passes none down
        cf = CrossFitScorer(_vae, folds=3, seed=5).fit(hdm)
    assert cf.oof_scores_.tobytes() == plain.oof_scores_.tobytes()


def test_difficulty_folds_through_an_engine_equal_local(hdm, tmp_path, monkeypatch):
    import posecurator.cli.commands_add as commands_add
    from posecurator.cli.main import main

    ds = tmp_path / "hdm.pcs"
    hdm.save(ds)
    cfg = tmp_path / "vae.json"
    cfg.write_text(json.dumps({"hidden": [32], "latent_dim": 4, "batch_size": 128, "epochs": 3}))
    _difficulty(main, ds, tmp_path / "local", cfg)
    monkeypatch.setattr(commands_add, "_engine", lambda args: ReverseEngine())
    _difficulty(main, ds, tmp_path / "reverse", cfg, "--engine", "ray")  # "ray" parsed; the engine is the stand-in
    _same_difficulty(tmp_path / "local", tmp_path / "reverse")


def _sequential_reference(objective, n_trials, seed):
    """The Optuna search as it was before batches: study.optimize, one trial after the other."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    history = []

    def run_trial(trial):
        params = {name: trial.suggest_float(name, lo, hi, step=0.01)
                  for name, (lo, hi) in (("keep", (0.5, 1.0)), ("multiplier", (1.0, 5.0)), ("w", (0.0, 1.0)))}
        err = float(objective(params))
        history.append({**params, "error": err})
        return err

    optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed)).optimize(run_trial, n_trials=n_trials)
    return history


def test_search_batch_1_is_the_sequential_search_and_batches_do_not_depend_on_the_evaluator():
    pytest.importorskip("optuna")
    from posecurator.selection.distill import optuna_search

    def objective(p):
        return (p["keep"] - 0.8) ** 2 + (p["multiplier"] - 1.6) ** 2 + (p["w"] - 0.3) ** 2

    n = 14  # past TPE's 10 random start-up trials
    assert optuna_search(objective, n_trials=n, seed=3).history == _sequential_reference(objective, n, 3)
    batched = optuna_search(objective, n_trials=n, seed=3, batch=4).history
    reverse = optuna_search(None, n_trials=n, seed=3, batch=4,
                            evaluate_batch=lambda ps: [objective(p) for p in ps[::-1]][::-1]).history
    assert batched == reverse and len(batched) == n
    assert batched[:10] == _sequential_reference(objective, 10, 3)  # the random start-up draws are the same
    with pytest.raises(ValueError):
        optuna_search(objective, n_trials=2, batch=0)


@pytest.fixture(scope="module")
def add_ctx(hdm, tmp_path_factory):
    from posecurator.pipelines.add import ADDConfig, ADDContext, train_lifter

    config = ADDConfig(lifter=dict(TINY_LIFTER), seed=1, search="bayes", n_trials=3, multiplier=1.3)
    ctx = ADDContext.build(hdm, config)
    ref = tmp_path_factory.mktemp("add") / "reference"
    train_lifter(ctx.train_part, ref, ctx.train_config, val=ctx.val_part)
    return ctx, ref


def test_add_search_trials_on_an_engine_equal_the_sequential_search(add_ctx, tmp_path):
    pytest.importorskip("optuna")
    from posecurator.pipelines.add import run_search
    from posecurator.selection.distill import optuna_search, params_objective

    ctx, ref = add_ctx
    # before: the objective closure, one trial after the other
    scale = ctx.scale_distiller(reference_dir=ref)
    train_eval = ctx.candidate_trainer(reference_dir=ref, work_dir=tmp_path / "old")
    old = optuna_search(params_objective(scale, ctx.train_part, train_eval), n_trials=3, seed=1).history
    now = run_search(ctx, reference_dir=ref, work_dir=tmp_path / "new")["search"]["history"]
    assert now == old
    ctx.config = ctx.config.replace(search_batch=2)
    try:
        local = run_search(ctx, reference_dir=ref, work_dir=tmp_path / "b-local", engine=LocalEngine())
        reverse = run_search(ctx, reference_dir=ref, work_dir=tmp_path / "b-reverse", engine=ReverseEngine())
    finally:
        ctx.config = ctx.config.replace(search_batch=1)
    assert local["search"] == reverse["search"] and len(local["search"]["history"]) == 3
    assert not (tmp_path / "b-reverse").exists()  # trial runs are deleted


def _sharded_scale(ctx, ref, engine, shard_size=40):
    import dataclasses

    scale = ctx.scale_distiller(reference_dir=ref, engine=engine, record=True)
    scale.evolution = dataclasses.replace(scale.evolution, shard_size=shard_size)
    return scale


def test_sharded_add_generations_on_an_engine_equal_local(add_ctx):
    ctx, ref = add_ctx
    runs = [_sharded_scale(ctx, ref, engine).run(ctx.train_part) for engine in (None, LocalEngine(), ReverseEngine())]
    (aug, steps), *others = runs
    assert len(aug) == round(1.3 * len(ctx.train_part)) - len(ctx.train_part) and len(steps) >= 1
    assert steps[0].made > 2 * 40  # several shards in a generation
    for aug2, steps2 in others:
        assert np.array_equal(aug.joints3d, aug2.joints3d) and np.array_equal(aug.sample_id, aug2.sample_id)
        assert np.array_equal(aug.parents, aug2.parents) and list(aug.operator) == list(aug2.operator)
        assert [s.kept for s in steps] == [s.kept for s in steps2]
    ids = aug.sample_id
    assert len(np.unique(ids)) == len(ids) and ids.min() > ctx.train_part.sample_id.max()


def test_sharded_add_streamed_to_disk_on_an_engine_equals_in_memory(add_ctx, tmp_path):
    import filecmp

    from posecurator.selection.scale_stream import distil_to_store

    ctx, ref = add_ctx
    aug, _ = _sharded_scale(ctx, ref, None).run(ctx.train_part)
    aug.save(tmp_path / "mem.pcs")
    distil_to_store(_sharded_scale(ctx, ref, ReverseEngine()), ctx.train_part, tmp_path / "disk.pcs", block_size=50)
    names = sorted(f.name for f in (tmp_path / "mem.pcs").iterdir())
    assert names == sorted(f.name for f in (tmp_path / "disk.pcs").iterdir())
    assert all(filecmp.cmp(tmp_path / "mem.pcs" / f, tmp_path / "disk.pcs" / f, shallow=False) for f in names)


def test_engine_options_give_one_line_errors(tmp_path, capsys, hdm):
    from posecurator.cli.main import main

    ds = tmp_path / "hdm.pcs"
    hdm.subset(slice(0, 200)).save(ds)
    cases = [(["add", str(ds), "-o", str(tmp_path / "a"), "--engine", "ray"], "--shard-size"),
             (["add", str(ds), "-o", str(tmp_path / "a"), "--search-batch", "0"], "search_batch"),
             (["difficulty", str(ds), "-o", str(tmp_path / "d"), "--crossfit", "0", "--engine", "ray"], "--crossfit"),
             (["vae-bench", "hdm05-xsub", "-o", str(tmp_path / "v"), "--crossfit", "1", "--engine", "ray"], "--crossfit"),
             (["bench", "hdm05-xsub", "--workers", "2"], "--engine ray"),
             (["bench", "hdm05-xsub", "--engine", "ray", "--jobs", "2", "--workers", "3"], "disagree")]
    for argv, needle in cases:
        assert main([*argv, "-q"]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], (argv, err)
    assert not (tmp_path / "a").exists() and not (tmp_path / "d").exists() and not (tmp_path / "v").exists()


# ------------------------------------------------------------------------------------------ Ray
@pytest.mark.skipif(INSIDE, reason="already inside")
def test_ray_commands_in_a_private_network(shared_data):
    pytest.importorskip("ray", reason="Ray is absent: pip install 'posecurator[ray]'")
    problem = netns_problem()
    if problem:
        pytest.skip(problem)
    p = run_inside_private_network(Path(__file__), "-k", "ray_ and not private_network")
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert "5 passed" in p.stdout, p.stdout[-2000:]  # every Ray test ran inside


@pytest.fixture(scope="module")
def ray_engine():
    from posecurator.engine import RayEngine

    with RayEngine(num_workers=2) as eng:  # the commands below find this cluster running and use it
        yield eng


@inside_only
def test_ray_listens_on_loopback_only(ray_engine):
    assert_listening_on_loopback_only()


@inside_only
def test_ray_difficulty_folds_equal_local(ray_engine, hdm, tmp_path):
    from posecurator.cli.main import main

    ds = tmp_path / "hdm.pcs"
    hdm.save(ds)
    cfg = tmp_path / "vae.json"
    cfg.write_text(json.dumps({"hidden": [32], "latent_dim": 4, "batch_size": 128, "epochs": 3}))
    _difficulty(main, ds, tmp_path / "local", cfg)
    _difficulty(main, ds, tmp_path / "ray", cfg, "--engine", "ray", "--workers", "2")
    _same_difficulty(tmp_path / "local", tmp_path / "ray")


@inside_only
def test_ray_bench_pairs_equal_local(ray_engine, cmu_clip, tmp_path, capsys):
    from posecurator.cli.main import main

    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY_LIFTER))
    base = ["bench", "custom", "--train", str(cmu_clip / "01_01.amc"), "--test", str(cmu_clip / "11_01.amc"),
            "--seeds", "0", "1", "--settings", "gt", "--config", str(cfg), "--quiet"]
    rows = {}
    for name, extra in (("local", []), ("ray", ["--engine", "ray", "--workers", "2"])):
        assert main([*base, "-o", str(tmp_path / name), *extra]) == 0, capsys.readouterr().err
        runs = json.loads((tmp_path / name / "results.json").read_text())["runs"]
        rows[name] = {r["seed"]: {k: r[k] for k in ("mpjpe", "pa_mpjpe", "pck3d", "auc", "val_mpjpe")} for r in runs}
        # one line a finished run in runs.jsonl, whoever wrote it
        assert len((tmp_path / name / "runs.jsonl").read_text().splitlines()) == 2
    assert rows["local"] == rows["ray"] and sorted(rows["ray"]) == [0, 1]
    capsys.readouterr()


@inside_only
def test_ray_sharded_add_generations_equal_local(ray_engine, add_ctx):
    ctx, ref = add_ctx
    aug, steps = _sharded_scale(ctx, ref, None).run(ctx.train_part)
    aug2, steps2 = _sharded_scale(ctx, ref, ray_engine).run(ctx.train_part)
    assert np.array_equal(aug.joints3d, aug2.joints3d) and np.array_equal(aug.parents, aug2.parents)
    assert np.array_equal(aug.sample_id, aug2.sample_id) and [s.kept for s in steps] == [s.kept for s in steps2]


@inside_only
def test_ray_add_search_trials_equal_local(ray_engine, add_ctx, tmp_path):
    pytest.importorskip("optuna")
    from posecurator.pipelines.add import run_search

    ctx, ref = add_ctx
    ctx.config = ctx.config.replace(search_batch=2)
    try:
        local = run_search(ctx, reference_dir=ref, work_dir=tmp_path / "local")
        ray = run_search(ctx, reference_dir=ref, work_dir=tmp_path / "ray", engine=ray_engine)
    finally:
        ctx.config = ctx.config.replace(search_batch=1)
    assert local["search"] == ray["search"] and len(ray["search"]["history"]) == 3
