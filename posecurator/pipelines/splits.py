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


SPLITS = {
    "hdm05-xsub": "HDM05 actors bd, bk -> HDM05 actor dg (new person, same activities)",
    "bandai-to-hdm05": "Bandai datasets 1 and 2 -> HDM05 bd, bk, dg (new people, activities, capture setup)",
    "hdm05-to-cmu": "HDM05 bd, bk, dg -> CMU files in cmu/ (new people, activities, skeleton)",
    "bandai-to-cmu": "Bandai datasets 1 and 2 -> CMU files in cmu/ (the VAE-sampling experiment's Bandai -> CMU variant)",
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
    if name == "bandai-to-cmu":  # defined with the VAE sampling experiment that uses it
        from posecurator.pipelines.vae_sampling import bandai_to_cmu_split

        return bandai_to_cmu_split(root)
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
    # cmu/01_01.bvh is a BVH conversion of cmu/01_01.amc (same capture): only the AMC is tested, so
    # that clip is not counted twice. The subject-131 BVH files test the BVH path and a third skeleton.
    cmu = root / "cmu"
    files = sorted(cmu.glob("*.amc")) + sorted(cmu.glob("*.amc.gz")) + sorted(
        p for p in list(cmu.glob("*.bvh")) + list(cmu.glob("*.bvh.gz")) if not (cmu / (p.name.split(".")[0] + ".amc")).exists())
    return Split(name, SplitPart([root / "hdm05"], None, "HDM05 bd+bk+dg"),
                 SplitPart(files, None, "CMU cmu/ (01_01.bvh duplicate of 01_01.amc left out)"), SPLITS[name])


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
