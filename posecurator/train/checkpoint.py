"""Run folders of the lifter: weights in safetensors, everything else in JSON; never pickle.

A run folder holds

=============================  ================================================================
``config.json``                model + train config, input normalisation, layout, history, timings
``best.safetensors``           weights of the epoch with the lowest validation MPJPE
``last.safetensors``           weights after the last finished epoch
``optimizer.safetensors``      optimizer tensors (Adam moments, step counts) of ``last``
``state.json``                 the checkpoint: epoch, step, best score, optimizer hyper-parameters,
                               RNG seeds, the history, and the files below it belongs to
``history.json``               per-epoch train loss, validation MPJPE, learning rate, time, poses/s
``last-EEEEE.safetensors``     the epoch-stamped files ``state.json`` names (``best-``,
``optimizer-EEEEE...``         ``last-``, ``optimizer-``); the public names above are hard
``best-BBBBB.safetensors``     links to (or copies of) them
=============================  ================================================================

A checkpoint is written in this order (:meth:`posecurator.train.LifterTrainer`): the epoch's
``last-E`` and ``optimizer-E`` files (and ``best-E`` when the epoch is the best so far), then
``state.json``, which names those files with their sizes and SHA-1 and is the commit: a
checkpoint exists once ``state.json`` names it. Only then are the public names, ``history.json``
and ``config.json`` derived from it, and the epoch files it no longer names removed. Every file is
written under a temporary name and renamed (:mod:`posecurator.fileio`). So a run killed at any
instant resumes from the last ``state.json`` exactly (its files are still there and are checked
against it), and the public files are re-derived from it on resume.

Runs written before the checkpoint named its files (``state.json`` without ``files``) still
load and resume from the public files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from posecurator.errors import DataError
from posecurator.fileio import atomic_write, atomic_write_json
from posecurator.models.lifter import SimpleBaselineLifter

RUN_FORMAT = "posecurator-lifter-run"
RUN_VERSION = 1
STATE_VERSION = 2  # 2: state.json names the epoch-stamped files of its checkpoint (and holds the history)
CONFIG_FILE = "config.json"
STATE_FILE = "state.json"
HISTORY_FILE = "history.json"
OPTIMIZER_FILE = "optimizer.safetensors"
PUBLIC_WEIGHTS = {"last": "last.safetensors", "best": "best.safetensors", "optimizer": OPTIMIZER_FILE}
# epoch-stamped checkpoint files: last-00012.safetensors, optimizer-00012.safetensors, best-00010.safetensors
EPOCH_FILE_RE = re.compile(r"^(last|best|optimizer)-\d{5,}\.safetensors$")

# What the lifter's input and output are; stored in config.json so a reader needs no code to know.
IO_FACTS = {
    "input": "2D joints in pixels normalised as VideoPose3D: x / w * 2 - [1, h / w] (absolute, not root-centred)",
    "output": "3D joints in the camera frame (OpenCV: x right, y down, z forward) minus the root joint, mm",
}


def _atomic(path: Path, write) -> None:
    """``write(tmp)`` then rename over ``path`` (:func:`posecurator.fileio.atomic_write`)."""
    atomic_write(Path(path), lambda tmp: write(str(tmp)))


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_json(path, obj, indent=1)


def read_json(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(path, "missing (not a finished lifter run folder?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(path, f"corrupt JSON: {e}") from None


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], *, metadata: dict | None = None) -> None:
    """Write a dict of tensors to a safetensors file, atomically (tensors are copied contiguous).
    The same tensors and metadata give the same bytes (:func:`_sort_header_metadata`)."""
    clean = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    meta = {k: str(v) for k, v in (metadata or {}).items()}

    def write(tmp: str) -> None:
        save_file(clean, tmp, metadata=meta)
        if len(meta) > 1:
            _sort_header_metadata(tmp)

    _atomic(Path(path), write)


def _sort_header_metadata(path: str) -> None:
    """Rewrite a safetensors header's ``__metadata__`` in sorted key order, in place.

    The safetensors writer keeps metadata in a hash map whose order changes from process to
    process, so two runs of the same seed would write different bytes. The header is JSON padded
    with spaces to its stated length; sorting the metadata keys keeps that length, so only the
    header bytes are rewritten (the tensor order and offsets are left as written)."""
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        raw = f.read(n)
        header = json.loads(raw, object_pairs_hook=dict)
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > n:  # pragma: no cover - same keys and values cannot grow
            raise AssertionError("safetensors header grew while sorting its metadata")
        f.seek(8)
        f.write(text + b" " * (n - len(text)))


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "missing (not a finished lifter run folder?)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise DataError(path, f"cannot read weights: {e}") from None


def epoch_file(kind: str, epoch: int) -> str:
    """Name of an epoch-stamped checkpoint file: ``epoch_file("last", 12)`` = ``last-00012.safetensors``."""
    return f"{kind}-{int(epoch):05d}.safetensors"


def file_record(path: str | os.PathLike) -> dict:
    """``{"name", "bytes", "sha1"}`` of a checkpoint file, as ``state.json`` records it."""
    path = Path(path)
    data = path.read_bytes()
    return {"name": path.name, "bytes": len(data), "sha1": hashlib.sha1(data).hexdigest()}


def verified_file(run_dir: str | os.PathLike, record: dict) -> Path:
    """The file ``record`` (of :func:`file_record`) names in ``run_dir``, checked to be exactly the
    file recorded (size and SHA-1); ``DataError`` when it is missing or differs."""
    path = Path(run_dir) / record["name"]
    if not path.is_file():
        raise DataError(path, f"missing, but {STATE_FILE} names it (damaged run folder: start afresh with resume=False)")
    if file_record(path) != {"name": path.name, "bytes": record["bytes"], "sha1": record["sha1"]}:
        raise DataError(path, f"differs from what {STATE_FILE} recorded (damaged run folder: start afresh with resume=False)")
    return path


def run_config_doc(config: dict, model_config: dict) -> dict:
    """The content of ``config.json``: ``config`` plus the format, the model config and the I/O facts."""
    return {"format": RUN_FORMAT, "version": RUN_VERSION, **config, "model": model_config, "io": IO_FACTS}


def optimizer_to_files(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors (for safetensors) and a JSON part."""
    tensors, scalars = {}, {}
    for pid, per_param in state_dict["state"].items():
        for name, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"state.{pid}.{name}"] = value
            else:
                scalars[f"{pid}.{name}"] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """Inverse of :func:`optimizer_to_files`: a state dict for ``optimizer.load_state_dict``."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    for key, value in meta.get("scalars", {}).items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def build_lifter(model_config: dict) -> SimpleBaselineLifter:
    """A fresh lifter from the ``model`` part of a run's config."""
    return SimpleBaselineLifter(**model_config)


def save_run(run_dir: str | os.PathLike, model: SimpleBaselineLifter, config: dict, *, name: str = "best") -> Path:
    """Write ``<name>.safetensors`` (weights) and ``config.json`` (``config`` plus the model
    config and the input/output facts) into ``run_dir``. Returns the run folder."""
    run_dir = Path(run_dir)
    save_tensors(run_dir / f"{name}.safetensors", model.state_dict(), metadata={"format": RUN_FORMAT})
    write_json(run_dir / CONFIG_FILE, run_config_doc(config, model.config()))
    return run_dir


def load_lifter(run_dir: str | os.PathLike, *, which: str = "best", device: str = "cpu") -> tuple[SimpleBaselineLifter, dict]:
    """Load a run's lifter (``which`` = "best" or "last") in eval mode, and its config dict."""
    run_dir = Path(run_dir)
    config = read_json(run_dir / CONFIG_FILE)
    if config.get("format") != RUN_FORMAT:
        raise DataError(run_dir / CONFIG_FILE, f"not a lifter run (format={config.get('format')!r})")
    if not isinstance(config.get("version"), int) or config["version"] > RUN_VERSION:
        raise DataError(run_dir / CONFIG_FILE, f"run format version {config.get('version')} is newer than this posecurator understands")
    try:
        model = build_lifter(config["model"])
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(run_dir / CONFIG_FILE, f"bad model config: {e}") from None
    weights_path = run_dir / f"{which}.safetensors"
    weights = load_tensors(weights_path)
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise DataError(weights_path, f"weights do not fit the model in config.json: {str(e).splitlines()[0]}") from None
    return model.to(device).eval(), config
