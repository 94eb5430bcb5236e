"""Engines (posecurator.engine): the local engine, and Ray giving the local engine's results.

The Ray tests start a private 2-CPU Ray cluster. On these machines every Ray process must listen
and connect on the loopback address only, so :func:`test_ray_in_a_private_network` runs them in a
fresh network namespace (``unshare -n``: only a loopback interface exists there), as a pytest
subprocess with ``POSECURATOR_RAY_INSIDE=1``; outside it they skip. They skip with a reason where
Ray is absent (``pip install 'posecurator[ray]'``) or no namespace can be made (not root, no
``unshare``/``ip``). Data: a small real subset of Bandai (every sixth take of dataset-1).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from posecurator.engine import LocalEngine, make_engine
from posecurator.errors import PoseCuratorError
from posecurator.poseset import PoseSet

INSIDE = os.environ.get("POSECURATOR_RAY_INSIDE") == "1"
inside_only = pytest.mark.skipif(not INSIDE, reason="runs inside a private network namespace, started by "
                                                    "test_ray_in_a_private_network")


def _square_plus(shared, item):
    return item * item + shared


def _seeded(shared, key):
    return np.random.default_rng(np.random.SeedSequence([shared, key])).normal(size=3)


@pytest.fixture(scope="module")
def bandai(shared_data):
    from posecurator.io import import_path

    files = sorted((shared_data / "bandai" / "dataset-1" / "data").glob("*.bvh.gz"))[::6]
    return PoseSet.concatenate([import_path(f, progress=False) for f in files], renumber=True)


def test_local_engine_maps_in_order_and_lazily():
    taken = []

    def items():
        for i in range(5):
            taken.append(i)
            yield i

    eng = LocalEngine()
    it = eng.map(_square_plus, items(), shared=10)
    assert next(it) == 10 and taken == [0]  # nothing is taken ahead
    assert list(it) == [11, 14, 19, 26]


def test_make_engine_options():
    assert isinstance(make_engine("local"), LocalEngine)
    for kw, needle in ((dict(name="local", workers=2), "--workers"), (dict(name="local", address="x:1"), "--address"),
                       (dict(name="spark"), "unknown engine")):
        with pytest.raises(PoseCuratorError, match=needle):
            make_engine(kw.pop("name"), **kw)


def test_streamed_scores_with_the_local_engine_are_the_plain_ones(bandai, tmp_path):
    from posecurator.scoring.density import DensityScorer
    from posecurator.scoring.stream import score_dataset

    bandai.save(tmp_path / "b.pcs", chunk_size=1000)
    scorer = DensityScorer(seed=0).fit(bandai.subset(slice(0, None, 2)))
    ids, plain = score_dataset(scorer, tmp_path / "b.pcs", chunk_size=700)
    ids2, local = score_dataset(scorer, tmp_path / "b.pcs", chunk_size=700, engine=LocalEngine())
    assert np.array_equal(ids, ids2) and np.array_equal(plain, local)


def test_ray_absent_is_one_clear_line(monkeypatch, tmp_path, capsys, bandai):
    from posecurator.cli.main import main

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(PoseCuratorError, match=r"pip install 'posecurator\[ray\]'"):
        make_engine("ray", workers=2)
    bandai.subset(slice(0, 300)).save(tmp_path / "in.pcs")
    assert main(["augment", str(tmp_path / "in.pcs"), "-o", str(tmp_path / "o.pcs"), "--engine", "ray", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "posecurator[ray]" in err[0] and not (tmp_path / "o.pcs").exists()


# ------------------------------------------------------------------------------------------ Ray
def _netns_problem() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare and ip to make a private network namespace"
    p = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if p.returncode != 0:
        return f"cannot make a private network namespace (unshare -n: {p.stderr.strip()[:80]})"
    return None


def netns_problem() -> str | None:
    """Why no private network namespace can be made here (None: one can); for other test files."""
    return _netns_problem()


def run_inside_private_network(test_file: Path, *pytest_args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``pytest test_file *pytest_args`` in a fresh network namespace (loopback up, nothing else),
    with ``POSECURATOR_RAY_INSIDE=1`` and this folder importable by Ray's workers, as
    :func:`test_ray_in_a_private_network` runs this file; for other test files' Ray tests."""
    path = os.pathsep.join(p for p in (str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "POSECURATOR_RAY_INSIDE": "1", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": path}
    cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" -m pytest -q -p no:cacheprovider -x "$@"',
           sys.executable, str(Path(test_file).resolve()), *pytest_args]
    return subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.skipif(INSIDE, reason="already inside")
def test_ray_in_a_private_network(shared_data):
    pytest.importorskip("ray", reason="Ray is absent: pip install 'posecurator[ray]'")
    problem = _netns_problem()
    if problem:
        pytest.skip(problem)
    p = run_inside_private_network(Path(__file__))  # this folder importable: Ray's workers import its functions
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert "7 passed, 1 skipped" in p.stdout, p.stdout[-2000:]  # every test ran inside (but this one)


@pytest.fixture(scope="module")
def ray_engine():
    from posecurator.engine import RayEngine

    with RayEngine(num_workers=2) as eng:
        yield eng


def assert_listening_on_loopback_only() -> None:
    """Every listening TCP socket of this (private) network namespace is on loopback."""
    p = subprocess.run(["ss", "-tlnH"], capture_output=True, text=True)
    local = [line.split()[3] for line in p.stdout.splitlines() if line.strip()]
    assert local and all(a.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:", "[::1]:")) for a in local), local


@inside_only
def test_ray_listens_on_loopback_only(ray_engine):
    assert_listening_on_loopback_only()


@inside_only
def test_ray_map_is_ordered_and_equal_to_local(ray_engine):
    keys = list(range(12))
    assert [x.tolist() for x in ray_engine.map(_seeded, keys, shared=5)] == \
        [x.tolist() for x in LocalEngine().map(_seeded, keys, shared=5)]


@inside_only
def test_augment_and_score_on_ray_equal_local(ray_engine, bandai, tmp_path, capsys):
    from test_evolution_shards import digest

    from posecurator.cli.main import main

    bandai.save(tmp_path / "in.pcs")
    common = ["augment", str(tmp_path / "in.pcs"), "--multiplier", "8", "--shard-size", "5000", "--seed", "2", "-q"]
    assert main([*common, "-o", str(tmp_path / "local.pcs")]) == 0
    assert main([*common, "-o", str(tmp_path / "ray2.pcs"), "--engine", "ray", "--workers", "2"]) == 0
    assert main([*common, "-o", str(tmp_path / "ray1.pcs"), "--engine", "ray", "--workers", "1"]) == 0
    assert digest(tmp_path / "local.pcs") == digest(tmp_path / "ray2.pcs") == digest(tmp_path / "ray1.pcs")

    score = ["score", str(tmp_path / "local.pcs"), "--scorer", "density", "--reference", str(tmp_path / "in.pcs"), "-q"]
    assert main([*score, "-o", str(tmp_path / "local.npz")]) == 0
    assert main([*score, "-o", str(tmp_path / "ray.npz"), "--engine", "ray", "--workers", "2"]) == 0
    with np.load(tmp_path / "local.npz") as a, np.load(tmp_path / "ray.npz") as b:
        assert np.array_equal(a["sample_id"], b["sample_id"]) and np.array_equal(a["score"], b["score"])
        assert len(a["score"]) == 8 * len(bandai)
    # several blocks (of the density scorer's 16384 rows) spread over the workers
    from posecurator.scoring.density import DensityScorer
    from posecurator.scoring.stream import score_dataset

    scorer = DensityScorer(seed=0).fit(bandai)
    ids, plain = score_dataset(scorer, tmp_path / "ray2.pcs", chunk_size=16384)
    ids2, spread = score_dataset(scorer, tmp_path / "ray2.pcs", chunk_size=16384, engine=ray_engine)
    assert len(ids) > 2 * 16384 and np.array_equal(ids, ids2) and np.array_equal(plain, spread)
    capsys.readouterr()
