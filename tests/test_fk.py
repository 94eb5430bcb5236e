"""Forward kinematics and joint mappings on every real source in ../shared/data.

For a few clips of each source (HDM05 per actor, CMU ASF 01 and 11, CMU BVH 01_01 and 131,
Bandai dataset-1 and -2, ReActIdle acted and genuine): limb bones keep their length, the body
stands upright with a human height, the feet touch the floor, left and right are not swapped, and
the vectorised forward kinematics agrees with the plain per-frame reference.
"""

from __future__ import annotations

import numpy as np
import pytest

from posecurator.io.asf_amc import amc_forward, amc_positions, amc_positions_reference, load_amc, read_amc
from posecurator.io.bvh import bvh_forward, bvh_positions, bvh_positions_reference, load_bvh, read_bvh
from posecurator.io.common import euler_to_matrix, euler_to_matrix_reference, forward_kinematics, \
    forward_kinematics_reference
from posecurator.skeleton import H36M17
from posecurator.skeleton.mapping import builtin_mappings, detect_mapping

# (id, relative path or glob (first match), reader, expected built-in mapping, expected unit, (left toe, right toe))
CLIPS = [
    ("hdm05-bd", "hdm05/amc/HDM_bd_squat1Reps_*.amc.gz", "amc", "asf-cmu", "asf", ("ltoes", "rtoes")),
    ("hdm05-bk", "hdm05/amc/HDM_bk_squat1Reps_*.amc.gz", "amc", "asf-cmu", "asf", ("ltoes", "rtoes")),
    ("hdm05-dg", "hdm05/amc/HDM_dg_squat1Reps_*.amc.gz", "amc", "asf-cmu", "asf", ("ltoes", "rtoes")),
    ("cmu-asf-01", "cmu/01_01.amc", "amc", "asf-cmu", "asf", ("ltoes", "rtoes")),
    ("cmu-asf-11", "cmu/11_01.amc", "amc", "asf-cmu", "asf", ("ltoes", "rtoes")),
    ("cmu-bvh-01", "cmu/01_01.bvh", "bvh", "cmu-bvh", "asf", ("LeftToeBase", "RightToeBase")),
    ("cmu-bvh-131", "cmu/bvh11_131_01.bvh", "bvh", "cmu-bvh-cgspeed", "asf", ("LeftToe", "RightToe")),
    ("bandai-1", "bandai/dataset-1/data/dataset-1_bow_active_001.bvh.gz", "bvh", "bandai", "cm", ("Toes_L", "Toes_R")),
    ("bandai-2", "bandai/dataset-2/data/dataset-2_walk_normal_001.bvh.gz", "bvh", "bandai", "cm", ("Toes_L", "Toes_R")),
    ("reactidle-acted", "reactidle/acted/001_acted.bvh.gz", "bvh", "reactidle", "m", ("foot.L_end", "foot.R_end")),
    ("reactidle-genuine", "reactidle/genuine/010_genuine.bvh.gz", "bvh", "reactidle", "m", ("foot.L_end", "foot.R_end")),
]
LIMB_BONES = [("right_hip", "right_knee"), ("right_knee", "right_ankle"), ("left_hip", "left_knee"),
              ("left_knee", "left_ankle"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
              ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"), ("pelvis", "right_hip"),
              ("pelvis", "left_hip")]
J = {name: i for i, name in enumerate(H36M17.joints)}


def _read(path, reader, **kwargs):
    return (read_amc if reader == "amc" else read_bvh)(path, **kwargs)


@pytest.fixture(scope="module", params=CLIPS, ids=[c[0] for c in CLIPS])
def clip(request, shared_data):
    cid, rel, reader, mapping_name, unit, toes = request.param
    matches = sorted(shared_data.glob(rel))
    if not matches:
        pytest.skip(f"{shared_data / rel} is absent")
    path = matches[0]
    ps = _read(path, reader)
    return {"id": cid, "path": path, "reader": reader, "ps": ps, "mapping": mapping_name, "unit": unit, "toes": toes}


def test_detects_builtin_mapping_and_units(clip):
    assert clip["ps"].attrs["mapping"] == clip["mapping"]
    assert clip["ps"].attrs["units"] == clip["unit"]
    assert clip["ps"].attrs["up"] == "+y"
    assert clip["ps"].fps in (24.0, 30.0)


def test_limb_bones_are_rigid(clip):
    x = clip["ps"].joints3d.astype(np.float64)
    for a, b in LIMB_BONES:
        length = np.linalg.norm(x[:, J[a]] - x[:, J[b]], axis=-1)
        assert length.mean() > 40.0, f"{clip['id']}: bone {a}-{b} is {length.mean():.1f} mm"
        assert length.std() / length.mean() < 0.01, f"{clip['id']}: bone {a}-{b} varies {length.std():.2f} mm"


def test_standing_upright_with_human_height(clip):
    ps = clip["ps"]
    first = ps.joints3d[:5].astype(np.float64)
    assert (first[:, J["head"], 2] > first[:, J["pelvis"], 2] + 300).all()
    assert (first[:, J["thorax"], 2] > first[:, J["spine"], 2]).all()
    assert (first[:, J["spine"], 2] > first[:, J["pelvis"], 2]).all()
    assert 1.4 <= ps.attrs["standing_height_m"] <= 2.0
    assert 1300 <= first[0, J["head"], 2] <= 2000
    # every mapped bone has a human length (catches a wrong unit or a wrong joint)
    bones = np.linalg.norm(first[0, H36M17.bones[:, 1]] - first[0, H36M17.bones[:, 0]], axis=-1)
    assert (bones > 40).all() and (bones < 600).all(), bones


def test_feet_on_the_floor(clip):
    z = clip["ps"].joints3d[..., 2]
    ankles = z[:, [J["left_ankle"], J["right_ankle"]]].min(axis=1)
    assert 0.0 <= ankles.min() <= 250.0
    assert np.percentile(z.min(axis=1), 2) > -60.0  # the floor: nothing of the 17 joints far below it


def test_left_and_right_not_swapped(clip):
    """The toes point forward; the body's left (up x forward) must be where its left joints are."""
    ps = clip["ps"]
    spec = builtin_mappings()[clip["mapping"]].to_dict()
    left_toe, right_toe = clip["toes"]
    spec["joints"]["left_ankle"], spec["joints"]["right_ankle"] = left_toe, right_toe
    toes = _read(clip["path"], clip["reader"], mapping=spec, units=ps.attrs["metres_per_unit"], up=ps.attrs["up"])
    n = min(10, len(ps))
    foot = (toes.joints3d[:n] - ps.joints3d[:n])[:, [J["left_ankle"], J["right_ankle"]]].astype(np.float64)
    forward = foot.mean(axis=(0, 1))
    forward[2] = 0.0
    forward /= np.linalg.norm(forward)
    left = np.cross([0.0, 0.0, 1.0], forward)
    x = ps.joints3d[:n].astype(np.float64)
    for lj, rj in (("left_hip", "right_hip"), ("left_shoulder", "right_shoulder"), ("left_knee", "right_knee")):
        across = (x[:, J[lj]] - x[:, J[rj]]).mean(axis=0)
        across[2] = 0.0
        cos = across @ left / np.linalg.norm(across)
        assert cos > 0.5, f"{clip['id']}: {lj} is not on the body's left (cos {cos:.2f})"


def test_head_top_turns_with_the_head(clip):
    """The head is above the neck joint and at a head-like distance from it."""
    x = clip["ps"].joints3d[:5].astype(np.float64)
    neck_head = np.linalg.norm(x[:, J["head"]] - x[:, J["neck"]], axis=-1)
    assert ((neck_head > 60) & (neck_head < 200)).all(), neck_head
    assert (x[:, J["head"], 2] > x[:, J["neck"], 2]).all()


# ---------------------------------------------------------------------- vectorised vs reference
def test_euler_matrices_agree_with_reference():
    rng = np.random.default_rng(0)
    angles = rng.uniform(-180, 180, size=(20, 3))
    for order in ("XYZ", "ZXY", "ZYX", "YXZ", "XY", "Z"):
        vec = euler_to_matrix(angles[:, : len(order)], order)
        ref = np.stack([euler_to_matrix_reference(a[: len(order)], order) for a in angles])
        np.testing.assert_allclose(vec, ref, atol=1e-12)


@pytest.mark.parametrize("rel", ["bandai/dataset-1/data/dataset-1_bow_active_001.bvh.gz", "cmu/bvh11_131_01.bvh",
                                 "reactidle/genuine/010_genuine.bvh.gz"])
def test_bvh_fk_matches_per_frame_reference(shared_data, rel):
    path = shared_data / rel
    if not path.exists():
        pytest.skip(f"{path} is absent")
    data = load_bvh(path)
    motion = data.motion[:40]
    np.testing.assert_allclose(bvh_positions(data.skeleton, motion), bvh_positions_reference(data.skeleton, motion),
                               atol=1e-9)


def test_amc_fk_matches_per_frame_reference(shared_data):
    matches = sorted((shared_data / "hdm05" / "amc").glob("HDM_dg_kickLFront1Reps_*.amc.gz"))
    if not matches:
        pytest.skip("HDM05 actor dg is absent")
    path = matches[0]
    data = load_amc(path)
    vec = amc_positions(data)[:30]
    short = type(data)(skeleton=data.skeleton, values=[v[:30] for v in data.values], degrees=data.degrees, n_frames=30)
    np.testing.assert_allclose(vec, amc_positions_reference(short), atol=1e-9)


def test_generic_fk_matches_reference(shared_data):
    path = shared_data / "cmu" / "bvh11_131_02.bvh"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    from posecurator.io.bvh import bvh_local_transforms
    data = load_bvh(path)
    rot, trans = bvh_local_transforms(data.skeleton, data.motion[:25])
    pos, _ = forward_kinematics(data.skeleton.parents, rot, trans)
    np.testing.assert_allclose(pos, forward_kinematics_reference(data.skeleton.parents, rot, trans), atol=1e-9)


def test_mapping_apply_matches_reference(shared_data):
    """The weight-matrix mapping (with a virtual head point) agrees with a per-frame loop."""
    path = shared_data / "bandai" / "dataset-2" / "data" / "dataset-2_walk_normal_001.bvh.gz"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    data = load_bvh(path)
    pos, rot = bvh_forward(data.skeleton, data.motion[:30])
    mapping = detect_mapping(data.skeleton.names)
    np.testing.assert_allclose(mapping.apply(pos, data.skeleton.names, rotations=rot),
                               mapping.apply_reference(pos, data.skeleton.names, rotations=rot), atol=1e-9)


def test_amc_and_its_bvh_conversion_agree(shared_data):
    """CMU 01_01.bvh is a BVH conversion of 01_01.amc (plus a leading rest frame; the conversion
    drops the ASF thorax bone). Legs and lower spine relative to the root must agree exactly,
    which pins down the ASF rotation conventions (C M C^-1, dof and root orders)."""
    amc_path, bvh_path = shared_data / "cmu" / "01_01.amc", shared_data / "cmu" / "01_01.bvh"
    if not (amc_path.exists() and bvh_path.exists()):
        pytest.skip("CMU 01_01 is absent")
    amc, bvh = load_amc(amc_path), load_bvh(bvh_path)
    pairs = {"ltibia": "LeftFoot", "rtibia": "RightFoot", "lfemur": "LeftLeg", "rfemur": "RightLeg",
             "ltoes": "LeftToeBase_end", "lowerback": "Spine", "upperback": "Spine1"}
    a = amc_positions(amc)[::7]
    b = bvh_positions(bvh.skeleton, bvh.motion[1:])[::7]
    ia = [amc.skeleton.names.index(k) for k in pairs]
    ib = [bvh.skeleton.names.index(v) for v in pairs.values()]
    np.testing.assert_allclose(a[:, ia] - a[:, :1], b[:, ib] - b[:, :1], atol=1e-3)
    # and after mapping, the legs of the two imports agree to a few millimetres
    ra, rb = read_amc(amc_path), read_bvh(bvh_path)
    n = min(len(ra), len(rb))
    legs = [J[k] for k in ("right_knee", "right_ankle", "left_knee", "left_ankle")]
    err = np.linalg.norm((ra.joints3d[:n, legs] - ra.joints3d[:n, :1]) - (rb.joints3d[:n, legs] - rb.joints3d[:n, :1]), axis=-1)
    assert np.median(err) < 20.0, np.median(err)


def test_amc_forward_selects_frames_before_work(shared_data):
    path = shared_data / "cmu" / "11_01.amc"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    data = load_amc(path)
    every4, _ = amc_forward(data, frames=slice(None, None, 4))
    np.testing.assert_allclose(every4, amc_positions(data)[::4], atol=1e-12)
