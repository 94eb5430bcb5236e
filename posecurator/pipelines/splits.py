"""The evaluation splits of ../shared/BENCHMARK.md, as code.

A split names which files (and which subjects) train and which test. ``resolve_split`` turns a
split name and a data root into two :class:`SplitPart` s; ``load_part`` imports one (through the
cache folder when given, so a benchmark imports each source once).

The domain-adaptation splits (``bandai-to-hdm05-uda``, ``hdm05-to-coco``) also name an unlabeled
target (:class:`TargetPart`, ``Split.target``): 2D poses of the domain the lifter is deployed to,
whose 3D is never available. :func:`load_target_2d` loads it as a 2D-only pose set (joints2d,
visibility, cameras; joints3d None). Every other part of such a split is that of its non-UDA
parent (``bandai-to-hdm05-uda`` trains on Bandai 1 + 2 and tests on HDM05 dg;
``hdm05-to-coco`` is ``coco-2d``), so `posecurator bench` runs them unchanged, the target unused
by methods that do not ask for it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from posecurator.errors import DataError, PoseCuratorError
from posecurator.poseset import META_FILE, PoseSet


@dataclass
class SplitPart:
    """Sources (files or folders) to import, optionally keeping only some subjects."""

    sources: list[Path]
    subjects: list[str] | None = None
    label: str = ""
    mapping: str | None = None

    def key(self) -> str:
        text = "|".join(str(p.resolve()) for p in self.sources) + f"|{self.mapping}"
        return hashlib.sha1(text.encode()).hexdigest()[:12]


@dataclass
class TargetPart(SplitPart):
    """The unlabeled target of a domain-adaptation split: 2D poses only.

    ``project`` False: the sources are 2D annotations (COCO / MPII keypoints), loaded as they are
    and mapped to H36M17; annotations with fewer than ``min_keypoints`` labelled keypoints (in the
    file's own layout, as ../shared/BENCHMARK.md counts them) are left out.
    ``project`` True: the sources are 3D mocap seen through seeded random *training* cameras
    (:class:`posecurator.camera.RandomCameraSampler`, the trainer's sampler; ``n_views`` cameras
    per pose, ``seed``), and their 3D is dropped, so nothing downstream can use it.
    ``key()`` is :class:`SplitPart`'s (it names the import cache of the sources only).
    """

    project: bool = False
    seed: int = 0
    n_views: int = 1
    min_keypoints: int = 0


@dataclass
class Split:
    name: str
    train: SplitPart
    test: SplitPart
    measures: str = ""
    notes: list[str] = field(default_factory=list)
    # TrainConfig fields every lifter of this split is trained with (on top of the preset), and
    # the 2D settings it runs by default
    train_overrides: dict = field(default_factory=dict)
    settings: tuple[str, ...] | None = None  # None: the command's own default
    # the unlabeled target 2D of a domain-adaptation split (load_target_2d); None for the others
    target: TargetPart | None = None

    def with_train(self, train: str, *, mapping: str | None = None) -> "Split":
        """The same split with another training set (a file or folder of any supported format)."""
        return Split(self.name, SplitPart([Path(train)], None, str(train), mapping), self.test,
                     f"{train} -> {self.test.label}", list(self.notes), dict(self.train_overrides), self.settings,
                     self.target)


SPLITS = {
    "hdm05-xsub": "HDM05 actors bd, bk -> HDM05 actor dg (new person, same activities)",
    "bandai-to-hdm05": "Bandai datasets 1 and 2 -> HDM05 bd, bk, dg (new people, activities, capture setup)",
    "hdm05-to-cmu": "HDM05 bd, bk, dg -> CMU files in cmu/ (new people, activities, skeleton)",
    "bandai-to-cmu": "Bandai datasets 1 and 2 -> CMU files in cmu/ (the VAE-sampling experiment's Bandai -> CMU variant)",
    "coco-2d": "HDM05 bd, bk, dg (3D) -> COCO val2017 subset, 2D only (in-the-wild 2D; PCK of the reprojected predictions)",
    "bandai-to-hdm05-uda": "Bandai datasets 1 and 2 (3D) + unlabeled 2D of HDM05 bd, bk (seeded random training cameras) "
                           "-> HDM05 dg (adapting to a target known only by its 2D)",
    "hdm05-to-coco": "HDM05 bd, bk, dg (3D) + unlabeled COCO train2017 subset 2D -> COCO val2017 subset, 2D only "
                     "(adapting to in-the-wild 2D; PCK of the reprojected predictions)",
}
# Splits with an unlabeled target 2D (Split.target), and the split each adapts (same train/test protocol).
UDA_PARENTS = {"bandai-to-hdm05-uda": "bandai-to-hdm05", "hdm05-to-coco": "coco-2d"}


def default_data_root() -> Path:
    """../shared/data beside the checkout, or $POSECURATOR_DATA."""
    env = os.environ.get("POSECURATOR_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent.parent / "shared" / "data"
        if (parent / "pyproject.toml").is_file() and cand.is_dir():
            return cand
    return Path.cwd().parent / "shared" / "data"


def resolve_split(name: str, root: str | os.PathLike | None = None) -> Split:
    root = Path(root) if root is not None else default_data_root()
    if name not in SPLITS:
        raise PoseCuratorError(f"unknown split {name!r}; known: {', '.join(SPLITS)} (or use --train/--test)")
    if name == "bandai-to-cmu":
        return bandai_to_cmu_split(root)
    if name == "coco-2d":
        return coco_2d_split(root)
    if name == "bandai-to-hdm05-uda":
        return bandai_to_hdm05_uda_split(root)
    if name == "hdm05-to-coco":
        return hdm05_to_coco_split(root)
    need = {"hdm05-xsub": ["hdm05"], "bandai-to-hdm05": ["bandai", "hdm05"], "hdm05-to-cmu": ["hdm05", "cmu"]}[name]
    for sub in need:
        if not (root / sub).is_dir():
            raise DataError(root / sub, f"split {name} needs this folder (give the data root with --data)")
    if name == "hdm05-xsub":
        return Split(name, SplitPart([root / "hdm05"], ["bd", "bk"], "HDM05 bd+bk"),
                     SplitPart([root / "hdm05"], ["dg"], "HDM05 dg"), SPLITS[name])
    if name == "bandai-to-hdm05":
        return Split(name, SplitPart([root / "bandai"], None, "Bandai 1+2"),
                     SplitPart([root / "hdm05"], None, "HDM05 bd+bk+dg"), SPLITS[name])
    return Split(name, SplitPart([root / "hdm05"], None, "HDM05 bd+bk+dg"),
                 SplitPart(_cmu_test_files(root), None, "CMU cmu/ (01_01.bvh duplicate of 01_01.amc left out)"), SPLITS[name])


def _cmu_test_files(root: Path) -> list[Path]:
    """The CMU test files: every AMC, and the BVH files that are not a conversion of an AMC of the
    folder (cmu/01_01.bvh is a BVH conversion of cmu/01_01.amc, the same capture: only the AMC is
    tested, so that clip is not counted twice; the subject-131 BVH files test the BVH path and a
    third skeleton)."""
    cmu = root / "cmu"
    amc = sorted(cmu.glob("*.amc")) + sorted(cmu.glob("*.amc.gz"))
    bvh = sorted(p for p in list(cmu.glob("*.bvh")) + list(cmu.glob("*.bvh.gz"))
                 if not (cmu / (p.name.split(".")[0] + ".amc")).exists())
    return amc + bvh


def bandai_to_cmu_split(root=None) -> Split:
    """The Bandai -> CMU variant of the VAE-sampling experiment: train Bandai datasets 1 + 2, test the CMU files of
    ``hdm05-to-cmu`` (new people, activities and skeleton, no HDM05 in between)."""
    root = Path(root) if root is not None else default_data_root()
    for sub in ("bandai", "cmu"):
        if not (root / sub).is_dir():
            raise DataError(root / sub, "split bandai-to-cmu needs this folder (give the data root with --data)")
    return Split("bandai-to-cmu", SplitPart([root / "bandai"], None, "Bandai 1+2"),
                 SplitPart(_cmu_test_files(root), None, "CMU cmu/ (01_01.bvh duplicate of 01_01.amc left out)"),
                 SPLITS["bandai-to-cmu"])


COCO_TRAIN_FILE = "person_keypoints_train2017_subset2155.json"
COCO_VAL_FILE = "person_keypoints_val2017_subset2213.json"
# The lifter of the 2D-only split sees root-centred, scale-normalised 2D (any image size) and is
# trained with hidden joints so it lifts annotations with unlabelled ones (models.lifter).
IN_THE_WILD_TRAINING = {"input_mode": "root_scale", "joint_dropout": 0.2}


def coco_2d_split(root=None) -> Split:
    """``coco-2d`` of ../shared/BENCHMARK.md: a lifter trained on HDM05 bd, bk, dg (3D; another
    training set with ``--train``) tested on the COCO val2017 subset, 2D only (PCK of the
    reprojected predictions). The lifter is trained with :data:`IN_THE_WILD_TRAINING`."""
    root = Path(root) if root is not None else default_data_root()
    for path in (root / "hdm05", root / "coco" / COCO_VAL_FILE):
        if not path.exists():
            raise DataError(path, "split coco-2d needs this (give the data root with --data)")
    return Split("coco-2d", SplitPart([root / "hdm05"], None, "HDM05 bd+bk+dg"),
                 SplitPart([root / "coco" / COCO_VAL_FILE], None, "COCO val2017 subset (2D only)"), SPLITS["coco-2d"],
                 train_overrides=dict(IN_THE_WILD_TRAINING), settings=("gt",))


MIN_TARGET_KEYPOINTS = 8  # = train.evaluate.MIN_KEYPOINTS_2D (../shared/BENCHMARK.md), for the COCO target


UDA_TARGET_SEED = 0  # the seed of bandai-to-hdm05-uda's target cameras (load_target_2d(seed=...) overrides it)


def bandai_to_hdm05_uda_split(root=None) -> Split:
    """``bandai-to-hdm05-uda`` of ../shared/BENCHMARK.md: train on Bandai datasets 1 and 2 (3D);
    unlabeled target = the 2D of HDM05 bd and bk through seeded random training cameras (their 3D
    is never used); test HDM05 dg (3D, the evaluation rig). The test part is HDM05 dg only (not
    ``bandai-to-hdm05``'s bd + bk + dg): the target's own people are never tested."""
    root = Path(root) if root is not None else default_data_root()
    for sub in ("bandai", "hdm05"):
        if not (root / sub).is_dir():
            raise DataError(root / sub, "split bandai-to-hdm05-uda needs this folder (give the data root with --data)")
    name = "bandai-to-hdm05-uda"
    return Split(name, SplitPart([root / "bandai"], None, "Bandai 1+2"),
                 SplitPart([root / "hdm05"], ["dg"], "HDM05 dg"), SPLITS[name],
                 notes=["unlabeled target: HDM05 bd+bk 2D through seeded random training cameras, 3D dropped"],
                 target=TargetPart([root / "hdm05"], ["bd", "bk"], "HDM05 bd+bk 2D (random training cameras, unlabeled)",
                                   project=True, seed=UDA_TARGET_SEED, n_views=1))


def hdm05_to_coco_split(root=None) -> Split:
    """``hdm05-to-coco`` of ../shared/BENCHMARK.md: :func:`coco_2d_split` (train HDM05 bd, bk, dg in
    3D; test the COCO val2017 subset, 2D only, PCK of the reprojected predictions) plus the COCO
    train2017 subset as unlabeled target 2D (annotations with fewer than 8 labelled keypoints left
    out, as in every COCO figure)."""
    root = Path(root) if root is not None else default_data_root()
    target_file = root / "coco" / COCO_TRAIN_FILE
    if not target_file.exists():
        raise DataError(target_file, "split hdm05-to-coco needs this (give the data root with --data)")
    parent = coco_2d_split(root)
    name = "hdm05-to-coco"
    return Split(name, parent.train, parent.test, SPLITS[name],
                 notes=["unlabeled target: COCO train2017 subset 2D (>= 8 labelled keypoints)"],
                 train_overrides=dict(parent.train_overrides), settings=parent.settings,
                 target=TargetPart([target_file], None, "COCO train2017 subset (2D, unlabeled)",
                                   min_keypoints=MIN_TARGET_KEYPOINTS))


def load_target_2d(split: Split, *, cache_dir: str | os.PathLike | None = None, seed: int | None = None,
                   noise_px: float = 0.0, progress: bool = True) -> PoseSet:
    """The unlabeled target 2D of a domain-adaptation split, as a 2D-only pose set.

    Returns a PoseSet in the H36M17 layout with ``joints2d`` (N, 17, 2) float32 pixels (NaN where
    not labelled), ``visibility`` (N, 17) float32 0/1, one camera per sample in the camera table
    and ``joints3d`` None. ``attrs["target"]`` says how it was made.

    * projected targets (``bandai-to-hdm05-uda``): every pose of the target part seen through
      ``n_views`` cameras of :class:`posecurator.camera.RandomCameraSampler` (the trainer's
      sampler, aimed at each pose's pelvis, floor at Z = 0), drawn from
      ``np.random.default_rng(seed)`` exactly as :func:`posecurator.camera.pairs.sample_training_pairs`
      draws them (its normalised 2D is this set's pixels normalised), view-major; then optional
      seeded Gaussian pixel noise (``noise_px``). ``seed`` None: the split's own seed. The 3D is
      dropped; subject, clip, activity and frame are kept (for analysis; no 3D label leaks);
      ``sample_id`` = view * P + row of the imported part (P poses; the row itself for one view).
    * 2D targets (``hdm05-to-coco``): the annotation file, annotations with fewer than
      ``min_keypoints`` labelled keypoints left out, mapped to H36M17 (no head top is guessed).

    Raises PoseCuratorError for a split without a target.
    """
    target = split.target
    if target is None:
        raise PoseCuratorError(f"split {split.name!r} has no unlabeled target 2D; splits with one: {', '.join(UDA_PARENTS)}")
    if target.project:
        return _projected_target(target, cache_dir=cache_dir, seed=target.seed if seed is None else int(seed),
                                 noise_px=noise_px, progress=progress)
    ps = load_part(target, cache_dir=cache_dir, progress=progress)
    if ps.joints2d is None:
        raise DataError(target.sources[0], "the unlabeled target must be 2D annotations (no joints2d found)")
    ps = ps.replace(joints3d=None)
    n_before = len(ps)
    if target.min_keypoints > 0:
        vis = ps.visibility if ps.visibility is not None else np.ones(ps.joints2d.shape[:2], np.float32)
        labelled = ((vis > 0) & np.isfinite(ps.joints2d).all(-1)).sum(1)
        keep = labelled >= target.min_keypoints
        if not keep.any():
            raise DataError(target.sources[0], f"no annotation has {target.min_keypoints} or more labelled keypoints")
        ps = ps.subset(keep)
    if ps.layout != "h36m17":
        from posecurator.skeleton.keypoints2d import to_target_layout

        try:
            ps = to_target_layout(ps)
        except ValueError as e:
            raise DataError(target.sources[0], str(e)) from None
    if noise_px > 0:
        rng = np.random.default_rng(target.seed if seed is None else int(seed))
        ps = ps.replace(joints2d=(ps.joints2d + rng.normal(0.0, noise_px, ps.joints2d.shape)).astype(np.float32))
    ps.attrs = {**ps.attrs, "target": {"split": split.name, "label": target.label, "kind": "2d annotations",
                                       "min_keypoints": target.min_keypoints, "left_out_few_keypoints": n_before - len(ps),
                                       "noise_px": float(noise_px)}}
    return ps


def _projected_target(target: TargetPart, *, cache_dir, seed: int, noise_px: float, progress: bool) -> PoseSet:
    from posecurator.camera import RandomCameraSampler
    from posecurator.camera.pairs import as_unlabeled_2d, root_joint_of

    src = load_part(target, cache_dir=cache_dir, progress=progress)
    if src.joints3d is None:
        raise DataError(target.sources[0], "a projected target needs 3D poses to project")
    n_views = int(target.n_views)
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    rng = np.random.default_rng(seed)
    root = root_joint_of(src)
    pose_index = np.tile(np.arange(len(src)), n_views)
    # the draws of camera.pairs.sample_training_pairs (one camera per pose and view, then noise)
    world = src.joints3d[pose_index]
    cams = RandomCameraSampler().sample(world[:, root], rng, floor_z=0.0)
    px, x_cam = cams.project(np.asarray(world, dtype=np.float64))
    if np.any(x_cam[..., 2] <= 1.0):
        raise DataError(target.sources[0], "a target pose stands at or behind its random camera; cannot project it")
    if noise_px > 0:
        px = px + rng.normal(0.0, noise_px, px.shape)
    ps = as_unlabeled_2d(src.subset(pose_index), cams, px, name="target-random")
    ps = ps.replace(sample_id=np.arange(len(pose_index), dtype=np.int64))
    ps.attrs = {**{k: v for k, v in src.attrs.items() if k in ("imported_from", "units")},
                "target": {"label": target.label, "kind": "3d projected through random training cameras, 3D dropped",
                           "seed": seed, "n_views": n_views, "noise_px": float(noise_px),
                           "sampler": "posecurator.camera.RandomCameraSampler()"}}
    return ps


def custom_split(train: str, test: str, *, mapping: str | None = None) -> Split:
    """The same protocol on any two folders/files (data the project has never seen)."""
    return Split("custom", SplitPart([Path(train)], None, str(train), mapping),
                 SplitPart([Path(test)], None, str(test), mapping), f"{train} -> {test}")


def load_dataset(path: str | os.PathLike, *, mapping: str | None = None, fps: float = 30.0, progress: bool = True) -> PoseSet:
    """A pose-set folder is loaded; anything else (a file or folder of mocap) is imported."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "no such file or folder")
    if path.is_dir() and (path / META_FILE).is_file():
        return PoseSet.load(path)
    from posecurator.io import import_path

    return import_path(path, mapping=mapping, fps=fps, progress=progress)


def load_part(part: SplitPart, *, cache_dir: str | os.PathLike | None = None, progress: bool = True) -> PoseSet:
    """Import a split part (once: cached as a pose-set folder under ``cache_dir``)."""
    cached = Path(cache_dir) / f"import-{part.key()}.pcs" if cache_dir else None
    if cached is not None and (cached / META_FILE).is_file():
        ps = PoseSet.load(cached)
    else:
        sets = [load_dataset(src, mapping=part.mapping, progress=progress) for src in part.sources]
        ps = sets[0] if len(sets) == 1 else PoseSet.concatenate(sets, renumber=True)
        if cached is not None:
            ps.save(cached)
    if part.subjects is not None:
        keep = np.isin(ps.subject, part.subjects)
        if not keep.any():
            raise DataError(part.sources[0], f"no poses of subjects {part.subjects}; found {sorted(set(ps.subject.tolist()))}")
        ps = ps.subset(keep)
    return ps
