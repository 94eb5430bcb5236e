"""Bad input ends in one clean line: the fuzz tool (posecurator.io.fuzz, `posecurator fuzz`) on real
data, and one regression test per failure a user's fuzzer found (each must give a one-line
DataError naming the file, with no warning printed before it)."""

from __future__ import annotations

import gzip
import io
import json
import math
import shutil
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from posecurator.cli.main import main
from posecurator.errors import DataError
from posecurator.io import fuzz, import_path
from posecurator.io.common import short_value
from posecurator.io.h36m_npz import write_mmpose_h36m_npz, write_videopose3d_npz
from posecurator.io.predictions import read_predictions, write_predictions
from posecurator.poseset import PoseSet

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
COCO_VAL = DATA / "coco" / "person_keypoints_val2017_subset2213.json"
HDM05_AMC = DATA / "hdm05" / "amc"
BANDAI = DATA / "bandai" / "dataset-1" / "data" / "dataset-1_dash_normal_001.bvh.gz"

pytestmark = pytest.mark.skipif(not (COCO_VAL.is_file() and HDM05_AMC.is_dir() and BANDAI.is_file()),
                                reason="real data ../shared/data is absent")


def clean_error(path: Path, read=None) -> DataError:
    """The DataError reading ``path`` gives, checked to be one short line naming the file, with no
    numpy repr in it and no warning emitted (import_path unless ``read`` is given)."""
    read = read or (lambda p: import_path(p, progress=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DataError) as info:
            read(path)
    msg = str(info.value)
    assert "\n" not in msg and path.name in msg, msg
    assert len(msg.replace(str(path.parent), "")) <= fuzz.MAX_MESSAGE, msg
    assert "np.str_(" not in msg and "np.float64(" not in msg and "np.int64(" not in msg, msg
    assert not caught, [f"{w.category.__name__}: {w.message}" for w in caught]
    return info.value


# ====================================================================== fixtures: real data, small
@pytest.fixture(scope="module")
def coco_doc() -> dict:
    """The first 10 images of the COCO val subset with their annotations."""
    data = json.loads(COCO_VAL.read_text())
    images = list({im["id"]: im for im in data["images"]}.values())[:10]   # the file repeats images
    ids = {im["id"] for im in images}
    return {"categories": data["categories"], "images": images,
            "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}


def write_coco(tmp_path: Path, doc: dict, name: str = "coco_bad.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture(scope="module")
def mocap() -> PoseSet:
    amc = min(HDM05_AMC.glob("*.amc.gz"), key=lambda p: (p.stat().st_size, p.name))
    return import_path(amc, progress=False)


@pytest.fixture(scope="module")
def bandai_text() -> str:
    return gzip.decompress(BANDAI.read_bytes()).decode()


def npz_members(path: Path) -> dict[str, np.ndarray]:
    """Every array of an npz that holds no object array (posecurator's pickle-free members)."""
    with zipfile.ZipFile(path) as zf:
        names = [n[:-4] for n in zf.namelist()]
    with np.load(path, allow_pickle=False) as z:
        out = {}
        for n in names:
            try:
                out[n] = z[n]
            except ValueError:   # VideoPose3D's own pickled dicts: left out (never unpickled here)
                pass
        return out


def rewrite_npz(src: Path, dest: Path, **changes) -> Path:
    arrays = {**npz_members(src), **changes}
    np.savez(dest, **arrays)
    return dest


def with_member_header(src: Path, dest: Path, member: str, header: str) -> Path:
    """A copy of an npz whose member ``member`` gets the .npy header text ``header`` (garbled)."""
    with zipfile.ZipFile(src) as zf:
        items = [(info, zf.read(info)) for info in zf.infolist()]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for info, raw in items:
            if info.filename == member + ".npy":
                size = 2 if raw[6] == 1 else 4
                data = raw[8 + size + int.from_bytes(raw[8:8 + size], "little"):]
                text = (header + " " * ((-(10 + len(header) + 1)) % 64) + "\n").encode("latin-1")
                raw = b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + data
            zf.writestr(info, raw)
    dest.write_bytes(out.getvalue())
    return dest


# ====================================================================== the fuzz tool
def test_fuzz_finds_no_crash_and_no_half_written_output(tmp_path):
    report = fuzz.run_fuzz(DATA, cases=390, seed=0, out_dir=tmp_path, progress=False, cli_main=main)
    assert report["outcomes"]["crash"] == 0, report["crashes"][:3]
    assert report["outcomes"]["half_written"] == 0, report["half_written"][:3]
    assert report["cases"] == 390 and report["cli_cases"] > 0
    assert set(report["per_format"]) == set(fuzz.FORMATS)
    for fmt, counts in report["per_format"].items():
        assert sum(counts.values()) == 30, fmt  # round robin over the formats
        assert counts["clean_error"] > 0, fmt
    assert report["outcomes"]["valid"] > 50  # many mutations leave a readable file: those must come back sane
    saved = json.loads((tmp_path / fuzz.REPORT_FILE).read_text())
    assert saved["outcomes"] == report["outcomes"]


def test_same_seed_gives_the_same_cases(tmp_path):
    corpus = fuzz.build_corpus(DATA, tmp_path / "seeds")

    def case_files(index, seed, where):
        case, _ = fuzz.make_case(index, seed, corpus, where)
        return case.description(), {p.relative_to(where).as_posix(): p.read_bytes() for p in sorted(where.rglob("*")) if p.is_file()}

    for i in range(2 * len(corpus)):
        assert case_files(i, 7, tmp_path / f"a{i}") == case_files(i, 7, tmp_path / f"b{i}")
    assert any(case_files(i, 7, tmp_path / f"c{i}") != case_files(i, 8, tmp_path / f"d{i}") for i in range(len(corpus)))


def test_fuzz_command_exits_non_zero_on_a_crash(tmp_path, monkeypatch, capsys):
    def broken(path, **kwargs):
        raise TypeError("unhashable type: 'list'")

    monkeypatch.setattr("posecurator.io.coco.read_coco", broken)
    rc = main(["fuzz", "--data", str(DATA), "--formats", "coco", "--cases", "4", "-o", str(tmp_path), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "crash(es)" in err.splitlines()[-1]
    report = json.loads((tmp_path / fuzz.REPORT_FILE).read_text())
    # (a mutation may make the file not look like COCO at all: that case never reaches the reader)
    assert report["outcomes"]["crash"] >= 2 and "TypeError" in report["crashes"][0]["error"]
    assert (tmp_path / "crash-inputs").is_dir()


def test_half_written_output_is_detected(monkeypatch):
    def leaves_a_folder(argv):
        out = Path(argv[argv.index("-o") + 1])
        (out.parent / f".{out.name}.tmp").mkdir()
        print("posecurator import: error: something", file=sys.stderr)
        return 2

    monkeypatch.setattr(fuzz, "CLI_FRACTION", 1.0)
    report = fuzz.run_fuzz(DATA, cases=3, seed=0, formats=["coco", "cmu_bvh"], progress=False, cli_main=leaves_a_folder)
    assert report["outcomes"]["half_written"] == 3


def test_fuzz_help_has_examples(capsys):
    with pytest.raises(SystemExit) as e:
        main(["fuzz", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "examples:" in out and "posecurator fuzz --cases" in out and "--formats" in out


def test_short_value_is_short_and_python_style():
    assert short_value(np.str_("coco17")) == "'coco17'"
    assert short_value(np.float64(1.5)) == "1.5" and short_value(np.int64(3)) == "3"
    assert len(short_value("x" * 5000)) <= 40 and len(short_value(list(range(10**5)))) <= 40
    assert "..." in short_value(10**400) and "\n" not in short_value("a\nb")


# ====================================================================== COCO
@pytest.mark.parametrize("value", [[1, 2], {"a": 1}, math.inf, 1e29])
@pytest.mark.parametrize("field", ["category", "image", "annotation_image_id", "annotation_id"])
def test_coco_ids_of_the_wrong_type_or_range(tmp_path, coco_doc, field, value):
    doc = json.loads(json.dumps(coco_doc))
    if field == "category":
        doc["categories"][0]["id"] = value
    elif field == "image":
        doc["images"][0]["id"] = value
    elif field == "annotation_image_id":
        doc["annotations"][0]["image_id"] = value
    else:
        doc["annotations"][0]["id"] = value
    clean_error(write_coco(tmp_path, doc))


@pytest.mark.parametrize("entry", [5, "annotation", [1, 2], None])
def test_coco_annotation_that_is_not_an_object(tmp_path, coco_doc, entry):
    doc = {**coco_doc, "annotations": [entry] + coco_doc["annotations"]}
    assert "annotations entry 0" in clean_error(write_coco(tmp_path, doc)).message


@pytest.mark.parametrize("value", [1000, None, -1, "1", 0.5])
def test_coco_iscrowd_must_be_0_or_1(tmp_path, coco_doc, value):
    doc = json.loads(json.dumps(coco_doc))
    doc["annotations"][0]["iscrowd"] = value
    assert "iscrowd" in clean_error(write_coco(tmp_path, doc)).message


@pytest.mark.parametrize("value", [None, 2**40, 0, -640, 640.5, "640", [640]])
@pytest.mark.parametrize("key", ["width", "height"])
def test_coco_image_size_must_be_a_positive_integer(tmp_path, coco_doc, key, value):
    doc = json.loads(json.dumps(coco_doc))
    image_id = doc["annotations"][0]["image_id"]
    for im in doc["images"]:
        if im["id"] == image_id:
            im[key] = value
    assert key in clean_error(write_coco(tmp_path, doc)).message


def test_coco_missing_image_size_is_unknown_not_an_error(tmp_path, coco_doc):
    doc = json.loads(json.dumps(coco_doc))
    for im in doc["images"]:
        del im["width"], im["height"]
    ps = import_path(write_coco(tmp_path, doc), progress=False)
    assert all(cam["width"] == 0 and cam["f"] == [0.0, 0.0] for cam in ps.cameras)


def test_coco_huge_coordinates_and_long_values(tmp_path, coco_doc):
    doc = json.loads(json.dumps(coco_doc))
    ann = next(a for a in doc["annotations"] if a["keypoints"][2] > 0)
    ann["keypoints"][0] = 1e20
    assert "beyond" in clean_error(write_coco(tmp_path, doc)).message
    doc = json.loads(json.dumps(coco_doc))
    doc["categories"][0]["keypoints"] = ["x" * 5000] * 17
    doc["categories"][0]["name"] = "y" * 5000
    assert len(clean_error(write_coco(tmp_path, doc)).message) < 200
    doc = json.loads(json.dumps(coco_doc))
    doc["annotations"][1]["id"] = doc["annotations"][0]["id"]
    assert "twice" in clean_error(write_coco(tmp_path, doc)).message


# ====================================================================== BVH
def _bvh_with(tmp_path: Path, text: str, old: str, new: str, name="bandai_bad.bvh") -> Path:
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize("frame_time", ["1e-320", "1e-7", "0", "-0.03", "nan", "inf", "1e300"])
def test_bvh_frame_time_must_give_a_real_frame_rate(tmp_path, bandai_text, frame_time):
    old = next(line for line in bandai_text.split("\n") if line.startswith("Frame Time"))
    err = clean_error(_bvh_with(tmp_path, bandai_text, old, f"Frame Time: {frame_time}"))
    assert err.line is not None and "Frame Time" in err.message


def test_bvh_huge_values_give_no_overflow_warning(tmp_path, bandai_text):
    rows = bandai_text.rstrip("\n").split("\n")
    first = next(i for i, line in enumerate(rows) if line.startswith("Frame Time")) + 1
    values = rows[first].split()
    for value, what in (("1e20", "beyond"), ("1e300", "beyond")):
        bad = rows.copy()
        bad[first] = " ".join([value] + values[1:])
        path = tmp_path / "huge.bvh"
        path.write_text("\n".join(bad) + "\n")
        assert what in clean_error(path).message
    offset = next(line for line in rows if "OFFSET" in line)
    assert "OFFSET" in clean_error(_bvh_with(tmp_path, bandai_text, offset, "OFFSET 1e300 0 0")).message
    # a joint name thousands of characters long (a lost line) is cut in the message
    joint = next(line for line in rows if "JOINT" in line)
    clean_error(_bvh_with(tmp_path, bandai_text, joint, joint.split("JOINT")[0] + "JOINT " + "n" * 5000))


# ====================================================================== VideoPose3D and mmpose npz
GARBLED_HEADERS = [
    "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 17, 3), 'x': '",   # tokenize error
    "{'descr': '<f4', 'fortran_order': False, 'shape': (10**12, 17, 3), }",   # not a literal
    "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 17, 3), }",  # more than the file holds
    "{'descr': 'xyz', 'fortran_order': False, 'shape': (3,), }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (-3, 17, 3), }",
    "[1, 2, 3]",
    "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }",
]


@pytest.mark.parametrize("header", GARBLED_HEADERS)
def test_garbled_npy_header_inside_videopose3d_npz(tmp_path, mocap, header):
    good = write_videopose3d_npz(mocap, tmp_path / "good.npz")
    for member in ("positions_3d.00000", "metadata_json"):
        clean_error(with_member_header(good, tmp_path / "vp3d_garbled.npz", member, header))


@pytest.mark.parametrize("header", GARBLED_HEADERS)
def test_garbled_npy_header_inside_mmpose_npz(tmp_path, mocap, header):
    npz, _ = write_mmpose_h36m_npz(mocap, tmp_path / "h36m_good.npz")
    for member in ("S", "imgname"):
        bad = with_member_header(npz, tmp_path / "h36m_garbled.npz", member, header)
        shutil.copyfile(tmp_path / "h36m_good_cameras.json", tmp_path / "h36m_garbled_cameras.json")
        clean_error(bad)


def _vp3d_meta(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["metadata_json"]))


@pytest.mark.parametrize("field, value", [
    ("fps", [30]), ("fps", "30"), ("fps", None), ("fps", -1), ("fps", 0), ("fps", math.inf), ("fps", 1e9),
    ("units", ["m"]), ("units", 5), ("units", "km"), ("cameras", 5), ("cameras", [1, 2]), ("sequences", {"a": 1}),
    ("version", True), ("format", ["x"] * 1000),
])
def test_videopose3d_metadata_of_the_wrong_type_or_range(tmp_path, mocap, field, value):
    good = write_videopose3d_npz(mocap, tmp_path / "good.npz", pickled_dicts=False)
    meta = {**_vp3d_meta(good), field: value}
    clean_error(rewrite_npz(good, tmp_path / "vp3d_meta.npz", metadata_json=np.array(json.dumps(meta))))


@pytest.mark.parametrize("key, value", [("subject", 5), ("subject", None), ("action", [1]), ("clip", {"a": 1})])
def test_videopose3d_sequence_fields_must_be_text(tmp_path, mocap, key, value):
    good = write_videopose3d_npz(mocap, tmp_path / "good.npz", pickled_dicts=False)
    meta = _vp3d_meta(good)
    meta["sequences"][0][key] = value
    clean_error(rewrite_npz(good, tmp_path / "vp3d_seq.npz", metadata_json=np.array(json.dumps(meta))))


def test_videopose3d_values_huge_complex_or_of_another_dtype(tmp_path, mocap):
    good = write_videopose3d_npz(mocap, tmp_path / "good.npz", pickled_dicts=False)
    pos = npz_members(good)["positions_3d.00000"]
    huge = pos.copy()
    huge[0, 0, 0] = 1e20
    assert "beyond" in clean_error(rewrite_npz(good, tmp_path / "vp3d_huge.npz", **{"positions_3d.00000": huge})).message
    complex_pos = pos.astype(np.complex64) + 1j
    assert "complex" in clean_error(rewrite_npz(good, tmp_path / "vp3d_cplx.npz", **{"positions_3d.00000": complex_pos})).message
    clean_error(rewrite_npz(good, tmp_path / "vp3d_str.npz", **{"positions_3d.00000": pos.astype(str)}))
    frame = npz_members(good)["frame.00000"].astype(np.int64)
    frame[0] = 10**19 // 2   # beyond int32: must not wrap around
    clean_error(rewrite_npz(good, tmp_path / "vp3d_frame.npz", **{"frame.00000": frame}))


@pytest.fixture
def mmpose_files(tmp_path, mocap):
    npz, cams = write_mmpose_h36m_npz(mocap, tmp_path / "h36m_fuzz.npz")
    return npz, cams


@pytest.mark.parametrize("change", [
    ("fps", [50]), ("fps", "50"), ("fps", -1), ("fps", 0), ("fps", math.nan), ("cameras", [1, 2]), ("sequences", 5),
])
def test_mmpose_camera_file_top_level_fields(mmpose_files, change):
    npz, cams = mmpose_files
    meta = json.loads(cams.read_text())
    meta[change[0]] = change[1]
    cams.write_text(json.dumps(meta))
    clean_error(cams, lambda p: import_path(npz, progress=False))   # the error names the camera file


@pytest.mark.parametrize("key, value", [
    ("w", 2**40), ("w", "1000"), ("h", None), ("R", "abc"), ("R", [[1, 0], [0, 1]]), ("R", [[2, 0, 0], [0, 2, 0], [0, 0, 2]]),
    ("T", [1e400, 0, 0]), ("T", [[1], [2]]), ("f", [0, 0]), ("f", [-1000, 1000]), ("c", [1, 2, 3]), ("k", ["a", "b", "c"]),
    ("name", {"x": 1}),
])
def test_mmpose_camera_parameters_of_the_wrong_type_or_range(mmpose_files, key, value):
    npz, cams = mmpose_files
    meta = json.loads(cams.read_text())
    first = next(iter(meta["cameras"]))
    meta["cameras"][first][key] = value
    cams.write_text(json.dumps(meta))
    assert key in clean_error(cams, lambda p: import_path(npz, progress=False)).message


def test_mmpose_20_digit_frame_number_and_odd_arrays(tmp_path, mmpose_files):
    npz, cams = mmpose_files
    arrays = npz_members(npz)
    names = arrays["imgname"].astype(object)
    names[3] = names[3].rsplit("_", 1)[0] + "_99999999999999999999.jpg"
    bad = rewrite_npz(npz, npz, imgname=names.astype(str))
    err = clean_error(bad)
    assert "imgname 3" in err.message and "np.str_" not in err.message
    np.savez(npz, **{**arrays, "imgname": arrays["imgname"].astype("S")})
    clean_error(npz)
    S = arrays["S"].copy()
    S[0, 0, 0] = 1e20
    np.savez(npz, **{**arrays, "S": S})
    assert "beyond" in clean_error(npz).message
    np.savez(npz, **{**arrays, "S": arrays["S"] + 1j})
    assert "complex" in clean_error(npz).message


# ====================================================================== predictions and datasets
def test_predictions_complex_layout_and_ids(tmp_path, mocap):
    read = read_predictions
    ids, joints = np.arange(len(mocap)), mocap.joints3d.astype(np.float64) + [0, 0, 5000]
    path = tmp_path / "pred_bad.npz"
    np.savez(path, sample_id=ids, joints3d=joints + 1j)
    assert "complex" in clean_error(path, read).message
    np.savez(path, sample_id=ids, joints3d=joints, layout=np.array("coco17"))
    err = clean_error(path, read)
    assert "'coco17'" in err.message and "np.str_" not in err.message
    np.savez(path, sample_id=ids, joints3d=joints, layout=np.array(["h36m17", "x"]))
    clean_error(path, read)
    np.savez(path, sample_id=ids.astype(np.uint64) + np.uint64(2**63), joints3d=joints)
    clean_error(path, read)
    write_predictions(path, ids, joints, f=np.full((len(ids), 2), np.inf), c=np.zeros((len(ids), 2)))
    clean_error(path, read)
    doc = {"layout": "h36m17", "predictions": {"99999999999999999999999": {"joints3d": [[0, 0, 5000]] * 17}}}
    (tmp_path / "pred_bad.json").write_text(json.dumps(doc))
    clean_error(tmp_path / "pred_bad.json", read)


def test_dataset_folder_with_bad_header_or_chunks(tmp_path, mocap):
    folder = tmp_path / "bad.pcs"
    mocap.save(folder)
    meta_path = folder / "posecurator.json"
    meta = json.loads(meta_path.read_text())
    chunk = folder / "chunk-00000.npz"
    arrays = dict(np.load(chunk, allow_pickle=False))
    for change in ({"fps": -1}, {"fps": [30]}, {"chunks": [{"file": "../../x.npz", "n": 3}]}, {"strings": 5},
                   {"cameras": [{"R": "x"}]}, {"version": 0}):
        meta_path.write_text(json.dumps({**meta, **change}))
        clean_error(meta_path, lambda p: import_path(folder, progress=False))
    meta_path.write_text(json.dumps(meta))
    for change in ({"joints3d": arrays["joints3d"] + 1j}, {"joints3d": arrays["joints3d"] * 1e20},
                   {"frame": arrays["frame"].astype(np.int64) + 2**40}, {"unknown": np.zeros(3)},
                   {"clip": arrays["clip"].astype(np.float64)}, {"camera": arrays["camera"] + 5}):
        np.savez(chunk, **{**arrays, **change})
        clean_error(chunk, lambda p: import_path(folder, progress=False))
