"""The non-mocap readers and writers: COCO keypoints, DeepMimic motions, VideoPose3D and mmpose
Human3.6M npz files. Everything runs on real data: COCO annotations and HDM05 mocap from
../shared/data (skipped when absent) and the DeepMimic reference motions pybullet ships."""

from __future__ import annotations

import importlib.util
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from posecurator.camera import evaluation_rig
from posecurator.errors import DataError
from posecurator.io import coco, deepmimic, h36m_npz
from posecurator.poseset import PoseSet
from posecurator.skeleton import COCO17, H36M17

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
COCO_DIR = DATA / "coco"
HDM05_DIR = DATA / "hdm05"
COCO_VAL = COCO_DIR / "person_keypoints_val2017_subset2213.json"


def needs(path: Path):
    return pytest.mark.skipif(not path.exists(), reason=f"real data {path} is absent (../shared/data)")


# ====================================================================== COCO
@needs(COCO_VAL)
def test_coco_reads_real_annotations():
    ps = coco.read_coco(COCO_VAL)
    # SOURCE.txt: 1,354 annotations with >= 1 labelled keypoint, 14,697 keypoints
    assert len(ps) == 1354 and ps.attrs["dropped_few_keypoints"] == 2213 - 1354
    assert int(ps.visibility.sum()) == 14697
    assert ps.layout == COCO17.name and ps.joints3d is None and ps.joints2d.shape == (1354, 17, 2)
    labelled = ps.visibility > 0
    assert np.isnan(ps.joints2d[~labelled]).all() and np.isfinite(ps.joints2d[labelled]).all()
    raw = coco.read_coco_arrays(COCO_VAL)
    keep = raw["num_keypoints"] >= 1
    w, h = raw["image_width"][keep], raw["image_height"][keep]
    x, y = ps.joints2d[..., 0], ps.joints2d[..., 1]
    assert ((x[labelled] >= 0) & (x[labelled] <= np.repeat(w, 17).reshape(-1, 17)[labelled])).all()
    assert ((y[labelled] >= 0) & (y[labelled] <= np.repeat(h, 17).reshape(-1, 17)[labelled])).all()
    # the first annotation of the file, as printed by json (image 397133, annotation 200887)
    i = int(np.flatnonzero(ps.clip == "img397133_ann200887")[0])
    assert ps.subject[i] == "397133" and ps.joints2d[i, 0].tolist() == [433.0, 94.0] and ps.visibility[i, 2] == 0
    # v = 1 (labelled, occluded) counts as labelled
    occluded = raw["keypoints"][keep][..., 2] == 1
    assert occluded.any() and (ps.visibility[occluded] == 1).all()
    ps.check_finite(COCO_VAL)


@needs(COCO_DIR)
def test_coco_min_keypoints_and_both_files():
    for path in sorted(COCO_DIR.glob("*.json")):
        everything = coco.read_coco_arrays(path)
        ps = coco.read_coco(path, min_keypoints=10)
        assert len(ps) == np.count_nonzero(everything["num_keypoints"] >= 10)
        assert ps.attrs["dropped_few_keypoints"] == len(everything["num_keypoints"]) - len(ps)
        assert (ps.visibility.sum(axis=1) >= 10).all()
        assert len(np.unique(ps.clip)) == len(ps)


@needs(COCO_VAL)
def test_coco_bad_files_raise_data_error(tmp_path):
    text = COCO_VAL.read_text()
    truncated = tmp_path / "truncated.json"
    truncated.write_text(text[: len(text) // 2])
    with pytest.raises(DataError, match="truncated.json.*JSON"):
        coco.read_coco(truncated)
    data = json.loads(text)
    no_images = tmp_path / "no_images.json"
    no_images.write_text(json.dumps({"annotations": data["annotations"][:5]}))
    with pytest.raises(DataError, match="no_images.json"):
        coco.read_coco(no_images)
    data["annotations"][3]["keypoints"] = data["annotations"][3]["keypoints"][:-3]
    short = tmp_path / "short.json"
    short.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"short.json: annotation \d+: keypoints must be 51"):
        coco.read_coco(short)


# ====================================================================== DeepMimic
def _pybullet_env_file(name: str) -> Path | None:
    spec = importlib.util.find_spec("pybullet_envs")  # locating it does not import it (it needs gym)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "deep_mimic" / "env" / name
    return path if path.is_file() else None


def test_deepmimic_column_order_and_scale_match_pybullet_source():
    interp = _pybullet_env_file("humanoid_pose_interpolator.py")
    stable = _pybullet_env_file("humanoid_stable_pd.py")
    if interp is None or stable is None:
        pytest.skip("pybullet_envs' DeepMimic sources are not installed")
    text = interp.read_text()
    columns = {}
    for name, indices in re.findall(r"(\w+)RotStart = \[((?:frameData\[\d+\](?:, )?)+)\]", text):
        idx = [int(i) for i in re.findall(r"\d+", indices)]
        snake = re.sub(r"([A-Z])", r"_\1", name).lower()
        # pybullet reorders (w, x, y, z) into (x, y, z, w): the first column is the last it lists
        columns[snake] = (idx[-1], len(idx)) if len(idx) == 4 else (idx[0], 1)
    assert columns == {name: (start, width) for name, start, width in deepmimic.MOTION_COLUMNS}
    assert re.search(r"globalScaling\s*=\s*([\d.]+)", stable.read_text()).group(1) == str(deepmimic.URDF_GLOBAL_SCALING)


def test_deepmimic_forward_kinematics_matches_pybullet():
    """pybullet's own forward kinematics is the per-pose reference of the batched one."""
    pb = pytest.importorskip("pybullet")
    model = deepmimic.load_humanoid()
    client = pb.connect(pb.DIRECT)
    try:
        body = pb.loadURDF(str(deepmimic.humanoid_urdf_path()), [0, 0, 0], globalScaling=deepmimic.URDF_GLOBAL_SCALING,
                           useFixedBase=True, flags=pb.URDF_MAINTAIN_LINK_ORDER, physicsClientId=client)
        index = {pb.getJointInfo(body, j, physicsClientId=client)[12].decode(): j
                 for j in range(pb.getNumJoints(body, physicsClientId=client))}
        assert set(index) == set(model.links) - {"base"}
        for clip in ("humanoid3d_walk.txt", "humanoid3d_backflip.txt", "humanoid3d_cartwheel.txt"):
            frames = np.array(json.loads((deepmimic.demo_clips()[0].parent / clip).read_text())["Frames"])
            positions, rotations = deepmimic.link_transforms(frames, model)
            for f in range(0, len(frames), 7):
                row = frames[f]
                xyzw = lambda q: [q[1], q[2], q[3], q[0]]  # noqa: E731
                pb.resetBasePositionAndOrientation(body, row[1:4].tolist(), xyzw(row[4:8]), physicsClientId=client)
                for name, start, width in deepmimic.MOTION_COLUMNS:
                    value = xyzw(row[start:start + 4]) if width == 4 else [row[start]]
                    pb.resetJointStateMultiDof(body, index[name], value, physicsClientId=client)
                for name, j in index.items():
                    state = pb.getLinkState(body, j, computeForwardKinematics=True, physicsClientId=client)
                    k = model.index(name)
                    np.testing.assert_allclose(positions[f, k], state[4], atol=1e-5)
                    np.testing.assert_allclose(rotations[f, k], np.array(pb.getMatrixFromQuaternion(state[5])).reshape(3, 3), atol=1e-5)
    finally:
        pb.disconnect(client)


def test_slerp_matches_scipy_per_pair():
    from scipy.spatial.transform import Rotation, Slerp

    frames = np.array(json.loads((deepmimic.demo_clips()[0].parent / "humanoid3d_spinkick.txt").read_text())["Frames"])
    q0, q1 = frames[:-1, 4:8], frames[1:, 4:8]
    t = np.linspace(0, 1, len(q0))
    ours = deepmimic.quaternion_to_matrix(deepmimic.slerp(q0, q1, t))
    for i in range(len(q0)):
        pair = Rotation.from_quat(np.stack([q0[i], q1[i]])[:, [1, 2, 3, 0]])
        np.testing.assert_allclose(ours[i], Slerp([0, 1], pair)(t[i]).as_matrix(), atol=1e-9)


def test_deepmimic_clips_are_plausible_people():
    clips = deepmimic.demo_clips()
    assert len(clips) >= 10 and all(p.name.startswith("humanoid3d_") for p in clips)
    bones = H36M17.bones
    for path in clips:
        ps = deepmimic.read_deepmimic(path, fps=30.0)
        frames = np.array(json.loads(path.read_text())["Frames"])
        assert len(ps) == int(np.floor(frames[:-1, 0].sum() * 30 + 1e-6)) + 1
        assert ps.activity[0] == path.stem.removeprefix("humanoid3d_") and ps.clip[0] == f"deepmimic/{ps.activity[0]}"
        assert ps.layout == H36M17.name and ps.fps == 30.0 and (ps.frame == np.arange(len(ps))).all()
        j = ps.joints3d.astype(np.float64)
        lengths = np.linalg.norm(j[:, bones[:, 1]] - j[:, bones[:, 0]], axis=-1)
        np.testing.assert_allclose(lengths, np.broadcast_to(lengths[0], lengths.shape), atol=0.05)  # rigid bones, mm
        # feet reach DeepMimic's ground (floor Z = 0): lowest ankle a few cm above it, sole at most a little below
        assert 0 < j[:, [3, 6], 2].min() < 120, path.name
        assert -100 < ps.attrs["lowest_sole_mm"] < 20, path.name
    walk = deepmimic.read_deepmimic(clips[0].parent / "humanoid3d_walk.txt").joints3d
    assert 1400 < np.median(walk[:, 10, 2]) < 2000  # standing height: head top above the floor
    assert (walk[:, 10, 2] > walk[:, 0, 2] + 400).all() and (walk[:, 9, 2] > walk[:, 8, 2]).all()
    forward = walk[-1, 0] - walk[0, 0]
    left = walk[:, 4] - walk[:, 1]  # right hip -> left hip
    # walks along +X; Z up with a proper rotation puts the left side at +Y when facing +X
    assert forward[0] > 500 and (left[:, 1] > 0).mean() > 0.9


def test_deepmimic_resampling_hits_key_frames():
    path = deepmimic.demo_clips()[0].parent / "humanoid3d_walk.txt"
    frames = np.array(json.loads(path.read_text())["Frames"])
    duration = frames[0, 0]
    at_keys = deepmimic.resample_motion(frames, 1.0 / duration)
    keys = frames[: len(at_keys)]
    assert len(at_keys) in (len(frames), len(frames) - 1)
    linear = [1, 2, 3] + [start for _, start, width in deepmimic.MOTION_COLUMNS if width == 1]
    np.testing.assert_allclose(at_keys[:, linear], keys[:, linear], atol=1e-6)
    for start in [4] + [start for _, start, width in deepmimic.MOTION_COLUMNS if width == 4]:
        q, k = at_keys[:, start:start + 4], keys[:, start:start + 4]
        cos = np.abs(np.sum(q * k, axis=1)) / np.linalg.norm(k, axis=1)  # q and -q are one rotation
        np.testing.assert_allclose(cos, 1.0, atol=1e-6)
    halves = deepmimic.resample_motion(frames, 2.0 / duration)
    np.testing.assert_allclose(halves[1, 1:4], (frames[0, 1:4] + frames[1, 1:4]) / 2, atol=1e-9)


def test_deepmimic_bad_files_raise_data_error(tmp_path):
    text = (deepmimic.demo_clips()[0].parent / "humanoid3d_run.txt").read_text()
    truncated = tmp_path / "humanoid3d_cut.txt"
    truncated.write_text(text[: len(text) // 2])
    with pytest.raises(DataError, match="humanoid3d_cut.txt:\\d+: corrupt or truncated JSON"):
        deepmimic.read_deepmimic(truncated)
    data = json.loads(text)
    data["Frames"][5] = data["Frames"][5][:-1]
    short = tmp_path / "humanoid3d_short.txt"
    short.write_text(json.dumps(data))
    with pytest.raises(DataError, match="frame 5 has 43 numbers"):
        deepmimic.read_deepmimic(short)


# ====================================================================== Human3.6M npz
@pytest.fixture(scope="module", params=["deepmimic", "hdm05"])
def mocap(request) -> PoseSet:
    """Real mocap in the target layout: three DeepMimic clips, or one HDM05 clip of each actor."""
    if request.param == "deepmimic":
        parts = [deepmimic.read_deepmimic(p) for p in deepmimic.demo_clips()[:3]]
    else:
        if not HDM05_DIR.is_dir():
            pytest.skip("real data ../shared/data/hdm05 is absent")
        from posecurator.io import import_path

        amc = [sorted((HDM05_DIR / "amc").glob(f"HDM_{actor}_hopBothLegs1hops_*"))[0] for actor in ("bd", "bk", "dg")]
        parts = [import_path(p, progress=False) for p in amc]
    ps = PoseSet.concatenate(parts, renumber=True)
    assert len(np.unique(ps.clip)) == 3
    return ps


def _assert_same_poses(read: PoseSet, ps: PoseSet, atol: float = 0.01):
    assert len(read) == len(ps)
    np.testing.assert_allclose(read.joints3d, ps.joints3d, atol=atol)
    for name in ("subject", "activity", "clip", "source", "frame"):
        assert (getattr(read, name) == getattr(ps, name)).all(), name
    assert read.fps == ps.fps and read.layout == H36M17.name


def test_videopose3d_round_trip(mocap, tmp_path):
    path = h36m_npz.write_videopose3d_npz(mocap, tmp_path / "data_3d_custom.npz")
    _assert_same_poses(h36m_npz.read_videopose3d_npz(path), mocap)
    headers = h36m_npz.npz_headers(path)
    # VideoPose3D's own keys are there (as the pickled dicts it reads) beside the pickle-free ones
    assert all(headers[k][1].hasobject for k in h36m_npz.VP3D_PICKLED_KEYS)
    assert headers["positions_3d.00000"][1] == np.float32 and not headers["metadata_json"][1].hasobject

    views = h36m_npz.read_videopose3d_npz(path, views=True)
    assert len(views) == 4 * len(mocap) and len(views.cameras) == 4 * 3
    for clip in np.unique(mocap.clip):
        poses = mocap.joints3d[mocap.clip == clip]
        rig = evaluation_rig(poses[:, 0].mean(axis=0))
        rows = views.clip == clip
        for c, cam in enumerate(rig):
            mine = rows & (views.camera == views.camera[rows].min() + c)
            np.testing.assert_allclose(views.joints2d[mine], cam.project(poses), atol=1e-3)
            assert views.cameras[views.camera[mine][0]]["name"] == cam.name
    # the views themselves round-trip too (rows that already are views keep their cameras and 2D)
    again = h36m_npz.read_videopose3d_npz(h36m_npz.write_videopose3d_npz(views, tmp_path / "views.npz"), views=True)
    np.testing.assert_allclose(again.joints2d, views.joints2d, atol=1e-3)
    np.testing.assert_allclose(again.joints3d, views.joints3d, atol=0.01)


def test_videopose3d_32_joints_and_pickle_free_option(mocap, tmp_path):
    ps = mocap.subset(mocap.clip == mocap.clip[0])
    path = h36m_npz.write_videopose3d_npz(ps, tmp_path / "a.npz", n_joints=32, pickled_dicts=False)
    headers = h36m_npz.npz_headers(path)
    assert headers["positions_3d.00000"][0] == (len(ps), 32, 3)
    assert not any(dtype.hasobject for _, dtype in headers.values())
    _assert_same_poses(h36m_npz.read_videopose3d_npz(path), ps)


def test_videopose3d_from_dicts_as_videopose3d_holds_them(mocap):
    """What a user passes after loading an original file themselves: 32 joints in metres."""
    ps = mocap.subset(mocap.clip == mocap.clip[0])
    pos = np.zeros((len(ps), 32, 3), dtype=np.float32)
    pos[:, h36m_npz.H36M32_KEPT] = ps.joints3d / 1000
    rig = evaluation_rig(ps.joints3d[:, 0].mean(axis=0))
    pos2d = [cam.project(ps.joints3d).astype(np.float32) for cam in rig]
    pos2d = [np.concatenate([p, p[:3]]) for p in pos2d]  # 2D longer than the 3D gets trimmed
    out = h36m_npz.videopose3d_from_dicts({"S9": {"Walking 1": pos}}, {"S9": {"Walking 1": pos2d}},
                                          {"layout_name": "h36m", "num_joints": 17}, fps=ps.fps)
    np.testing.assert_allclose(out.joints3d, ps.joints3d, atol=0.01)
    assert set(out.activity) == {"Walking"} and set(out.clip) == {"S9/Walking 1"} and set(out.subject) == {"S9"}
    views = h36m_npz.videopose3d_from_dicts({"S9": {"Walking 1": pos}}, {"S9": {"Walking 1": pos2d}}, views=True)
    assert len(views) == 4 * len(ps) and views.camera.max() == -1
    np.testing.assert_allclose(views.joints2d[views.clip == "S9/Walking 1/cam2"], pos2d[2][: len(ps)], atol=1e-3)
    coco_2d = h36m_npz.videopose3d_from_dicts(None, {"S9": {"Walking 1": pos2d}}, {"layout_name": "coco"}, views=True)
    assert coco_2d.layout == COCO17.name and coco_2d.joints3d is None


def test_mmpose_round_trip(mocap, tmp_path):
    folder = tmp_path / "annotation_body3d" / "fps30"
    npz, cams = h36m_npz.write_mmpose_h36m_npz(mocap, folder / "h36m_train.npz")
    assert cams == folder / "h36m_train_cameras.json"
    with np.load(npz, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    n = 4 * len(mocap)
    assert sorted(arrays) == sorted(h36m_npz.MMPOSE_KEYS)
    assert arrays["imgname"].dtype.kind == "U" and arrays["imgname"].shape == (n,)
    assert arrays["center"].shape == (n, 2) and arrays["scale"].shape == (n,)
    assert arrays["part"].shape == (n, 17, 3) and arrays["S"].shape == (n, 17, 4)
    assert all(a.dtype == np.float64 for k, a in arrays.items() if k != "imgname")
    assert (arrays["part"][..., 2] == 1).all() and (arrays["S"][..., 3] == 1).all()
    # mmpose's own imgname parsing (Body3DH36MDataset._parse_h36m_imgname) works on our names
    camera_params = json.loads(cams.read_text())["cameras"]
    for name in arrays["imgname"][:: max(1, n // 50)]:
        subj, rest = Path(str(name)).name.split("_", 1)
        action, rest = rest.split(".", 1)
        camera, rest = rest.split("_", 1)
        assert f"{subj},{camera}" in camera_params and rest.endswith(".jpg") and action
    # S is in the camera frame, metres: depth about 5 m from the evaluation rig
    assert 3.0 < np.median(arrays["S"][..., 2]) < 7.0
    lo, hi = arrays["part"][..., :2].min(axis=1), arrays["part"][..., :2].max(axis=1)
    np.testing.assert_allclose(arrays["center"], (lo + hi) / 2)
    np.testing.assert_allclose(arrays["scale"], 1.2 * (hi - lo).max(axis=1) / 200)

    _assert_same_poses(h36m_npz.read_mmpose_h36m_npz(npz), mocap, atol=1e-6)
    views = h36m_npz.read_mmpose_h36m_npz(npz, views=True)
    assert len(views) == n and len(views.cameras) == 12
    vp3d = h36m_npz.read_videopose3d_npz(h36m_npz.write_videopose3d_npz(mocap, tmp_path / "v.npz"), views=True)
    np.testing.assert_allclose(views.joints2d, vp3d.joints2d, atol=1e-3)  # same rig, same row order
    _assert_same_poses(h36m_npz.read_h36m_npz_auto(npz), mocap, atol=1e-6)
    _assert_same_poses(h36m_npz.read_h36m_npz_auto(tmp_path / "v.npz"), mocap)


def test_mmpose_without_json_cameras(mocap, tmp_path):
    ps = mocap.subset(mocap.clip == mocap.clip[0])
    npz, cams = h36m_npz.write_mmpose_h36m_npz(ps, tmp_path / "h36m_test.npz")
    moved = tmp_path / "elsewhere.json"
    cams.rename(moved)
    (tmp_path / "cameras.pkl").write_bytes(b"not read")
    with pytest.raises(DataError, match="h36m_test.npz: no camera file.*cameras.pkl is a pickle"):
        h36m_npz.read_mmpose_h36m_npz(npz)
    _assert_same_poses(h36m_npz.read_mmpose_h36m_npz(npz, cameras=moved), ps, atol=1e-6)
    # a converted mmpose cameras.pkl: plain "<subject>,<camera>" keys, no posecurator header.
    # Without the header's sequence table, names come from the imgnames, frames count at 50 fps.
    plain = tmp_path / "cameras.json"
    plain.write_text(json.dumps(json.loads(moved.read_text())["cameras"]))
    read = h36m_npz.read_mmpose_h36m_npz(npz, cameras=plain, fps=50.0)
    np.testing.assert_allclose(read.joints3d, ps.joints3d, atol=1e-6)
    assert read.fps == 50.0 and read.activity[0] == h36m_npz._token(ps.activity[0], "clip")


def test_npz_bad_files_raise_data_error(mocap, tmp_path):
    ps = mocap.subset(mocap.clip == mocap.clip[0])
    good = h36m_npz.write_videopose3d_npz(ps, tmp_path / "good.npz")
    raw = good.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(raw[: len(raw) // 2])
    for reader in (h36m_npz.read_videopose3d_npz, h36m_npz.read_mmpose_h36m_npz, h36m_npz.read_h36m_npz_auto):
        with pytest.raises(DataError, match="truncated.npz"):
            reader(truncated)
    # an original VideoPose3D file: pickled dicts only
    original = tmp_path / "data_3d_h36m.npz"
    positions = np.empty((), dtype=object)
    positions[()] = {"S1": {"Walking": (ps.joints3d / 1000).astype(np.float32)}}
    np.savez_compressed(original, positions_3d=positions)
    with pytest.raises(DataError, match="data_3d_h36m.npz: holds pickled .*videopose3d_from_dicts"):
        h36m_npz.read_h36m_npz_auto(original)
    # a newer version of our layout, and layouts nobody knows
    meta = json.loads(str(np.load(good, allow_pickle=False)["metadata_json"]))
    for name, change in (("newer.npz", {"version": 99}), ("other.npz", {"format": "someone-else"})):
        with np.load(good, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if not k.startswith(("positions_3d", "positions_2d", "metadata"))}
            arrays["positions_3d.00000"] = z["positions_3d.00000"]
        arrays["metadata_json"] = np.array(json.dumps({**meta, **change}))
        np.savez(tmp_path / name, **arrays)
    with pytest.raises(DataError, match="newer.npz: posecurator-videopose3d version 99 is newer"):
        h36m_npz.read_videopose3d_npz(tmp_path / "newer.npz")
    with pytest.raises(DataError, match="other.npz: unknown layout 'someone-else'"):
        h36m_npz.read_h36m_npz_auto(tmp_path / "other.npz")
    np.savez(tmp_path / "unknown.npz", poses=ps.joints3d)
    with pytest.raises(DataError, match="unknown.npz: unknown npz layout"):
        h36m_npz.read_h36m_npz_auto(tmp_path / "unknown.npz")
    # nothing half-written: a failing write leaves no file behind
    with pytest.raises(ValueError):
        h36m_npz.write_videopose3d_npz(ps.replace(layout="coco17"), tmp_path / "never.npz")
    with pytest.raises(ValueError):
        h36m_npz.write_mmpose_h36m_npz(ps, tmp_path / "never2.npz", cameras=[])
    assert not list(tmp_path.glob("never*")) and not list(tmp_path.glob(".*tmp"))
    with zipfile.ZipFile(good) as zf:
        assert zf.testzip() is None
