"""The MPII-16 reader (posecurator.io.mpii) and the MPII-16 -> H36M17 conversion.

No MPII file is stored here, so the tests write MPII files from the real COCO annotations of
../shared/data/coco (skipped when absent): the joints MPII and COCO share are copied, pelvis and
thorax are the midpoints of the hips and shoulders, and, as a test-only construction, the upper
neck is halfway between the thorax and the nose and the head top lies beyond the nose
(``nose + 0.8 * (nose - thorax)``). Coordinates are written 1-based, as MPII's are. The MATLAB
form is written with scipy.io.savemat in the struct shape of ``mpii_human_pose_v1_u12_1.mat``
(not checked against the real release, which is not available here).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from posecurator.errors import DataError
from posecurator.io import coco, import_path, mpii
from posecurator.io.folder import find_data_files
from posecurator.skeleton import COCO17, H36M17, MPII16
from posecurator.skeleton import keypoints2d as kp2d

COCO_VAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco" / "person_keypoints_val2017_subset2213.json"
pytestmark = pytest.mark.skipif(not COCO_VAL.is_file(), reason=f"real COCO annotations {COCO_VAL} are absent (../shared/data)")

PEOPLE_PER_IMAGE = 3  # the MPII file puts three COCO people into each "image"
SHARED = ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist", "right_elbow",
          "right_shoulder", "left_shoulder", "left_elbow", "left_wrist")


def mpii_from_coco(joints2d: np.ndarray, visibility: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 16, 2) float64 0-based MPII joints (NaN where not labelled) and (N, 16) bool, built
    from COCO-17 joints by the test-only construction of the module docstring."""
    xy = joints2d.astype(np.float64)
    ok = (visibility > 0) & np.isfinite(xy).all(axis=-1)
    c = {name: (xy[:, j], ok[:, j]) for j, name in enumerate(COCO17.joints)}

    def mid(a, b):
        return (a[0] + b[0]) / 2, a[1] & b[1]

    thorax = mid(c["left_shoulder"], c["right_shoulder"])
    nose = c["nose"]
    parts = {name: c[name] for name in SHARED}
    parts["pelvis"] = mid(c["left_hip"], c["right_hip"])
    parts["thorax"] = thorax
    parts["upper_neck"] = mid(thorax, nose)
    parts["head_top"] = (nose[0] + 0.8 * (nose[0] - thorax[0]), nose[1] & thorax[1])
    joints = np.stack([parts[name][0] for name in MPII16.joints], axis=1)
    labelled = np.stack([parts[name][1] for name in MPII16.joints], axis=1)
    return np.where(labelled[..., None], joints, np.nan), labelled


@pytest.fixture(scope="module")
def coco_val():
    ps = coco.read_coco(COCO_VAL)
    raw = coco.read_coco_arrays(COCO_VAL)
    keep = raw["num_keypoints"] >= 1
    joints, labelled = mpii_from_coco(ps.joints2d, ps.visibility)
    keep_mpii = labelled.any(axis=1)  # MPII files list people with at least one joint
    # three people per image, named like MPII's images (nine digits)
    n = int(keep_mpii.sum())
    image = np.array([f"{g:09d}.jpg" for g in np.arange(n) // PEOPLE_PER_IMAGE])
    bbox = raw["bbox"][keep][keep_mpii]
    return {"coco": ps.subset(keep_mpii), "joints": joints[keep_mpii], "labelled": labelled[keep_mpii],
            "image": image, "bbox": bbox}


def headbox_of(coco_joints: np.ndarray) -> np.ndarray | None:
    """Test-only head box of one COCO person: the box around the labelled face keypoints."""
    face = coco_joints[:5]
    face = face[np.isfinite(face).all(axis=1)]
    if len(face) < 2:
        return None
    return np.array([face.min(axis=0), face.max(axis=0)])


def json_entries(data) -> list[dict]:
    """mmpose/HRNet-style MPII entries (1-based coordinates), unlabelled joints at (-1, -1);
    every other person has a head box."""
    entries = []
    for i in range(len(data["image"])):
        ok = data["labelled"][i]
        joints = np.where(ok[:, None], data["joints"][i] + 1, -1.0)
        x, y, w, h = data["bbox"][i]
        entry = {"joints_vis": ok.astype(int).tolist(), "joints": joints.tolist(), "image": str(data["image"][i]),
                 "scale": float(h) / 200, "center": [float(x + w / 2 + 1), float(y + h / 2 + 1)]}
        box = headbox_of(data["coco"].joints2d[i].astype(np.float64))
        if i % 2 == 0 and box is not None:
            entry["headbox"] = (box + 1).tolist()
        entries.append(entry)
    return entries


@pytest.fixture(scope="module")
def mpii_json(coco_val, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mpii") / "mpii_val.json"
    path.write_text(json.dumps(json_entries(coco_val)))
    return path


# ====================================================================== JSON
def test_read_mpii_json(coco_val, mpii_json):
    ps = mpii.read_mpii(mpii_json)
    n = len(coco_val["image"])
    assert len(ps) == n > 1000 and ps.layout == "mpii16" and ps.joints3d is None and ps.joints2d.shape == (n, 16, 2)
    labelled = coco_val["labelled"]
    np.testing.assert_array_equal(ps.visibility, labelled.astype(np.float32))
    assert np.isnan(ps.joints2d[~labelled]).all()
    # the 1-based coordinates of the file come back 0-based, equal to the COCO-derived ones
    np.testing.assert_allclose(ps.joints2d[labelled], coco_val["joints"][labelled], atol=1e-3)
    # the shared joints are the COCO keypoints themselves, left and right as named
    for name in SHARED:
        np.testing.assert_allclose(ps.joints2d[:, MPII16.index(name)], coco_val["coco"].joints2d[:, COCO17.index(name)],
                                   atol=1e-3, err_msg=name)
    assert (ps.source == "mpii").all() and (ps.subject == coco_val["image"]).all() and (ps.frame == 0).all()
    k = np.arange(n) % PEOPLE_PER_IMAGE
    assert (ps.clip == np.char.add(np.char.add(coco_val["image"].astype(str), "_p"), k.astype(str))).all()
    assert len(np.unique(ps.clip)) == n
    assert ps.attrs["units"] == "px" and ps.attrs["source_file"] == "mpii_val.json" and ps.attrs["annotations"] == n
    assert ps.attrs["format"] == "mpii-json" and ps.attrs["image_size"] == "unknown" and ps.attrs["dropped_few_keypoints"] == 0
    ps.check_finite(mpii_json)

    arrays = mpii.read_mpii_arrays(mpii_json)
    entries = json.loads(mpii_json.read_text())
    has_box = np.array(["headbox" in e for e in entries])
    assert has_box.sum() > 300 and ps.attrs["with_headbox"] == has_box.sum()
    np.testing.assert_allclose(arrays["headbox"][has_box], [np.array(e["headbox"]) - 1 for e in entries if "headbox" in e])
    assert np.isnan(arrays["headbox"][~has_box]).all()
    np.testing.assert_allclose(arrays["scale"], [e["scale"] for e in entries])
    np.testing.assert_allclose(arrays["center"], np.array([e["center"] for e in entries]) - 1)
    assert (arrays["image_width"] == 0).all() and (arrays["image_height"] == 0).all()
    assert (arrays["is_train"] == -1).all() and (arrays["is_visible"] == -1).all()
    sizes = {str(coco_val["image"][0]): (640, 480)}
    sized = mpii.read_mpii_arrays(mpii_json, image_sizes=sizes)
    first = sized["image"] == coco_val["image"][0]
    assert (sized["image_width"][first] == 640).all() and (sized["image_height"][first] == 480).all()
    assert (sized["image_width"][~first] == 0).all()
    raw = mpii.read_mpii(mpii_json, one_based=False)
    np.testing.assert_allclose(raw.joints2d[labelled], coco_val["joints"][labelled] + 1, atol=1e-3)


def test_mpii_to_h36m17(coco_val, mpii_json):
    ps = mpii.read_mpii(mpii_json)
    out = kp2d.to_target_layout(ps)
    assert out.layout == "h36m17" and out.joints2d.shape == (len(ps), 17, 2)
    conv = out.attrs["layout_conversion"]
    assert conv["from"] == "mpii16" and conv["head_segment"] is True and out.attrs["original_layout"] == "mpii16"
    assert list(conv["rules"]) == list(H36M17.joints)
    assert conv["rules"]["head"] == "copy head_top" and conv["rules"]["neck"] == "copy upper_neck"
    assert (out.clip == ps.clip).all() and out.attrs["source_file"] == "mpii_val.json"
    # every joint but neck and head is what the COCO conversion gives for the same people
    from_coco_xy, from_coco_vis = kp2d.coco17_to_h36m17(coco_val["coco"].joints2d, coco_val["coco"].visibility)
    same = [j for j, name in enumerate(H36M17.joints) if name not in ("neck", "head")]
    np.testing.assert_array_equal(out.visibility[:, same], from_coco_vis[:, same])
    np.testing.assert_allclose(out.joints2d[:, same], from_coco_xy[:, same], atol=1e-3)
    # neck = upper neck, head = head top: visible here (MPII has a head top)
    for target, source in (("neck", "upper_neck"), ("head", "head_top")):
        np.testing.assert_array_equal(out.joints2d[:, H36M17.index(target)], ps.joints2d[:, MPII16.index(source)])
        np.testing.assert_array_equal(out.visibility[:, H36M17.index(target)], ps.visibility[:, MPII16.index(source)])
    assert (out.visibility[:, H36M17.index("head")] > 0).sum() > 500
    # spine: midpoint of pelvis and thorax, visible iff both are
    pelvis, thorax = ps.visibility[:, MPII16.index("pelvis")] > 0, ps.visibility[:, MPII16.index("thorax")] > 0
    np.testing.assert_array_equal(out.visibility[:, H36M17.index("spine")] > 0, pelvis & thorax)
    assert (pelvis ^ thorax).any()
    # batched over leading dims
    grouped = kp2d.mpii16_to_h36m17(ps.joints2d[:100].reshape(10, 10, 16, 2), ps.visibility[:100].reshape(10, 10, 16))
    np.testing.assert_array_equal(grouped[0].reshape(100, 17, 2), out.joints2d[:100])


def test_import_path_reads_mpii_json(coco_val, mpii_json):
    ps = import_path(mpii_json, progress=False)
    assert ps.layout == "mpii16" and len(ps) == len(coco_val["image"])
    assert (find_data_files(mpii_json)[0][1]) == "mpii"
    # COCO files are still COCO
    assert [kind for _, kind in find_data_files(COCO_VAL.parent)] == ["coco", "coco"]


# ====================================================================== bad JSON
def _bad_cases():
    def entry_3(change):
        def apply(entries):
            change(entries[3])
            return entries
        return apply

    def set_joint(value):
        def change(e):
            e["joints_vis"][0] = 1
            e["joints"][0] = value
        return change

    return {
        "top level is an object": (lambda entries: {"annotations_like": entries}, "not an MPII annotation list"),
        "entry not an object": (lambda entries: entries[:3] + [[1, 2]] + entries[4:], "entry 3: not a JSON object"),
        "no joints": (entry_3(lambda e: e.pop("joints")), "entry 3: no 'joints'"),
        "15 joints": (entry_3(lambda e: e.update(joints=e["joints"][:15])), "entry 3: 'joints' must be 16 \\[x, y\\] pairs"),
        "3 numbers a joint": (entry_3(lambda e: e["joints"][5].append(1.0)), "entry 3: 'joints' must be 16"),
        "15 flags": (entry_3(lambda e: e.update(joints_vis=e["joints_vis"][:15])), "entry 3: 'joints_vis' must be 16 flags"),
        "text coordinate": (entry_3(set_joint(["12.5", 3.0])), "entry 3: 'joints' holds a non-numeric value \\(str\\)"),
        "long text": (entry_3(lambda e: e.update(joints="x" * 100000)), "entry 3: 'joints' must be 16"),
        "flag 2": (entry_3(lambda e: e["joints_vis"].__setitem__(2, 2)), "entry 3: 'joints_vis' flags must be 0 or 1"),
        "NaN coordinate": (entry_3(set_joint([float("nan"), 3.0])),
                           "entry 3: 'joints' has a NaN or infinite coordinate \\(joint right_ankle\\)"),
        "inf coordinate": (entry_3(set_joint([1.0, float("inf")])), "entry 3: 'joints' has a NaN or infinite"),
        "absurd coordinate": (entry_3(set_joint([2e6, 3.0])), "entry 3: 'joints' has a coordinate beyond 1e\\+06 px"),
        "bad scale": (entry_3(lambda e: e.update(scale=-1)), "entry 3: 'scale' must be a positive"),
        "bad headbox": (entry_3(lambda e: e.update(headbox=[[1, 2]])), "entry 3: 'headbox' must be"),
        "NaN center": (entry_3(lambda e: e.update(center=[float("nan"), float("nan")])), "entry 3: 'center' has a NaN"),
        "no image name": (entry_3(lambda e: e.update(image=7)), "entry 3: 'image' must be a file name"),
    }


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_bad_mpii_json_raises_one_line_data_error(coco_val, tmp_path, case):
    make, message = _bad_cases()[case]
    entries = json_entries({k: v[:12] for k, v in coco_val.items() if k != "coco"} | {"coco": coco_val["coco"].subset(slice(0, 12))})
    path = tmp_path / "mpii_bad.json"
    path.write_text(json.dumps(make(entries)))  # json writes NaN / Infinity, which Python's json reads back
    with pytest.raises(DataError, match=f"mpii_bad.json: {message}") as info:
        mpii.read_mpii(path)
    text = str(info.value)
    assert "\n" not in text and len(text) < 200, text
    assert "xxxx" not in text


def test_truncated_mpii_json(mpii_json, tmp_path):
    text = mpii_json.read_text()
    cut = tmp_path / "mpii_cut.json"
    cut.write_text(text[: len(text) // 2])
    with pytest.raises(DataError, match="mpii_cut.json:1: corrupt or truncated JSON"):
        mpii.read_mpii(cut)
    # import_path sees the start of the list and names the file too
    with pytest.raises(DataError, match="mpii_cut.json"):
        import_path(cut, progress=False)


# ====================================================================== MATLAB release
def struct_array(records: list[dict], shape=None) -> np.ndarray:
    """A MATLAB struct array (1 x N unless ``shape``) with the union of the records' fields;
    a record without a field gets [] there, as in the MPII release."""
    names = list(dict.fromkeys(k for r in records for k in r))
    arr = np.empty(shape or (1, len(records)), dtype=[(n, object) for n in names])
    for i, record in enumerate(records):
        for n in names:
            arr[n].flat[i] = record.get(n, np.zeros((0, 0)))
    return arr


VISIBLE_FORMS = ("1", 1, 0, "0", np.zeros((0, 0)))  # the release stores is_visible in all these forms


def rect_of(entry: dict, *, points: int | None = None) -> dict:
    """One annorect of the release from a JSON entry (1-based coordinates already)."""
    labelled = [j for j in range(16) if entry["joints_vis"][j]][:points]
    point = [{"id": j, "x": entry["joints"][j][0], "y": entry["joints"][j][1], "is_visible": VISIBLE_FORMS[j % 5]}
             for j in labelled]
    rect = {"annopoints": {"point": struct_array(point)}, "objpos": {"x": entry["center"][0], "y": entry["center"][1]},
            "scale": entry["scale"]}
    if "headbox" in entry:
        (x1, y1), (x2, y2) = entry["headbox"]
        rect.update(x1=x1, y1=y1, x2=x2, y2=y2)
    return rect


def write_release(path: Path, entries: list[dict], *, extra_images=(), bad=None) -> list[dict]:
    """A small mpii_human_pose_v1_u12_1.mat from JSON entries grouped by image. The first image
    also gets a person without annopoints (skipped); ``extra_images`` are (name, [rects])."""
    images: dict[str, list[dict]] = {}
    for e in entries:
        images.setdefault(e["image"], []).append(rect_of(e))
    first = next(iter(images))
    images[first].append({"objpos": {"x": 10.0, "y": 20.0}, "scale": 1.0})  # a person without joints
    images.update(dict(extra_images))
    images["test_image.jpg"] = [{"objpos": {"x": 5.0, "y": 5.0}, "scale": 2.0}]  # a test image: no annopoints
    names = list(images)
    if bad:
        bad(images)
    annolist = struct_array([{"image": {"name": name}, "annorect": struct_array(images[name]) if images[name] else np.zeros((0, 0)),
                              "frame_sec": np.zeros((0, 0)), "vididx": np.zeros((0, 0))} for name in names])
    single = np.empty((len(names), 1), dtype=object)
    for i in range(len(names)):
        single[i, 0] = np.array([[1.0]]) if i % 2 == 0 else np.zeros((0, 0))
    act = struct_array([{"cat_name": "sports" if i == 0 else np.zeros((0, 0)), "act_name": "running" if i == 0 else np.zeros((0, 0)),
                         "act_id": 1 if i == 0 else -1} for i in range(len(names))], shape=(len(names), 1))
    release = {"annolist": annolist, "img_train": np.array([[0 if n == "test_image.jpg" else 1 for n in names]], dtype=np.uint8),
               "single_person": single, "act": act, "version": "12"}
    savemat(path, {"RELEASE": release}, do_compression=True)
    return names


def test_read_mpii_mat_matches_json(mpii_json, tmp_path):
    entries = json.loads(mpii_json.read_text())[:37]  # 12 images of three people and one of one person
    one_point = dict(entries[5], image="one_point.jpg")
    names = write_release(tmp_path / "mpii_human_pose_v1_u12_1.mat", entries,
                          extra_images=[("one_point.jpg", [rect_of(one_point, points=1)])])
    small = tmp_path / "mpii_small.json"
    small.write_text(json.dumps(entries))
    from_json = mpii.read_mpii(small)
    from_mat = mpii.read_mpii(tmp_path / "mpii_human_pose_v1_u12_1.mat")
    assert len(from_mat) == len(entries) + 1 and from_mat.attrs["skipped_without_points"] == 2
    assert from_mat.attrs["format"] == "mpii-mat" and from_mat.layout == "mpii16"
    np.testing.assert_array_equal(from_mat.joints2d[:-1], from_json.joints2d)
    np.testing.assert_array_equal(from_mat.visibility[:-1], from_json.visibility)
    assert (from_mat.subject[:-1] == from_json.subject).all() and (from_mat.clip[:-1] == from_json.clip).all()
    # the person with one point: a 1-element struct array comes back squeezed
    j = int(np.flatnonzero(entries[5]["joints_vis"])[0])
    assert from_mat.clip[-1] == "one_point.jpg_p0" and from_mat.visibility[-1].sum() == 1 and from_mat.visibility[-1, j] == 1
    np.testing.assert_allclose(from_mat.joints2d[-1, j], np.array(entries[5]["joints"][j]) - 1)
    assert (from_mat.activity[:3] == "running").all() and (from_mat.activity[3:] == "").all()

    arrays = mpii.read_mpii_arrays(tmp_path / "mpii_human_pose_v1_u12_1.mat")
    json_arrays = mpii.read_mpii_arrays(small)
    for key in ("center", "scale", "headbox"):
        np.testing.assert_allclose(arrays[key][:-1], json_arrays[key], err_msg=key)
    assert (arrays["is_train"] == 1).all()
    image_index = np.array([names.index(name) for name in arrays["image"]])
    assert (arrays["annolist_index"] == image_index).all()
    assert (arrays["single_person"] == ((image_index % 2 == 0) & (arrays["person"] == 0))).all()
    labelled = arrays["joints_vis"] > 0
    expected = np.array([[int(VISIBLE_FORMS[j % 5]) if j % 5 != 4 else -1 for j in range(16)]] * len(arrays["image"]))
    assert (arrays["is_visible"][labelled] == expected[labelled]).all() and (arrays["is_visible"][~labelled] == -1).all()

    ps = import_path(tmp_path / "mpii_human_pose_v1_u12_1.mat", progress=False)
    assert ps.layout == "mpii16" and len(ps) == len(from_mat)
    # a .mat file without RELEASE is not data
    savemat(tmp_path / "other.mat", {"poses": np.zeros((3, 2))})
    assert find_data_files(tmp_path / "other.mat") == []
    with pytest.raises(DataError, match="other.mat: no RELEASE struct"):
        mpii.read_mpii(tmp_path / "other.mat")


def _bad_point(field, value):
    def bad(images):
        rect = next(iter(images.values()))[0]
        points = rect["annopoints"]["point"]
        points[field].flat[1] = value
    return bad


@pytest.mark.parametrize("field, value, message", [
    ("id", 16, "point id that is not an integer 0..15"),
    ("id", 0, "point id 0 twice"),
    ("x", "abc", "text where a number is expected"),
    ("x", np.zeros((0, 0)), "without x or y"),
    ("y", 3e7, "point id \\d+ \\(\\w+\\) has a coordinate beyond 1e\\+06 px"),
    ("x", np.inf, "has a NaN or infinite coordinate"),
    ("is_visible", 7, "is_visible must be 0 or 1"),
])
def test_bad_mpii_mat_raises_one_line_data_error(mpii_json, tmp_path, field, value, message):
    entries = [e for e in json.loads(mpii_json.read_text())[:6] if e["joints_vis"][0]]
    assert entries and sum(entries[0]["joints_vis"]) >= 2
    write_release(tmp_path / "release_bad.mat", entries, bad=_bad_point(field, value))
    with pytest.raises(DataError, match=f"release_bad.mat: annolist\\(1\\).annorect\\(1\\).*{message}") as info:
        mpii.read_mpii(tmp_path / "release_bad.mat")
    assert "\n" not in str(info.value) and len(str(info.value)) < 200


def test_empty_mpii_json_reads_as_no_people(tmp_path):
    path = tmp_path / "mpii_empty.json"
    path.write_text("[]")
    ps = mpii.read_mpii(path)
    assert len(ps) == 0 and ps.joints2d.shape == (0, 16, 2) and ps.attrs["annotations"] == 0
    assert find_data_files(path) == []  # not "a list of objects with joints_vis": nothing to import
