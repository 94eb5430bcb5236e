"""Resumable pipelines: each stage's result cached in the run folder under a key of what made it.

A pipeline (``posecurator add``, ``posecurator difficulty``) is a chain of stages. Stage ``NAME``
keeps a record ``OUT/stages/NAME.json``::

    {"stage": NAME, "key": KEY, "status": "started" | "done", "result": {...}, "outputs": [...]}

``KEY`` hashes the stage's inputs (the keys of the stages it builds on and fingerprints of the
data it reads), its config and its code version (:meth:`StageCache.key`), so a key changes when
anything the stage's output depends on changes, and every later stage's key changes with it. A
rerun of the same command therefore skips every stage whose record is ``done`` under the same
key (its ``outputs`` still there), logging "reusing stage NAME", and a changed config reruns
from the first stage whose key changed. A stage records ``started`` (with its key) before it
works, so a rerun can tell its own partial work (a lifter's checkpoints: resume) from another
config's (start that stage afresh). The ``done`` record is written last, atomically: a kill
before it reruns the stage, which rewrites its outputs with the same bytes.

Results are JSON; the result a stage returns is passed through JSON before use, so a fresh run
and a rerun that reuses the stage continue from the same values.

Test hook: ``POSECURATOR_TEST_KILL_POINT=stage-NAME`` ends the process after stage ``NAME``'s
outputs are written and before its ``done`` record (:func:`posecurator.fileio.test_kill_point`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from posecurator.fileio import atomic_write_json, json_default, remove_stale_temps, test_kill_point
from posecurator.poseset import PoseSet, PoseStore

STAGES_DIR = "stages"



def _canonical(obj) -> str:
    """JSON text that is the same for equal content (sorted keys, no spaces)."""
    return json.dumps(obj, sort_keys=True, default=json_default, separators=(",", ":"))


def poseset_fingerprint(poses: PoseSet | PoseStore | None) -> str | None:
    """SHA-1 of everything a pose set holds (every column's dtype, shape and bytes, layout, fps,
    cameras and attrs): equal fingerprints mean equal data. None for None. A stored set opened
    lazily is hashed as it is stored (its header, every chunk file's bytes and the selected rows),
    read file by file: a different fingerprint from the same set loaded, equal for equal files."""
    if poses is None:
        return None
    if isinstance(poses, PoseStore):
        return _store_fingerprint(poses)
    h = hashlib.sha1()
    for name in poses._array_fields():
        value = getattr(poses, name)
        if value is None:
            continue
        arr = np.ascontiguousarray(value)
        h.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
        h.update(arr.tobytes())
    h.update(_canonical({"layout": poses.layout, "fps": poses.fps, "cameras": poses.cameras, "attrs": poses.attrs}).encode())
    return h.hexdigest()


def _store_fingerprint(store: PoseStore) -> str:
    h = hashlib.sha1(b"posecurator stored set\n")
    h.update(_canonical(store.meta).encode())
    for chunk in store.meta["chunks"]:
        with open(store.path / chunk["file"], "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
    if store._index is not None:
        h.update(np.ascontiguousarray(store._index, dtype=np.int64).tobytes())
    return h.hexdigest()


def json_round_trip(obj):
    """``obj`` as it reads back from JSON (NaN stays NaN, tuples become lists)."""
    return json.loads(json.dumps(obj, default=json_default))


class StageCache:
    """The stage records of one run folder (see the module docstring).

    >>> stages = StageCache(out, log=print, tag="[add]")          # doctest: +SKIP
    >>> key = stages.key("reference", version=1, config=cfg, inputs=[data_fp])
    >>> result = stages.run("reference", key, lambda resume: train(resume=resume))
    """

    def __init__(self, out_dir: str | Path, *, log: Callable[[str], None] | None = None, tag: str = ""):
        self.root = Path(out_dir) / STAGES_DIR
        self.out_dir = Path(out_dir)
        self.log = log or (lambda message: None)
        self.tag = tag

    @staticmethod
    def key(name: str, *, version: int, config, inputs: Iterable) -> str:
        """The key of stage ``name``: a hash of its code ``version``, its ``config`` (anything
        JSON-like) and its ``inputs`` (keys of earlier stages, data fingerprints)."""
        text = _canonical({"stage": name, "version": int(version), "config": config, "inputs": list(inputs)})
        return hashlib.sha1(text.encode()).hexdigest()

    def remove_stale_temps(self, written: dict[str, Iterable[str]]) -> None:
        """Remove the temporary files that killed writes left: in the stage folders (all of them)
        and, for each folder of ``written`` (relative to the run folder, "" = itself), those of
        the files the pipeline writes there (named: the run folder may hold other things). Only
        while the caller holds the run folder's lock: no live writer of these files exists then."""
        stage_folders = [p for p in self.root.iterdir() if p.is_dir()] if self.root.is_dir() else []
        for folder in (self.root, *stage_folders):
            remove_stale_temps(folder)
        for folder, names in written.items():
            names = set(names)
            remove_stale_temps(self.out_dir / folder, lambda name: name in names)

    def folder(self, name: str) -> Path:
        """A folder for stage ``name``'s own files (``OUT/stages/NAME/``), created."""
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _record_path(self, name: str) -> Path:
        return self.root / f"{name}.json"

    def record(self, name: str) -> dict | None:
        """The record of stage ``name``, or None (none, or unreadable: then the stage reruns)."""
        try:
            doc = json.loads(self._record_path(name).read_text())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def run(self, name: str, key: str, compute: Callable[[bool], dict], *, outputs: Iterable[str] = ()) -> dict:
        """Stage ``name``'s result: the recorded one when the stage is ``done`` under ``key`` and
        its ``outputs`` (paths relative to the run folder) exist; else ``compute(resume)``, where
        ``resume`` says that the stage was started under this key before (its partial work may be
        continued), recorded as ``done``."""
        outputs = list(outputs)
        rec = self.record(name)
        if rec is not None and rec.get("key") == key and rec.get("status") == "done" \
                and all((self.out_dir / p).exists() for p in rec.get("outputs", [])):
            self.log(f"{self.tag} reusing stage {name}".strip())
            return rec["result"]
        resume = rec is not None and rec.get("key") == key
        atomic_write_json(self._record_path(name), {"stage": name, "key": key, "status": "started"})
        result = json_round_trip(compute(resume))
        test_kill_point(f"stage-{name}")
        atomic_write_json(self._record_path(name), {"stage": name, "key": key, "status": "done", "result": result,
                                                    "outputs": outputs})
        return result
