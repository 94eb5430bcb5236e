"""What every config dataclass of the package (TrainConfig, MotionConfig, ADDConfig) does the same
way: named presets, loading a dict with unknown keys refused, and writing a dict that leaves out
fields added later while they hold their defaults (so the configs, hashes and resume checks of
runs made before those fields existed stay byte for byte the same)."""

from __future__ import annotations

import dataclasses

from posecurator.errors import PoseCuratorError


def from_preset(cls, presets: dict[str, dict], name: str, what: str, **overrides):
    """``cls`` built from ``presets[name]`` (recorded as ``preset_name``) with ``overrides``."""
    if name not in presets:
        raise PoseCuratorError(f"unknown {what} preset {name!r}; known: {', '.join(presets)}")
    return cls(**{**presets[name], "preset_name": name, **overrides})


def from_known_keys(cls, d: dict, what: str):
    """``cls(**d)``, refusing keys that are not fields of ``cls`` (one line naming them)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise PoseCuratorError(f"unknown {what} config keys: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**d)


def without_later_defaults(d: dict, later: dict) -> dict:
    """``d`` without the fields of ``later`` (field -> its default) that hold their default."""
    for name, default in later.items():
        if name in d and d[name] == default:
            del d[name]
    return d
