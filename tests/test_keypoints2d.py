"""COCO-17 2D keypoints -> the H36M17 target layout (posecurator.skeleton.keypoints2d), every rule
checked on the real COCO annotations of ../shared/data/coco (skipped when absent). The MPII-16
conversion is tested with the MPII reader in tests/test_io_mpii.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from posecurator.io import coco
from posecurator.poseset import PoseSet
from posecurator.skeleton import COCO17, H36M17
from posecurator.skeleton import keypoints2d as kp2d

COCO_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco"
COCO_FILES = sorted(COCO_DIR.glob("person_keypoints_*.json")) if COCO_DIR.is_dir() else []

pytestmark = pytest.mark.skipif(len(COCO_FILES) < 2, reason=f"real COCO annotations {COCO_DIR} are absent (../shared/data)")


@pytest.fixture(scope="module", params=[p.name for p in COCO_FILES] or ["absent"])
def coco_set(request) -> PoseSet:
    """The real COCO train or val subset, in the coco17 layout."""
    return coco.read_coco(COCO_DIR / request.param)


def _h(name: str) -> int:
    return H36M17.index(name)


def _c(name: str) -> int:
    return COCO17.index(name)


def _labelled(ps: PoseSet, name: str) -> np.ndarray:
    return ps.visibility[:, _c(name)] > 0


def _mid(ps: PoseSet, a: str, b: str) -> np.ndarray:
    """Midpoint in float64 of the float32 input, cast like the conversion casts its output."""
    xy = ps.joints2d.astype(np.float64)
    return ((xy[:, _c(a)] + xy[:, _c(b)]) / 2).astype(np.float32)


@pytest.mark.parametrize("head", kp2d.HEAD_OPTIONS)
def test_batched_matches_per_pose_reference(coco_set, head):
    batched = kp2d.coco17_to_h36m17(coco_set.joints2d, coco_set.visibility, head=head)
    reference = kp2d.coco17_to_h36m17_reference(coco_set.joints2d, coco_set.visibility, head=head)
    # the same bits, NaN where not visible included
    np.testing.assert_array_equal(batched[0], reference[0])
    np.testing.assert_array_equal(batched[1], reference[1])
    assert batched[0].dtype == np.float32 and batched[1].dtype == np.float32
    assert batched[0].shape == (len(coco_set), 17, 2) and batched[1].shape == (len(coco_set), 17)
    # any leading dims: (N/k, k, 17, 2) gives the flat result reshaped
    n = len(coco_set) // 4 * 4
    grouped = kp2d.coco17_to_h36m17(coco_set.joints2d[:n].reshape(-1, 4, 17, 2),
                                    coco_set.visibility[:n].reshape(-1, 4, 17), head=head)
    np.testing.assert_array_equal(grouped[0].reshape(n, 17, 2), batched[0][:n])
    np.testing.assert_array_equal(grouped[1].reshape(n, 17), batched[1][:n])


def test_pelvis_thorax_spine_are_midpoints_visible_iff_inputs_labelled(coco_set):
    xy, vis = kp2d.coco17_to_h36m17(coco_set.joints2d, coco_set.visibility)
    both_hips = _labelled(coco_set, "left_hip") & _labelled(coco_set, "right_hip")
    both_shoulders = _labelled(coco_set, "left_shoulder") & _labelled(coco_set, "right_shoulder")
    # the real data has people with only one hip / shoulder labelled: the rule is exercised
    assert (_labelled(coco_set, "left_hip") ^ _labelled(coco_set, "right_hip")).sum() > 20
    assert (_labelled(coco_set, "left_shoulder") ^ _labelled(coco_set, "right_shoulder")).sum() > 20
    for joint, inputs, mask in (("pelvis", ("left_hip", "right_hip"), both_hips),
                                ("thorax", ("left_shoulder", "right_shoulder"), both_shoulders)):
        j = _h(joint)
        np.testing.assert_array_equal(vis[:, j] > 0, mask, err_msg=joint)
        np.testing.assert_array_equal(xy[mask, j], _mid(coco_set, *inputs)[mask], err_msg=joint)
        assert np.isnan(xy[~mask, j]).all(), joint
    spine_ok = both_hips & both_shoulders
    np.testing.assert_array_equal(vis[:, _h("spine")] > 0, spine_ok)
    np.testing.assert_allclose(xy[spine_ok, _h("spine")], (xy[spine_ok, _h("pelvis")] + xy[spine_ok, _h("thorax")]) / 2, atol=1e-3)
    assert np.isnan(xy[~spine_ok, _h("spine")]).all()


def test_neck_is_the_nose_else_the_eyes(coco_set):
    xy, vis = kp2d.coco17_to_h36m17(coco_set.joints2d, coco_set.visibility)
    nose = _labelled(coco_set, "nose")
    eyes = _labelled(coco_set, "left_eye") & _labelled(coco_set, "right_eye")
    neck = _h("neck")
    np.testing.assert_array_equal(xy[nose, neck], coco_set.joints2d[nose, _c("nose")])
    fallback = ~nose & eyes
    assert fallback.sum() >= 1  # real annotations with the nose unlabelled and both eyes labelled
    np.testing.assert_array_equal(xy[fallback, neck], _mid(coco_set, "left_eye", "right_eye")[fallback])
    np.testing.assert_array_equal(vis[:, neck] > 0, nose | eyes)
    assert np.isnan(xy[~(nose | eyes), neck]).all()
    # with every nose hidden, the neck is the eyes' midpoint wherever both eyes are labelled
    hidden = coco_set.visibility.copy()
    hidden[:, _c("nose")] = 0
    xy2, vis2 = kp2d.coco17_to_h36m17(coco_set.joints2d, hidden)
    assert eyes.sum() > 500
    np.testing.assert_array_equal(vis2[:, neck] > 0, eyes)
    np.testing.assert_array_equal(xy2[eyes, neck], _mid(coco_set, "left_eye", "right_eye")[eyes])


def test_head_is_not_visible_by_default(coco_set):
    xy, vis = kp2d.coco17_to_h36m17(coco_set.joints2d, coco_set.visibility)
    assert (vis[:, _h("head")] == 0).all() and np.isnan(xy[:, _h("head")]).all()


def test_limbs_are_copied_with_their_side(coco_set):
    xy, vis = kp2d.coco17_to_h36m17(coco_set.joints2d, coco_set.visibility)
    assert _h("left_wrist") == 13 and _c("left_wrist") == 9 and _h("right_ankle") == 3 and _c("right_ankle") == 16
    np.testing.assert_array_equal(xy[:, 13], coco_set.joints2d[:, 9])
    np.testing.assert_array_equal(vis[:, 13], coco_set.visibility[:, 9])
    for side in ("left", "right"):
        for part in ("hip", "knee", "ankle", "shoulder", "elbow", "wrist"):
            name = f"{side}_{part}"
            np.testing.assert_array_equal(xy[:, _h(name)], coco_set.joints2d[:, _c(name)], err_msg=name)
            np.testing.assert_array_equal(vis[:, _h(name)], coco_set.visibility[:, _c(name)], err_msg=name)
    # in image terms: the COCO left wrist is the H36M left wrist, not the right one
    both = (vis[:, 13] > 0) & (vis[:, 16] > 0)
    assert not np.array_equal(xy[both, 13], xy[both, 16])


def test_extrapolated_head_sits_above_the_face_of_upright_people(coco_set):
    xy, vis = kp2d.coco17_to_h36m17(coco_set.joints2d, coco_set.visibility, head="extrapolate")
    head = _h("head")
    face = coco_set.visibility[:, [_c(n) for n in kp2d.COCO_FACE]] > 0
    both_shoulders = _labelled(coco_set, "left_shoulder") & _labelled(coco_set, "right_shoulder")
    np.testing.assert_array_equal(vis[:, head] > 0, both_shoulders & (face.sum(axis=1) >= 2))
    assert np.isnan(xy[vis[:, head] == 0, head]).all()
    # upright: both eyes labelled, both shoulders lower in the image (larger y) than every face keypoint
    y = coco_set.joints2d[..., 1]
    face_y = np.where(face, y[:, [_c(n) for n in kp2d.COCO_FACE]], -np.inf).max(axis=1)
    eyes = _labelled(coco_set, "left_eye") & _labelled(coco_set, "right_eye")
    upright = (vis[:, head] > 0) & eyes & (np.minimum(y[:, _c("left_shoulder")], y[:, _c("right_shoulder")]) > face_y)
    eye_y = (y[:, _c("left_eye")] + y[:, _c("right_eye")]) / 2
    assert upright.sum() > 500
    assert np.mean(xy[upright, head, 1] < eye_y[upright]) > 0.98
    # head_ratio 0 puts the head on the centre of the labelled eyes and ears
    centre, _ = kp2d.coco17_to_h36m17(coco_set.joints2d, coco_set.visibility, head="extrapolate", head_ratio=0.0)
    pts = coco_set.joints2d[:, [_c(n) for n in kp2d.COCO_FACE]].astype(np.float64)
    ok = vis[:, head] > 0
    expected = np.where(face[..., None], pts, 0).sum(axis=1)[ok] / face.sum(axis=1)[ok, None]
    np.testing.assert_allclose(centre[ok, head], expected, atol=1e-3)


def test_to_target_layout_records_the_conversion_and_keeps_columns(coco_set):
    out = kp2d.to_target_layout(coco_set)
    assert out.layout == "h36m17" and out.joints2d.shape == (len(coco_set), 17, 2) and out.joints3d is None
    for name in coco_set._array_fields():
        if name in ("joints2d", "visibility"):
            continue
        before, after = getattr(coco_set, name), getattr(out, name)
        assert (before is None and after is None) or np.array_equal(before, after), name
    assert out.cameras == coco_set.cameras and out.fps == coco_set.fps
    conv = out.attrs["layout_conversion"]
    assert conv["from"] == "coco17" and out.attrs["original_layout"] == "coco17"
    assert conv["head_segment"] is False and conv["head"] == "none" and "head_ratio" not in conv
    assert list(conv["rules"]) == list(H36M17.joints) and "not visible" in conv["rules"]["head"]
    assert conv["rules"]["neck"].startswith("nose")
    assert {k: v for k, v in out.attrs.items() if k not in ("layout_conversion", "original_layout")} == coco_set.attrs
    assert "layout_conversion" not in coco_set.attrs  # the input is not changed
    xy, vis = kp2d.coco17_to_h36m17(coco_set.joints2d, coco_set.visibility)
    np.testing.assert_array_equal(out.joints2d, xy)
    np.testing.assert_array_equal(out.visibility, vis)
    out.check_finite()

    ex = kp2d.to_target_layout(coco_set, head="extrapolate", head_ratio=0.5)
    assert ex.attrs["layout_conversion"]["head_ratio"] == 0.5 and "0.5" in ex.attrs["layout_conversion"]["rules"]["head"]
    assert ex.attrs["layout_conversion"]["head_segment"] is False
    assert (ex.visibility[:, _h("head")] > 0).sum() > 500
    assert kp2d.to_target_layout(out) is out  # already in the target layout: unchanged


def test_unknown_layouts_and_bad_arguments_raise(coco_set):
    other = coco_set.replace(layout="openpose25")
    with pytest.raises(ValueError, match="openpose25"):
        kp2d.to_target_layout(other)
    with pytest.raises(ValueError, match="target layout"):
        kp2d.to_target_layout(coco_set, target="coco17")
    with pytest.raises(ValueError, match="head must be one of"):
        kp2d.to_target_layout(coco_set, head="guess")
    with pytest.raises(ValueError, match=r"\(\.\.\., 17, 2\)"):
        kp2d.coco17_to_h36m17(coco_set.joints2d[:, :16], coco_set.visibility[:, :16])
    with pytest.raises(ValueError, match="visibility must be"):
        kp2d.coco17_to_h36m17(coco_set.joints2d, coco_set.visibility[:10])
    with pytest.raises(ValueError, match="2D-only"):
        kp2d.to_target_layout(coco_set.replace(joints3d=np.zeros((len(coco_set), 17, 3))))
