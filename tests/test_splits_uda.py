"""The domain-adaptation splits of ../shared/BENCHMARK.md (`bandai-to-hdm05-uda`, `hdm05-to-coco`):
their parts, the unlabeled target 2D (no 3D; seeded; the trainer's random cameras) and `bench`
running on them like on their parents. Real data, small subsets."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from posecurator.camera import Camera, normalize_screen_coordinates
from posecurator.camera.pairs import sample_training_pairs
from posecurator.errors import PoseCuratorError
from posecurator.pipelines.splits import (
    COCO_TRAIN_FILE,
    COCO_VAL_FILE,
    SPLITS,
    UDA_PARENTS,
    SplitPart,
    TargetPart,
    load_part,
    load_target_2d,
    resolve_split,
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One import cache for the module: HDM05 is imported once (about 3 s)."""
    return tmp_path_factory.mktemp("split-cache")


@pytest.fixture(scope="module")
def uda(shared_data):
    return resolve_split("bandai-to-hdm05-uda", shared_data)


@pytest.fixture(scope="module")
def uda_target(uda, cache):
    return load_target_2d(uda, cache_dir=cache, progress=False)


def _key(sources, mapping=None) -> str:
    """SplitPart.key() as it was before the UDA splits (the import cache names must not move)."""
    text = "|".join(str(p.resolve()) for p in sources) + f"|{mapping}"
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def test_existing_splits_are_unchanged(shared_data):
    root = shared_data
    expected = {
        "hdm05-xsub": ([root / "hdm05"], ["bd", "bk"], [root / "hdm05"], ["dg"]),
        "bandai-to-hdm05": ([root / "bandai"], None, [root / "hdm05"], None),
        "coco-2d": ([root / "hdm05"], None, [root / "coco" / COCO_VAL_FILE], None),
    }
    for name, (train_src, train_subj, test_src, test_subj) in expected.items():
        split = resolve_split(name, root)
        assert split.target is None
        assert (split.train.sources, split.train.subjects, split.test.sources, split.test.subjects) == \
            (train_src, train_subj, test_src, test_subj)
        assert split.train.key() == _key(train_src) and split.test.key() == _key(test_src)
        assert type(split.train) is SplitPart and type(split.test) is SplitPart
    with pytest.raises(PoseCuratorError, match="has no unlabeled target"):
        load_target_2d(resolve_split("hdm05-xsub", root))


def test_uda_splits_are_their_parents_plus_a_target(shared_data, uda):
    assert set(UDA_PARENTS) <= set(SPLITS)
    bandai = resolve_split("bandai-to-hdm05", shared_data)
    xsub = resolve_split("hdm05-xsub", shared_data)
    # train Bandai 1 + 2; test HDM05 dg only (the target's people bd, bk are never tested)
    assert uda.train.sources == bandai.train.sources and uda.train.key() == bandai.train.key()
    assert uda.test.sources == xsub.test.sources and uda.test.subjects == ["dg"] and uda.test.key() == xsub.test.key()
    assert isinstance(uda.target, TargetPart) and uda.target.project and uda.target.subjects == ["bd", "bk"]
    assert uda.settings is None and uda.train_overrides == bandai.train_overrides
    coco = resolve_split("hdm05-to-coco", shared_data)
    parent = resolve_split("coco-2d", shared_data)
    assert (coco.train, coco.test, coco.train_overrides, coco.settings) == \
        (parent.train, parent.test, parent.train_overrides, parent.settings)
    assert coco.target.sources == [shared_data / "coco" / COCO_TRAIN_FILE] and not coco.target.project
    # another training set keeps the target
    assert uda.with_train(str(shared_data / "bandai" / "dataset-1")).target == uda.target


def test_uda_target_is_2d_only_seeded_and_made_by_the_training_camera_sampler(uda, uda_target, cache):
    t = uda_target
    assert t.joints3d is None and t.layout == "h36m17"
    assert t.joints2d.shape[1:] == (17, 2) and t.joints2d.dtype == np.float32 and np.isfinite(t.joints2d).all()
    assert t.visibility.shape == t.joints2d.shape[:2] and (t.visibility == 1).all()
    assert set(np.unique(t.subject)) == {"bd", "bk"}
    assert len(t.cameras) == len(t) and (t.camera == np.arange(len(t))).all()
    assert len(np.unique(t.sample_id)) == len(t)
    # the 3D it came from: HDM05 bd + bk; the 2D is the trainer's training-pair projection
    src = load_part(uda.target, cache_dir=cache, progress=False)
    assert len(src) == len(t)
    x2d, _, pose_index = sample_training_pairs(src, rng=np.random.default_rng(uda.target.seed))
    assert (pose_index == np.arange(len(src))).all()
    w = np.array([c["width"] for c in t.cameras], float)
    h = np.array([c["height"] for c in t.cameras], float)
    np.testing.assert_allclose(normalize_screen_coordinates(t.joints2d.astype(np.float64), w, h), x2d, atol=2e-6)
    # each sample's camera in the table projects its 3D pose to its 2D
    for i in (0, len(t) // 2, len(t) - 1):
        np.testing.assert_allclose(Camera.from_dict(t.cameras[i]).project(src.joints3d[i].astype(np.float64)),
                                   t.joints2d[i], atol=1e-3)
    # reproducible with its seed; another seed, other cameras
    again = load_target_2d(uda, cache_dir=cache, progress=False)
    np.testing.assert_array_equal(again.joints2d, t.joints2d)
    other = load_target_2d(uda, cache_dir=cache, seed=1, progress=False)
    assert not np.allclose(other.joints2d, t.joints2d)
    assert other.attrs["target"]["seed"] == 1 and t.attrs["target"]["seed"] == 0
    noisy = load_target_2d(uda, cache_dir=cache, noise_px=5.0, progress=False)
    assert 3.0 < np.std(noisy.joints2d - t.joints2d) < 7.0


def test_coco_target_is_the_train_subset_2d_only(shared_data):
    split = resolve_split("hdm05-to-coco", shared_data)
    t = load_target_2d(split, progress=False)
    assert t.joints3d is None and t.layout == "h36m17"
    assert t.joints2d.shape == (len(t), 17, 2) and t.visibility.shape == (len(t), 17)
    # head never guessed; only annotations with >= 8 labelled COCO keypoints
    assert (t.visibility[:, 10] == 0).all()
    info = t.attrs["target"]
    assert info["min_keypoints"] == 8 and info["left_out_few_keypoints"] > 0
    assert len(t) + info["left_out_few_keypoints"] == t.attrs["annotations"]
    # cameras from the image sizes (assumed intrinsics), one per image
    assert t.cameras and all(c.get("assumed_intrinsics") for c in t.cameras) and (t.camera >= 0).all()
    # never the test annotations (the test split's own 2D is never the unlabeled target)
    test = load_part(split.test, progress=False)
    assert not set(t.sample_id.tolist()) & set(test.sample_id.tolist())
    assert "val2017" in split.test.sources[0].name and "train2017" in split.target.sources[0].name


TINY = {"width": 32, "blocks": 1, "epochs": 1, "max_steps": 8, "batch_size": 64, "val_fraction": 0.3, "val_views": 1,
        "max_epoch_pairs": 512}


@pytest.mark.filterwarnings("ignore:one clip only")
@pytest.mark.parametrize("name,train_file", [
    ("bandai-to-hdm05-uda", "bandai/dataset-2/data/dataset-2_walk_normal_001.bvh.gz"),
    ("hdm05-to-coco", None),
])
def test_bench_runs_on_the_uda_splits_like_their_parents(name, train_file, shared_data, tmp_path):
    from posecurator.pipelines.bench import run_bench
    from posecurator.train.trainer import TrainConfig

    split = resolve_split(name, shared_data)
    if train_file is None:  # a few HDM05 clips stand in for the whole training set
        folder = tmp_path / "train"
        folder.mkdir()
        for f in sorted((shared_data / "hdm05" / "amc").glob("HDM_bd_squat*"))[:3]:
            (folder / f.name).symlink_to(f)
        (folder / "HDM_bd.asf").symlink_to(shared_data / "hdm05" / "asf" / "HDM_bd.asf")
        train_file = folder
    split = split.with_train(str(shared_data / train_file) if isinstance(train_file, str) else str(train_file))
    config = TrainConfig.preset("fast", **{**TINY, **split.train_overrides})
    # the transfer rows (pipelines.bench_transfer) use the target; aug_target_hard also ADD's shared augmentation
    methods = ("baseline", "adapt", "target_near33") + (("aug_target_hard", "add_target") if name == "hdm05-to-coco" else ())
    res = run_bench(split, out_dir=tmp_path / "bench", seeds=(0,), settings=split.settings or ("gt",), methods=methods,
                    config=config, progress=False, log=lambda m: None)
    assert [r["method"] for r in res["runs"]] == list(methods)
    for run in res["runs"]:
        if name == "hdm05-to-coco":
            assert 0.0 <= run["pck_0.1"] <= 1.0 and res["test"]["label"].startswith("COCO val2017")
        else:
            assert np.isfinite(run["mpjpe"]) and res["test"]["label"] == "HDM05 dg" and res["test"]["poses"] == 3410
    assert all(r["val_target_reproj_mm"] > 0 for r in res["runs"])  # every row gets the target validation figure
    # the depth-aware figures: bone-length variation within the target's clips (HDM05 has clips,
    # COCO's single-image annotations have none) and left/right asymmetry
    assert all(0 < r["val_target_bone_asym"] < 2 for r in res["runs"])
    assert all((0 < r["val_target_bone_cv"] < 2) if name != "hdm05-to-coco" else ("val_target_bone_cv" not in r) for r in res["runs"])
    table = (tmp_path / "bench" / "table.md").read_text()
    assert "target val. reproj." in table and "target val. L/R asym. (%)" in table
    assert ("target val. bone CV (%)" in table) == (name != "hdm05-to-coco")
    assert "Chosen by validation only (gt;" in table  # the validation-only choice under the table
    adapt = res["runs"][1]
    assert adapt["adapt"] == "reprojection"
    history = json.loads((Path(adapt["run_dir"]) / "history.json").read_text())["epochs"]
    assert history[0]["target_reproj_mm"] > 0 and history[0]["val_target_reproj_mm"] > 0
    assert res["runs"][2]["train_poses"] < res["runs"][0]["train_poses"]  # a third of the train part
    assert list((tmp_path / "bench" / "runs").glob("target-target_coverage-*.npz"))  # the scores are cached
    if name == "hdm05-to-coco":  # children nearest the target poses the reference lifter reprojects worst
        steered = res["runs"][3]
        assert steered["reference_2d_poses"] > 0 and steered["train_poses"] > res["runs"][0]["train_poses"]
        towards = res["runs"][4]  # ADD with the target-aware diversity term (add --target)
        assert towards["augmented_poses"] > 0 and towards["generations"] >= 1
