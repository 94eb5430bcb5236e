"""PoseStore: a pose-set folder opened lazily (header now, rows when asked, selections as indices)."""

import json
import tracemalloc
from dataclasses import fields

import numpy as np
import pytest

from posecurator.errors import DataError
from posecurator.poseset import PoseSet, PoseStore, iter_chunks, read_meta

COLUMNS = [f.name for f in fields(PoseSet) if f.name not in ("layout", "fps", "cameras", "attrs")]
CAMERA = {"R": np.eye(3).tolist(), "t": [0.0, 0.0, 5000.0], "f": [1000.0, 1000.0], "c": [500.0, 500.0],
          "width": 1000, "height": 1000}


def full_set(n: int, *, bbox: bool = True, seed: int = 0) -> PoseSet:
    """Every column filled, text columns with many distinct values, lineage and cameras."""
    rng = np.random.default_rng(seed)
    return PoseSet(
        joints3d=rng.normal(0, 300, (n, 17, 3)).astype(np.float32),
        joints2d=rng.uniform(0, 1000, (n, 17, 2)).astype(np.float32),
        visibility=(rng.random((n, 17)) > 0.2).astype(np.float32),
        camera=rng.integers(-1, 2, n).astype(np.int32),
        source=np.where(rng.random(n) < 0.5, "bandai", "hdm05"),
        subject=[f"s{i % 7}" for i in range(n)],
        activity=[["walk", "run", "jump", "wave-left-hand"][i % 4] for i in range(n)],
        clip=[f"clip-{i // 50:04d}" for i in range(n)],
        frame=np.arange(n) % 50,
        sample_id=np.arange(n) * 3 + 7,
        parents=np.stack([np.arange(n) - 1, np.full(n, -1)], 1),
        operator=np.where(np.arange(n) % 3 == 0, "", "crossover"),
        generation=(np.arange(n) % 4).astype(np.int16),
        bbox=rng.uniform(0, 500, (n, 4)).astype(np.float32) if bbox else None,
        cameras=[CAMERA, {**CAMERA, "t": [100.0, 0.0, 4000.0]}],
        attrs={"note": "test"},
    )


def assert_same(a: PoseSet, b: PoseSet, columns=COLUMNS):
    assert len(a) == len(b)
    for name in columns:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert np.array_equal(np.asarray(x), np.asarray(y)), name
    assert a.layout == b.layout and a.fps == b.fps and a.cameras == b.cameras and a.attrs == b.attrs


@pytest.fixture
def stored(tmp_path):
    ps = full_set(1000)
    path = ps.save(tmp_path / "set.pcs", chunk_size=128)
    return ps, path


def test_open_reads_the_header_only_and_loads_what_load_does(stored):
    ps, path = stored
    store = PoseSet.open(path)
    assert isinstance(store, PoseStore) and len(store) == 1000 and store.rows_read == 0
    assert store.layout == "h36m17" and store.meta == read_meta(path) and store.attrs == {"note": "test"}
    assert set(store.columns) == set(COLUMNS)
    loaded = PoseSet.load(path)
    assert_same(store.load(), loaded)
    assert_same(loaded, ps)
    for name in COLUMNS:  # one column at a time, text columns as TextColumns
        assert np.array_equal(np.asarray(store.column(name)), np.asarray(getattr(loaded, name))), name
    for a, b in zip(store.iter_chunks(columns=["joints3d", "clip"]), iter_chunks(path, columns=["joints3d", "clip"])):
        assert_same(a, b)


def test_take_equals_load_then_subset_for_every_column(stored):
    ps, path = stored
    store = PoseSet.open(path)
    loaded = PoseSet.load(path)
    idx = np.array([999, 3, 3, 500, -1, 128, 127, 0])  # unsorted, repeated, negative, chunk edges
    assert_same(store.take(idx), loaded.subset(np.where(idx < 0, idx + 1000, idx)))
    part = store.take([10, 20], columns=["clip", "parents"])
    assert part.clip.tolist() == ["clip-0000", "clip-0000"] and part.parents.tolist() == [[9, -1], [19, -1]]
    assert part.activity.tolist() == ["", ""] and part.joints3d is not None  # unread text: the default
    assert len(store.take(np.zeros(0, int))) == 0
    with pytest.raises(IndexError):
        store.take([1000])


def test_selection_keeps_indices_and_reads_only_selected_rows(stored):
    ps, path = stored
    store = PoseSet.open(path)
    loaded = PoseSet.load(path)
    mask = store.column("activity") == "walk"
    walk = store.select(mask)
    assert len(walk) == mask.sum() and np.array_equal(walk.indices, np.flatnonzero(mask))
    assert walk.rows_read == 0  # selecting read nothing
    assert_same(walk.load(), loaded.subset(mask))
    assert_same(walk.take([0, -1]), loaded.subset(np.flatnonzero(mask)[[0, -1]]))
    parts = list(walk.iter_chunks(columns=["sample_id"]))
    assert np.array_equal(np.concatenate([p.sample_id for p in parts]), loaded.sample_id[mask])
    assert np.array_equal(walk.column("sample_id"), loaded.sample_id[mask])
    later = walk.select(slice(5, 10))  # a selection of a selection: still indices into the folder
    assert np.array_equal(later.indices, np.flatnonzero(mask)[5:10])
    assert_same(later.load(columns=["joints3d", "generation"]), loaded.subset(np.flatnonzero(mask)[5:10]),
                columns=["joints3d", "generation"])
    # every way of selecting keeps the rows sorted and distinct (the folder's order, each once)
    rows = np.flatnonzero(mask)
    inner = np.zeros(len(walk), bool)
    inner[::3] = True
    for sel, want in ((walk.select(inner), rows[::3]), (walk.select(slice(None, None, -2)), np.sort(rows[::-2])),
                      (walk.select(np.array([4, 1, 4, -1])), rows[[1, 4, -1]]), (store.select(slice(3, 9)), np.arange(3, 9))):
        assert np.array_equal(sel.indices, want) and sel.indices.dtype == np.int64


def test_take_reads_only_its_rows_whatever_the_set_size(tmp_path):
    """The cost of a few random rows does not grow with the set: rows decoded and memory allocated
    are those of the rows asked for (memory maps of the uncompressed chunk arrays)."""
    costs = []
    for n in (2_000, 40_000):
        path = full_set(n).save(tmp_path / f"set-{n}.pcs", chunk_size=1_000)
        store = PoseSet.open(path)
        idx = np.array([5, n // 2, n - 1])
        tracemalloc.start()
        part = store.take(idx)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert store.rows_read == 3 and len(part) == 3
        assert np.array_equal(part.sample_id, idx * 3 + 7)
        costs.append(peak)
    # 40,000 rows hold ~40 MB; 3 rows (and the header's tables) a small, size-independent amount
    assert costs[1] < 2 * costs[0] + 200_000 and costs[1] < 2_000_000


def test_compressed_chunks_are_read_whole(stored, tmp_path):
    ps, path = stored
    file = path / "chunk-00001.npz"
    with np.load(file) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez_compressed(file, **arrays)  # a writer that compressed: no memory map, the same values
    store = PoseSet.open(path)
    assert_same(store.take([130, 131]), ps.subset([130, 131]))
    assert store.rows_read == 128


@pytest.mark.parametrize("with_bbox, version", [(False, 1), (True, 2)])
def test_sets_of_format_versions_1_and_2_open(tmp_path, with_bbox, version):
    ps = full_set(300, bbox=with_bbox)
    path = ps.save(tmp_path / "old.pcs", chunk_size=100)
    assert read_meta(path)["version"] == version
    store = PoseSet.open(path)
    assert_same(store.take([0, 150, 299]), ps.subset([0, 150, 299]))
    assert_same(store.load(), ps)


def test_corrupt_chunks_give_one_line_data_errors(stored):
    ps, path = stored
    file = path / "chunk-00002.npz"
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])  # truncated
    store = PoseSet.open(path)
    assert len(store.take([0])) == 1  # other chunks are still readable
    with pytest.raises(DataError, match="chunk-00002.npz") as e:
        store.take([300])
    assert "\n" not in str(e.value)
    ps.save(path, chunk_size=128)
    meta = json.loads((path / "posecurator.json").read_text())
    meta["strings"]["clip"] = meta["strings"]["clip"][:2]  # codes beyond the table
    (path / "posecurator.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="codes outside its string table"):
        PoseSet.open(path).take([999])
    ps.save(path, chunk_size=128)
    meta = json.loads((path / "posecurator.json").read_text())
    meta["chunks"][0]["n"] += 1  # the header's row count disagrees with the file's
    meta["n"] += 1
    (path / "posecurator.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="expected 129 rows"):
        PoseSet.open(path).take([0])


def test_mutated_chunk_files_give_data_errors_or_checked_values(tmp_path):
    """Seeded byte flips, overwrites and truncations of a chunk: a lazy read either returns rows
    (a flipped data byte is only range-checked: no checksum without reading the whole array) or
    raises one DataError line naming the file, never another exception."""
    ps = full_set(300, seed=1)
    clean = ps.save(tmp_path / "clean.pcs", chunk_size=100)
    data = (clean / "chunk-00001.npz").read_bytes()
    rng = np.random.default_rng(0)
    errors = 0
    for case in range(150):
        path = tmp_path / f"case-{case}.pcs"
        ps.save(path, chunk_size=100)
        mutated = bytearray(data)
        kind = case % 3
        if kind == 0:  # flip a few bytes anywhere (zip headers, .npy headers, data)
            for pos in rng.integers(0, len(mutated), 4):
                mutated[pos] ^= int(rng.integers(1, 256))
        elif kind == 1:  # overwrite a run with random bytes near the start or the end (headers, directory)
            pos = int(rng.choice([rng.integers(0, 400), rng.integers(max(0, len(mutated) - 2000), len(mutated))]))
            mutated[pos:pos + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
        else:
            mutated = mutated[: int(rng.integers(0, len(mutated)))]
        (path / "chunk-00001.npz").write_bytes(bytes(mutated))
        store = PoseSet.open(path)
        try:
            part = store.take([0, 150, 199, 250])
            store.column("clip")
        except DataError as e:
            assert "\n" not in str(e) and "chunk-00001.npz" in str(e), str(e)
            errors += 1
            continue
        assert len(part) == 4 and np.isfinite(part.joints3d).all()
        assert_same(part.subset([0, 3]), ps.subset([0, 250]))  # rows of the untouched chunks
    assert errors > 50


def test_to_arrow_streams_every_column_for_duckdb_polars_pandas(stored):
    pa = pytest.importorskip("pyarrow")
    ps, path = stored
    reader = PoseSet.open(path).to_arrow()
    table = reader.read_all()
    assert table.num_rows == 1000 and table.column("clip").to_pylist() == ps.clip.tolist()
    assert pa.types.is_dictionary(table.schema.field("activity").type)
    assert np.array_equal(np.asarray(table.column("joints3d").combine_chunks().flatten().flatten()).reshape(-1, 17, 3),
                          ps.joints3d)
    assert np.array_equal(np.stack(table.column("parents").to_numpy(zero_copy_only=False)), ps.parents)
    walk = PoseSet.open(path).select(ps.activity == "walk").to_arrow(columns=["activity", "sample_id"]).read_all()
    assert set(walk.column_names) >= {"activity", "sample_id"} and walk.num_rows == int((ps.activity == "walk").sum())
    duckdb = pytest.importorskip("duckdb")
    r = PoseSet.open(path).to_arrow(columns=["activity"])  # noqa: F841 (duckdb finds it by name)
    counts = dict(duckdb.sql("select activity, count(*) from r group by 1").fetchall())
    assert counts == {a: int((ps.activity == a).sum()) for a in np.unique(ps.activity)}
