"""Sharded evolution and evolution streamed to disk, on real Bandai poses.

* one random stream (``shard_size=None``) is the loop of earlier versions, bit for bit (the old
  loop is kept here as the reference);
* sharded evolution equals a plain reference made of one ``evolve_generation`` per shard, each
  with its own ``SeedSequence([seed, g, k])`` generator;
* a shard bred from a population file equals one bred from the array;
* ``evolve_to_store`` writes what ``evolve`` + ``save`` writes, whatever the engine's ordering
  window, the gather window and the writer's chunking; nothing is left behind on failure;
* old configs without ``shard_size`` load as one stream and write the same dict as before.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from posecurator.augment import EvolutionConfig, JointAnglePrior, evolve, evolve_generation
from posecurator.augment import evolution as evo
from posecurator.augment import streaming
from posecurator.augment.evolution import breed_shard, shard_rng
from posecurator.augment.streaming import FilePopulation, evolve_to_store
from posecurator.engine import LocalEngine
from posecurator.poseset import PoseSet, read_npz_arrays

COLUMNS = ("joints3d", "source", "subject", "activity", "clip", "frame", "sample_id", "parents", "operator", "generation")


@pytest.fixture(scope="module")
def bandai(shared_data):
    """About 4,500 real poses: every sixth take of Bandai dataset-1 (file order), fresh sample ids."""
    from posecurator.io import import_path

    files = sorted((shared_data / "bandai" / "dataset-1" / "data").glob("*.bvh.gz"))[::6]
    return PoseSet.concatenate([import_path(f, progress=False) for f in files], renumber=True)


@pytest.fixture(scope="module")
def prior(bandai):
    return JointAnglePrior().fit(bandai)


def _assert_same(a: PoseSet, b: PoseSet):
    assert len(a) == len(b)
    for name in COLUMNS:
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        assert x.dtype == y.dtype and np.array_equal(x, y), name


def _stats(stats):
    return [{k: v for k, v in s.to_dict().items() if k != "seconds"} for s in stats]


def digest(path) -> str:
    """Hash of a stored set's header and of every array of every chunk (dtype, shape, bytes): equal
    digests = byte-identical data (the .npz zip entries also carry a write time, left out)."""
    path = Path(path)
    meta = json.loads((path / "posecurator.json").read_text())
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for chunk in meta["chunks"]:
        arrays = read_npz_arrays(path / chunk["file"])
        for k in sorted(arrays):
            h.update(f"{k} {arrays[k].dtype} {arrays[k].shape}".encode())
            h.update(np.ascontiguousarray(arrays[k]).tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- references
def _old_evolve(population, prior, config):
    """The full-augmentation loop of the versions before shards, as it was."""
    rng = np.random.default_rng(config.seed)
    n0 = len(population)
    need = max(0, int(round(config.multiple * n0)) - n0)
    kept_sets, stats, have, acceptance = [], [], 0, 1.0
    pop = population.replace(joints2d=None, visibility=None, camera=None)
    next_id = int(population.sample_id.max()) + 1
    first_gen = int(population.generation.max()) + 1
    for g in range(config.max_generations):
        if have >= need:
            break
        remaining = need - have
        n_children = min(math.ceil(config.offspring_ratio * len(pop)), math.ceil(remaining / max(acceptance, 0.02) * 1.05) + 16)
        children, st = evolve_generation(pop, n_children=n_children, rng=rng, config=config, prior=prior,
                                         generation=first_gen + g, next_id=next_id)
        stats.append(st)
        acceptance = st.kept / st.made if st.made else 0.0
        if len(children) > remaining:
            children = children.subset(slice(0, remaining))
        next_id += st.kept
        have += len(children)
        if len(children):
            kept_sets.append(children)
            pop = PoseSet.concatenate([pop, children]) if config.population == "all" else children
    return PoseSet.concatenate(kept_sets), stats


def _sharded_reference(population, prior, config):
    """Sharded evolution spelt out: one evolve_generation per shard, shard k of generation g with
    its own generator, every shard breeding from the population at the start of the generation."""
    n0 = len(population)
    need = max(0, int(round(config.multiple * n0)) - n0)
    kept_sets, have, acceptance = [], 0, 1.0
    pop = population.replace(joints2d=None, visibility=None, camera=None)
    next_id = int(population.sample_id.max()) + 1
    for g in range(config.max_generations):
        if have >= need:
            break
        remaining = need - have
        n_children = min(math.ceil(config.offspring_ratio * len(pop)), math.ceil(remaining / max(acceptance, 0.02) * 1.05) + 16)
        shards, made = [], 0
        for k, start in enumerate(range(0, n_children, config.shard_size)):
            m = min(config.shard_size, n_children - start)
            kept_so_far = sum(len(s) for s in shards)
            children, st = evolve_generation(pop, n_children=m, rng=np.random.default_rng(np.random.SeedSequence([config.seed, g, k])),
                                             config=config, prior=prior, generation=1 + g, next_id=next_id + kept_so_far)
            shards.append(children.replace(frame=children.frame + kept_so_far))
            made += st.made
        children = PoseSet.concatenate(shards)
        acceptance = len(children) / made
        next_id += len(children)
        children = children.subset(slice(0, remaining))
        have += len(children)
        kept_sets.append(children)
        pop = PoseSet.concatenate([pop, children]) if config.population == "all" else children
    return PoseSet.concatenate(kept_sets)


# ----------------------------------------------------------------------------- in memory
@pytest.mark.parametrize("kw", [dict(multiple=3.0, seed=0), dict(multiple=2.5, seed=5, population="last"),
                                dict(multiple=4.0, seed=2, batch_size=700, offspring_ratio=0.7)])
def test_one_stream_is_the_loop_of_earlier_versions(bandai, prior, kw):
    config = EvolutionConfig(**kw)
    aug, stats = evolve(bandai, prior=prior, config=config, progress=False)
    ref, ref_stats = _old_evolve(bandai, prior, config)
    _assert_same(aug, ref)
    assert _stats(stats) == _stats(ref_stats)


@pytest.mark.parametrize("kw", [dict(multiple=3.0, seed=0, shard_size=1000),
                                dict(multiple=2.5, seed=3, shard_size=1500, population="last", batch_size=600)])
def test_sharded_evolution_equals_one_generation_call_per_shard(bandai, prior, kw):
    config = EvolutionConfig(**kw)
    aug, stats = evolve(bandai, prior=prior, config=config, progress=False)
    _assert_same(aug, _sharded_reference(bandai, prior, config))
    assert sum(s.made for s in stats) >= len(aug)
    other, _ = evolve(bandai, prior=prior, config=EvolutionConfig(**{**kw, "shard_size": kw["shard_size"] + 1}), progress=False)
    assert not np.array_equal(other.joints3d, aug.joints3d)  # the shard size is part of the result


def test_shard_from_a_population_file_equals_the_array(bandai, prior, tmp_path, monkeypatch):
    config = EvolutionConfig(batch_size=500)
    store = FilePopulation(tmp_path / "scratch", bandai.joints3d, len(bandai) + 10)
    monkeypatch.setattr(streaming, "WINDOW_BYTES", 40_000)  # many windows of ~200 rows
    monkeypatch.setattr(evo, "GATHER_CHILDREN", 1000)  # parents gathered for two batches at a time
    a = breed_shard(bandai.joints3d, shard_rng(7, 1, 2), 3000, config, prior)
    b = breed_shard(store.population(0, len(bandai)), shard_rng(7, 1, 2), 3000, config, prior)
    for name in ("joints", "parent", "partner", "code"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.made == b.made == 3000 and a.operators == b.operators
    sub = store.population(100, 900)  # a window of the file: rows relative to its start
    assert np.array_equal(sub.gather(np.array([0, 5, 799])), bandai.joints3d[[100, 105, 899]])
    assert np.array_equal(store.roots(np.array([9, 3, 400])), [9, 3, 400])
    store.close()
    assert not (tmp_path / "scratch").exists()


# ----------------------------------------------------------------------------- streamed to disk
@pytest.mark.parametrize("shard_size", [None, 1200])
def test_evolve_to_store_writes_what_evolve_and_save_write(bandai, prior, tmp_path, shard_size):
    config = EvolutionConfig(multiple=3.0, seed=1, shard_size=shard_size)
    aug, stats = evolve(bandai, prior=prior, config=config, progress=False)
    whole = PoseSet.concatenate([bandai.replace(joints2d=None, visibility=None, camera=None), aug])
    whole.save(tmp_path / "mem.pcs", chunk_size=2500)
    aug.save(tmp_path / "mem-new.pcs", chunk_size=2500)
    written, generated, st = evolve_to_store(bandai, tmp_path / "disk.pcs", prior=prior, config=config, chunk_size=2500)
    evolve_to_store(bandai, tmp_path / "disk-new.pcs", prior=prior, config=config, chunk_size=2500, include_original=False)
    assert (written, generated) == (len(whole), len(aug))
    assert _stats(st) == _stats(stats)
    if shard_size is None:  # one stream: the chunks of one save of everything
        assert digest(tmp_path / "disk.pcs") == digest(tmp_path / "mem.pcs")
        assert digest(tmp_path / "disk-new.pcs") == digest(tmp_path / "mem-new.pcs")
    else:  # sharded: the same rows, one chunk per shard after the original's chunks
        for disk, mem in (("disk.pcs", whole), ("disk-new.pcs", aug)):
            stored = PoseSet.load(tmp_path / disk)
            _assert_same(stored, mem)
            assert stored.cameras == mem.cameras and stored.attrs == mem.attrs
        meta = json.loads((tmp_path / "disk.pcs" / "posecurator.json").read_text())
        sizes = [c["n"] for c in meta["chunks"]]
        k = math.ceil(len(bandai) / 2500)  # the original's chunks, then the shards'
        assert sizes[:k - 1] == [2500] * (k - 1) and sum(sizes[:k]) == len(bandai)
        assert len(sizes) > k + 2 and max(sizes[k:]) <= config.shard_size and sum(sizes) == len(whole)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk-new.pcs", "disk.pcs", "mem-new.pcs", "mem.pcs"]  # no scratch left
    assert not any("scratch" in p.name for p in (tmp_path / "disk.pcs").iterdir())


class _ShuffledEngine(LocalEngine):
    """Runs a window of tasks in reverse order (as parallel workers may finish) and yields in order."""

    parallel = True

    def map(self, fn, items, *, shared=None):
        items = list(items)
        for start in range(0, len(items), 3):
            window = items[start:start + 3]
            results = {i: fn(shared, x) for i, x in reversed(list(enumerate(window)))}  # the last one first
            yield from (results[i] for i in range(len(window)))


def test_sharded_output_does_not_depend_on_engine_or_windows(bandai, prior, tmp_path, monkeypatch):
    config = EvolutionConfig(multiple=2.2, seed=4, shard_size=900)
    evolve_to_store(bandai, tmp_path / "a.pcs", prior=prior, config=config, chunk_size=3000)
    evolve_to_store(bandai, tmp_path / "b.pcs", prior=prior, config=config, chunk_size=3000, engine=LocalEngine())
    monkeypatch.setattr(streaming, "WINDOW_BYTES", 25_000)
    monkeypatch.setattr(evo, "GATHER_CHILDREN", 300)
    evolve_to_store(bandai, tmp_path / "c.pcs", prior=prior, config=config, chunk_size=3000, engine=_ShuffledEngine())
    assert digest(tmp_path / "a.pcs") == digest(tmp_path / "b.pcs") == digest(tmp_path / "c.pcs")
    with pytest.raises(ValueError, match="sharded"):
        evolve_to_store(bandai, tmp_path / "d.pcs", prior=prior, config=EvolutionConfig(multiple=2.0), engine=_ShuffledEngine())
    assert not (tmp_path / "d.pcs").exists()


def test_failure_leaves_nothing_half_written(bandai, prior, tmp_path, monkeypatch):
    calls = []
    real = evo.run_shard

    def failing(shared, task):
        calls.append(task.key)
        if len(calls) == 3:
            raise RuntimeError("worker lost")
        return real(shared, task)

    monkeypatch.setattr(evo, "run_shard", failing)
    PoseSet(joints3d=bandai.joints3d[:5]).save(tmp_path / "out.pcs")
    before = digest(tmp_path / "out.pcs")
    with pytest.raises(RuntimeError, match="worker lost"):
        evolve_to_store(bandai, tmp_path / "out.pcs", prior=prior, config=EvolutionConfig(multiple=3.0, shard_size=500))
    assert digest(tmp_path / "out.pcs") == before  # the old set is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.pcs"]  # no temporary folder, no scratch file


# ----------------------------------------------------------------------------- configs
def test_configs_without_shard_size_are_one_stream_and_unchanged(tmp_path):
    from posecurator.cli.common import load_add_config
    from posecurator.pipelines.add import ADDConfig

    old = ADDConfig().to_dict()
    assert "shard_size" not in old["evolution"]  # the dict (and cache keys) of earlier versions
    assert ADDConfig.from_dict(old).evolution.shard_size is None
    path = tmp_path / "add.json"
    path.write_text(json.dumps({"evolution": {"shard_size": 4096, "batch_size": 1024}}))
    cfg = load_add_config(path)
    assert cfg.evolution.shard_size == 4096 and cfg.to_dict()["evolution"]["shard_size"] == 4096
    path.write_text(json.dumps({"evolution": {"shard_size": None}}))
    assert load_add_config(path).evolution.shard_size is None
    with pytest.raises(ValueError, match="shard_size"):
        EvolutionConfig(shard_size=0)


def test_augment_command_shards_by_default_and_reproduces_earlier_versions(bandai, prior, tmp_path, capsys):
    from posecurator.cli.main import main

    bandai.save(tmp_path / "in.pcs")
    assert main(["augment", str(tmp_path / "in.pcs"), "-o", str(tmp_path / "one.pcs"), "--multiplier", "2", "-q",
                 "--shard-size", "0"]) == 0
    assert main(["augment", str(tmp_path / "in.pcs"), "-o", str(tmp_path / "sh.pcs"), "--multiplier", "2", "-q"]) == 0
    ps = PoseSet.load(tmp_path / "in.pcs")
    p = JointAnglePrior().fit(ps)
    for name, shard in (("one", None), ("sh", evo.DEFAULT_SHARD_SIZE)):
        aug, _ = evolve(ps, prior=p, config=EvolutionConfig(multiple=2.0, shard_size=shard), progress=False)
        whole = PoseSet.concatenate([ps.replace(joints2d=None, visibility=None, camera=None), aug])
        whole.save(tmp_path / f"{name}-ref.pcs")
        if shard is None:  # one stream: byte for byte what earlier versions wrote
            assert digest(tmp_path / f"{name}.pcs") == digest(tmp_path / f"{name}-ref.pcs"), name
        else:  # sharded: the same rows (chunks follow the shards)
            _assert_same(PoseSet.load(tmp_path / f"{name}.pcs"), whole)
    doc = json.loads((tmp_path / "sh.pcs" / "augment_stats.json").read_text())
    assert doc["evolution"]["shard_size"] == evo.DEFAULT_SHARD_SIZE and doc["engine"] == "local"
    assert "shard_size" not in json.loads((tmp_path / "one.pcs" / "augment_stats.json").read_text())["evolution"]
    capsys.readouterr()
    assert main(["augment", str(tmp_path / "in.pcs"), "-o", str(tmp_path / "x.pcs"), "--shard-size", "0", "--engine", "ray"]) == 2
    err = capsys.readouterr().err
    assert "one random stream" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.pcs").exists()
