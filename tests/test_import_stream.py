"""import_to_store (``posecurator import``) streams file by file and writes exactly what
``import_path(...).save(...)`` writes: the same chunk arrays, string tables, cameras, attrs and fps."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from posecurator.errors import DataError
from posecurator.io import import_path, import_to_store
from posecurator.poseset import PoseSet, TextColumn

BANDAI_FILES = ("bandai/dataset-1/data/dataset-1_bow_active_001.bvh.gz",
                "bandai/dataset-1/data/dataset-1_dash_normal_001.bvh.gz",
                "bandai/dataset-2/data/dataset-2_walk_normal_001.bvh.gz")


def need(shared_data: Path, rel: str) -> Path:
    path = shared_data / rel
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


def folder_contents(path: Path):
    """The header and every array (dtype, shape, bytes) of every chunk of a stored set. The npz
    files themselves carry zip timestamps, so two saves a second apart differ in those bytes
    alone; this compares everything else."""
    meta = json.loads((path / "posecurator.json").read_text())
    arrays = []
    for c in meta["chunks"]:
        with np.load(path / c["file"], allow_pickle=False) as z:
            arrays.append({k: (z[k].dtype.str, z[k].shape, z[k].tobytes()) for k in sorted(z.files)})
    return meta, arrays


def same_loaded(a: PoseSet, b: PoseSet) -> None:
    for name in a._array_fields():
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if isinstance(x, TextColumn):
            assert x.tolist() == y.tolist(), name
        elif x is not None:
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name
    assert (a.layout, a.fps, a.cameras, a.attrs) == (b.layout, b.fps, b.cameras, b.attrs)


def no_temp_left(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


def check_same(src: Path, tmp_path: Path, chunks=(97, 1000, 262_144), **kwargs) -> PoseSet:
    """import_to_store equals import_path + save for several chunk sizes; returns the set."""
    want_set = import_path(src, progress=False, **kwargs)
    for chunk in chunks:
        want = want_set.save(tmp_path / f"want-{chunk}.pcs", chunk_size=chunk)
        got = tmp_path / f"got-{chunk}.pcs"
        summary = import_to_store(src, got, progress=False, chunk_size=chunk, **kwargs)
        assert folder_contents(got) == folder_contents(want), chunk
        same_loaded(PoseSet.load(got), PoseSet.load(want))
        assert summary == want_set.summary()
    assert no_temp_left(tmp_path)
    return want_set


# ---------------------------------------------------------------------- real data, small
def test_bandai_files_stream_to_the_same_set(shared_data, tmp_path):
    root = tmp_path / "bandai"   # the nearest folder named bandai gives the source
    for rel in BANDAI_FILES:
        dst = root / Path(rel).relative_to("bandai")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(need(shared_data, rel), dst)
    for cfg in ("dataset-1/cfg", "dataset-2/cfg"):  # content/style names of the per-clip json
        if (shared_data / "bandai" / cfg).is_dir():
            shutil.copytree(shared_data / "bandai" / cfg, root / cfg)
    out = tmp_path / "out"
    out.mkdir()
    ps = check_same(root, out)
    assert len(np.unique(ps.clip)) == 3 and "per_source" in ps.attrs
    assert ps.sample_id.tolist() == list(range(len(ps)))


def test_hdm05_amc_stream_to_the_same_set(shared_data, tmp_path):
    amc = sorted((shared_data / "hdm05" / "amc").glob("HDM_bd_*.amc.gz"))[:3]
    asf = shared_data / "hdm05" / "asf" / "HDM_bd.asf"
    if len(amc) < 3 or not asf.is_file():
        pytest.skip("HDM05 data is absent")
    root = tmp_path / "hdm05"
    (root / "amc").mkdir(parents=True)
    (root / "asf").mkdir()
    shutil.copy(asf, root / "asf")
    for p in amc:
        shutil.copy(p, root / "amc")
    out = tmp_path / "out"
    out.mkdir()
    ps = check_same(root, out, chunks=(500, 262_144))
    assert set(np.unique(ps.source).tolist()) == {"hdm05"}


def test_coco_files_stream_with_one_camera_table(shared_data, tmp_path):
    coco = shared_data / "coco"
    if len(list(coco.glob("*.json"))) < 2:
        pytest.skip("COCO data is absent")
    ps = check_same(coco, tmp_path, chunks=(1000, 262_144))
    assert ps.joints2d is not None and ps.cameras    # two files' camera tables, re-indexed into one
    assert ps.camera.max() >= len(ps.cameras) // 2 and ps.camera.max() < len(ps.cameras)


# ---------------------------------------------------------------------- choices a later file changes
def _toy(n: int, seed: int, **kw) -> PoseSet:
    rng = np.random.default_rng(seed)
    return PoseSet(joints3d=rng.normal(0, 300, (n, 17, 3)).astype(np.float32) + [0, 0, 900],
                   clip=np.repeat([f"c{seed}"], n), activity="walk", subject=f"s{seed}", source="toy", **kw)


@pytest.mark.parametrize("case", ["visibility_later", "bbox_missing_later", "own_ids_then_more"])
def test_a_later_file_changing_a_written_choice(tmp_path, case, monkeypatch):
    from posecurator.io import folder

    passes = []
    real = folder._import_once
    monkeypatch.setattr(folder, "_import_once", lambda *a, **kw: (passes.append(a[3]), real(*a, **kw))[1])
    src = tmp_path / "src"
    src.mkdir()
    a, b = _toy(300, 1), _toy(200, 2)
    if case == "visibility_later":
        b = b.replace(visibility=(np.arange(200 * 17).reshape(200, 17) % 3 > 0).astype(np.float32))
    elif case == "bbox_missing_later":
        a = a.replace(bbox=np.tile([1.0, 2.0, 30.0, 40.0], (300, 1)))
    else:
        a = a.replace(sample_id=np.arange(300) * 7 + 5)
    a.save(src / "a.pcs")
    b.save(src / "b.pcs")
    out = tmp_path / "out"
    out.mkdir()
    got = check_same(src, out, chunks=(64, 1000))
    assert got.sample_id.tolist() == list(range(500))
    # chunks of 64: a's rows were written before b said otherwise, so the files are read again;
    # chunks of 1000: nothing was written yet, so the choice changes in place
    assert len(passes) == 3 and passes[1] != passes[0] == passes[2]
    # one such file alone keeps what it has
    single = tmp_path / "single"
    single.mkdir()
    check_same(src / "a.pcs", single, chunks=(64,))


def test_stored_sets_inside_a_folder_are_read_chunk_by_chunk(shared_data, tmp_path, monkeypatch):
    """Posecurator sets nested in an imported folder (several chunks, 2D with a camera table, own
    sample ids) beside a mocap file: the same set as import_path + save, and no set is loaded whole."""
    from posecurator.io import folder
    from posecurator.poseset import PoseStore

    coco = sorted((shared_data / "coco").glob("*.json"))
    if not coco:
        pytest.skip("COCO data is absent")
    src = tmp_path / "src"
    src.mkdir()
    people = import_path(coco[0], progress=False)
    people.subset(slice(0, 700)).replace(sample_id=np.arange(700) * 3 + 11).save(src / "a-people.pcs", chunk_size=128)
    people.subset(slice(700, 1000)).save(src / "b-people.pcs", chunk_size=100)
    assert people.cameras and len(PoseStore(src / "a-people.pcs").meta["chunks"]) == 6
    want_set = import_path(src, progress=False)
    monkeypatch.setattr(folder.PoseSet, "load", lambda *a, **kw: pytest.fail("a nested set was loaded whole"))
    for chunk in (97, 262_144):
        want = want_set.save(tmp_path / f"want-{chunk}.pcs", chunk_size=chunk)
        got = tmp_path / f"got-{chunk}.pcs"
        summary = import_to_store(src, got, progress=False, chunk_size=chunk)
        assert folder_contents(got) == folder_contents(want), chunk
        assert summary == want_set.summary()
    assert want_set.camera.max() >= len(people.cameras)  # the second set's rows index the second table
    # a bad coordinate in a later chunk is named by its row in that set, as when it is loaded
    bad = people.subset(slice(0, 300))
    j2 = bad.joints2d.copy()
    j2[250, int(np.argmax(bad.visibility[250] > 0))] = np.nan  # a labelled joint
    bad.replace(joints2d=j2).save(src / "c-bad.pcs", chunk_size=100)
    with pytest.raises(DataError, match="sample 250"):
        import_to_store(src, tmp_path / "bad.pcs", progress=False)
    assert not (tmp_path / "bad.pcs").exists() and no_temp_left(tmp_path)


# ---------------------------------------------------------------------- errors
def test_errors_are_those_of_import_path_and_leave_nothing(shared_data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "labels.json").write_text(json.dumps({"content": 1}))
    bvh = need(shared_data, BANDAI_FILES[0])
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    shutil.copy(bvh, corrupt)
    data = gzip.decompress(bvh.read_bytes())
    (corrupt / "zz_truncated.bvh").write_bytes(data[: len(data) // 3])
    mixed = tmp_path / "mixed"        # 3D mocap, then a 2D-only COCO file
    mixed.mkdir()
    shutil.copy(bvh, mixed / "a.bvh.gz")
    coco = min((shared_data / "coco").glob("*.json"), default=None)
    if coco is None:
        pytest.skip("COCO data is absent")
    shutil.copy(coco, mixed / "z_coco.json")
    layouts = tmp_path / "layouts"    # two stored sets of different layouts
    layouts.mkdir()
    _toy(50, 1).save(layouts / "a.pcs")
    PoseSet(joints3d=np.zeros((5, 16, 3), np.float32), layout="mpii16").save(layouts / "b.pcs")
    nothing = tmp_path / "nothing"    # a stored set without rows
    nothing.mkdir()
    _toy(0, 1).save(nothing / "a.pcs")

    _toy(3, 9).save(out / "kept.pcs")  # an earlier result stays as it was when an import fails
    before = folder_contents(out / "kept.pcs")
    for src in (empty, tmp_path / "missing", corrupt, mixed, layouts, nothing):
        with pytest.raises(DataError) as want:
            import_path(src, progress=False)
        for target in (out / "new.pcs", out / "kept.pcs"):
            with pytest.raises(DataError) as got:
                import_to_store(src, target, progress=False, chunk_size=64)
            assert str(got.value) == str(want.value) and "\n" not in str(got.value)
        assert not (out / "new.pcs").exists() and no_temp_left(out)
        assert folder_contents(out / "kept.pcs") == before


def test_incompatible_file_stops_the_import_at_once(shared_data, tmp_path, monkeypatch):
    """A set that cannot be combined fails at the first file that does not fit, not at the end."""
    from posecurator.io import folder

    src = tmp_path / "src"
    src.mkdir()
    _toy(50, 1).save(src / "a.pcs")
    PoseSet(joints2d=np.zeros((5, 17, 2), np.float32)).save(src / "b.pcs")
    for k in range(3):
        _toy(20, k + 3).save(src / f"c{k}.pcs")
    read = []
    real = folder._relabel  # every file's poses pass through it (a stored set's chunk by chunk)
    monkeypatch.setattr(folder, "_relabel", lambda ps, path, *a: (read.append(path.name), real(ps, path, *a))[1])
    with pytest.raises(DataError, match="cannot combine the files into one pose set: cannot concatenate sets with and without joints3d"):
        import_to_store(src, tmp_path / "out.pcs", progress=False)
    assert read == ["a.pcs", "b.pcs"] and not (tmp_path / "out.pcs").exists() and no_temp_left(tmp_path)


# ---------------------------------------------------------------------- the command
def test_import_command_streams_and_prints_the_summary(shared_data, tmp_path, capsys):
    from posecurator.cli.main import main

    src = tmp_path / "bandai"
    src.mkdir()
    for rel in BANDAI_FILES[:2]:
        shutil.copy(need(shared_data, rel), src)
    want = import_path(src, progress=False)
    s = want.summary()
    assert main(["import", str(src), "-o", str(tmp_path / "x.pcs"), "-q"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line == (f"imported {s['frames']} frames, {s['clips']} clips, {len(s['subjects'])} subjects, "
                    f"{len(s['activities'])} activities -> {tmp_path / 'x.pcs'}")
    assert folder_contents(tmp_path / "x.pcs") == folder_contents(want.save(tmp_path / "want.pcs"))
