"""The depth-aware bone figures (posecurator.skeleton.bones) on real motion capture."""

import numpy as np
import pytest

from posecurator.skeleton.bones import (bone_asymmetry, bone_asymmetry_reference, bone_length_variation,
                                        bone_length_variation_reference, bone_lengths, mirrored_bone_pairs)
from posecurator.skeleton.layouts import H36M17


@pytest.fixture(scope="module")
def hdm05_clips(shared_data):
    from posecurator.pipelines.splits import load_dataset

    folder = shared_data / "hdm05" / "amc"
    files = sorted(folder.glob("HDM_bd_*"))[:2]
    from posecurator.poseset import PoseSet

    sets = [load_dataset(f, progress=False) for f in files]
    return PoseSet.concatenate(sets, renumber=True)


def test_mirrored_pairs_are_the_six_limb_pairs():
    names = {tuple(sorted((H36M17.joints[H36M17.bones[i][1]], H36M17.joints[H36M17.bones[j][1]])))
             for i, j in mirrored_bone_pairs(H36M17)}
    assert names == {("left_hip", "right_hip"), ("left_knee", "right_knee"), ("left_ankle", "right_ankle"),
                     ("left_shoulder", "right_shoulder"), ("left_elbow", "right_elbow"), ("left_wrist", "right_wrist")}


def test_batched_figures_agree_with_the_plain_loops(hdm05_clips):
    rng = np.random.default_rng(0)
    joints = hdm05_clips.joints3d[::7].astype(np.float64)
    joints = joints + rng.normal(0, 20, joints.shape)  # depth-like errors: lengths vary
    clips = np.asarray(hdm05_clips.clip)[::7]
    assert bone_length_variation(joints, clips) == pytest.approx(bone_length_variation_reference(joints, clips), rel=1e-9)
    np.testing.assert_allclose(bone_asymmetry(joints), bone_asymmetry_reference(joints), rtol=1e-9)


def test_real_skeletons_are_rigid_and_symmetric_and_errors_show(hdm05_clips):
    joints = hdm05_clips.joints3d.astype(np.float64)
    clips = np.asarray(hdm05_clips.clip)
    assert bone_length_variation(joints, clips) < 0.02  # mocap bones keep their length (to 1 %: the H36M17 spine and head joints are mapped, not rigid bones)
    assert bone_asymmetry(joints).mean() < 0.05
    # push every joint's depth (the camera's view axis, here Y) by noise: what a lifter gets wrong
    noisy = joints.copy()
    noisy[..., 1] += np.random.default_rng(1).normal(0, 60, noisy[..., 1].shape)
    assert bone_length_variation(noisy, clips) > 0.1 and bone_asymmetry(noisy).mean() > 0.1
    # scale-free: a lifter's overall scale does not count
    assert bone_length_variation(noisy * 0.5, clips) == pytest.approx(bone_length_variation(noisy, clips))
    assert bone_asymmetry(noisy * 2.0) == pytest.approx(bone_asymmetry(noisy))


def test_groups_too_small_are_left_out_and_shapes_are_checked(hdm05_clips):
    joints = hdm05_clips.joints3d[:20]
    assert np.isnan(bone_length_variation(joints, np.arange(20)))  # single poses: no variation to see
    with pytest.raises(ValueError):
        bone_length_variation(joints, np.zeros(3))
    with pytest.raises(ValueError):
        bone_lengths(joints[..., :2])
    assert bone_asymmetry(joints[None]).shape == (1, 20)
