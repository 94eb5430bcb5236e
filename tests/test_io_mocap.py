"""Motion-capture readers, mappings and folder import on real files from ../shared/data.

Files are modified only in copies under tmp_path (gzip vs plain, CRLF, re-ordered rotation
channels, renamed joints, truncated or corrupt data); nothing is written into the repository.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil

import numpy as np
import pytest
import yaml

from posecurator import PoseSet
from posecurator.errors import DataError, MappingError
from posecurator.io import import_path
from posecurator.io.asf_amc import find_asf, read_amc
from posecurator.io.bvh import bvh_forward, bvh_positions, bvh_positions_reference, load_bvh, read_bvh
from posecurator.io.common import clip_to_poseset, guess_units, resample_stride
from posecurator.skeleton.mapping import MAPPINGS_DIR, builtin_mappings, detect_mapping, load_mapping_file

BANDAI_1 = "bandai/dataset-1/data/dataset-1_bow_active_001.bvh.gz"
BANDAI_2 = "bandai/dataset-2/data/dataset-2_walk_normal_001.bvh.gz"
CMU_131 = "cmu/bvh11_131_01.bvh"


def need(shared_data, rel):
    path = shared_data / rel
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


def hdm05_file(shared_data, actor: str, motion: str = "") -> "Path":  # noqa: F821
    matches = sorted((shared_data / "hdm05" / "amc").glob(f"HDM_{actor}_{motion}*.amc.gz"))
    if not matches:
        pytest.skip(f"HDM05 actor {actor} is absent")
    return matches[0]


def same_poses(a: PoseSet, b: PoseSet, atol=1e-3):
    assert len(a) == len(b)
    np.testing.assert_allclose(a.joints3d, b.joints3d, atol=atol)


# ---------------------------------------------------------------------- file forms
def test_gzip_and_plain_bvh_are_identical(shared_data, tmp_path):
    gz = need(shared_data, BANDAI_1)
    plain = tmp_path / "clip.bvh"
    plain.write_bytes(gzip.decompress(gz.read_bytes()))
    disguised = tmp_path / "gzip_named_plain.bvh"  # gzip bytes under a plain name: magic bytes decide
    disguised.write_bytes(gz.read_bytes())
    a, b, c = read_bvh(gz), read_bvh(plain), read_bvh(disguised)
    np.testing.assert_array_equal(a.joints3d, b.joints3d)
    np.testing.assert_array_equal(a.joints3d, c.joints3d)
    assert a.attrs == b.attrs


def test_gzip_and_plain_amc_are_identical(shared_data, tmp_path):
    gz = hdm05_file(shared_data, "bd", "hop")
    (tmp_path / "asf").mkdir()
    shutil.copy(find_asf(gz), tmp_path / "asf")
    (tmp_path / "amc").mkdir()
    plain = tmp_path / "amc" / gz.name[:-3]
    plain.write_bytes(gzip.decompress(gz.read_bytes()))
    np.testing.assert_array_equal(read_amc(gz).joints3d, read_amc(plain).joints3d)


def test_crlf_and_lf_give_the_same_poses(shared_data, tmp_path):
    src = need(shared_data, BANDAI_2)
    text = gzip.decompress(src.read_bytes()).decode()
    crlf = tmp_path / "crlf.bvh"
    crlf.write_bytes(text.replace("\n", "\r\n").encode())
    np.testing.assert_array_equal(read_bvh(src).joints3d, read_bvh(crlf).joints3d)
    # the CMU files really are CRLF (131: mixed CRLF and LF; 11_01.amc and its ASF: CRLF)
    assert b"\r\n" in need(shared_data, CMU_131).read_bytes()
    assert len(read_bvh(shared_data / CMU_131)) > 0
    assert len(read_amc(need(shared_data, "cmu/11_01.amc"))) == 150


def _reorder_rotation_channels(text: str, order: str) -> str:
    """Rewrite a BVH so every joint's rotation channels are in ``order``, with the same rotations."""
    from scipy.spatial.transform import Rotation

    from posecurator.io.bvh import parse_bvh
    from posecurator.io.common import euler_to_matrix

    data = parse_bvh(text)
    sk, motion = data.skeleton, data.motion.copy()
    for j, cols in enumerate(sk.rotation_channels):
        if not cols:
            continue
        mats = euler_to_matrix(data.motion[:, cols], sk.rotation_orders[j])
        motion[:, sorted(cols)] = Rotation.from_matrix(mats).as_euler(order.upper(), degrees=True)
    header, _, _ = text.partition("MOTION")
    joints_with_channels = iter([j for j, c in enumerate(sk.rotation_channels) if c or sk.position_channels[j]])

    def fix(m):
        j = next(joints_with_channels)
        toks = m.group(2).split()
        rot_slots = [k for k, t in enumerate(toks) if t.lower().endswith("rotation")]
        for k, axis in zip(rot_slots, order.upper()):
            toks[k] = f"{axis}rotation"
        assert len(rot_slots) == len(sk.rotation_orders[j])
        return m.group(1) + " ".join(toks)

    header = re.sub(r"(CHANNELS\s+\d+\s+)([^\n]*)", fix, header)
    rows = "\n".join(" ".join(f"{v:.12g}" for v in row) for row in motion)
    return f"{header}MOTION\nFrames: {len(motion)}\nFrame Time: {data.frame_time}\n{rows}\n"


@pytest.mark.parametrize("order", ["XYZ", "YZX"])
def test_any_rotation_channel_order(shared_data, tmp_path, order):
    """A real BVH (mixed ZYX/ZXY orders) rewritten with every joint in another order and the
    equivalent angles gives the same poses; FK of the rewritten file matches the reference loop."""
    src = need(shared_data, CMU_131)
    text = src.read_bytes().decode().replace("\r\n", "\n")
    head = text.split("MOTION")[0]
    short = text[: text.index("\n", text.index("Frame Time")) + 1] + "\n".join(
        text.split("Frame Time")[1].split("\n")[1:61])
    short = short.replace(re.search(r"Frames:\s*\d+", short).group(0), "Frames: 60")
    original = tmp_path / "orig.bvh"
    original.write_text(short)
    rewritten = tmp_path / f"order_{order}.bvh"
    rewritten.write_text(_reorder_rotation_channels(short, order))
    assert "Zrotation Yrotation Xrotation" in head and "Zrotation Xrotation Yrotation" in head
    a, b = load_bvh(original), load_bvh(rewritten)
    assert set(o for o in b.skeleton.rotation_orders if o) == {order}
    np.testing.assert_allclose(bvh_positions(a.skeleton, a.motion), bvh_positions(b.skeleton, b.motion), atol=1e-6)
    np.testing.assert_allclose(bvh_positions(b.skeleton, b.motion), bvh_positions_reference(b.skeleton, b.motion),
                               atol=1e-9)
    same_poses(read_bvh(original, fps=120), read_bvh(rewritten, fps=120))


def test_fps_resampling(shared_data):
    bvh = read_bvh(need(shared_data, "cmu/01_01.bvh"))
    assert len(bvh) == 688 and bvh.fps == 30.0 and bvh.attrs["stride"] == 4 and bvh.attrs["source_fps"] == 120.0
    full = read_bvh(shared_data / "cmu/01_01.bvh", fps=120)
    assert len(full) == 2752 and full.fps == 120.0
    np.testing.assert_allclose(full.joints3d[::4] - full.joints3d[::4, :1], bvh.joints3d - bvh.joints3d[:, :1],
                               atol=1e-3)
    assert len(read_amc(need(shared_data, "cmu/11_01.amc"))) == 150  # 597 frames @120 -> every 4th
    bandai = read_bvh(need(shared_data, BANDAI_1))
    assert bandai.fps == 30.0 and len(bandai) == 128
    assert [resample_stride(s, 30) for s in (120, 60, 50, 44, 30, 24, 100)] == [4, 2, 2, 1, 1, 1, 3]


def test_reactidle_24fps_keeps_every_frame(shared_data):
    ps = read_bvh(need(shared_data, "reactidle/genuine/010_genuine.bvh.gz"))
    assert ps.fps == 24.0 and ps.attrs["stride"] == 1 and len(ps) == 2626


def test_unit_guess():
    assert guess_units(170.0)[0] == "cm"
    assert guess_units(1.62)[0] == "m"
    assert guess_units(1750.0)[0] == "mm"
    assert guess_units(68.0)[0] == "inch"
    assert guess_units(30.0)[0] == "asf"     # CMU subject 131 BVH: about 27-30 ASF units tall
    assert guess_units(120.0)[0] == "cm"     # a child in centimetres is still centimetres


def test_units_argument_overrides_the_guess(shared_data):
    src = need(shared_data, BANDAI_1)
    auto = read_bvh(src)
    given = read_bvh(src, units="cm")
    np.testing.assert_array_equal(auto.joints3d, given.joints3d)
    metres = read_bvh(src, units="m")
    assert metres.attrs["units_from"] == "given"
    np.testing.assert_allclose(metres.joints3d, auto.joints3d * 100, rtol=1e-4, atol=1e-2)


def test_z_up_source_is_detected(shared_data):
    """The same clip turned to Z up (as a Z-up exporter would write it) imports to the same poses."""
    src = need(shared_data, BANDAI_2)
    data = load_bvh(src)
    pos, rot = bvh_forward(data.skeleton, data.motion)
    y_to_z = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    common = dict(path=src, parents=data.skeleton.parents, source_fps=30.0, stride=1)
    y_up = clip_to_poseset(pos, data.skeleton.names, rotations=rot, **common)
    z_up = clip_to_poseset(pos @ y_to_z.T, data.skeleton.names, rotations=y_to_z @ rot, **common)
    assert y_up.attrs["up"] == "+y" and z_up.attrs["up"] == "+z"
    np.testing.assert_allclose(z_up.joints3d, y_up.joints3d, atol=1e-2)


# ---------------------------------------------------------------------- bad input
def _raises_data_error(fn, path, *, line=False):
    with pytest.raises(DataError) as e:
        fn(path)
    assert e.value.path is not None and path.name in str(e.value)
    if line:
        assert e.value.line is not None, str(e.value)
    return e.value


def test_truncated_bvh(shared_data, tmp_path):
    text = need(shared_data, CMU_131).read_bytes()
    cut = tmp_path / "cut_motion.bvh"
    cut.write_bytes(text[: int(len(text) * 0.6)])
    err = _raises_data_error(read_bvh, cut, line=True)
    assert "truncated" in err.message
    cut_header = tmp_path / "cut_header.bvh"
    cut_header.write_bytes(text[:1500])
    _raises_data_error(read_bvh, cut_header)


def test_corrupt_bvh_value_names_the_line(shared_data, tmp_path):
    lines = need(shared_data, CMU_131).read_text().replace("\r\n", "\n").split("\n")
    start = next(i for i, l in enumerate(lines) if l.startswith("Frame Time")) + 1
    bad_line = start + 10
    toks = lines[bad_line].split()
    toks[5] = "1.2.3x"
    lines[bad_line] = " ".join(toks)
    bad = tmp_path / "bad.bvh"
    bad.write_text("\n".join(lines))
    err = _raises_data_error(read_bvh, bad, line=True)
    assert err.line == bad_line + 1, (err.line, bad_line + 1)
    toks[5] = "nan"
    lines[bad_line] = " ".join(toks)
    bad.write_text("\n".join(lines))
    err = _raises_data_error(read_bvh, bad, line=True)
    assert "NaN" in err.message and err.line == bad_line + 1


def test_corrupt_gzip(shared_data, tmp_path):
    data = need(shared_data, BANDAI_1).read_bytes()
    bad = tmp_path / "broken.bvh.gz"
    bad.write_bytes(data[: len(data) // 2])
    _raises_data_error(read_bvh, bad)


def _hdm05_copy(shared_data, tmp_path, actor="bd", motion="squat"):
    gz = hdm05_file(shared_data, actor, motion)
    (tmp_path / "asf").mkdir(exist_ok=True)
    (tmp_path / "amc").mkdir(exist_ok=True)
    shutil.copy(find_asf(gz), tmp_path / "asf")
    return gz, gzip.decompress(gz.read_bytes()).decode("latin-1")


def test_truncated_and_corrupt_amc(shared_data, tmp_path):
    gz, text = _hdm05_copy(shared_data, tmp_path)
    name = gz.name[:-3]
    cut = tmp_path / "amc" / name
    cut.write_text(text[: int(len(text) * 0.5)], encoding="latin-1")
    err = _raises_data_error(read_amc, cut, line=True)
    assert "truncated" in err.message
    lines = text.split("\n")
    i = next(k for k, l in enumerate(lines) if l.startswith("lfemur")) + 31 * 3
    lines[i] = "lfemur 1.0 abc 3.0"
    bad = tmp_path / "amc" / name.replace("_120", "_bad_120")
    bad.write_text("\n".join(lines), encoding="latin-1")
    err = _raises_data_error(read_amc, bad, line=True)
    assert err.line == i + 1
    lines[i] = "lfemur 1.0 nan 3.0"
    bad.write_text("\n".join(lines), encoding="latin-1")
    err = _raises_data_error(read_amc, bad, line=True)
    assert err.line == i + 1 and "NaN" in err.message


def test_amc_without_asf(shared_data, tmp_path):
    gz = hdm05_file(shared_data, "bk")
    lonely = tmp_path / gz.name
    shutil.copy(gz, lonely)
    err = _raises_data_error(read_amc, lonely)
    assert "HDM_bk.asf" in err.message and str(tmp_path) in err.message


def test_asf_found_by_name_prefix(shared_data):
    assert find_asf(hdm05_file(shared_data, "dg")).name == "HDM_dg.asf"
    assert find_asf(need(shared_data, "cmu/11_01.amc")).name == "11.asf"
    assert find_asf(shared_data / "cmu" / "01_01.amc").name == "01.asf"


def test_empty_folder_and_folder_without_data(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no supported data"):
        import_path(empty, progress=False)
    (empty / "README.md").write_text("nothing here")
    (empty / "labels.json").write_text(json.dumps({"content": 1, "style": 2}))
    with pytest.raises(DataError, match="no supported data"):
        import_path(empty, progress=False)
    with pytest.raises(DataError, match="no such file"):
        import_path(tmp_path / "missing", progress=False)


def test_one_corrupt_file_in_a_folder_is_named(shared_data, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(need(shared_data, BANDAI_1), folder)
    data = gzip.decompress((shared_data / BANDAI_2).read_bytes())
    (folder / "zz_truncated.bvh").write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError) as e:
        import_path(folder, progress=False)
    assert "zz_truncated.bvh" in str(e.value) and e.value.line is not None


# ---------------------------------------------------------------------- mappings
def test_builtin_mappings_are_detected_on_every_source(shared_data):
    expected = {BANDAI_1: "bandai", "reactidle/acted/001_acted.bvh.gz": "reactidle", "cmu/01_01.bvh": "cmu-bvh",
                CMU_131: "cmu-bvh-cgspeed"}
    for rel, name in expected.items():
        assert detect_mapping(load_bvh(need(shared_data, rel)).skeleton.names).name == name
    assert set(builtin_mappings()) == {"asf-cmu", "bandai", "reactidle", "cmu-bvh", "cmu-bvh-cgspeed"}
    for file in MAPPINGS_DIR.glob("*.yaml"):
        assert load_mapping_file(file).description


def _bandai_mapping_yaml(tmp_path, replace: dict[str, str]) -> "Path":  # noqa: F821
    spec = yaml.safe_load((MAPPINGS_DIR / "bandai.yaml").read_text())
    text = yaml.safe_dump(spec)
    for old, new in replace.items():
        text = re.sub(rf"\b{re.escape(old)}\b", new, text)
    path = tmp_path / "mapping.yaml"
    path.write_text(text)
    return path


def test_mapping_naming_a_missing_joint(shared_data, tmp_path):
    src = need(shared_data, BANDAI_1)
    bad = _bandai_mapping_yaml(tmp_path, {"Hand_L": "Hand_Left"})
    with pytest.raises(MappingError) as e:
        read_bvh(src, mapping=bad)
    assert "Hand_Left" in str(e.value) and "mapping.yaml" in str(e.value)
    with pytest.raises(MappingError, match="Hand_Left"):
        load_mapping_file(bad, source_names=load_bvh(src).skeleton.names)


def test_invalid_mapping_files(tmp_path):
    spec = yaml.safe_load((MAPPINGS_DIR / "bandai.yaml").read_text())
    cases = {
        "missing_target": lambda s: s["joints"].pop("left_wrist"),
        "unknown_target": lambda s: s["joints"].update(left_pinky="Hand_L"),
        "bad_weights": lambda s: s["joints"].update(spine={"weighted": {"Spine": 0.5, "Chest": 0.4}}),
        "bad_offset": lambda s: s["joints"].update(head={"joint": "Head", "offset": [1, 2]}),
    }
    for name, change in cases.items():
        s = yaml.safe_load(yaml.safe_dump(spec))
        change(s)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(s))
        with pytest.raises(MappingError) as e:
            load_mapping_file(path)
        assert path.name in str(e.value)
    broken = tmp_path / "broken.yaml"
    broken.write_text("pelvis: [unclosed\nright_hip: x\n")
    with pytest.raises(MappingError) as e:
        load_mapping_file(broken)
    assert e.value.line is not None
    as_json = tmp_path / "mapping.json"
    as_json.write_text(json.dumps(spec))
    assert load_mapping_file(as_json).joints == builtin_mappings()["bandai"].joints


CC_NAMES = {
    "joint_Root": "CC_Base_BoneRoot", "Hips": "CC_Base_Hip", "Spine": "CC_Base_Waist", "Chest": "CC_Base_Spine02",
    "Neck": "CC_Base_NeckTwist01", "Head": "CC_Base_Head",
}
for _side, _s in (("L", "L"), ("R", "R")):
    CC_NAMES.update({f"Shoulder_{_side}": f"CC_Base_{_s}_Clavicle", f"UpperArm_{_side}": f"CC_Base_{_s}_Upperarm",
                     f"LowerArm_{_side}": f"CC_Base_{_s}_Forearm", f"Hand_{_side}": f"CC_Base_{_s}_Hand",
                     f"UpperLeg_{_side}": f"CC_Base_{_s}_Thigh", f"LowerLeg_{_side}": f"CC_Base_{_s}_Calf",
                     f"Foot_{_side}": f"CC_Base_{_s}_Foot", f"Toes_{_side}": f"CC_Base_{_s}_ToeBase"})


def _game_rig_copy(text: str) -> str:
    """A real Bandai BVH as a ~100-joint game rig: CC_Base_* names, plus finger chains under the
    hands and face bones under the head (zero rotations, so the body moves exactly as before)."""
    header, _, motion = text.partition("MOTION")
    for old, new in CC_NAMES.items():
        header = re.sub(rf"\b(ROOT|JOINT) {re.escape(old)}\b", rf"\1 {new}", header)
    from posecurator.io.bvh import parse_bvh_header

    def chain(prefix, n, indent):
        if n == 0:
            return f"{indent}End Site\n{indent}{{\n{indent}  OFFSET 0 1.5 0\n{indent}}}\n"
        return (f"{indent}JOINT {prefix}{n}\n{indent}{{\n{indent}  OFFSET 2.0 0 0.5\n"
                f"{indent}  CHANNELS 3 Zrotation Xrotation Yrotation\n"
                + chain(prefix, n - 1, indent + "  ") + f"{indent}}}\n")

    extra = {}
    for side in ("L", "R"):
        extra[f"CC_Base_{side}_Hand"] = "".join(chain(f"CC_Base_{side}_{f}", 4, "      ")
                                                for f in ("Thumb", "Index", "Mid", "Ring", "Pinky"))
    extra["CC_Base_Head"] = "".join(chain(f"CC_Base_{f}", 3, "      ") for f in ("JawRoot", "L_Eye", "R_Eye", "Tongue"))
    lines, inserted = header.split("\n"), {}
    out, current = [], None
    for line in lines:
        out.append(line)
        m = re.match(r"\s*(ROOT|JOINT)\s+(\S+)", line)
        if m:
            current = m.group(2)
        if line.strip().startswith("CHANNELS") and current in extra:
            out.append(extra[current].rstrip("\n"))
            inserted[current] = extra[current].count("CHANNELS") * 3
    new_header = "\n".join(out)
    # zero columns right after each extended joint's own channels
    sk = parse_bvh_header(header)
    cols_after = {sk.names[j]: max(sk.rotation_channels[j] + sk.position_channels[j]) + 1 for j in range(len(sk.names))
                  if sk.names[j] in inserted}
    head, rows = motion.split("\n", 3)[:3], motion.split("\n", 3)[3]
    table = np.array([r.split() for r in rows.strip().split("\n")])
    for name in sorted(cols_after, key=cols_after.get, reverse=True):
        zeros = np.full((len(table), inserted[name]), "0")
        table = np.concatenate([table[:, :cols_after[name]], zeros, table[:, cols_after[name]:]], axis=1)
    body = "\n".join(" ".join(r) for r in table)
    return f"{new_header}MOTION" + "\n".join(head) + "\n" + body + "\n"


def test_unseen_game_rig_with_a_user_mapping_file(shared_data, tmp_path):
    src = need(shared_data, BANDAI_1)
    rig = tmp_path / "cc_rig.bvh"
    rig.write_text(_game_rig_copy(gzip.decompress(src.read_bytes()).decode()))
    names = load_bvh(rig).skeleton.names
    assert len(names) >= 90 and "CC_Base_L_Index2" in names
    # unmapped: the error lists the skeleton's joint names
    with pytest.raises(MappingError) as e:
        read_bvh(rig)
    assert "CC_Base_L_Thigh" in str(e.value) and "CC_Base_R_Pinky1" in str(e.value) and "cc_rig.bvh" in str(e.value)
    # with a mapping file written for the rig, the poses equal the original clip's
    mapping = _bandai_mapping_yaml(tmp_path, CC_NAMES)
    same_poses(read_bvh(rig, mapping=mapping), read_bvh(src))
    ps = import_path(tmp_path, mapping=mapping, progress=False)
    same_poses(ps, read_bvh(src))


def test_namespace_prefix_and_case_are_tolerated(shared_data, tmp_path):
    src = need(shared_data, BANDAI_2)
    text = gzip.decompress(src.read_bytes()).decode()
    text = re.sub(r"\b(ROOT|JOINT) (\S+)", lambda m: f"{m.group(1)} mixamorig:{m.group(2).lower()}", text)
    renamed = tmp_path / "prefixed.bvh"
    renamed.write_text(text)
    ps = read_bvh(renamed)
    assert ps.attrs["mapping"] == "bandai"
    same_poses(ps, read_bvh(src))


# ---------------------------------------------------------------------- folder import and labels
def test_import_cmu_folder(shared_data):
    folder = need(shared_data, "cmu")
    ps = import_path(folder, progress=False)
    assert set(ps.source) == {"cmu"}
    assert set(ps.subject) == {"01", "11", "131"}
    clips = set(ps.clip)
    assert len(clips) == 6 and {"01_01.amc", "01_01.bvh", "11_01", "bvh11_131_02"} <= clips
    assert ps.fps == 30.0 and len(np.unique(ps.sample_id)) == len(ps)
    for clip in clips:  # frames restart per clip and count up
        f = ps.frame[ps.clip == clip]
        assert f[0] == 0 and (np.diff(f) == 1).all()


def test_import_hdm05_folder_with_and_without_index(shared_data, tmp_path):
    picks = [hdm05_file(shared_data, "bd", "squat"), hdm05_file(shared_data, "bk", "kick"),
             hdm05_file(shared_data, "dg", "grab")]
    root = tmp_path / "mocap"
    (root / "amc").mkdir(parents=True)
    (root / "asf").mkdir()
    for p in picks:
        shutil.copy(p, root / "amc")
        shutil.copy(find_asf(p), root / "asf")
    index_lines = (shared_data / "hdm05" / "index.csv").read_text().splitlines()
    keep = [index_lines[0]] + [l for l in index_lines[1:] if any(p.name[:-3] in l for p in picks)]
    (root / "index.csv").write_text("\n".join(keep) + "\n")
    expected = {p.name[:-7]: (p.name.split("_")[1], p.name.split("_")[2]) for p in picks}

    for with_index in (True, False):
        if not with_index:
            (root / "index.csv").unlink()
        ps = import_path(root, progress=False)
        assert set(ps.source) == {"hdm05"}
        assert len(set(ps.clip)) == 3
        for clip in set(ps.clip):
            rows = ps.clip == clip
            subject, activity = expected[clip.split("/")[-1]]
            assert set(ps.subject[rows]) == {subject} and set(ps.activity[rows]) == {activity}
        info = ps.attrs["clip_info"]
        assert all("take" in v for v in info.values())
        if with_index:
            assert all(v.get("orig_split") in ("train", "test") for v in info.values())


def test_bandai_labels_from_index_or_clip_json(shared_data, tmp_path):
    src = need(shared_data, BANDAI_2)
    ps = import_path(src, progress=False)  # single file: finds bandai/index.csv above it
    assert set(ps.subject) == {"bandai"} and set(ps.activity) == {"walk"} and set(ps.source) == {"bandai"}
    assert ps.attrs["clip_info"][ps.clip[0]]["style"] == "normal"
    # without index.csv: the per-clip json and cfg/*_label.txt give the same labels
    root = tmp_path / "bandai" / "dataset-2"
    (root / "data").mkdir(parents=True)
    shutil.copytree(shared_data / "bandai" / "dataset-2" / "cfg", root / "cfg")
    for rel in (BANDAI_2, BANDAI_2.replace("walk_normal", "run_normal")):
        p = shared_data / rel
        if p.exists():
            shutil.copy(p, root / "data")
            shutil.copy(p.with_name(p.name.replace(".bvh.gz", ".json")), root / "data")
    ps = import_path(root, progress=False)
    assert set(ps.source) == {"bandai"} and set(ps.subject) == {"bandai"}
    assert {"walk"} <= set(ps.activity) <= {"walk", "run"}
    assert all(v["style"] == "normal" for v in ps.attrs["clip_info"].values())


def test_reactidle_labels(shared_data, tmp_path):
    root = tmp_path / "reactidle"
    for rel in ("acted/002_acted.bvh.gz", "genuine/010_genuine.bvh.gz"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(need(shared_data, f"reactidle/{rel}"), root / rel)
    shutil.copy(shared_data / "reactidle" / "index.csv", root)
    ps = import_path(root, progress=False)
    labels = {(c, s, a) for c, s, a in zip(ps.clip, ps.subject, ps.activity)}
    assert labels == {("acted/002_acted", "002", "acted"), ("genuine/010_genuine", "010", "genuine")}
    assert ps.fps == 24.0


def test_nan_coordinates_name_the_file(shared_data, tmp_path):
    text = gzip.decompress(need(shared_data, BANDAI_1).read_bytes()).decode()
    head, _, rows = text.partition("Frame Time:")
    first, rest = rows.split("\n", 1)
    lines = rest.split("\n")
    toks = lines[3].split()
    toks[8] = "inf"
    lines[3] = " ".join(toks)
    folder = tmp_path / "nan"
    folder.mkdir()
    (folder / "bad_values.bvh").write_text(head + "Frame Time:" + first + "\n" + "\n".join(lines))
    with pytest.raises(DataError) as e:
        import_path(folder, progress=False)
    assert "bad_values.bvh" in str(e.value) and "NaN or infinite" in str(e.value)


def test_dataset_folder_and_mocap_together(shared_data, tmp_path):
    ps = read_bvh(need(shared_data, BANDAI_1), source="bandai", subject="bandai", activity="bow", clip="x")
    ps.save(tmp_path / "saved.pcs")
    shutil.copy(shared_data / CMU_131, tmp_path)
    both = import_path(tmp_path, progress=False)
    assert len(both) == len(ps) + len(read_bvh(shared_data / CMU_131))
    assert "saved:x" in set(both.clip) and len(set(both.clip)) == 2


def test_extra_motion_rows_keep_the_declared_frames(shared_data, tmp_path):
    src = need(shared_data, BANDAI_1)
    text = gzip.decompress(src.read_bytes()).decode()
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    extra = tmp_path / "extra_row.bvh"
    extra.write_text(text.rstrip("\n") + "\n" + last + "\n")
    with pytest.warns(UserWarning, match="using the first 128"):
        ps = read_bvh(extra)
    np.testing.assert_array_equal(ps.joints3d, read_bvh(src).joints3d)


def test_explicit_asf_argument(shared_data, tmp_path):
    amc = need(shared_data, "cmu/11_01.amc")
    same = read_amc(amc, asf=shared_data / "cmu" / "11.asf")
    np.testing.assert_array_equal(same.joints3d, read_amc(amc).joints3d)
    with pytest.raises(DataError, match="cannot read ASF"):
        read_amc(amc, asf=tmp_path / "nope.asf")
