"""The evaluation splits of ../shared/BENCHMARK.md, as code.

A split names which files (and which subjects) train and which test. ``resolve_split`` turns a
split name and a data root into two :class:`SplitPart` s; ``load_part`` imports one (through the
cache folder when given, so a benchmark imports each source once).
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

    def with_train(self, train: str, *, mapping: str | None = None) -> "Split":
        """The same split with another training set (a file or folder of any supported format)."""
        return Split(self.name, SplitPart([Path(train)], None, str(train), mapping), self.test,
                     f"{train} -> {self.test.label}", list(self.notes), dict(self.train_overrides), self.settings)


SPLITS = {
    "hdm05-xsub": "HDM05 actors bd, bk -> HDM05 actor dg (new person, same activities)",
    "bandai-to-hdm05": "Bandai datasets 1 and 2 -> HDM05 bd, bk, dg (new people, activities, capture setup)",
    "hdm05-to-cmu": "HDM05 bd, bk, dg -> CMU files in cmu/ (new people, activities, skeleton)",
    "bandai-to-cmu": "Bandai datasets 1 and 2 -> CMU files in cmu/ (the VAE-sampling experiment's Bandai -> CMU variant)",
    "coco-2d": "HDM05 bd, bk, dg (3D) -> COCO val2017 subset, 2D only (in-the-wild 2D; PCK of the reprojected predictions)",
}


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
