"""Fuzzing the readers: mutated copies of real files of every format, imported in-process.

:func:`run_fuzz` takes a few small real files per format from a data folder (``../shared/data``
layout: HDM05 ASF+AMC, CMU AMC and BVH, Bandai and ReActIdle BVH, COCO json), makes the formats
posecurator writes itself from them (VideoPose3D and mmpose npz, a dataset folder, an MPII json
built from the COCO keypoints, predictions npz and json; a DeepMimic clip from pybullet when
installed), and then, case by case, mutates a copy in a temporary folder and reads it:

* text (BVH, AMC, ASF, index.csv): byte flips, truncation, inserted / deleted / duplicated /
  swapped lines, a number replaced by nan, inf, 1e20, 1e-320, a 20-digit integer, a word, a
  token replaced by a keyword or a 300-character word, CRLF endings, gzip (intact or corrupt);
* JSON (COCO, MPII, camera files, predictions, dataset headers, Bandai labels, DeepMimic): a
  field replaced by a list, an object, a string, null, inf, nan, 1e29, 2**40, 2**64, -1, 0,
  1000, true, 1e-320, a 5000-character string; keys deleted; ids duplicated; values wrapped;
* npz (VideoPose3D, mmpose, dataset chunks, predictions): garbled .npy headers inside the zip
  (flipped bytes, unterminated dicts, wrong or huge shapes, object / complex / record dtypes),
  values set to nan, inf, 1e20 or beyond int32, complex-valued arrays, other dtypes and shapes,
  string members changed (a 20-digit frame number, the metadata JSON mutated field by field),
  members dropped or added;
* companions removed (an AMC without its ASF, mmpose without its cameras, a missing chunk).

The mutations themselves are in :mod:`posecurator.io.fuzz_mutations`.

Each case ends in one of four outcomes:

``valid``        a pose set (or predictions) came back that passes sanity checks: finite
                 coordinates where labelled, 3D within MAX_ABS_MM and 2D within MAX_ABS_PX,
                 0 < fps <= MAX_FPS, float32 joints, camera rows in the table, JSON-able attrs;
``clean_error``  a PoseCuratorError whose message is one line of at most MAX_MESSAGE characters
                 (the case folder's path not counted) naming the file, with no numpy repr in it
                 and no warning emitted;
``crash``        any other exception, a warning (except posecurator's own notes on a valid
                 result), a bad message, a set that fails the sanity checks, or a case that ran
                 past CASE_TIME_LIMIT_S;
``half_written`` (cases run through the CLI) a failed ``posecurator import FILE -o OUT`` left OUT
                 or a temporary folder behind, or printed more than one line.

A fraction (CLI_FRACTION) of the importable cases go through the command line, in-process: the
caller passes the CLI's ``main`` as ``cli_main`` (the io layer does not import the CLI); without
it the same steps run as ``posecurator import`` does them (import_path, then PoseSet.save).

Cases are seeded one by one (``random.Random(f"{seed}:{case}")``): the same seed gives the same
cases, and one case can be rerun alone (``case_ids``).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from posecurator.errors import DataError, MappingError, PoseCuratorError
from posecurator.io.common import MAX_ABS_MM, MAX_ABS_PX, MAX_FPS, strip_suffixes
from posecurator.io.fuzz_mutations import MUTATIONS, WEIGHTS
from posecurator.poseset import META_FILE, PoseSet

FORMATS = ("hdm05_amc", "cmu_amc", "cmu_bvh", "bandai_bvh", "reactidle_bvh", "coco", "mpii", "videopose3d",
           "mmpose", "poseset", "predictions_npz", "predictions_json", "deepmimic")
MAX_MESSAGE = 300          # characters of an error line, the case folder's path not counted
CASE_TIME_LIMIT_S = 20.0   # a reader taking longer on a small file is a bug (a loop or a huge allocation)
CLI_FRACTION = 0.1         # share of importable cases run through `posecurator import FILE -o OUT`
REPORT_FILE = "fuzz-report.json"
_KEEP_EXAMPLES = 20        # crashes / half-written cases listed (and their inputs kept) in the report

# How many frames of each real clip a seed keeps: small files keep every case fast.
_SEED_FRAMES = {"cmu_amc": 120, "cmu_bvh": 120, "reactidle_bvh": 48}
_COCO_IMAGES = 50
_NUMPY_REPR = re.compile(r"\bnp\.[a-z_]+[0-9]*\(")


# ====================================================================== seeds
@dataclass
class Seed:
    """A real file with its companions, laid out as its reader expects; cases mutate copies.

    folder: the files; target: what a case reads (relative: a file, or a dataset folder);
    files: relative path -> "text" | "json" | "npz" of every file a case may mutate (the
    target's first); reader: "import" (import_path, and the CLI) or "predictions"."""

    format: str
    name: str
    folder: Path
    target: str
    files: dict[str, str]
    reader: str = "import"


def _smallest(paths) -> Path | None:
    paths = [p for p in paths if p.is_file()]
    return min(paths, key=lambda p: (p.stat().st_size, p.name)) if paths else None


def _text_of(path: Path) -> str:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw.decode("latin-1")  # keeps every byte as it is (HDM05 has Latin-1 comments)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("latin-1"))


def _trim_bvh(text: str, n_frames: int | None) -> str:
    """The first ``n_frames`` MOTION rows of a BVH text, with 'Frames:' set to match."""
    if n_frames is None:
        return text
    m = re.search(r"(?mi)^[ \t]*Frames:?[ \t]*\d+[ \t]*\r?\n[ \t]*Frame[ \t]*Time:?[ \t]*(\S+)[^\n]*\n", text)
    if m is None:
        return text
    rows = [line for line in text[m.end():].split("\n") if line.strip()][:n_frames]
    return f"{text[:m.start()]}Frames: {len(rows)}\nFrame Time: {m.group(1)}\n" + "\n".join(rows) + "\n"


def _trim_amc(text: str, n_frames: int | None) -> str:
    """The header and the first ``n_frames`` frames of an AMC text."""
    if n_frames is None:
        return text
    out, frames = [], 0
    for line in text.split("\n"):
        if line.strip().isdigit():
            frames += 1
            if frames > n_frames:
                break
        out.append(line)
    return "\n".join(out) + "\n"


def _index_rows(index: Path, stem: str, dest: Path) -> bool:
    """Copy the header and the row of ``stem`` of a data set's index.csv to ``dest``."""
    if not index.is_file():
        return False
    with open(index, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    keep = [rows[0]] + [r for r in rows[1:] if any(strip_suffixes(c) == stem for c in r)]
    if len(keep) < 2:
        return False
    with open(dest, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(keep)
    return True


def _amc_seed(fmt: str, amc: Path | None, asf: Path | None, dest: Path, index: Path | None = None) -> list[Seed]:
    if amc is None or asf is None or not asf.is_file():
        return []
    folder = dest / fmt
    name = strip_suffixes(amc.name) + ".amc"
    _write_text(folder / "amc" / name, _trim_amc(_text_of(amc), _SEED_FRAMES.get(fmt)))
    _write_text(folder / "asf" / asf.name, _text_of(asf))
    files = {f"amc/{name}": "text", f"asf/{asf.name}": "text"}
    if index is not None and _index_rows(index, strip_suffixes(amc.name), folder / "index.csv"):
        files["index.csv"] = "text"
    return [Seed(fmt, name, folder, f"amc/{name}", files)]


def _bvh_seed(fmt: str, bvh: Path | None, dest: Path, tag: str = "", extra: dict[Path, str] | None = None) -> list[Seed]:
    """A BVH seed; ``extra`` maps real companion files to their relative place in the seed."""
    if bvh is None:
        return []
    folder = dest / f"{fmt}{tag}"
    name = strip_suffixes(bvh.name) + ".bvh"
    _write_text(folder / "data" / name, _trim_bvh(_text_of(bvh), _SEED_FRAMES.get(fmt)))
    files = {f"data/{name}": "text"}
    for src, rel in (extra or {}).items():
        if src.is_file():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, folder / rel)
            files[rel] = "json" if rel.endswith(".json") else "text"
    return [Seed(fmt, name, folder, f"data/{name}", files)]


def _coco_slice(src: Path, dest: Path, n_images: int = _COCO_IMAGES) -> Path:
    """The first ``n_images`` images of a COCO file with their annotations (a small, fast seed)."""
    data = json.loads(src.read_text(encoding="utf-8"))
    ids, images = [], []
    for im in data["images"]:
        if im["id"] not in ids:
            ids.append(im["id"])
            images.append(im)
        if len(ids) == n_images:
            break
    wanted = set(ids)
    small = {"categories": data.get("categories", []), "images": images,
             "annotations": [a for a in data["annotations"] if a.get("image_id") in wanted]}
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(small, indent=1), encoding="utf-8")
    return dest


# MPII-16 joints from COCO-17 indices: a joint, the midpoint of two, or None (not labelled)
_MPII_FROM_COCO = ((16,), (14,), (12,), (11,), (13,), (15,), (11, 12), (5, 6), (0,), None,
                   (10,), (8,), (6,), (5,), (7,), (9,))


def _mpii_from_coco(coco_json: Path, dest: Path) -> Path:
    """An MPII json (mmpose/HRNet form, 1-based pixels) made from real COCO keypoints."""
    data = json.loads(coco_json.read_text(encoding="utf-8"))
    names = {im["id"]: im.get("file_name", f"{im['id']}.jpg") for im in data["images"]}
    entries = []
    for a in data["annotations"]:
        kp = np.array(a.get("keypoints", []), dtype=np.float64).reshape(-1, 3)
        if len(kp) != 17 or not (kp[:, 2] > 0).any():
            continue
        joints, vis = [], []
        for src in _MPII_FROM_COCO:
            if src is None or not all(kp[j, 2] > 0 for j in src):
                joints.append([-1.0, -1.0])
                vis.append(0)
            else:
                joints.append([float(kp[list(src), 0].mean() + 1), float(kp[list(src), 1].mean() + 1)])
                vis.append(1)
        x, y, w, h = a.get("bbox", [0, 0, 1, 1])
        entries.append({"image": names[a["image_id"]], "center": [x + w / 2 + 1, y + h / 2 + 1],
                        "scale": max(h, 1.0) / 200.0, "joints": joints, "joints_vis": vis})
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(entries, indent=1), encoding="utf-8")
    return dest


def _derived_seeds(dest: Path, wanted: set[str], mocap: PoseSet | None, coco_json: Path | None) -> dict[str, list[Seed]]:
    """Seeds of the formats posecurator writes (those ``wanted``), made from real data with its own writers."""
    out: dict[str, list[Seed]] = defaultdict(list)
    if mocap is not None:
        if "videopose3d" in wanted:
            from posecurator.io.h36m_npz import write_videopose3d_npz
            folder = dest / "videopose3d"
            write_videopose3d_npz(mocap, folder / "data_3d_fuzz.npz")
            out["videopose3d"].append(Seed("videopose3d", "data_3d_fuzz.npz", folder, "data_3d_fuzz.npz",
                                           {"data_3d_fuzz.npz": "npz"}))
        if "mmpose" in wanted:
            from posecurator.io.h36m_npz import write_mmpose_h36m_npz
            folder = dest / "mmpose"
            npz, cams = write_mmpose_h36m_npz(mocap, folder / "h36m_fuzz.npz")
            out["mmpose"].append(Seed("mmpose", npz.name, folder, npz.name, {npz.name: "npz", cams.name: "json"}))
        if "poseset" in wanted:
            folder = dest / "poseset3d"
            mocap.save(folder / "mocap.pcs", chunk_size=len(mocap) // 2 + 1)
            out["poseset"].append(_poseset_seed(folder, "mocap.pcs"))
        if wanted & {"predictions_npz", "predictions_json"}:
            for fmt, seed in _prediction_seeds(dest / "predictions", mocap).items():
                out[fmt].append(seed)
    if coco_json is not None:
        if "mpii" in wanted:
            folder = dest / "mpii"
            _mpii_from_coco(coco_json, folder / "mpii_fuzz.json")
            out["mpii"].append(Seed("mpii", "mpii_fuzz.json", folder, "mpii_fuzz.json", {"mpii_fuzz.json": "json"}))
        if "poseset" in wanted:
            from posecurator.io.coco import read_coco
            folder = dest / "poseset2d"
            coco2d = read_coco(coco_json)
            coco2d.save(folder / "coco.pcs", chunk_size=len(coco2d) // 2 + 1)
            out["poseset"].append(_poseset_seed(folder, "coco.pcs"))
    return out


def _prediction_seeds(folder: Path, mocap: PoseSet) -> dict[str, Seed]:
    """A predictions npz and json: the poses 5 m in front of a camera, intrinsics for every other sample."""
    from posecurator.io.predictions import write_predictions

    folder.mkdir(parents=True, exist_ok=True)
    cam = mocap.joints3d.astype(np.float64) + [0.0, 0.0, 5000.0]
    f = np.where((np.arange(len(cam)) % 2 == 0)[:, None], 1145.0, np.nan) * np.ones((1, 2))
    c = np.where(np.isfinite(f), 500.0, np.nan)
    write_predictions(folder / "predictions.npz", mocap.sample_id, cam, f=f, c=c)
    doc = {"layout": "h36m17", "units": "m", "predictions": {}}
    for k, i in enumerate(mocap.sample_id[:20].tolist()):
        entry = {"joints3d": (cam[k] / 1000).round(6).tolist()}
        if k % 2 == 0:
            entry["camera"] = {"f": [1145.0, 1145.0], "c": [500.0, 500.0]}
        doc["predictions"][str(i)] = entry
    (folder / "predictions.json").write_text(json.dumps(doc, indent=1))
    return {"predictions_npz": Seed("predictions_npz", "predictions.npz", folder, "predictions.npz",
                                    {"predictions.npz": "npz"}, reader="predictions"),
            "predictions_json": Seed("predictions_json", "predictions.json", folder, "predictions.json",
                                     {"predictions.json": "json"}, reader="predictions")}


def _poseset_seed(folder: Path, name: str) -> Seed:
    files = {f"{name}/{META_FILE}": "json"}
    files.update({f"{name}/{p.name}": "npz" for p in sorted((folder / name).glob("chunk-*.npz"))})
    return Seed("poseset", name, folder, name, files)


_NEEDS_MOCAP = {"videopose3d", "mmpose", "poseset", "predictions_npz", "predictions_json"}
_NEEDS_COCO = {"coco", "mpii", "poseset"}


def build_corpus(data_root: str | os.PathLike, dest: str | os.PathLike, formats=None) -> dict[str, list[Seed]]:
    """Seeds of every format (or of ``formats``) from the real data under ``data_root``, written
    under ``dest``. Formats whose real data is absent are left out (the result says which exist)."""
    from posecurator.io.folder import import_path

    root, dest = Path(data_root), Path(dest)
    wanted = set(formats or FORMATS)
    # the mocap seeds also give the 3D the npz, dataset and predictions seeds are written from
    mocap_formats = wanted | ({"hdm05_amc", "cmu_amc"} if wanted & _NEEDS_MOCAP else set())
    seeds = _mocap_seeds(root, dest, mocap_formats)
    coco = _smallest((root / "coco").glob("*.json")) if (root / "coco").is_dir() and wanted & _NEEDS_COCO else None
    coco_json = _coco_slice(coco, dest / "coco" / "person_keypoints_fuzz.json") if coco is not None else None
    if coco_json is not None:
        seeds["coco"].append(Seed("coco", coco_json.name, coco_json.parent, coco_json.name, {coco_json.name: "json"}))
    mocap = _mocap_for_derived(seeds, import_path) if wanted & _NEEDS_MOCAP else None
    for fmt, more in _derived_seeds(dest / "derived", wanted, mocap, coco_json).items():
        seeds[fmt] += more
    clip = _deepmimic_clip() if "deepmimic" in wanted else None
    if clip is not None:
        folder = dest / "deepmimic"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(clip, folder / clip.name)
        seeds["deepmimic"].append(Seed("deepmimic", clip.name, folder, clip.name, {clip.name: "json"}))
    return {fmt: seeds[fmt] for fmt in FORMATS if fmt in wanted and seeds.get(fmt)}


def _mocap_seeds(root: Path, dest: Path, wanted: set[str]) -> dict[str, list[Seed]]:
    """Seeds of the real mocap files (the smallest of each kind, trimmed to a few frames)."""
    from posecurator.io.asf_amc import find_asf

    seeds: dict[str, list[Seed]] = defaultdict(list)
    if "hdm05_amc" in wanted and (root / "hdm05" / "amc").is_dir():
        amc = _smallest((root / "hdm05" / "amc").glob("*.amc*"))
        asf = None
        if amc is not None:
            with contextlib.suppress(PoseCuratorError):
                asf = find_asf(amc)
        seeds["hdm05_amc"] += _amc_seed("hdm05_amc", amc, asf, dest, root / "hdm05" / "index.csv")
    if "cmu_amc" in wanted:
        seeds["cmu_amc"] += _amc_seed("cmu_amc", _smallest((root / "cmu").glob("*_*.amc")),
                                      _smallest((root / "cmu").glob("11.asf")), dest)
    if "cmu_bvh" in wanted:
        for k, name in enumerate(("01_01.bvh", "bvh11_131_01.bvh")):
            seeds["cmu_bvh"] += _bvh_seed("cmu_bvh", _smallest([root / "cmu" / name]), dest, tag=str(k))
    if "bandai_bvh" in wanted and (root / "bandai").is_dir():
        bandai = _smallest((root / "bandai" / "dataset-1" / "data").glob("*.bvh.gz"))
        if bandai is not None:
            label = bandai.with_name(strip_suffixes(bandai.name) + ".json")
            cfg = root / "bandai" / "dataset-1" / "cfg"
            seeds["bandai_bvh"] += _bvh_seed("bandai_bvh", bandai, dest, extra={
                label: f"data/{label.name}", cfg / "content_label.txt": "cfg/content_label.txt",
                cfg / "style_label.txt": "cfg/style_label.txt"})
    if "reactidle_bvh" in wanted and (root / "reactidle").is_dir():
        seeds["reactidle_bvh"] += _bvh_seed("reactidle_bvh", _smallest((root / "reactidle").glob("*/*.bvh*")), dest)
    return seeds


def _mocap_for_derived(seeds: dict[str, list[Seed]], import_path) -> PoseSet | None:
    """Two real 3D clips (HDM05 and CMU where present) as one small pose set for the npz writers."""
    parts = []
    for fmt in ("hdm05_amc", "cmu_amc", "bandai_bvh", "cmu_bvh"):
        for seed in seeds.get(fmt, [])[:1]:
            if len(parts) < 2:
                parts.append(import_path(seed.folder / seed.target, progress=False))
    if not parts:
        return None
    out = PoseSet.concatenate(parts, renumber=True)
    out.attrs = {}
    return out


def _deepmimic_clip() -> Path | None:
    """The smallest DeepMimic reference motion shipped with pybullet (None without pybullet)."""
    try:
        from posecurator.io.deepmimic import demo_clips
        return _smallest(demo_clips())
    except (ImportError, OSError):
        return None


# ====================================================================== one case
@dataclass
class Case:
    """One fuzz case: which seed, which file, which mutation, and what came out."""

    index: int
    format: str
    seed: str
    file: str
    mutation: str
    detail: str = ""
    via_cli: bool = False
    outcome: str = ""
    problem: str = ""
    message: str = ""
    seconds: float = 0.0

    def description(self) -> str:
        via = " (via the CLI)" if self.via_cli else ""
        return f"case {self.index}: {self.format} {self.seed}: {self.mutation} {self.file}: {self.detail}{via}"


def make_case(index: int, seed: int, corpus: dict[str, list[Seed]], case_dir: Path) -> tuple[Case, Seed]:
    """Lay out case ``index`` (a mutated copy of one seed) in ``case_dir``; the same (index, seed)
    always gives the same case."""
    rng = random.Random(f"{seed}:{index}")
    formats = list(corpus)
    fmt = formats[index % len(formats)]   # round robin: every format gets its share of any run
    src = rng.choice(corpus[fmt])
    shutil.copytree(src.folder, case_dir)
    files = list(src.files)
    companion = len(files) > 1 and rng.random() < 0.3
    rel = rng.choice(files[1:]) if companion else files[0]
    if companion and rng.random() < 0.15:
        (case_dir / rel).unlink()
        return Case(index, fmt, src.name, rel, "missing_companion", "removed"), src
    table = MUTATIONS[src.files[rel]]
    names = list(table)
    name = rng.choices(names, weights=[WEIGHTS.get(n, 1) for n in names])[0]
    path = case_dir / rel
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")   # casts of out-of-range values while making the case: not the reader's
        data, detail = table[name](path.read_bytes(), rng)
    path.write_bytes(data)
    return Case(index, fmt, src.name, rel, name, detail), src


class _CaseTimeout(Exception):
    """A case ran past CASE_TIME_LIMIT_S."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Interrupt the block after ``seconds`` (main thread on POSIX only; elsewhere no limit)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum, frame):
        raise _CaseTimeout(f"ran past {seconds:g} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _read(seed: Seed, target: Path):
    """What the case's reader returns for ``target`` (raises what the reader raises)."""
    if seed.reader == "predictions":
        from posecurator.io.predictions import read_predictions
        return read_predictions(target)
    from posecurator.io.folder import import_path
    return import_path(target, progress=False)


def _import_command(argv: list[str]) -> int:
    """``posecurator import SRC -o OUT`` as the CLI runs it (used when no CLI main is given)."""
    from posecurator.io.folder import import_path

    src, out = argv[1], argv[argv.index("-o") + 1]
    try:
        ps = import_path(src, progress=False)
        ps.save(out)
    except PoseCuratorError as e:
        print(f"posecurator import: error: {e}", file=sys.stderr)
        return 2
    return 0


def run_case(case: Case, seed: Seed, case_dir: Path, *, cli_main: Callable | None = None) -> Case:
    """Read the mutated case and classify the outcome (sets case.outcome, .problem, .message)."""
    target = case_dir / seed.target
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with _time_limit(CASE_TIME_LIMIT_S):
                if case.via_cli:
                    _run_cli(case, target, case_dir, cli_main or _import_command)
                else:
                    _classify_result(case, _read(seed, target), seed, case_dir)
        except PoseCuratorError as e:
            _classify_error(case, e, case_dir)
        except Exception as e:  # noqa: BLE001 - anything else is what the fuzz is looking for
            case.outcome, case.problem = "crash", "exception"
            case.message = traceback.format_exception_only(type(e), e)[-1].strip()[:500]
    case.seconds = time.perf_counter() - start
    _judge_warnings(case, caught, case_dir)
    return case


def _run_cli(case: Case, target: Path, case_dir: Path, cli_main: Callable) -> None:
    """``posecurator import TARGET -o OUT``: a failure must print one line and leave nothing."""
    out_parent = case_dir.parent / f"{case_dir.name}-out"
    out_parent.mkdir()
    out = out_parent / "out.pcs"
    stdout, stderr = io.StringIO(), io.StringIO()
    # an internal error's traceback log goes to the case's folders, not to the user's temp folder
    old_log = os.environ.get("POSECURATOR_LOG_DIR")
    os.environ["POSECURATOR_LOG_DIR"] = str(case_dir / ".logs")
    try:
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                rc = cli_main(["import", str(target), "-o", str(out), "-q"])
        except SystemExit as e:  # argparse gave up: not a clean error either
            rc = e.code if isinstance(e.code, int) else 1
        _judge_cli(case, rc, stderr.getvalue(), out, case_dir)
    finally:
        if old_log is None:
            os.environ.pop("POSECURATOR_LOG_DIR", None)
        else:
            os.environ["POSECURATOR_LOG_DIR"] = old_log
        shutil.rmtree(out_parent, ignore_errors=True)


_CLI_ERROR = "posecurator import: error: "
_CLI_WARNING = "posecurator import: warning: "


def _judge_cli(case: Case, rc: int, stderr: str, out: Path, case_dir: Path) -> None:
    """Outcome of a CLI case from its exit code, what it printed and what it left in OUT's folder."""
    left = sorted(p.name for p in out.parent.iterdir())
    lines = [line for line in stderr.splitlines() if line.strip()]
    if rc == 0:
        noise = [line for line in lines if not (line.startswith(_CLI_WARNING) and str(case_dir) in line)]
        if left != [out.name] or not (out / META_FILE).is_file():
            case.outcome, case.problem = "half_written", f"exit 0 but the output folder holds {left}"
        elif noise:
            case.outcome, case.problem, case.message = "crash", "printed more than its own notes", noise[0][:500]
        else:
            try:
                _classify_result(case, PoseSet.load(out), None, case_dir)
            except PoseCuratorError as e:
                case.outcome, case.problem, case.message = "half_written", "exit 0 but the output does not load", str(e)
        return
    case.message = (lines[-1] if lines else "")[:500]
    if rc != 2:
        case.outcome, case.problem = "crash", f"exit {rc}"
    elif left:
        case.outcome, case.problem = "half_written", f"exit {rc} left {left} behind"
    elif len(lines) != 1 or not lines[0].startswith(_CLI_ERROR):
        case.outcome, case.problem = "half_written", f"exit {rc} printed {len(lines)} lines"
    else:
        case.message = lines[0][len(_CLI_ERROR):]
        case.problem = _message_problem(case.message, case_dir, mapping="joints are: " in case.message)
        case.outcome = "crash" if case.problem else "clean_error"


def _classify_error(case: Case, e: PoseCuratorError, case_dir: Path) -> None:
    case.message = str(e)
    case.problem = _message_problem(case.message, case_dir, mapping=isinstance(e, MappingError))
    case.outcome = "crash" if case.problem else "clean_error"


def _message_problem(message: str, case_dir: Path, *, mapping: bool = False) -> str:
    """Why an error message is not a clean one ("" when it is)."""
    if "\n" in message or "\r" in message:
        return "multi-line message"
    if str(case_dir) not in message:
        return "message does not name the file"
    short = message.replace(str(case_dir), "<case>")
    if mapping:
        # a MappingError lists the skeleton's joint names on purpose (bounded by the readers)
        short = re.sub(r"joints are: .*$", "joints are: ...", short)
    if len(short) > MAX_MESSAGE:
        return f"message of {len(short)} characters"
    if _NUMPY_REPR.search(message):
        return "numpy repr in message"
    return ""


def _judge_warnings(case: Case, caught, case_dir: Path) -> None:
    """Warnings turn a case into a crash, except posecurator's own notes (UserWarnings naming the
    file) on a valid result: a RuntimeWarning, or any warning before an error line, is noise."""
    for w in caught:
        own = issubclass(w.category, UserWarning) and str(w.message).startswith(str(case_dir))
        if own and case.outcome == "valid":
            continue
        if case.outcome != "crash":
            case.outcome, case.problem = "crash", "warning"
            case.message = f"{w.category.__name__}: {str(w.message)[:300]}".replace(str(case_dir), "<case>")
        return


def _classify_result(case: Case, result, seed: Seed | None, case_dir: Path) -> None:
    problem = _predictions_problem(result) if isinstance(result, dict) else _poseset_problem(result, seed)
    case.outcome = "crash" if problem else "valid"
    case.problem = f"invalid result accepted: {problem}" if problem else ""


def _poseset_problem(ps, seed: Seed | None) -> str:
    """Why an accepted pose set is not sane ("" when it is)."""
    if not isinstance(ps, PoseSet):
        return f"returned {type(ps).__name__}"
    if len(ps) == 0:
        return "no samples"
    if not (isinstance(ps.fps, (int, float)) and 0 < ps.fps <= MAX_FPS):
        return f"fps {ps.fps!r}"
    with np.errstate(invalid="ignore", over="ignore"):
        if ps.joints3d is not None:
            if ps.joints3d.dtype != np.float32 or not np.isfinite(ps.joints3d).all():
                return "joints3d not finite float32"
            if np.abs(ps.joints3d).max() > MAX_ABS_MM:
                return f"joints3d beyond {MAX_ABS_MM:g} mm"
        if ps.joints2d is not None:
            labelled = np.ones(ps.joints2d.shape[:2], bool) if ps.visibility is None else ps.visibility > 0
            pts = ps.joints2d[labelled]
            if ps.joints2d.dtype != np.float32 or not np.isfinite(pts).all() or (np.abs(pts) > MAX_ABS_PX).any():
                return "labelled joints2d not finite or beyond range"
        if ps.visibility is not None and not ((ps.visibility >= 0) & (ps.visibility <= 1)).all():
            return "visibility outside [0, 1]"
        if ps.bbox is not None and (np.isinf(ps.bbox).any() or (np.abs(np.nan_to_num(ps.bbox)) > MAX_ABS_PX).any()):
            return "bbox infinite or beyond range"
    if ps.camera.size and (ps.camera.min() < -1 or ps.camera.max() >= len(ps.cameras)):
        return "camera column outside the camera table"
    for name in ("source", "subject", "activity", "clip", "operator"):
        if getattr(ps, name).dtype.kind != "U":
            return f"{name} is not text"
    if seed is not None and seed.format != "poseset" and len(np.unique(ps.sample_id)) != len(ps):
        return "duplicate sample ids"
    for cam in ps.cameras:
        try:
            if not all(np.isfinite(np.asarray(cam.get(k, 0.0), dtype=np.float64)).all() for k in ("R", "t", "f", "c")):
                return "camera with non-finite parameters"
        except (AttributeError, TypeError, ValueError):
            return "camera that is not a dict of numeric arrays"
    try:
        json.dumps(ps.attrs)   # free-form notes: anything the dataset header can hold (NaN included)
    except (TypeError, ValueError):
        return "attrs not JSON"
    return ""


def _predictions_problem(out: dict) -> str:
    ids, joints = out.get("sample_id"), out.get("joints3d")
    if not isinstance(ids, np.ndarray) or ids.dtype != np.int64 or len(np.unique(ids)) != len(ids):
        return "sample ids not unique int64"
    if not isinstance(joints, np.ndarray) or joints.shape != (len(ids), 17, 3) or not np.isfinite(joints).all():
        return "joints3d not finite (N, 17, 3)"
    for key in ("f", "c"):
        arr = out.get(key)
        if not isinstance(arr, np.ndarray) or arr.shape != (len(ids), 2) or np.isinf(arr).any():
            return f"{key} not (N, 2) finite or NaN"
    return ""


# ====================================================================== the run
def run_fuzz(data_root: str | os.PathLike, *, cases: int, seed: int, out_dir: str | os.PathLike | None = None,
             formats=None, progress: bool = True, cli_main: Callable | None = None,
             case_ids: list[int] | None = None) -> dict:
    """Fuzz the readers with ``cases`` mutated copies of real files (see the module docstring).

    data_root: folder laid out as ../shared/data. seed: the same seed gives the same cases.
    out_dir: where to write ``fuzz-report.json`` and the inputs of the first crashing cases
    (``crash-inputs/``); None writes nothing. formats: names of FORMATS to fuzz (default all
    whose data exist). cli_main: the CLI's ``main(argv) -> int`` for the CLI cases (default: the
    same steps run here). case_ids: run only these case numbers (to rerun one case).
    Returns the report: cases, wall time, outcome counts overall, per format and per mutation,
    the first crashes and half-written cases with their description and last error line, a few
    clean error messages per format, and the slowest cases."""
    unknown = sorted(set(formats or ()) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown formats {unknown}; known: {', '.join(FORMATS)}")
    if cases < 0:
        raise ValueError(f"cases must be >= 0, got {cases}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pcfuzz-") as tmp:
        work = Path(tmp).resolve()
        corpus = build_corpus(data_root, work / "seeds", formats)
        if not corpus:
            raise DataError(data_root, "no real data of the fuzzed formats here (expects the ../shared/data layout)")
        results = _run_cases(corpus, work / "cases", range(cases) if case_ids is None else case_ids, seed,
                             cli_main=cli_main, progress=progress, out_dir=out_dir)
    report = _report(results, corpus, seed=seed, wall_s=time.perf_counter() - t0)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / REPORT_FILE).write_text(json.dumps(report, indent=1))
    return report


def _run_cases(corpus, cases_dir: Path, indices, seed: int, *, cli_main, progress: bool, out_dir) -> list[Case]:
    from tqdm.auto import tqdm

    cases_dir.mkdir(parents=True)
    results, kept = [], 0
    bar = tqdm(indices, desc="fuzz", unit="case", disable=not progress, dynamic_ncols=True)
    for i in bar:
        case_dir = cases_dir / f"c{i:06d}"
        case, src = make_case(i, seed, corpus, case_dir)
        case.via_cli = src.reader == "import" and random.Random(f"cli:{seed}:{i}").random() < CLI_FRACTION
        run_case(case, src, case_dir, cli_main=cli_main)
        if case.outcome in ("crash", "half_written") and out_dir is not None and kept < _KEEP_EXAMPLES:
            shutil.copytree(case_dir, Path(out_dir) / "crash-inputs" / case_dir.name, dirs_exist_ok=True)
            kept += 1
        shutil.rmtree(case_dir, ignore_errors=True)
        results.append(case)
        bad = sum(c.outcome in ("crash", "half_written") for c in results)
        if bad:
            bar.set_postfix(crashes=bad, refresh=False)
    return results


def _report(results: list[Case], corpus: dict[str, list[Seed]], *, seed: int, wall_s: float) -> dict:
    outcomes = ("valid", "clean_error", "crash", "half_written")
    totals = dict.fromkeys(outcomes, 0)
    per_format = {fmt: dict.fromkeys(outcomes, 0) for fmt in corpus}
    per_mutation: dict[str, dict[str, int]] = {}
    examples: dict[str, list[str]] = defaultdict(list)
    for c in results:
        totals[c.outcome] += 1
        per_format[c.format][c.outcome] += 1
        per_mutation.setdefault(c.mutation, dict.fromkeys(outcomes, 0))[c.outcome] += 1
        if c.outcome == "clean_error" and len(examples[c.format]) < 3:
            examples[c.format].append(re.sub(r"/\S*/c\d{6}/", "", c.message))

    def listed(kind):
        return [{"case": c.index, "description": c.description(), "problem": c.problem,
                 "error": c.message.replace("\n", " ")[:500]}
                for c in results if c.outcome == kind][:_KEEP_EXAMPLES]

    slowest = sorted(results, key=lambda c: -c.seconds)[:5]
    return {
        "seed": seed, "cases": len(results), "wall_s": round(wall_s, 2),
        "cases_per_s": round(len(results) / wall_s, 1) if wall_s > 0 else None,
        "cli_cases": sum(c.via_cli for c in results),
        "formats": {fmt: [s.name for s in seeds] for fmt, seeds in corpus.items()},
        "outcomes": totals,
        "per_format": per_format,
        "per_mutation": dict(sorted(per_mutation.items())),
        "crashes": listed("crash"),
        "half_written": listed("half_written"),
        "error_examples": dict(examples),
        "slowest": [{"case": c.index, "seconds": round(c.seconds, 3), "description": c.description()} for c in slowest],
    }


def format_table(report: dict) -> str:
    """The outcome counts per format as a plain-text table (what ``posecurator fuzz`` prints)."""
    cols = ("valid", "clean_error", "crash", "half_written")
    rows = [("format", *cols)] + [(fmt, *(str(v[c]) for c in cols)) for fmt, v in report["per_format"].items()]
    rows.append(("total", *(str(report["outcomes"][c]) for c in cols)))
    widths = [max(len(r[k]) for r in rows) for k in range(len(cols) + 1)]
    lines = ["  ".join(cell.ljust(w) if k == 0 else cell.rjust(w) for k, (cell, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.insert(len(lines) - 1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
