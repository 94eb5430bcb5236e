"""Issue 12, first slice: compact text columns (TextColumn) and the streaming scorer.

* text columns keep the semantics of NumPy unicode arrays (==, np.unique, np.isin, indexing,
  subset, concatenate across different tables, astype(str), tolist, json, sorting);
* the on-disk format is unchanged: what the writer stores equals the reference encoding (codes
  into tables in first-seen order, as every earlier version wrote them), old folders load;
* an augmented real set holds its text in a few bytes per pose;
* streaming scores (chunk by chunk from disk) equal the in-memory scores byte for byte.
"""

from __future__ import annotations

import csv
import json
import zipfile

import numpy as np
import pytest

from posecurator.poseset import STRING_COLUMNS, PoseSet, TextColumn, iter_chunks, read_meta


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def hdm05_bd(shared_data):
    """Actor bd of HDM05 (real mocap), one PoseSet per take and the whole set (ids renumbered)."""
    from posecurator.io import import_path

    root = shared_data / "hdm05"
    rows = [r for r in csv.DictReader(open(root / "index.csv")) if r["actor"] == "bd"]
    parts = [import_path(root / "amc" / f"{r['file']}.gz", progress=False) for r in rows]
    return parts, PoseSet.concatenate(parts, renumber=True)


@pytest.fixture(scope="module")
def augmented(hdm05_bd):
    """The real set plus 15x as many evolved poses (operators, generations, aug clips)."""
    from posecurator.augment import EvolutionConfig, JointAnglePrior, evolve

    _, real = hdm05_bd
    prior = JointAnglePrior().fit(real)
    aug, _ = evolve(real, prior=prior, config=EvolutionConfig(multiple=16, seed=3), progress=False)
    return PoseSet.concatenate([real, aug])


def _plain_strings(ps: PoseSet, name: str) -> np.ndarray:
    """The column as a plain unicode array, built from Python strings (the reference)."""
    return np.array([str(s) for s in getattr(ps, name).tolist()], dtype=str)


# ----------------------------------------------------------------------------- semantics
def test_text_columns_are_compact_and_typed(augmented):
    for name in STRING_COLUMNS:
        col = getattr(augmented, name)
        assert isinstance(col, TextColumn)
        assert col.codes.dtype.itemsize <= 2 and len(col) == len(augmented)
        assert list(col.table) == sorted(set(col.table.tolist())), "tables are sorted and distinct"


def test_string_semantics_match_unicode_arrays(augmented):
    rng = np.random.default_rng(0)
    n = len(augmented)
    mask = rng.random(n) < 0.3
    index = rng.integers(0, n, 5000)
    for name in STRING_COLUMNS:
        col, ref = getattr(augmented, name), _plain_strings(augmented, name)
        values = list(dict.fromkeys(ref.tolist()))[:3] + ["not-there"]
        for v in values:
            assert np.array_equal(col == v, ref == v) and np.array_equal(col != v, ref != v)
            assert np.array_equal(v == col, ref == v)
            assert np.array_equal(np.equal(col, v), ref == v)
        assert np.array_equal(col == ref, np.ones(n, bool)) and np.array_equal(ref == col, np.ones(n, bool))
        for kw in ({}, {"return_index": True}, {"return_inverse": True}, {"return_counts": True},
                   {"return_index": True, "return_inverse": True, "return_counts": True}):
            got, want = np.unique(col, **kw), np.unique(ref, **kw)
            for g, w in zip(got if kw else [got], want if kw else [want]):
                assert np.array_equal(g, w) and np.asarray(g).dtype.kind == np.asarray(w).dtype.kind
        assert np.array_equal(np.isin(col, values), np.isin(ref, values))
        assert np.array_equal(np.isin(col, values, invert=True), np.isin(ref, values, invert=True))
        assert np.array_equal(np.isin(values, col), np.isin(values, ref))
        assert np.array_equal(np.isin(col, col[mask]), np.isin(ref, ref[mask]))
        for sel in (mask, index, slice(5, 500, 7), slice(None, None, -1)):
            assert isinstance(col[sel], TextColumn) and col[sel].tolist() == ref[sel].tolist()
        assert col[3] == ref[3] and col[-1] == ref[-1] and isinstance(col[0], str)
        assert col.astype(str).dtype.kind == "U" and np.array_equal(col.astype(str), ref)
        assert np.array_equal(np.asarray(col), ref) and np.array_equal(np.char.add("x:", col.astype(str)), np.char.add("x:", ref))
        assert json.loads(json.dumps(col[:50].tolist())) == ref[:50].tolist() and json.dumps(col[0]) == json.dumps(str(ref[0]))
        assert np.array_equal(np.sort(col), np.sort(ref))
        assert np.array_equal(np.argsort(col, kind="stable"), np.argsort(ref, kind="stable"))
        assert np.array_equal(np.lexsort((augmented.frame, col)), np.lexsort((augmented.frame, ref)))
        assert sorted(col[:200]) == sorted(ref[:200].tolist())
        assert np.array_equal(np.where(col == values[0], col, "?"), np.where(ref == values[0], ref, "?"))


def test_subset_concatenate_and_assignment_across_tables(hdm05_bd):
    parts, whole = hdm05_bd
    # sets with different tables: each take has its own clip/activity; one made of other strings
    other = PoseSet(joints3d=parts[0].joints3d[:10], clip=[f"zz-{i % 3}" for i in range(10)], activity="Ärger ✓",
                    subject="x", source="bandai", operator=["crossover"] * 5 + [""] * 5)
    sets = [parts[2], other, parts[0].subset(slice(3, 40)), parts[1].subset(np.arange(len(parts[1])) % 2 == 0)]
    cat = PoseSet.concatenate(sets, renumber=True)
    for name in STRING_COLUMNS:
        want = np.concatenate([_plain_strings(s, name) for s in sets])
        assert getattr(cat, name).tolist() == want.tolist()
        assert list(getattr(cat, name).table) == sorted(set(want.tolist()))
    assert np.concatenate([cat.clip, other.clip]).tolist() == cat.clip.tolist() + other.clip.tolist()
    sub = cat.subset(slice(0, 100))
    sub.clip[:2] = "new clip"          # a new string: the table grows, the parent is untouched
    sub.activity[5] = other.activity[0]
    assert sub.clip[:3].tolist() == ["new clip", "new clip", cat.clip[2]] and cat.clip[0] != "new clip"
    assert sub.activity[5] == "Ärger ✓" and "new clip" not in cat.clip.tolist()
    # anything array-like still builds a column (lists, unicode, StringDType, objects)
    for value in (["a", "b"], np.array(["a", "b"]), np.array(["a", "b"], dtype=np.dtypes.StringDType()),
                  np.array(["a", "b"], dtype=object)):
        assert PoseSet(joints3d=np.zeros((2, 17, 3)), clip=value).clip.tolist() == ["a", "b"]
    with pytest.raises(ValueError):
        PoseSet(joints3d=np.zeros((2, 17, 3)), clip=["a"])


def test_many_distinct_strings_use_wider_codes():
    texts = np.array([f"clip-{i:06d}" for i in range(70_000)])
    col = TextColumn.from_values(texts[::-1])
    assert col.codes.dtype == np.int32 and col.tolist() == texts[::-1].tolist()
    col = TextColumn.from_values(texts[:300])
    assert col.codes.dtype == np.uint16
    col[0] = "x" * 80
    assert col[0] == "x" * 80 and col[1:].tolist() == texts[1:300].tolist()


# ----------------------------------------------------------------------------- on disk
def _reference_encoding(ps: PoseSet, chunk_size: int):
    """What every version of the writer stores for ``ps``: per chunk int32 codes into tables that
    grow in first-seen order of the chunk's sorted distinct strings (computed on unicode arrays)."""
    tables = {k: {} for k in STRING_COLUMNS}
    chunks = []
    for start in range(0, len(ps), chunk_size):
        arrays = {}
        for k in STRING_COLUMNS:
            text = _plain_strings(ps, k)[start:start + chunk_size]
            uniq, inverse = np.unique(text, return_inverse=True)
            codes = np.array([tables[k].setdefault(u, len(tables[k])) for u in uniq.tolist()], dtype=np.int32)
            arrays[k] = codes[inverse.reshape(-1)]
        chunks.append(arrays)
    return {k: list(t) for k, t in tables.items()}, chunks


def _npz_arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_disk_format_unchanged_and_round_trip(augmented, tmp_path):
    ps = augmented.subset(np.random.default_rng(1).permutation(len(augmented))[:20_000])
    out = ps.save(tmp_path / "a.pcs", chunk_size=6_000)
    meta = read_meta(out)
    tables, chunks = _reference_encoding(ps, 6_000)
    assert meta["strings"] == tables and len(meta["chunks"]) == len(chunks) == 4
    for entry, want in zip(meta["chunks"], chunks):
        got = _npz_arrays(out / entry["file"])
        for k in STRING_COLUMNS:
            assert got[k].dtype == np.int32 and np.array_equal(got[k], want[k])
    back = PoseSet.load(out)
    for name in ps._array_fields():
        a, b = getattr(ps, name), getattr(back, name)
        if name in STRING_COLUMNS:
            assert a.tolist() == b.tolist()
        elif a is None:
            assert b is None
        else:
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    # written again: the same header and the same arrays (npz members differ only in zip timestamps)
    again = back.save(tmp_path / "b.pcs", chunk_size=6_000)
    assert (out / "posecurator.json").read_text() == (again / "posecurator.json").read_text()
    for entry in meta["chunks"]:
        a, b = _npz_arrays(out / entry["file"]), _npz_arrays(again / entry["file"])
        assert a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes() for k in a)
        with zipfile.ZipFile(out / entry["file"]) as z:  # plain .npy members, nothing pickled
            assert all(n.endswith(".npy") for n in z.namelist())


def test_old_folders_load(tmp_path):
    """A folder as earlier versions wrote it (format version 1, tables in first-seen order, int32 codes);
    also a hand-made one with int64 codes and a repeated table entry."""
    folder = tmp_path / "old.pcs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    tables = {"source": ["hdm05"], "subject": ["tr", "bd"], "activity": ["walk", "kick", "jump", "kick"],
              "clip": ["c9", "c1", "c5"], "operator": [""]}
    chunks, want = [], {k: [] for k in tables}
    for i, n in enumerate((7, 5)):
        arrays = {"joints3d": rng.normal(size=(n, 17, 3)).astype(np.float32), "frame": np.arange(n, dtype=np.int32),
                  "sample_id": np.arange(n, dtype=np.int64) + 10 * i, "parents": np.full((n, 2), -1, np.int64),
                  "generation": np.zeros(n, np.int16), "camera": np.full(n, -1, np.int32)}
        for k, t in tables.items():
            codes = rng.integers(0, len(t), n).astype(np.int64 if k == "activity" else np.int32)
            arrays[k] = codes
            want[k] += [t[c] for c in codes]
        np.savez(folder / f"chunk-{i:05d}.npz", **arrays)
        chunks.append({"file": f"chunk-{i:05d}.npz", "n": n})
    meta = {"format": "posecurator-poseset", "version": 1, "layout": "h36m17", "fps": 30.0, "n": 12,
            "chunks": chunks, "strings": tables, "cameras": [], "attrs": {}}
    (folder / "posecurator.json").write_text(json.dumps(meta))
    ps = PoseSet.load(folder)
    for k in tables:
        assert getattr(ps, k).tolist() == want[k]
    assert [c.clip.tolist() for c in iter_chunks(folder)] == [want["clip"][:7], want["clip"][7:]]
    assert np.array_equal(np.unique(ps.activity), np.unique(np.array(want["activity"])))


def test_augmented_memory_per_pose(augmented):
    """Text columns of a real augmented set: a few bytes per pose (fixed width: hundreds)."""
    n = len(augmented)
    text = sum(getattr(augmented, k).nbytes for k in STRING_COLUMNS) / n
    fixed = sum(np.asarray(getattr(augmented, k)).nbytes for k in STRING_COLUMNS) / n
    total = sum(getattr(augmented, k).nbytes for k in augmented._array_fields() if getattr(augmented, k) is not None) / n
    assert n > 50_000 and text <= 6.0, text          # five 1-byte code columns + the tables
    assert fixed >= 300, fixed                         # what '<U..' columns held
    assert total <= 245, total                         # joints 204 + ids/lineage/frame/generation/camera 34 + text


# ----------------------------------------------------------------------------- streaming scorer
def test_iter_blocks_regroups_parts(hdm05_bd):
    from posecurator.scoring.stream import iter_blocks

    parts, whole = hdm05_bd
    for size in (1, 333, 10 ** 9):
        blocks = list(iter_blocks(parts[:6], size))
        total = sum(len(p) for p in parts[:6])
        assert [len(b) for b in blocks[:-1]] == [size] * (len(blocks) - 1) and sum(len(b) for b in blocks) == total
        got = np.concatenate([b.joints3d for b in blocks])
        assert np.array_equal(got, np.concatenate([p.joints3d for p in parts[:6]]))
        assert sum((b.clip.tolist() for b in blocks), []) == sum((p.clip.tolist() for p in parts[:6]), [])


def test_streaming_density_scores_equal_in_memory(hdm05_bd, augmented, tmp_path):
    from posecurator.scoring.density import DensityScorer
    from posecurator.scoring.stream import score_dataset
    from posecurator.selection.bins import load_scores

    _, real = hdm05_bd
    scorer = DensityScorer(seed=0).fit(real)
    path = augmented.save(tmp_path / "aug.pcs", chunk_size=25_000)
    whole = PoseSet.load(path)
    want = scorer.score_samples(whole)
    for chunk in (4_096, 70_001):
        ids, got = score_dataset(scorer, path, chunk_size=chunk, output=tmp_path / f"s{chunk}.npz")
        assert ids.tobytes() == whole.sample_id.tobytes()
        assert got.dtype == np.float64 and got.tobytes() == want.tobytes(), chunk
        fid, fsc = load_scores(tmp_path / f"s{chunk}.npz")
        assert fid.tobytes() == ids.tobytes() and fsc.tobytes() == want.tobytes()
    ids, got = score_dataset(scorer, path, chunk_size=9_999, columns=["joints3d"])
    assert got.tobytes() == want.tobytes()

    class Parallel:  # an engine whose tasks run elsewhere: they read their own blocks, the last first
        parallel = True

        def map(self, fn, items, *, shared=None):
            items = list(items)
            return iter([fn(shared, x) for x in items[::-1]][::-1])

    for chunk, columns in ((16_384, ["joints3d"]), (40_000, None)):  # blocks across the 25,000-row chunks
        ids, got = score_dataset(scorer, path, chunk_size=chunk, columns=columns, engine=Parallel(),
                                 output=tmp_path / "parallel.npz")
        assert ids.tobytes() == whole.sample_id.tobytes() and got.tobytes() == want.tobytes(), chunk
        fid, fsc = load_scores(tmp_path / "parallel.npz")
        assert fid.tobytes() == ids.tobytes() and fsc.tobytes() == want.tobytes()


def test_streaming_lifter_error_keeps_one_random_stream(hdm05_bd, tmp_path):
    """lifter_error draws seeded random cameras while scoring: the stream keeps one random stream and
    the scorer's own batches, so the scores equal one in-memory call whatever the chunk size."""
    from posecurator.scoring.lifter_error import LifterErrorScorer
    from posecurator.scoring.stream import score_dataset

    _, real = hdm05_bd
    w = np.random.default_rng(0).normal(size=(34, 51)) * 50

    def predict(x2d):  # a fixed (deterministic) "lifter"
        return (x2d.reshape(len(x2d), -1) @ w).reshape(len(x2d), 17, 3)

    scorer = LifterErrorScorer(predict_fn=predict, n_views=2, noise_px=2.0, seed=5, chunk=3_000).fit()
    path = real.save(tmp_path / "real.pcs", chunk_size=4_000)
    want = scorer.score_samples(PoseSet.load(path))
    for chunk in (1_001, 50_000):
        _, got = score_dataset(scorer, path, chunk_size=chunk)
        assert got.tobytes() == want.tobytes(), chunk
