"""The pose describer and captions on real mocap of known kind (../shared/data; nothing synthetic).

Frames are picked by what the mocap labels say the person does and by measurements in world
coordinates (floor at Z = 0, known only here), independent of the describer's own thresholds:
the last second of lieDownFloor (lying), frames of lieDownFloor where a knee joint is within 80 mm
of the floor with the torso upright (kneeling), the lowest pelvis of squat1Reps (squatting), the
highest wrists of raise-up-both-hands / grabHighR (arms raised), the highest left ankle of
kickLFront1Reps (a raised left leg), walks and hops. Each file is read once per module.
"""

from __future__ import annotations

import csv
import json
import time

import numpy as np
import pytest

from posecurator.errors import DataError, PoseCuratorError
from posecurator.poseset import PoseSet
from posecurator.skeleton.layouts import H36M17
from posecurator.synthesis.captions import (
    BANDAI_CONTENT, HDM05_PHRASES, CaptionTable, camel_case_phrase, caption_clips, caption_samples,
    caption_summary, describe_dataset, label_phrase, read_captions_file,
)
from posecurator.synthesis.describe import (
    PoseDescriber, describe_motion, describe_pose, pose_features, pose_features_reference,
)

HDM05_FILES = {
    "lieDownFloor": ["bd_lieDownFloor_001", "bk_lieDownFloor_005", "bk_lieDownFloor_010", "dg_lieDownFloor_012",
                     "dg_lieDownFloor_013", "dg_lieDownFloor_014"],
    "squat1Reps": ["bd_squat1Reps_001", "bd_squat1Reps_002", "bk_squat1Reps_013", "bk_squat1Reps_014",
                   "dg_squat1Reps_025", "dg_squat1Reps_026"],
    "kickLFront1Reps": ["bd_kickLFront1Reps_001", "bk_kickLFront1Reps_007", "dg_kickLFront1Reps_013"],
    "grabHighR": ["bd_grabHighR_001", "bk_grabHighR_006", "dg_grabHighR_011"],
    "hopBothLegs1hops": ["bd_hopBothLegs1hops_001", "bk_hopBothLegs1hops_013", "dg_hopBothLegs1hops_022"],
    "sneak2StepsLStart": ["bd_sneak2StepsLStart_001"],
}
BANDAI_FILES = ["dataset-2_raise-up-both-hands_active_001", "dataset-2_raise-up-both-hands_normal_001",
                "dataset-2_walk_normal_001", "dataset-2_wave-right-hand_normal_001"]
J = {name: i for i, name in enumerate(H36M17.joints)}


def _import(path):
    from posecurator.io import import_path

    if not path.exists():
        pytest.skip(f"{path} is absent")
    return import_path(path, progress=False)


@pytest.fixture(scope="module")
def hdm05(shared_data) -> dict[str, list[PoseSet]]:
    """{motion class: [one PoseSet per clip]} of a few HDM05 takes of every actor."""
    amc = shared_data / "hdm05" / "amc"
    return {motion: [_import(amc / f"HDM_{name}_120.amc.gz") for name in names] for motion, names in HDM05_FILES.items()}


@pytest.fixture(scope="module")
def bandai(shared_data) -> dict[str, PoseSet]:
    data = shared_data / "bandai" / "dataset-2" / "data"
    return {name.split("_")[1]: _import(data / f"{name}.bvh.gz") for name in BANDAI_FILES}


def _upright(j: np.ndarray) -> np.ndarray:
    """(N,) the torso axis (pelvis -> thorax) is within 45 deg of vertical (world Z up)."""
    t = j[:, J["thorax"]] - j[:, J["pelvis"]]
    return t[:, 2] / np.linalg.norm(t, axis=1) > np.cos(np.radians(45))


def _all_poses(hdm05, bandai) -> np.ndarray:
    parts = [ps.joints3d for clips in hdm05.values() for ps in clips] + [ps.joints3d for ps in bandai.values()]
    return np.concatenate(parts)


# ---------------------------------------------------------------------- single poses
def test_lying_frames_are_described_as_lying_on_the_back(hdm05):
    for ps in hdm05["lieDownFloor"]:
        end = ps.joints3d[-30:]                                      # the clip's last second: lying on the floor
        t = ps.joints3d[:, J["thorax"]] - ps.joints3d[:, J["pelvis"]]
        assert np.all(np.abs(t[-30:, 2]) < 0.3 * np.linalg.norm(t[-30:], axis=1)), ps.clip[0]  # torso horizontal
        texts = describe_pose(end)
        assert all(text.startswith("a person lies on the back") for text in texts), (ps.clip[0], set(texts))


def test_kneeling_frames_are_described_as_kneeling(hdm05):
    found = 0
    for ps in hdm05["lieDownFloor"]:
        j = ps.joints3d
        knee_z = j[:, [J["left_knee"], J["right_knee"]], 2]
        kneel = (knee_z.min(axis=1) < 80.0) & _upright(j)
        if not kneel.any():
            continue
        texts = describe_pose(j[kneel])
        found += int(kneel.sum())
        assert all("kneels on" in text for text in texts), (ps.clip[0], set(texts))
        # the knee on the floor is the one the text names (the person's own left/right)
        left_down = knee_z[kneel, 0] < knee_z[kneel, 1]
        for text, left in zip(texts, left_down):
            assert ("left knee" in text or "both knees" in text) if left else ("right knee" in text or "both knees" in text)
    assert found >= 10, "the dg lieDownFloor takes kneel on the left knee on the way down"


def test_deepest_squat_frames_are_squats(hdm05):
    texts = []
    for ps in hdm05["squat1Reps"]:
        j = ps.joints3d
        i = int(np.argmin(j[:, J["pelvis"], 2]))
        texts.append(describe_pose(j[i])[0])
    assert all(t.startswith(("a person squats", "a person kneels")) for t in texts), texts
    # a deep squat on the toes can bring a knee within a few cm of the floor: then "kneels"
    assert sum(t.startswith("a person squats") for t in texts) >= len(texts) - 1, texts


def test_raised_arms_at_the_top_of_raise_up_both_hands_and_grab_high(hdm05, bandai):
    for key in ("raise-up-both-hands",):
        j = bandai[key].joints3d
        top = np.argsort(-np.minimum(j[:, J["left_wrist"], 2], j[:, J["right_wrist"], 2]))[:5]
        for text in describe_pose(j[top]):
            assert "both arms raised above the head" in text, text
    for ps in hdm05["grabHighR"]:
        j = ps.joints3d
        i = int(np.argmax(j[:, J["right_wrist"], 2]))
        text = describe_pose(j[i])[0]
        assert any(f"the right {w}" in text for w in ("arm raised", "arm stretched forward", "hand raised")), text
        assert "left arm" not in text, text


def test_kick_peak_is_a_raised_left_leg(hdm05):
    for ps in hdm05["kickLFront1Reps"]:
        j = ps.joints3d
        i = int(np.argmax(j[:, J["left_ankle"], 2]))
        text = describe_pose(j[i])[0]
        assert text.startswith("a person stands on the right leg with the left"), text
        assert "raised to the front" in text or "knee raised high" in text, text


def test_walking_frames_are_standing(bandai, hdm05):
    for j in (bandai["walk"].joints3d, hdm05["sneak2StepsLStart"][0].joints3d):
        texts = describe_pose(j)
        standing = [t.startswith("a person stands") for t in texts]
        assert np.mean(standing) > 0.9, sorted(set(texts))[:10]


# ---------------------------------------------------------------------- motions
def test_motion_windows_say_what_the_clip_does(hdm05, bandai, shared_data):
    assert describe_motion(bandai["walk"].joints3d) == "a person walks forward"
    assert describe_motion(hdm05["sneak2StepsLStart"][0].joints3d) == "a person walks forward"
    for ps in hdm05["hopBothLegs1hops"]:
        assert "jumps" in describe_motion(ps.joints3d), ps.clip[0]
    cmu_hop = _import(shared_data / "cmu" / "bvh11_131_03.bvh")     # "start hop stop"
    assert "jumps" in describe_motion(cmu_hop.joints3d) or "hops" in describe_motion(cmu_hop.joints3d)
    for ps in hdm05["squat1Reps"]:                                   # some takes start on the way down
        assert describe_motion(ps.joints3d) in ("a person squats down then stands up", "a person squats then stands up"), \
            ps.clip[0]
    for ps in hdm05["lieDownFloor"]:
        assert describe_motion(ps.joints3d).endswith("lies down on the back"), ps.clip[0]
    for ps in hdm05["kickLFront1Reps"]:
        assert "kicks forward with the left leg" in describe_motion(ps.joints3d), ps.clip[0]
    assert describe_motion(bandai["raise-up-both-hands"].joints3d) == \
        "a person raises both arms above the head then lowers them"
    assert describe_motion(bandai["wave-right-hand"].joints3d) == "a person waves the right hand"


def test_motion_fps_and_bounds_are_checked(bandai):
    j = bandai["walk"].joints3d
    d = PoseDescriber()
    assert d.describe_windows(j, [[0, 60], [60, 120]]) == [d.describe_motion(j[:60]), d.describe_motion(j[60:120])]
    with pytest.raises(ValueError):
        d.describe_windows(j, [[10, 10]])
    with pytest.raises(ValueError):
        d.describe_motion(j, fps=0)
    # one frame is a pose: its text
    assert d.describe_motion(j[:1]) == d.describe(j[:1])[0]


# ---------------------------------------------------------------------- features
def test_batched_features_agree_with_the_reference(hdm05, bandai):
    poses = _all_poses(hdm05, bandai)[::23].astype(np.float64)
    for floor in (None, 0.0):
        fast, slow = pose_features(poses, floor=floor), pose_features_reference(poses, floor=floor)
        assert set(fast) == set(slow)
        for key in fast:
            a, b = np.asarray(fast[key], dtype=float), np.asarray(slow[key], dtype=float)
            assert a.shape == b.shape, key
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-4, err_msg=key)


def test_facing_points_where_the_person_walks(bandai):
    j = bandai["walk"].joints3d.astype(np.float64)
    f = pose_features(j)
    velocity = np.gradient(j[:, J["pelvis"]], axis=0)
    velocity[:, 2] = 0
    assert np.mean(np.sum(f["facing"] * velocity, axis=1) > 0) > 0.95


def test_texts_do_not_depend_on_heading_position_or_frame(hdm05, bandai):
    poses = _all_poses(hdm05, bandai)[::7].astype(np.float64)
    base = describe_pose(poses)
    assert len(set(base)) > 20                                       # lying, kneeling, squats, kicks, arms ...
    angle = np.radians(137.0)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    assert describe_pose(poses @ rot.T + [2500.0, -800.0, 0.0]) == base
    # a camera frame: x right, y down, z forward (world Z up becomes -y), the person 4 m away
    to_camera = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]]) @ rot
    camera = poses @ to_camera.T + [0.0, 300.0, 4000.0]
    assert describe_pose(camera, up=(0, -1, 0)) == base
    # a smaller person (or a prediction at the wrong scale) is described alike
    assert np.mean(np.array(describe_pose(poses * 0.8)) == np.array(base)) > 0.98


def test_without_a_floor_the_words_mostly_match_the_known_floor(hdm05, bandai):
    poses = _all_poses(hdm05, bandai)
    unknown, known = np.array(describe_pose(poses)), np.array(describe_pose(poses, floor=0.0))
    assert np.mean(unknown == known) > 0.85


def test_descriptions_are_deterministic_and_batch_independent(hdm05, bandai):
    poses = _all_poses(hdm05, bandai)
    a = describe_pose(poses)
    assert describe_pose(poses) == a
    some = np.arange(0, len(poses), 17)
    assert describe_pose(poses[some]) == [a[i] for i in some]
    j = hdm05["lieDownFloor"][0].joints3d
    assert describe_motion(j) == describe_motion(j.copy())


def test_describer_options(hdm05):
    j = hdm05["lieDownFloor"][3].joints3d
    d = PoseDescriber(knee_contact=0.0)                              # no knee is ever on the floor
    assert not any("kneels" in t for t in d.describe(j))
    assert d.get_params()["knee_contact"] == 0.0
    assert d.set_params(knee_contact=0.12).knee_contact == 0.12
    with pytest.raises(TypeError):
        PoseDescriber(kneee_contact=0.1)
    with pytest.raises(ValueError):
        describe_pose(np.zeros((3, 16, 3)))
    with pytest.raises(ValueError):
        describe_pose(j, up=(0, 0, 0))
    assert describe_pose(np.zeros((0, 17, 3))) == []


# ---------------------------------------------------------------------- labels
def test_every_hdm05_class_and_bandai_content_has_words(shared_data):
    with open(shared_data / "hdm05" / "index.csv", newline="") as fh:
        motions = sorted({row["motion"] for row in csv.DictReader(fh)})
    assert set(motions) <= set(HDM05_PHRASES)
    for motion in motions:
        phrase = label_phrase("hdm05", motion, {})
        assert phrase and phrase == HDM05_PHRASES[motion]
        assert camel_case_phrase(motion)                             # the fallback gives words too
    with open(shared_data / "bandai" / "index.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for content, style in sorted({(r["content"], r["style"]) for r in rows}):
        assert content in BANDAI_CONTENT
        phrase = label_phrase("bandai", content, {"style": style})
        assert phrase.startswith(BANDAI_CONTENT[content]), phrase
        assert (style == "normal") == (phrase == BANDAI_CONTENT[content]), phrase


def test_label_phrases():
    assert label_phrase("hdm05", "kickLFront1Reps", None) == "kicks to the front with the left leg once"
    assert label_phrase("hdm05", "depositFloorR", None) == "puts something down on the floor with the right hand"
    assert label_phrase("hdm05", "lieDownFloor", None) == "lies down on the floor"
    assert label_phrase("bandai", "bow", {"style": "angry"}) == "bows angrily"
    assert label_phrase("bandai", "fly-away", {"style": "very-happy"}) == "flies away in a very happy manner"
    assert label_phrase("cmu", "unknown", {"trial": "01"}, clip="01_01.amc") == \
        "plays on a playground: jumps forward and turns around"
    assert label_phrase("cmu", "unknown", None, clip="bvh11_131_03") == "starts hopping and stops, in a Michael Jackson style"
    assert label_phrase("cmu", "unknown", None, clip="99_99") == ""
    assert label_phrase("mine", "unknown", None) == ""
    assert label_phrase("mine", "unknown", None, clip="01_01") == ""          # CMU's table is for CMU only
    assert label_phrase("cmu", "playground - forward jumps, turn around", None) == \
        "does this: playground - forward jumps, turn around"
    # other people's camelCase classes: L/R spelled out, repetition counts dropped
    assert label_phrase("hdm05", "kickRSide2Reps", None) == "kicks right side"
    assert label_phrase("mocap", "walkBackwards3StepsLstart", None) == "walks backwards three steps, starting with the left foot"
    assert label_phrase("mocap", "punchLFront2Reps", None) == "punches left front"


# ---------------------------------------------------------------------- caption files and tables
def test_captions_files_good_and_bad(tmp_path):
    good_json = tmp_path / "c.json"
    good_json.write_text(json.dumps({"3": "a person waves", "10": " a person bows "}))
    assert read_captions_file(good_json) == {3: "a person waves", 10: "a person bows"}
    good_csv = tmp_path / "c.csv"
    good_csv.write_text("sample_id,text,annotator\n3,\"a person waves, smiling\",ann\n10,a person bows,ann\n")
    assert read_captions_file(good_csv) == {3: "a person waves, smiling", 10: "a person bows"}
    bad = {
        "garbage.bin": (b"\x89PNG\r\n\x1a\n\x00\x00", "not UTF-8"),
        "list.json": (b'["a", "b"]', "expected a JSON object"),
        "broken.json": (b'{"3": "a",', "not valid JSON"),
        "noheader.csv": (b"3,a person waves\n", "sample_id,text"),
        "words.txt": (b"hello world\n", "sample_id,text"),
        "badid.json": (b'{"three": "a person waves"}', "not an integer"),
        "badid.csv": (b"sample_id,text\n3.5,a person waves\n", "not an integer"),
        "empty.json": (b'{"3": "  "}', "is empty"),
        "number.json": (b'{"3": 7}', "not a string"),
        "empty.csv": (b"sample_id,text\n3,\n", "is empty"),
        "twice.csv": (b"sample_id,text\n3,a\n3,b\n", "twice"),
    }
    for name, (content, message) in bad.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DataError) as e:
            read_captions_file(path)
        assert message in str(e.value) and str(path) in str(e.value), (name, str(e.value))
        assert "\n" not in str(e.value)
    with pytest.raises(DataError):
        read_captions_file(tmp_path / "missing.json")


class _FirstHalfCaptioner:
    """A stand-in for a user's image-language model: it captions only the first half of what it is asked."""

    name = "vlm-test"

    def __init__(self):
        self.asked: list[int] = []

    def caption(self, poses, sample_ids):
        self.asked = list(sample_ids)
        half = len(sample_ids) // 2
        return [f"a person is captioned ({i})" if k < half else "" for k, i in enumerate(sample_ids)]


def test_caption_samples_records_every_source(tmp_path, hdm05):
    ps = hdm05["squat1Reps"][0]
    ids = ps.sample_id
    captions = tmp_path / "mine.json"
    captions.write_text(json.dumps({str(ids[0]): "a person is about to squat", str(ids[5]): "a person squats"}))
    captioner = _FirstHalfCaptioner()
    table = caption_samples(ps, captions_file=captions, captioner=captioner)
    assert len(table) == len(ps) and np.array_equal(table.sample_id, ids)
    assert table.text[0] == "a person is about to squat" and table.source[0] == "user" and table.source[5] == "user"
    assert ids[0] not in captioner.asked and len(captioner.asked) == len(ps) - 2  # the file's ids are not asked again
    by_source = table.counts()
    assert by_source["user"] == 2 and by_source["captioner:vlm-test"] == (len(ps) - 2) // 2
    assert by_source["describer"] == len(ps) - 2 - (len(ps) - 2) // 2
    described = table.source == "describer"
    assert list(table.text[described]) == describe_pose(ps.joints3d[described])
    # unknown ids in the file: a DataError naming the file and the ids
    bad = tmp_path / "unknown.csv"
    bad.write_text("sample_id,text\n0,a person stands\n99999,a person flies\n123456,a person swims\n")
    with pytest.raises(DataError, match=r"unknown.csv: 2 sample id\(s\) are not in the dataset: 99999, 123456"):
        caption_samples(ps, captions_file=bad)


def test_caption_samples_from_camera_frame_predictions(hdm05):
    ps = hdm05["lieDownFloor"][0]
    world = ps.joints3d.astype(np.float64)
    to_camera = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])
    pred3d = world @ to_camera.T + [0.0, 200.0, 3500.0]
    flat = ps.replace(joints3d=None, joints2d=np.zeros((len(ps), 17, 2), np.float32))
    table = caption_samples(flat, pred3d=pred3d)                     # up defaults to the camera's (0, -1, 0)
    assert list(table.text) == describe_pose(world) and set(table.source) == {"describer"}
    with pytest.raises(DataError, match="needs 3D"):
        caption_samples(flat)
    with pytest.raises(DataError, match="pred3d"):
        caption_samples(flat, pred3d=pred3d[:-1])


def test_caption_clips_and_windows(hdm05, bandai):
    ps = PoseSet.concatenate([hdm05["lieDownFloor"][0], hdm05["squat1Reps"][0], bandai["bow"] if "bow" in bandai
                              else bandai["wave-right-hand"]], renumber=True)
    ps.attrs["clip_info"] = {**hdm05["lieDownFloor"][0].attrs.get("clip_info", {}),
                             **bandai["wave-right-hand"].attrs.get("clip_info", {})}
    table = caption_clips(ps)
    assert len(table) == 3 and set(table.source) == {"labels+describer"}
    assert table.text[0] == "a person lies down on the floor; " + describe_motion(hdm05["lieDownFloor"][0].joints3d)
    assert table.text[1].startswith("a person squats once; a person squats down")
    assert table.text[2] == "a person waves the right hand; a person waves the right hand"
    assert list(table.frame_start) == [0, 0, 0] and table.frame_stop[0] == len(hdm05["lieDownFloor"][0])
    windows = caption_clips(ps, window=60)
    assert len(windows) > len(table)
    first = windows.clip == table.clip[0]
    assert windows.frame_start[first][0] == 0 and windows.frame_stop[first][-1] == table.frame_stop[0]
    assert np.all(windows.frame_stop[first][:-1] == windows.frame_start[first][1:])
    # rows in another order give the same captions (clips are put in frame order first)
    shuffled = ps.subset(np.random.default_rng(0).permutation(len(ps)))
    assert set(caption_clips(shuffled).text) == set(table.text)
    with pytest.raises(PoseCuratorError):
        caption_clips(ps, window=1)


def test_caption_table_json_round_trip(tmp_path, hdm05):
    table = caption_clips(hdm05["hopBothLegs1hops"][0], window=10)
    path = table.to_json(tmp_path / "out" / "captions.json")
    back = CaptionTable.from_json(path)
    for name in ("sample_id", "text", "source", "clip", "frame_start", "frame_stop"):
        assert np.array_equal(getattr(back, name), getattr(table, name)), name
    assert sorted(p.name for p in path.parent.iterdir()) == ["captions.json"]  # no temporary file left
    doc = json.loads(path.read_text())
    assert doc["format"] == "posecurator-captions" and isinstance(doc["text"][0], str)
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(DataError):
        CaptionTable.from_json(tmp_path / "bad.json")


def test_summary(hdm05):
    ps = hdm05["squat1Reps"][0]
    summary = describe_dataset(ps, per="clip")
    assert summary["captions"] == 1 and summary["sources"] == {"labels+describer": 1}
    assert {"phrase": "squats once", "count": 1} in summary["top_phrases"]
    per_pose = caption_summary(caption_samples(ps))
    assert per_pose["sources"] == {"describer": len(ps)} and len(per_pose["top_phrases"]) <= 20
    with pytest.raises(PoseCuratorError):
        describe_dataset(ps, per="clip", captions_file="x.json")


# ---------------------------------------------------------------------- the command
def test_describe_command(tmp_path, shared_data, capsys):
    from posecurator.cli.main import main

    amc = shared_data / "hdm05" / "amc" / "HDM_bd_squat1Reps_001_120.amc.gz"
    out = tmp_path / "out"
    assert main(["describe", str(amc), "-o", str(out), "-q"]) == 0
    table = CaptionTable.from_json(out / "captions.json")
    assert list(table.text) == ["a person squats once; a person squats down then stands up"]
    assert json.loads((out / "summary.json").read_text())["sources"] == {"labels+describer": 1}
    assert "squats once" in capsys.readouterr().out
    captions = tmp_path / "c.csv"
    captions.write_text("sample_id,text\n0,a person stands before squatting\n")
    assert main(["describe", str(amc), "-o", str(out / "s"), "--captions", str(captions), "-q"]) == 0
    table = CaptionTable.from_json(out / "s" / "captions.json")
    assert table.source[0] == "user" and set(table.source[1:]) == {"describer"}
    capsys.readouterr()
    coco = shared_data / "coco" / "person_keypoints_val2017_subset2213.json"
    if coco.exists():
        assert main(["describe", str(coco), "-o", str(tmp_path / "c"), "-q"]) == 2
        err = capsys.readouterr().err
        assert "describing needs 3D" in err and len(err.strip().splitlines()) == 1
    assert main(["describe", str(amc), "-o", str(tmp_path / "w"), "--per", "sample", "--window", "30", "-q"]) == 2


@pytest.mark.slow
def test_all_bandai_clips_are_captioned_quickly(shared_data, tmp_path):
    """3076 clips, ~417k poses: captions per clip and per sample in well under a minute (the
    import itself is excluded)."""
    ps = _import(shared_data / "bandai")
    t0 = time.perf_counter()
    clips = caption_clips(ps)
    samples = caption_samples(ps)
    elapsed = time.perf_counter() - t0
    assert len(clips) == len(np.unique(ps.clip)) and len(samples) == len(ps)
    assert set(clips.source) == {"labels+describer"} and all(t.strip() for t in clips.text)
    assert elapsed < 60, elapsed
