"""Captions of samples and clips for PoseSyn: a source's own labels in words, plus what the
deterministic describer (:mod:`posecurator.synthesis.describe`) measures.

Where a caption comes from is recorded, never substituted silently (``CaptionTable.source``):

====================  =========================================================================
source                meaning
====================  =========================================================================
``user``              a captions file the user gave (:func:`read_captions_file`)
``captioner:<name>``  an image-language model the user has (:class:`Captioner`; none shipped)
``describer``         the describer's text of the sample's pose (or of a clip window's motion)
``labels+describer``  a clip's label in words (:func:`label_phrase`) and the describer's text
====================  =========================================================================

Label phrases (:func:`label_phrase`) come from small explicit tables for the data this project
knows (HDM05 class names, Bandai contents and styles, the CMU clips in ``../shared/data``, the
ReActIdle kinds) and from generic fallbacks for anybody else's labels: camelCase class names are
split into words (``L``/``R`` -> left/right, ``<n>Reps`` dropped), hyphenated ones are spaced,
and a free-text description is quoted as it is.

Storage is plain JSON (never pickle), written atomically (a temporary file renamed into place).
"""

from __future__ import annotations

import collections
import csv
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from posecurator.errors import DataError, PoseCuratorError
from posecurator.fileio import atomic_write_json
from posecurator.poseset import PoseSet
from posecurator.synthesis.describe import PoseDescriber

CAPTIONS_FORMAT = "posecurator-captions"
CAPTIONS_VERSION = 1
WORLD_UP = (0.0, 0.0, 1.0)      # pose sets: world frame, Z up
CAMERA_UP = (0.0, -1.0, 0.0)    # an estimator's 3D prediction in the camera frame: y points down

# ---------------------------------------------------------------------- label tables
# HDM05 motion classes in ../shared/data/hdm05 (Müller et al. 2007, tech. report CG-2007-2)
HDM05_PHRASES: dict[str, str] = {
    "depositFloorR": "puts something down on the floor with the right hand",
    "elbowToKnee1RepsLelbowStart": "touches each knee with the opposite elbow once, starting with the left elbow",
    "grabHighR": "reaches up and grabs something high with the right hand",
    "hopBothLegs1hops": "hops once on both legs",
    "jogLeftCircle4StepsRstart": "jogs four steps in a circle to the left, starting with the right foot",
    "kickLFront1Reps": "kicks to the front with the left leg once",
    "lieDownFloor": "lies down on the floor",
    "rotateArmsBothBackward1Reps": "rotates both arms backward once",
    "sneak2StepsLStart": "sneaks two steps, starting with the left foot",
    "squat1Reps": "squats once",
    "throwBasketball": "throws a basketball",
}

# Bandai Namco Research motion datasets 1 and 2: contents (verb phrases) and styles (manners)
BANDAI_CONTENT: dict[str, str] = {
    "walk": "walks", "run": "runs", "dash": "dashes", "walk-back": "walks backward",
    "walk-left": "walks to the left", "walk-right": "walks to the right",
    "walk-turn-left": "walks and turns left", "walk-turn-right": "walks and turns right",
    "bow": "bows", "bye": "waves goodbye", "byebye": "waves goodbye with both hands",
    "guide": "shows the way with a gesture", "respond": "raises a hand to respond", "call": "calls out to someone",
    "punch": "punches", "kick": "kicks", "slash": "slashes", "dance-long": "dances", "dance-short": "dances briefly",
    "wave-left-hand": "waves the left hand", "wave-right-hand": "waves the right hand",
    "wave-both-hands": "waves both hands", "raise-up-left-hand": "raises the left hand",
    "raise-up-right-hand": "raises the right hand", "raise-up-both-hands": "raises both hands",
}
BANDAI_STYLE: dict[str, str] = {
    "normal": "", "happy": "happily", "sad": "sadly", "angry": "angrily", "proud": "proudly",
    "not-confident": "without confidence", "masculinity": "in a masculine manner", "masculine": "in a masculine manner",
    "feminine": "in a feminine manner", "childish": "in a childish manner", "children": "in a childish manner",
    "old": "like an old person", "elderly": "like an elderly person", "tired": "in a tired manner",
    "exhausted": "in an exhausted manner", "active": "in an active manner", "youthful": "in a youthful manner",
    "musical": "in a musical manner", "giant": "like a giant", "chimpira": "like a thug",
}

# the CMU clips in ../shared/data/cmu (SOURCE.txt, bvh11_README.md), by subject_trial
CMU_PHRASES: dict[str, str] = {
    "01_01": "plays on a playground: jumps forward and turns around",
    "11_01": "kicks a soccer ball",
    "131_01": "starts walking and stops, in a Michael Jackson style",
    "131_02": "starts walking and stops, in a Michael Jackson style",
    "131_03": "starts hopping and stops, in a Michael Jackson style",
}

# ReActIdle: standing idle, performed on request (acted) or caught unawares (genuine)
REACTIDLE_PHRASES: dict[str, str] = {"acted": "stands idle, acting", "genuine": "stands idle"}

UNKNOWN_LABELS = {"", "unknown", "none", "nan"}
_COUNTS = {1: "once", 2: "twice", 3: "three times", 4: "four times", 5: "five times"}
_NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}
_SIDES = {"L": "left", "R": "right"}
_CAMEL_TOKEN = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_CMU_KEY = re.compile(r"(\d+_\d+)$")
_NOT_A_VERB = {"both", "left", "right", "high", "low", "front", "back", "side", "floor", "a", "the"}


def third_person(verb: str) -> str:
    """"kick" -> "kicks", "punch" -> "punches", "carry" -> "carries", "go" -> "goes"; a gerund
    becomes "is ...ing" ("jumping" -> "is jumping"); a word already ending in a single s is kept."""
    v = verb.lower()
    if v in ("be", "is"):
        return "is"
    if v == "have":
        return "has"
    if v.endswith("ing") and len(v) > 4:
        return "is " + v
    if v.endswith("s") and not v.endswith("ss"):
        return v
    if re.search(r"(s|sh|ch|x|z|o)$", v):
        return v + "es"
    if re.search(r"[^aeiou]y$", v):
        return v[:-1] + "ies"
    return v + "s"


def camel_case_phrase(name: str) -> str:
    """Words of a camelCase class name of someone else's data (the generic fallback).

    "kickRSide2Reps" -> "kicks right side"; "walkBackwards3StepsLstart" -> "walks backwards three
    steps, starting with the left foot"; "throwSittingHighR" -> "throws sitting high, right".
    The first word is taken as the verb; L/R become left/right; ``<n>Reps`` is dropped."""
    tokens = _CAMEL_TOKEN.findall(name.replace("_", " ").replace("-", " "))
    words: list[str] = []
    tail: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if tok.isdigit():
            n = int(tok)
            if nxt.lower() in ("reps", "rep", "hops", "hop", "times"):
                i += 2                                               # repetition counts carry no meaning here
                continue
            words.append(_NUMBERS.get(n, tok))
        elif tok in _SIDES:
            words.append(_SIDES[tok])
        elif len(tok) > 1 and tok[0] in _SIDES and tok[1:].islower():
            # "Lstart" / "Rstart": which foot starts; "Lelbow", "Rhand": a side's body part
            side = _SIDES[tok[0]]
            if tok[1:] == "start":
                tail.append(f"starting with the {side} foot")
            else:
                words.append(f"{side} {tok[1:]}")
        else:
            words.append(tok.lower())
        i += 1
    if not words:
        return ", ".join(tail)
    if words[0] not in _NOT_A_VERB:
        words[0] = third_person(words[0])
    phrase = " ".join(words)
    return ", ".join([phrase] + tail)


def _spaced(label: str) -> str:
    return re.sub(r"[-_]+", " ", label).strip().lower()


def _hyphen_phrase(label: str) -> str:
    """"raise-up-left-hand" -> "raises up left hand" (first word taken as the verb)."""
    words = _spaced(label).split()
    if not words:
        return ""
    if words[0] not in _NOT_A_VERB:
        words[0] = third_person(words[0])
    return " ".join(words)


def _is_description(label: str) -> bool:
    """A free-text description ("playground - forward jumps, turn around"), not a class name."""
    return bool(re.search(r"\s|[,.;:]", label.strip()))


def _cmu_key(text: str) -> str:
    """"bvh11_131_01" -> "131_01"; "cmu/01_01.amc" -> "01_01"; "" when there is no subject_trial."""
    stem = text.replace("\\", "/").split("/")[-1].split(":")[-1]
    stem = re.sub(r"\.(amc|bvh)(\.gz)?$", "", stem, flags=re.I)
    m = _CMU_KEY.search(stem)
    if not m:
        return ""
    subject, trial = m.group(1).split("_")
    # CMU numbers subjects and trials with at least two digits ("01_01", "131_01")
    return f"{int(subject):02d}_{int(trial):02d}"


def label_phrase(source: str, activity: str, clip_info: dict | None = None, *, clip: str = "") -> str:
    """A source's own label of a clip, in words after "a person ..." ("" when there is none).

    source: the data set ("hdm05", "bandai", "cmu", "reactidle", or anything else). activity: the
    clip's activity label. clip_info: the clip's extra labels (``attrs["clip_info"][clip]``, e.g.
    Bandai's ``style``, a ``description``). clip: the clip id (CMU clips are looked up by it).
    Known labels use the tables of this module; unknown ones a generic fallback, so other
    people's labels still give words. Deterministic."""
    source = (source or "").strip().lower()
    activity = (activity or "").strip()
    info = clip_info or {}
    unknown = activity.lower() in UNKNOWN_LABELS
    description = str(info.get("description", "")).strip()
    if source == "cmu":
        if not unknown and _is_description(activity):
            return _described(activity)
        key = _cmu_key(clip) or _cmu_key(activity)
        if key in CMU_PHRASES:
            return CMU_PHRASES[key]
        return _described(description) if description else ("" if unknown else _generic(activity))
    if unknown:
        return _described(description) if description else ""
    if source == "hdm05" or activity in HDM05_PHRASES:
        return HDM05_PHRASES.get(activity) or camel_case_phrase(activity)
    if source == "bandai" or activity.lower() in BANDAI_CONTENT:
        phrase = BANDAI_CONTENT.get(activity.lower()) or _hyphen_phrase(activity)
        style = str(info.get("style", "")).strip().lower()
        manner = BANDAI_STYLE.get(style, f"in a {_spaced(style)} manner" if style else "")
        return f"{phrase} {manner}".strip()
    if source == "reactidle" and activity.lower() in REACTIDLE_PHRASES:
        return REACTIDLE_PHRASES[activity.lower()]
    return _generic(activity)


def _described(text: str) -> str:
    return f"does this: {text.strip().rstrip('.')}"


def _generic(label: str) -> str:
    """Fallback words of any label: a description, a hyphenated name or a camelCase name."""
    if _is_description(label):
        return _described(label)
    if "-" in label or "_" in label:
        return _hyphen_phrase(label)
    return camel_case_phrase(label)


# ---------------------------------------------------------------------- the caption table
@dataclass
class CaptionTable:
    """Captions of N samples or clip windows.

    sample_id (N,) int64: the sample captioned, or the first sample of a clip window. text (N,) str.
    source (N,) str: where each caption came from (module docstring). clip (N,) str: the clip of a
    window ("" for per-sample captions). frame_start / frame_stop (N,) int32: the window's frames
    [start, stop) within its clip (-1 for per-sample captions)."""

    sample_id: np.ndarray
    text: np.ndarray
    source: np.ndarray
    clip: np.ndarray | None = None
    frame_start: np.ndarray | None = None
    frame_stop: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)

    def __post_init__(self):
        self.sample_id = np.asarray(self.sample_id, dtype=np.int64).reshape(-1)
        n = len(self.sample_id)
        self.text = _str_column(self.text, n, "text")
        self.source = _str_column(self.source, n, "source")
        self.clip = _str_column(np.full(n, "") if self.clip is None else self.clip, n, "clip")
        for name in ("frame_start", "frame_stop"):
            value = getattr(self, name)
            value = np.full(n, -1, dtype=np.int32) if value is None else np.asarray(value, dtype=np.int32).reshape(-1)
            if value.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {value.shape}")
            setattr(self, name, value)

    def __len__(self) -> int:
        return len(self.sample_id)

    def as_dict(self) -> dict[int, str]:
        """{sample_id: text} (per-sample captions)."""
        return {int(i): str(t) for i, t in zip(self.sample_id, self.text)}

    def counts(self) -> dict[str, int]:
        """Number of captions per source."""
        values, n = np.unique(self.source, return_counts=True)
        return {str(v): int(c) for v, c in zip(values, n)}

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write plain JSON (columns as lists), atomically: a temporary file renamed into place."""
        doc = {"format": CAPTIONS_FORMAT, "version": CAPTIONS_VERSION, "n": len(self),
               "sample_id": self.sample_id.tolist(), "text": self.text.tolist(), "source": self.source.tolist(),
               "clip": self.clip.tolist(), "frame_start": self.frame_start.tolist(),
               "frame_stop": self.frame_stop.tolist(), "attrs": self.attrs}
        return atomic_write_json(path, doc, ensure_ascii=False)

    @staticmethod
    def from_json(path: str | os.PathLike) -> "CaptionTable":
        """Read :meth:`to_json`'s file; a bad file is a DataError naming it."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise DataError(path, f"cannot read captions: {e}") from None
        if not isinstance(doc, dict) or doc.get("format") != CAPTIONS_FORMAT:
            raise DataError(path, f"not a posecurator captions file (format {CAPTIONS_FORMAT!r} expected)")
        if not isinstance(doc.get("version"), int) or doc["version"] > CAPTIONS_VERSION:
            raise DataError(path, f"captions format version {doc.get('version')} is newer than this posecurator understands "
                                  f"({CAPTIONS_VERSION}); upgrade posecurator")
        try:
            return CaptionTable(sample_id=doc["sample_id"], text=doc["text"], source=doc["source"], clip=doc.get("clip"),
                                frame_start=doc.get("frame_start"), frame_stop=doc.get("frame_stop"),
                                attrs=dict(doc.get("attrs") or {}))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(path, f"bad captions table: {e}") from None


def _str_column(value, n: int, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=object).reshape(-1)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    if not all(isinstance(v, str) for v in arr):
        raise ValueError(f"{name} must hold strings")
    return arr.astype(str) if n else np.zeros(0, dtype="<U1")


# ---------------------------------------------------------------------- captioners and files
@runtime_checkable
class Captioner(Protocol):
    """An image-language model a user has (the PoseSyn paper asks a VLM "What is the motion of the
    someone in the image?"). The project ships none: no weights are downloaded.

    name: a short name, recorded as ``captioner:<name>``. caption(poses, sample_ids): one text per
    id, in order ("" where it has nothing to say: that sample then gets the next source)."""

    name: str

    def caption(self, poses: PoseSet, sample_ids: Sequence[int]) -> list[str]: ...


def read_captions_file(path: str | os.PathLike) -> dict[int, str]:
    """{sample_id: text} from a JSON object {"<sample_id>": "text", ...} or a CSV with columns
    sample_id,text (other columns ignored). A file that is neither, a non-integer id, a repeated id
    or an empty / non-string text is a DataError naming the file (and the CSV line)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(path, f"cannot read captions file: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(path, "captions file is not UTF-8 text (expected JSON or CSV with columns sample_id,text)") from None
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" or stripped.startswith(("{", "[")):
        return _captions_from_json(path, text)
    return _captions_from_csv(path, text)


def _caption_id(path, key, line=None) -> int:
    s = str(key).strip()
    if not re.fullmatch(r"[+-]?\d+", s):
        raise DataError(path, f"sample id {key!r} is not an integer", line=line)
    return int(s)


def _caption_text(path, sid: int, value, line=None) -> str:
    if not isinstance(value, str):
        raise DataError(path, f"caption of sample {sid} is not a string ({type(value).__name__})", line=line)
    if not value.strip():
        raise DataError(path, f"caption of sample {sid} is empty", line=line)
    return value.strip()


def _captions_from_json(path: Path, text: str) -> dict[int, str]:
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise DataError(path, f"not valid JSON ({e}); expected an object {{\"sample_id\": \"text\"}}") from None
    if not isinstance(doc, dict):
        raise DataError(path, f"expected a JSON object {{\"sample_id\": \"text\"}}, got a {type(doc).__name__}")
    out = {}
    for key, value in doc.items():
        sid = _caption_id(path, key)
        if sid in out:
            raise DataError(path, f"sample id {sid} is given twice")
        out[sid] = _caption_text(path, sid, value)
    if not out:
        raise DataError(path, "the captions file names no samples")
    return out


def _captions_from_csv(path: Path, text: str) -> dict[int, str]:
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        raise DataError(path, f"not a CSV file ({e}); expected columns sample_id,text") from None
    rows = [(i + 1, r) for i, r in enumerate(rows) if any(c.strip() for c in r)]
    if not rows:
        raise DataError(path, "the captions file is empty (expected JSON or CSV with columns sample_id,text)")
    header = [c.strip().lower() for c in rows[0][1]]
    if "sample_id" not in header or "text" not in header:
        raise DataError(path, "not a JSON object or a CSV with columns sample_id,text "
                              f"(first line: {','.join(rows[0][1])[:60]!r})", line=rows[0][0])
    id_col, text_col = header.index("sample_id"), header.index("text")
    out = {}
    for line, row in rows[1:]:
        if len(row) <= max(id_col, text_col):
            raise DataError(path, f"expected {len(header)} columns, got {len(row)}", line=line)
        sid = _caption_id(path, row[id_col], line)
        if sid in out:
            raise DataError(path, f"sample id {sid} is given twice", line=line)
        out[sid] = _caption_text(path, sid, row[text_col], line)
    if not out:
        raise DataError(path, "the captions file names no samples")
    return out


# ---------------------------------------------------------------------- captioning
def _resolve_describer(describer: PoseDescriber | None, up) -> PoseDescriber:
    """The describer to use with ``up``: the given one's thresholds, the resolved up direction."""
    if describer is None:
        return PoseDescriber(up=up)
    if not isinstance(describer, PoseDescriber):
        raise TypeError(f"describer must be a PoseDescriber, got {type(describer).__name__}")
    return PoseDescriber(**{**describer.get_params(), "up": up})


def _checked_joints(joints, n: int, what: str) -> np.ndarray:
    arr = np.asarray(joints, dtype=np.float64)
    if arr.shape != (n, 17, 3):
        raise DataError(None, f"{what} must be ({n}, 17, 3) H36M17 joints in mm, got {arr.shape}")
    bad = ~np.isfinite(arr).all(axis=(1, 2))
    if bad.any():
        raise DataError(None, f"{what} has NaN or infinite coordinates (row {int(np.argmax(bad))}); cannot describe it")
    return arr


def _need_3d(poses: PoseSet, what: str) -> None:
    if poses.joints3d is None:
        raise DataError(poses.attrs.get("imported_from"),
                        f"{what} needs 3D poses and this dataset is 2D only; caption 2D data from an estimator's 3D "
                        "predictions (caption_samples(poses, pred3d=...), as `posecurator hard` does)")
    if poses.layout != "h36m17":
        raise DataError(poses.attrs.get("imported_from"), f"{what} needs h36m17 poses, this dataset is {poses.layout}")


def caption_samples(poses: PoseSet, *, pred3d=None, up=None, captions_file=None, captioner: Captioner | None = None,
                    describer: PoseDescriber | None = None) -> CaptionTable:
    """The caption of each sample of ``poses``, from the first source that has one.

    1. ``captions_file`` (:func:`read_captions_file`), source "user"; ids it names that are not in
       ``poses`` are a DataError naming the file and the first few unknown ids;
    2. ``captioner`` (a :class:`Captioner`), source "captioner:<name>";
    3. the describer on ``pred3d`` ((N, 17, 3) mm, an estimator's prediction in the camera frame,
       for 2D-only data) or on ``poses.joints3d``, source "describer".
    up: the up direction of the 3D described (None: (0, -1, 0) for ``pred3d``, the camera's y
    pointing down; (0, 0, 1) for the world-frame joints3d). A sample a source leaves without text
    gets the next source, recorded as such. Returns a CaptionTable in the order of ``poses``."""
    n = len(poses)
    ids = poses.sample_id
    text = np.full(n, None, dtype=object)
    source = np.full(n, "", dtype=object)
    if captions_file is not None:
        given = read_captions_file(captions_file)
        known = set(ids.tolist())
        unknown = sorted(k for k in given if k not in known)
        if unknown:
            shown = ", ".join(map(str, unknown[:5])) + (" ..." if len(unknown) > 5 else "")
            raise DataError(captions_file, f"{len(unknown)} sample id(s) are not in the dataset: {shown}")
        for row, sid in enumerate(ids.tolist()):
            if sid in given:
                text[row], source[row] = given[sid], "user"
    todo = np.flatnonzero(text == None)  # noqa: E711 - object array compared elementwise
    if captioner is not None and len(todo):
        name = str(getattr(captioner, "name", "") or type(captioner).__name__)
        got = list(captioner.caption(poses, ids[todo].tolist()))
        if len(got) != len(todo):
            raise PoseCuratorError(f"captioner {name} returned {len(got)} captions for {len(todo)} samples")
        for row, value in zip(todo, got):
            if isinstance(value, str) and value.strip():
                text[row], source[row] = value.strip(), f"captioner:{name}"
        todo = np.flatnonzero(text == None)  # noqa: E711
    if len(todo):
        if pred3d is not None:
            joints = _checked_joints(pred3d, n, "pred3d")
            frame_up = CAMERA_UP if up is None else up
        else:
            _need_3d(poses, "describing poses")
            joints = poses.joints3d
            frame_up = WORLD_UP if up is None else up
        d = _resolve_describer(describer, frame_up)
        described = d.describe(joints[todo])
        text[todo] = described
        source[todo] = "describer"
    return CaptionTable(sample_id=ids, text=text.astype(str), source=source.astype(str),
                        attrs={"per": "sample", "described_3d": "pred3d" if pred3d is not None else "joints3d"})


def _clip_windows(poses: PoseSet, window: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``poses`` ordered by clip then frame, and (W, 2) [start, stop) windows into that
    order: runs of consecutive frames of one clip, cut into ``window`` frames (a remainder shorter
    than half a window joins the window before it)."""
    _, first_row, inverse = np.unique(poses.clip, return_index=True, return_inverse=True)
    clip_rank = np.argsort(np.argsort(first_row))[inverse]          # clips in order of appearance
    order = np.lexsort((poses.frame, clip_rank))
    clip_sorted, frame_sorted = clip_rank[order], poses.frame[order].astype(np.int64)
    cut = np.flatnonzero((np.diff(clip_sorted) != 0) | (np.diff(frame_sorted) != 1)) + 1
    starts = np.concatenate([[0], cut])
    stops = np.concatenate([cut, [len(order)]])
    bounds = []
    for a, b in zip(starts.tolist(), stops.tolist()):
        if window is None or b - a <= window:
            bounds.append((a, b))
            continue
        edges = list(range(a, b, window)) + [b]
        if edges[-1] - edges[-2] < window / 2 and len(edges) > 2:
            del edges[-2]                                            # a short remainder joins the previous window
        bounds.extend(zip(edges[:-1], edges[1:]))
    return order, np.asarray(bounds, dtype=np.int64).reshape(-1, 2)


def _fps_of(poses: PoseSet, source: str) -> float:
    """The real frame rate of a source's clips (mixed-rate imports keep 24 fps sources at 24)."""
    per = (poses.attrs or {}).get("per_source", {}).get(source, {})
    fps = per.get("fps") if isinstance(per, dict) else None
    return float(fps) if isinstance(fps, (int, float)) and fps > 0 else float(poses.fps)


def caption_clips(poses: PoseSet, *, window: int | None = None, describer: PoseDescriber | None = None) -> CaptionTable:
    """One caption per clip, or per window of ``window`` consecutive frames of a clip:
    "a person <label phrase>; <the describer's text of the window's motion>", e.g. "a person lies
    down on the floor; a person sits down then lies down on the back". Source "labels+describer",
    or "describer" for clips without a label. World-frame joints3d (Z up) are described; features
    are computed once for all poses, so 400k Bandai poses in 3076 clips take seconds."""
    _need_3d(poses, "describing clips")
    if window is not None and (int(window) != window or window < 2):
        raise PoseCuratorError(f"window must be an integer >= 2 frames, got {window}")
    d = _resolve_describer(describer, WORLD_UP)
    order, bounds = _clip_windows(poses, None if window is None else int(window))
    joints = poses.joints3d[order]
    features = d.features(joints)
    info = (poses.attrs or {}).get("clip_info", {}) or {}
    src_sorted, act_sorted, clip_sorted = poses.source[order], poses.activity[order], poses.clip[order]
    window_source = src_sorted[bounds[:, 0]]
    motion_text = np.empty(len(bounds), dtype=object)
    for src in np.unique(window_source):                             # one frame rate per source
        rows = np.flatnonzero(window_source == src)
        motion_text[rows] = d.describe_windows(joints, bounds[rows], fps=_fps_of(poses, str(src)), features=features)
    phrases: dict[tuple[str, str, str], str] = {}
    texts, sources = [], []
    for w, (a, _) in enumerate(bounds.tolist()):
        key = (str(src_sorted[a]), str(act_sorted[a]), str(clip_sorted[a]))
        if key not in phrases:
            phrases[key] = label_phrase(key[0], key[1], info.get(key[2]), clip=key[2])
        phrase = phrases[key]
        texts.append(f"a person {phrase}; {motion_text[w]}" if phrase else motion_text[w])
        sources.append("labels+describer" if phrase else "describer")
    starts, stops = bounds[:, 0], bounds[:, 1]
    frames = poses.frame[order]
    return CaptionTable(sample_id=poses.sample_id[order][starts], text=np.array(texts, dtype=object),
                        source=np.array(sources, dtype=object), clip=clip_sorted[starts],
                        frame_start=frames[starts], frame_stop=frames[stops - 1] + 1,
                        attrs={"per": "clip" if window is None else "window", "window": window})


# ---------------------------------------------------------------------- summaries
_SPLIT_PHRASES = re.compile(r";\s*|,\s*|\s+and\s+")


def caption_summary(table: CaptionTable, *, top: int = 20) -> dict:
    """Counts per caption source and the ``top`` most common phrases (captions split at ";", ","
    and "and", with "a person" dropped) and whole captions."""
    phrases: collections.Counter = collections.Counter()
    for text, n in collections.Counter(table.text.tolist()).items():
        for p in _SPLIT_PHRASES.split(text):
            p = re.sub(r"^a person\s+", "", p.strip())
            if p:
                phrases[p] += n
    captions = collections.Counter(table.text.tolist())
    return {
        "captions": len(table),
        "per": table.attrs.get("per", ""),
        "window": table.attrs.get("window"),
        "sources": table.counts(),
        "distinct_captions": len(captions),
        "top_phrases": [{"phrase": p, "count": c} for p, c in sorted(phrases.items(), key=lambda kv: (-kv[1], kv[0]))[:top]],
        "top_captions": [{"text": t, "count": c} for t, c in sorted(captions.items(), key=lambda kv: (-kv[1], kv[0]))[:top]],
    }


def describe_dataset(poses: PoseSet, *, per: str = "sample", window: int | None = None, top: int = 20,
                     **options) -> dict:
    """The summary of a dataset's captions (:func:`caption_summary`): ``per="sample"`` captions
    every sample (:func:`caption_samples`, ``options``: pred3d, up, captions_file, captioner,
    describer), ``per="clip"`` every clip or window (:func:`caption_clips`)."""
    if per == "sample":
        if window is not None:
            raise PoseCuratorError("window applies to per-clip captions, not per-sample ones")
        table = caption_samples(poses, **options)
    elif per == "clip":
        extra = sorted(set(options) - {"describer"})
        if extra:
            raise PoseCuratorError(f"per-clip captions take no {', '.join(extra)} (those caption samples)")
        table = caption_clips(poses, window=window, describer=options.get("describer"))
    else:
        raise PoseCuratorError(f"per must be 'sample' or 'clip', got {per!r}")
    return caption_summary(table, top=top)
