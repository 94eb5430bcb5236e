"""Kill and resume: a run killed at any instant and rerun ends with the same files, byte for byte.

Each command (``train``, ``add``, ``difficulty``) runs once uninterrupted, and once in another
folder where it is killed again and again and rerun each time: at named points of its checkpoint
and stage writes (the test hook ``POSECURATOR_TEST_KILL_POINT`` of :mod:`posecurator.fileio`:
the process ends there as a SIGKILL would) and with SIGKILL after seeded random delays. The final
files of the two folders must be identical: weights, datasets, scores, plots and tables byte for
byte; JSON equal once wall-clock timings are left out (the CLI's record of the invocation,
``command.json`` and the HTML report made from it, holds its start time and is not compared). No
temporary file or lock may be left.
Both runs use the same relative output name (``run``) from their own working folders, so that
paths stored in the outputs are the same. Plus the atomic writes, output locks, dataset writers
and the bench's run log in-process.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from posecurator.errors import DataError, PoseCuratorError
from posecurator.fileio import (KILL_POINT_ENV, atomic_savez, atomic_write_json, atomic_write_text, output_lock,
                                stale_temps, temp_path, try_lock_folder)
from posecurator.poseset import PoseSet

CLIPS = {"HDM_bd_squat1Reps": 2, "HDM_bd_kickLFront1Reps": 2, "HDM_bd_grabHighR": 2}  # 298 poses at 30 fps
# a tiny lifter with dropout and two views per pose, so resuming must restore every random stream
TRAIN = {"width": 64, "blocks": 1, "dropout": 0.1, "lr": 3e-3, "lr_decay": 0.95, "batch_size": 32, "epochs": 14,
         "max_epoch_pairs": None, "n_views": 2, "val_fraction": 0.3, "num_threads": 1, "seed": 3}
# the smallest ADD run of tests/test_add_pipeline.py
ADD = {"lifter": {"width": 64, "blocks": 1, "epochs": 2, "batch_size": 64, "dropout": 0.0, "val_fraction": 0.3,
                  "max_epoch_pairs": 2000}}
DIFFICULTY = ["--bins", "5", "--epochs", "20"]
# wall-clock measurements: the only content allowed to differ between a killed and an uninterrupted run
TIMING_KEYS = {"time_s", "seconds", "poses_per_s", "training_time_s", "train_time_s", "wall_s", "wall_time_s",
               "heatmap_s", "train_s", "times", "generation_seconds", "scoring_seconds", "search_s", "resumed"}
# written by the CLI around the pipeline, about the invocation (its start time and working folder):
# present in both runs, but not compared
INVOCATION_FILES = {"command.json", "report.html"}
LAUNCH_TIMEOUT_S = 300


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def dataset(shared_data, tmp_path_factory) -> Path:
    from posecurator.io import import_path

    amc = shared_data / "hdm05" / "amc"
    files = [f for prefix, n in CLIPS.items() for f in sorted(amc.glob(f"{prefix}_*.amc.gz"))[:n]]
    assert len(files) == sum(CLIPS.values()), f"expected HDM05 files missing in {amc}"
    path = tmp_path_factory.mktemp("resume_data") / "bd.pcs"
    PoseSet.concatenate([import_path(f, progress=False) for f in files], renumber=True).save(path)
    return path


def _launch(cwd: Path, argv: list[str], *, kill_point: str = "", kill_when=None) -> int:
    """Run ``posecurator ARGV -q`` in ``cwd`` on one thread; returns its exit code (137: ended by
    the test hook, -9: by SIGKILL). ``kill_when(proc)`` blocks until it is time to SIGKILL."""
    env = {**os.environ, KILL_POINT_ENV: kill_point, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "posecurator.cli.main", *argv, "-q"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if kill_when is not None:
        kill_when(proc)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=LAUNCH_TIMEOUT_S)
    if proc.returncode not in (0, 137, -signal.SIGKILL):
        raise AssertionError(f"posecurator {' '.join(argv)} failed ({proc.returncode}):\n{out}\n{err}")
    return proc.returncode


def _after(seconds: float):
    """kill_when: SIGKILL ``seconds`` after the start (or when it has ended by itself)."""
    def wait(proc):
        end = time.monotonic() + seconds
        while time.monotonic() < end and proc.poll() is None:
            time.sleep(0.01)
    return wait


def _scrub(obj):
    if isinstance(obj, dict):
        return {k: _scrub(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [_scrub(v) for v in obj]
    return obj


def _files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def assert_same_outputs(a: Path, b: Path) -> int:
    """Every file of run folder ``a`` equals its namesake in ``b`` (JSON: timings left out);
    neither holds a temporary or lock file. Returns the number of files compared."""
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb), f"different files: only in a {sorted(set(fa) - set(fb))}, only in b {sorted(set(fb) - set(fa))}"
    for name, path in fa.items():
        assert not path.name.endswith((".tmp", ".lock")) and ".tmp" not in path.as_posix(), f"left behind: {name}"
        if name in INVOCATION_FILES:
            continue
        if path.suffix == ".json":
            assert _scrub(json.loads(path.read_text())) == _scrub(json.loads(fb[name].read_text())), name
        else:
            assert path.read_bytes() == fb[name].read_bytes(), name
    for root in (a, b):
        leftovers = [p.name for p in root.parent.iterdir() if p.name.startswith(".")]
        assert not leftovers, f"left next to {root}: {leftovers}"
    return len(fa)


def _uninterrupted(tmp_path: Path, argv: list[str]) -> tuple[Path, float]:
    """The uninterrupted run's folder and its wall time."""
    cwd = tmp_path / "straight"
    cwd.mkdir()
    t0 = time.monotonic()
    assert _launch(cwd, argv) == 0
    return cwd / "run", time.monotonic() - t0


def _hooks(cwd: Path, argv: list[str], points) -> list[int]:
    """Launch once per named kill point, in order; each must end the process there."""
    codes = []
    for point in points:
        codes.append(_launch(cwd, argv, kill_point=point))
        assert codes[-1] == 137, f"kill point {point} was not reached"
    return codes


def _random_kills(cwd: Path, argv: list[str], *, n: int, seconds: float, seed: int) -> list[int]:
    """Up to ``n`` launches SIGKILLed after seeded random delays of 10-90 % of ``seconds`` (an
    uninterrupted run's wall time, so the kills fall anywhere from start-up to the last stage),
    each resuming what the one before left; stops early when a launch finishes first."""
    rng = random.Random(seed)
    codes = []
    for _ in range(n):
        codes.append(_launch(cwd, argv, kill_when=_after(rng.uniform(0.1, 0.9) * seconds)))
        if codes[-1] == 0:
            break
    return codes


# ------------------------------------------------------------------------------ train
def _state_epoch(run: Path) -> int:
    try:
        return int(json.loads((run / "state.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return -1


def _at_epoch(run: Path, epoch: int, extra_s: float):
    """kill_when: SIGKILL ``extra_s`` after the checkpoint of ``epoch`` is committed: a random
    instant of the next epoch's training or checkpoint write."""
    def wait(proc):
        while _state_epoch(run) < epoch and proc.poll() is None:
            time.sleep(0.002)
        end = time.monotonic() + extra_s
        while time.monotonic() < end and proc.poll() is None:
            time.sleep(0.001)
    return wait


@pytest.mark.slow  # launches the CLI 9-12 times (about 2 s of start-up each)
def test_train_killed_anywhere_resumes_to_the_same_bytes(dataset, tmp_path):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TRAIN))
    argv = ["train", str(dataset), "-o", "run", "--config", str(cfg)]
    straight, _ = _uninterrupted(tmp_path, argv)
    cwd = tmp_path / "killed"
    cwd.mkdir()
    run = cwd / "run"
    # named points of the checkpoint write, each in a later epoch (epoch 0 always improves: best written)
    for point, committed in (("lifter-best:0", -1), ("lifter-weights:2", 1), ("lifter-temp:4", 3),
                             ("lifter-state:6", 6), ("lifter-published:8", 8)):
        assert _launch(cwd, argv, kill_point=point) == 137, point
        assert _state_epoch(run) == committed, point  # state.json names the last complete checkpoint only
        if point.startswith("lifter-temp"):
            assert stale_temps(run), "the hook leaves a half-written state.json temporary file"
        if point.startswith("lifter-state"):  # committed, not yet published: the public names lag
            state = json.loads((run / "state.json").read_text())
            assert (run / "last.safetensors").read_bytes() != (run / state["files"]["last"]["name"]).read_bytes()
    # SIGKILL at seeded random instants of the epoch after the next (its training or checkpoint writing)
    rng = random.Random(7)
    kills = 0
    for _ in range(3):
        target = _state_epoch(run) + 1
        if _launch(cwd, argv, kill_when=_at_epoch(run, target, rng.uniform(0.0, 0.05))) == -signal.SIGKILL:
            kills += 1
    _launch(cwd, argv)
    assert _state_epoch(run) == TRAIN["epochs"] - 1
    n = assert_same_outputs(straight, run)
    state = json.loads((run / "state.json").read_text())
    assert state["best_epoch"] == min(range(TRAIN["epochs"]), key=lambda e: state["history"][e]["val_mpjpe"])
    assert sorted(p.name for p in run.glob("*-*.safetensors")) == sorted(r["name"] for r in state["files"].values())
    print(f"train: 5 hook kills + {kills} random SIGKILLs, {n} files identical")


def test_run_folder_of_the_first_format_still_resumes(dataset, tmp_path):
    """A run written before state.json named its files (public files only) resumes, and ends as
    an uninterrupted run."""
    from posecurator.train.checkpoint import load_lifter, load_tensors
    from posecurator.train.trainer import LifterTrainer, TrainConfig

    poses = PoseSet.load(dataset)
    cfg = dict(TRAIN, epochs=3)
    LifterTrainer(TrainConfig(**{**cfg, "epochs": 2})).fit(poses, out_dir=tmp_path / "old", progress=False)
    old = tmp_path / "old"
    state = json.loads((old / "state.json").read_text())
    for kind in ("last", "best", "optimizer"):  # the first format: real files under the public names only
        public = old / f"{kind}.safetensors" if kind != "optimizer" else old / "optimizer.safetensors"
        data = public.read_bytes()
        public.unlink()
        public.write_bytes(data)
    for p in old.glob("*-*.safetensors"):
        p.unlink()
    for key in ("format", "version", "files", "history", "run", "model"):
        state.pop(key)
    (old / "state.json").write_text(json.dumps(state, indent=1))
    load_lifter(old)  # evaluable as it is
    LifterTrainer(TrainConfig(**cfg)).fit(poses, out_dir=old, progress=False)
    LifterTrainer(TrainConfig(**cfg)).fit(poses, out_dir=tmp_path / "new", progress=False)
    for name in ("last.safetensors", "best.safetensors"):
        a, b = load_tensors(old / name), load_tensors(tmp_path / "new" / name)
        assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a), name
    assert _scrub(json.loads((old / "history.json").read_text())) == _scrub(json.loads((tmp_path / "new" / "history.json").read_text()))


def test_a_damaged_checkpoint_is_refused(dataset, tmp_path):
    from posecurator.train.trainer import LifterTrainer, TrainConfig

    poses = PoseSet.load(dataset)
    cfg = dict(TRAIN, epochs=2)
    LifterTrainer(TrainConfig(**{**cfg, "epochs": 1})).fit(poses, out_dir=tmp_path, progress=False)
    state = json.loads((tmp_path / "state.json").read_text())
    (tmp_path / state["files"]["last"]["name"]).write_bytes(b"damaged")
    with pytest.raises(DataError, match="differs from what state.json recorded"):
        LifterTrainer(TrainConfig(**cfg)).fit(poses, out_dir=tmp_path, progress=False)


# ------------------------------------------------------------------------------ add
@pytest.mark.slow  # launches the CLI 9-12 times (about 2 s of start-up each)
def test_add_killed_anywhere_reruns_to_the_same_bytes(dataset, tmp_path):
    cfg = tmp_path / "add.json"
    cfg.write_text(json.dumps(ADD))
    argv = ["add", str(dataset), "-o", "run", "--config", str(cfg)]
    straight, seconds = _uninterrupted(tmp_path, argv)
    # stage boundaries and a checkpoint write of each lifter, in the order they come
    hooked = tmp_path / "hooked"
    hooked.mkdir()
    codes = _hooks(hooked, argv, ("lifter-weights:1", "stage-reference", "stage-distill", "stage-dataset", "lifter-temp:0",
                                  "stage-report"))
    _launch(hooked, argv)
    n = assert_same_outputs(straight, hooked / "run")
    # SIGKILL at random instants
    killed = tmp_path / "killed"
    killed.mkdir()
    codes += _random_kills(killed, argv, n=2, seconds=seconds, seed=11)
    _launch(killed, argv)
    assert_same_outputs(straight, killed / "run")
    print(f"add: {sum(c == 137 for c in codes)} hook kills + {sum(c == -signal.SIGKILL for c in codes)} random "
          f"SIGKILLs, {n} files identical")


def test_add_changed_config_reruns_from_the_first_changed_stage(dataset, tmp_path):
    from posecurator.pipelines.add import ADDConfig, run_add

    poses = PoseSet.load(dataset)
    config = ADDConfig.from_dict({**ADD, "plots": False})
    messages = []
    run_add(poses, tmp_path / "run", config, progress=False, log=messages.append)
    assert not any("reusing" in m for m in messages)
    messages.clear()
    run_add(poses, tmp_path / "run", config.replace(finetune_lr=0.5), progress=False, log=messages.append)
    reused = [m.split()[-1] for m in messages if "reusing stage" in m]
    assert reused == ["reference", "search", "distill", "dataset"], messages


# ------------------------------------------------------------------------------ difficulty
@pytest.mark.slow  # launches the CLI 9-12 times (about 2 s of start-up each)
def test_difficulty_killed_anywhere_reruns_to_the_same_bytes(dataset, tmp_path):
    argv = ["difficulty", str(dataset), "-o", "run", *DIFFICULTY]
    straight, seconds = _uninterrupted(tmp_path, argv)
    hooked = tmp_path / "hooked"
    hooked.mkdir()
    codes = _hooks(hooked, argv, ("vae-weights:3", "vae-state:7", "stage-scores", "stage-report"))
    _launch(hooked, argv)
    n = assert_same_outputs(straight, hooked / "run")
    assert not list((hooked / "run" / "vae").glob("checkpoint*")), "a finished VAE keeps no checkpoint"
    killed = tmp_path / "killed"
    killed.mkdir()
    codes += _random_kills(killed, argv, n=2, seconds=seconds, seed=5)
    _launch(killed, argv)
    assert_same_outputs(straight, killed / "run")
    print(f"difficulty: {sum(c == 137 for c in codes)} hook kills + {sum(c == -signal.SIGKILL for c in codes)} random "
          f"SIGKILLs, {n} files identical")


def test_vae_resumes_exactly_in_process(dataset, tmp_path, monkeypatch):
    """Interrupted VAE training (a kill after any checkpoint) continues to the same weights."""
    from posecurator.train import vae_trainer
    from posecurator.train.vae_trainer import VAEConfig, train_vae

    poses = PoseSet.load(dataset)
    cfg = VAEConfig(epochs=6, seed=2)
    ref, _ = train_vae(poses, cfg, out_dir=tmp_path / "a", progress=False, resumable=True)
    real = vae_trainer._save_checkpoint

    class Killed(Exception):
        pass

    def save_then_die(folder, epoch, *args):
        real(folder, epoch, *args)
        if epoch == 3:
            raise Killed

    monkeypatch.setattr(vae_trainer, "_save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train_vae(poses, cfg, out_dir=tmp_path / "b", progress=False, resumable=True)
    monkeypatch.undo()
    assert json.loads((tmp_path / "b" / "checkpoint.json").read_text())["epoch"] == 3
    again, hist = train_vae(poses, cfg, out_dir=tmp_path / "b", progress=False, resumable=True)
    assert hist["epoch"] == list(range(6))
    assert (tmp_path / "a" / "vae.safetensors").read_bytes() == (tmp_path / "b" / "vae.safetensors").read_bytes()
    assert not list((tmp_path / "b").glob("checkpoint*"))


# ------------------------------------------------------------------------------ fileio
def test_atomic_writes_leave_nothing_on_failure(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "a.json", {"x": object()})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}  # the old file stays whole

    def fail(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    from posecurator.fileio import atomic_write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "a.json", fail)
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    atomic_write_text(tmp_path / "t.md", "table\n")
    atomic_savez(tmp_path / "s.npz", a=np.arange(3))
    with np.load(tmp_path / "s.npz") as z:
        assert z["a"].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="dtype object"):
        atomic_savez(tmp_path / "p.npz", a=np.array([{}], dtype=object))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "s.npz", "t.md"]
    assert oct((tmp_path / "s.npz").stat().st_mode & 0o777) == oct(0o644)


def _hold_lock(path, ready, release):
    with output_lock(path):
        ready.set()
        release.wait(30)


def test_output_lock_waits_or_fails_at_once(tmp_path):
    out = tmp_path / "out.pcs"
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(out, ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(PoseCuratorError, match="another posecurator process is writing"):
            with output_lock(out, wait=False):
                pass
        release.set()
        t0 = time.monotonic()
        with output_lock(out):  # waits for the holder, then has it
            with output_lock(out, wait=False):  # re-entrant within one thread
                pass
        assert time.monotonic() - t0 < 30
    finally:
        release.set()
        holder.join(30)
    assert not list(tmp_path.iterdir())  # the lock file goes with the last holder


def _save_many(path, seed, n_rounds):
    rng = np.random.default_rng(seed)
    for _ in range(n_rounds):
        PoseSet(joints3d=rng.normal(size=(50, 17, 3)).astype(np.float32), source=f"w{seed}").save(path)


def test_two_writers_of_one_dataset_never_collide(tmp_path):
    out = tmp_path / "same.pcs"
    ctx = mp.get_context("spawn")
    workers = [ctx.Process(target=_save_many, args=(out, seed, 8)) for seed in (1, 2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert len(PoseSet.load(out)) == 50
    assert [p.name for p in tmp_path.iterdir()] == ["same.pcs"]  # no temporary folder, no lock, no .old
    with pytest.raises(DataError, match="already exists"):
        PoseSet(joints3d=np.zeros((2, 17, 3), np.float32)).save(out, overwrite=False)


def test_dataset_writer_removes_dead_writers_temps_only(tmp_path):
    dead = tmp_path / ".x.pcs.deadbeef.tmp"
    alive = tmp_path / ".x.pcs.alive123.tmp"
    other = tmp_path / ".y.pcs.deadbeef.tmp"
    for d in (dead, alive, other):
        d.mkdir()
        (d / "chunk-00000.npz").write_bytes(b"partial")
    fd = try_lock_folder(alive)  # a writer still at work holds its folder's lock
    try:
        PoseSet(joints3d=np.zeros((3, 17, 3), np.float32)).save(tmp_path / "x.pcs")
        assert not dead.exists() and alive.is_dir() and other.is_dir()
    finally:
        os.close(fd)


def test_stale_temps_are_recognised(tmp_path):
    t = temp_path(tmp_path / "state.json")
    assert t.name.startswith(".state.json.") and t.name.endswith(".tmp")
    assert stale_temps(tmp_path) == [t] and stale_temps(tmp_path, lambda name: name == "other") == []


def test_bench_run_log_ignores_a_torn_last_line(tmp_path):
    from posecurator.pipelines.bench import _append_line, read_done_rows

    log = tmp_path / "runs.jsonl"
    _append_line(log, json.dumps({"method": "baseline", "setting": "gt", "seed": 0}))
    with log.open("a") as f:
        f.write('{"method": "add", "setting": "gt", "se')  # killed in the middle of its append
    assert [r["method"] for r in read_done_rows(log)] == ["baseline"]
    _append_line(log, json.dumps({"method": "add", "setting": "gt", "seed": 0}))
    assert [r["method"] for r in read_done_rows(log)] == ["baseline", "add"]
