"""Run folders of the lifter: weights in safetensors, everything else in JSON; never pickle.

A run folder holds

==================== =========================================================================
``config.json``      model + train config, input normalisation, layout, history, timings
``best.safetensors`` weights of the epoch with the lowest validation MPJPE
``last.safetensors`` weights after the last finished epoch (resume starts from here)
``optimizer.safetensors``  optimizer tensors (Adam moments, step counts) of ``last``
``state.json``       epoch, step, best score, optimizer hyper-parameters, RNG seeds of ``last``
``history.json``     per-epoch train loss, validation MPJPE, learning rate, time, poses/s
==================== =========================================================================

Every file is written under a temporary name and renamed, so an interrupted run leaves the
previous complete checkpoint in place.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from posecurator.errors import DataError
from posecurator.models.lifter import SimpleBaselineLifter

RUN_FORMAT = "posecurator-lifter-run"
RUN_VERSION = 1
CONFIG_FILE = "config.json"
STATE_FILE = "state.json"
HISTORY_FILE = "history.json"
OPTIMIZER_FILE = "optimizer.safetensors"

# What the lifter's input and output are; stored in config.json so a reader needs no code to know.
IO_FACTS = {
    "input": "2D joints in pixels normalised as VideoPose3D: x / w * 2 - [1, h / w] (absolute, not root-centred)",
    "output": "3D joints in the camera frame (OpenCV: x right, y down, z forward) minus the root joint, mm",
}


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes owner-only files; run folders are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=1)
    _atomic(Path(path), lambda tmp: Path(tmp).write_text(text))


def read_json(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(path, "missing (not a finished lifter run folder?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(path, f"corrupt JSON: {e}") from None


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], *, metadata: dict | None = None) -> None:
    """Write a dict of tensors to a safetensors file, atomically (tensors are copied contiguous)."""
    clean = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    _atomic(Path(path), lambda tmp: save_file(clean, tmp, metadata=meta))


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "missing (not a finished lifter run folder?)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise DataError(path, f"cannot read weights: {e}") from None


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
    full = {"format": RUN_FORMAT, "version": RUN_VERSION, **config, "model": model.config(), "io": IO_FACTS}
    write_json(run_dir / CONFIG_FILE, full)
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
