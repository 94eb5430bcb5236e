"""Mappings from a source skeleton (named joints of a BVH or ASF file) to the target layout.

A mapping says, for every joint of the target layout (``H36M17``), which point of the source
skeleton it is. A mapping file is YAML (or JSON)::

    name: my-rig                      # optional metadata
    units: cm                         # optional hints for the reader: length unit and up axis
    up: y
    joints:                           # (or the 17 target joints at the top level)
      pelvis: CC_Base_Hip             # one source joint
      spine: {midpoint: [CC_Base_Waist, CC_Base_Spine02]}       # halfway between two joints
      thorax: {mean: [CC_Base_L_Clavicle, CC_Base_R_Clavicle, CC_Base_NeckTwist01]}
      neck: {weighted: {CC_Base_Head: 0.7, CC_Base_NeckTwist01: 0.3}}  # affine: weights sum to 1
      head: {joint: CC_Base_Head, offset: [0, 18, 0]}          # a point fixed to a joint
      ...

Every form is an affine combination of source joints (weights summing to 1), so a mapping is a
(17, S) weight matrix applied to all frames at once, and mapped joints move rigidly with the body.
A negative weight extrapolates along a bone. ``{joint: J, offset: [x, y, z]}`` is a point fixed to
joint J (like a BVH End Site): ``p_J + R_J @ offset`` with R_J the joint's global rotation and the
offset in the file's length units and in J's local axes (BVH: the axes of J's channels; ASF: the
rest-pose axes of the bone). It turns with J, which matters for a head top when a rig has none:
the head top follows the head's rotation, not only the neck's.

Source joint names are matched exactly, else case-insensitively, else after dropping a namespace
prefix such as ``mixamorig:`` (only when that match is unique). BVH End Sites are named
``<parent>_end`` by the BVH reader; ASF bones are named as in the file, the point being the end of
the bone (``root`` is the root position).

Built-in mappings are the YAML files in ``posecurator/skeleton/mappings/``;
:func:`detect_mapping` picks the one whose joints a skeleton has.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import yaml

from posecurator.errors import MappingError
from posecurator.skeleton.layouts import H36M17, Layout

MAPPINGS_DIR = Path(__file__).resolve().parent / "mappings"
_META_KEYS = ("name", "description", "units", "up", "target", "joints", "notes")


@dataclass(frozen=True)
class SkeletonMapping:
    """Target joint -> weights over source joint names (each row sums to 1).

    ``joints[target] = {source_name: weight, ...}``; ``units`` / ``up`` are optional hints for the
    reader (a unit name of posecurator.io.common.UNIT_SCALES or metres per unit; "y", "z", ...).
    """

    name: str
    joints: Mapping[str, Mapping[str, float]]
    # key used in ``joints`` -> (source joint, offset (3,) in source units, the joint's local axes)
    virtual: Mapping[str, tuple[str, tuple[float, float, float]]] = field(default_factory=dict)
    units: str | float | None = None
    up: str | None = None
    description: str = ""
    path: str | None = None
    layout: Layout = field(default=H36M17)

    @property
    def required_names(self) -> list[str]:
        """Every source joint name the mapping uses, in first-use order."""
        out: dict[str, None] = {}
        for weights in self.joints.values():
            for key in weights:
                out[self.virtual[key][0] if key in self.virtual else key] = None
        return list(out)

    def where(self) -> str:
        return self.path or f"built-in mapping {self.name!r}"

    def resolve(self, source_names: Sequence[str], *, path=None) -> tuple[np.ndarray, list[int], np.ndarray]:
        """Weights for a skeleton with ``source_names`` (S,).

        Returns (weights (J_target, S + V), virtual_joints (V,) source index of each virtual
        point's joint, virtual_offsets (V, 3)); columns S.. of the weights are the virtual points
        in the order of ``self.virtual``. Raises MappingError naming the mapping file and the
        first joint that is not found, with the skeleton's joint names listed."""
        key = tuple(source_names)
        cache = self.__dict__.setdefault("_resolved", {})
        if key in cache:
            return cache[key]
        index = _NameIndex(source_names)
        n_src = len(source_names)
        virtual_keys = list(self.virtual)

        def lookup(name: str, target: str) -> int:
            found = index.find(name)
            if found is None:
                raise MappingError(path or self.path,
                                   f"{self.where()}: joint {name!r} (for target {target!r}) is not in the "
                                   f"skeleton, whose {n_src} joints are: {', '.join(source_names)}")
            if found == -2:
                raise MappingError(path or self.path,
                                   f"{self.where()}: joint name {name!r} (for target {target!r}) matches "
                                   f"several joints of the skeleton ({', '.join(index.candidates(name))})")
            return found

        weights = np.zeros((self.layout.n_joints, n_src + len(virtual_keys)))
        virtual_joints = [0] * len(virtual_keys)
        for t, target in enumerate(self.layout.joints):
            for name, w in self.joints[target].items():
                if name in self.virtual:
                    v = virtual_keys.index(name)
                    virtual_joints[v] = lookup(self.virtual[name][0], target)
                    weights[t, n_src + v] += w
                else:
                    weights[t, lookup(name, target)] += w
        offsets = np.array([self.virtual[k][1] for k in virtual_keys], dtype=np.float64).reshape(-1, 3)
        weights.setflags(write=False)
        offsets.setflags(write=False)
        if len(cache) < 64:
            cache[key] = (weights, virtual_joints, offsets)
        return weights, virtual_joints, offsets

    def fits(self, source_names: Sequence[str]) -> bool:
        index = _NameIndex(source_names)
        found = [index.find(n) for n in self.required_names]
        return all(i is not None and i >= 0 for i in found)

    def apply(self, positions: np.ndarray, source_names: Sequence[str], *, rotations: np.ndarray | None = None,
              path=None) -> np.ndarray:
        """Map source joint positions (F, S, 3) to the target layout (F, J_target, 3).

        rotations: (F, S, 3, 3) global joint rotations, needed only by virtual points
        (``{joint: ..., offset: ...}``)."""
        positions = np.asarray(positions)
        if positions.ndim != 3 or positions.shape[1:] != (len(source_names), 3):
            raise ValueError(f"positions must be (F, {len(source_names)}, 3), got {positions.shape}")
        weights, virtual_joints, offsets = self.resolve(source_names, path=path)
        if virtual_joints:
            if rotations is None:
                raise MappingError(path or self.path, f"{self.where()}: points given as {{joint, offset}} need joint "
                                                      "rotations, which this reader does not provide")
            extra = positions[:, virtual_joints] + np.einsum("fvab,vb->fva", rotations[:, virtual_joints], offsets)
            positions = np.concatenate([positions, extra], axis=1)
        return weights @ positions                      # (T, S') @ (F, S', 3) -> (F, T, 3)

    def apply_reference(self, positions: np.ndarray, source_names: Sequence[str], *,
                        rotations: np.ndarray | None = None) -> np.ndarray:
        """Plain per-frame reference of :meth:`apply` (tests compare the two)."""
        index = _NameIndex(source_names)
        out = np.zeros((len(positions), self.layout.n_joints, 3))
        for f in range(len(positions)):
            for t, target in enumerate(self.layout.joints):
                for name, w in self.joints[target].items():
                    if name in self.virtual:
                        joint, offset = self.virtual[name]
                        i = index.find(joint)
                        point = positions[f, i] + rotations[f, i].dot(np.asarray(offset, dtype=np.float64))
                    else:
                        point = positions[f, index.find(name)]
                    out[f, t] += w * point
        return out

    def to_dict(self) -> dict:
        joints = {}
        for target in self.layout.joints:
            w = dict(self.joints[target])
            key = next(iter(w))
            if key in self.virtual:
                joints[target] = {"joint": self.virtual[key][0], "offset": list(self.virtual[key][1])}
            else:
                joints[target] = key if len(w) == 1 else {"weighted": w}
        out = {"name": self.name, "description": self.description, "joints": joints}
        if self.units is not None:
            out["units"] = self.units
        if self.up is not None:
            out["up"] = self.up
        return out


class _NameIndex:
    """Case-insensitive, namespace-tolerant lookup of joint names. find() returns the index,
    None when absent, -2 when ambiguous."""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        self.exact = {n: i for i, n in enumerate(self.names)}
        self.lower: dict[str, list[int]] = {}
        self.bare: dict[str, list[int]] = {}
        for i, n in enumerate(self.names):
            self.lower.setdefault(n.lower(), []).append(i)
            self.bare.setdefault(_bare(n), []).append(i)

    def find(self, name: str) -> int | None:
        if name in self.exact:
            return self.exact[name]
        for table, key in ((self.lower, name.lower()), (self.bare, _bare(name))):
            hits = table.get(key, [])
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                return -2
        return None

    def candidates(self, name: str) -> list[str]:
        hits = self.lower.get(name.lower()) or self.bare.get(_bare(name), [])
        return [self.names[i] for i in hits]


def _bare(name: str) -> str:
    """Name without a namespace prefix (``mixamorig:Hips`` -> ``hips``, ``Armature|Hips`` -> ``hips``)."""
    for sep in (":", "|"):
        name = name.rsplit(sep, 1)[-1]
    return name.strip().lower()


# ---------------------------------------------------------------------- building and loading
def mapping_from_dict(data: Mapping, *, name: str | None = None, path: str | os.PathLike | None = None,
                      layout: Layout = H36M17) -> SkeletonMapping:
    """Validate a parsed mapping (see the module docstring) and build a SkeletonMapping.

    Raises MappingError naming ``path`` and the offending key or joint."""
    where = None if path is None else os.fspath(path)
    if not isinstance(data, Mapping):
        raise MappingError(where, f"a mapping must be a dictionary of target joint -> source joint, got {type(data).__name__}")
    if "joints" in data:
        joints_spec = data["joints"]
        if not isinstance(joints_spec, Mapping):
            raise MappingError(where, "'joints' must be a dictionary of target joint -> source joint")
        unknown = [k for k in data if k not in _META_KEYS]
    else:
        joints_spec = {k: v for k, v in data.items() if k not in _META_KEYS}
        unknown = []
    unknown += [k for k in joints_spec if k not in layout.joints]
    if unknown:
        raise MappingError(where, f"unknown target joint(s) {', '.join(map(repr, unknown))}; the {layout.name} "
                                  f"layout has: {', '.join(layout.joints)}")
    missing = [t for t in layout.joints if t not in joints_spec]
    if missing:
        raise MappingError(where, f"target joint(s) {', '.join(map(repr, missing))} are not mapped; a mapping must "
                                  f"give all {layout.n_joints} joints of {layout.name}")
    target = data.get("target", layout.name)
    if target != layout.name:
        raise MappingError(where, f"mapping targets layout {target!r}, expected {layout.name!r}")
    joints, virtual = {}, {}
    for t in layout.joints:
        joints[t] = _parse_spec(joints_spec[t], t, where, virtual)
    up = data.get("up")
    if up is not None and str(up).strip().lower().lstrip("+-") not in ("x", "y", "z"):
        raise MappingError(where, f"'up' must be x, y or z (optionally signed), got {up!r}")
    return SkeletonMapping(
        name=str(data.get("name") or name or (Path(where).stem if where else "custom")),
        joints=joints, virtual=virtual, units=data.get("units"), up=None if up is None else str(up),
        description=str(data.get("description", "")).strip(), path=where, layout=layout)


def _parse_spec(spec, target: str, where, virtual: dict) -> dict[str, float]:
    """Weights over source joint names for one target joint; ``{joint, offset}`` points are added
    to ``virtual`` under a key of their own."""
    def bad(msg):
        return MappingError(where, f"target joint {target!r}: {msg}")

    if isinstance(spec, Mapping) and set(spec) == {"joint", "offset"}:
        joint, offset = spec["joint"], spec["offset"]
        if not isinstance(joint, str) or not joint.strip():
            raise bad(f"'joint' must be a source joint name, got {joint!r}")
        try:
            offset = tuple(float(v) for v in offset)
        except (TypeError, ValueError):
            offset = ()
        if len(offset) != 3 or not all(math.isfinite(v) for v in offset):
            raise bad(f"'offset' must be three numbers [x, y, z], got {spec['offset']!r}")
        key = f"{joint.strip()}+offset({offset[0]:g},{offset[1]:g},{offset[2]:g})"
        virtual[key] = (joint.strip(), offset)
        return {key: 1.0}

    if isinstance(spec, str):
        if not spec.strip():
            raise bad("empty source joint name")
        return {spec.strip(): 1.0}
    if isinstance(spec, Mapping) and len(spec) == 1:
        kind, value = next(iter(spec.items()))
        if kind in ("midpoint", "mean"):
            if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
                raise bad(f"{kind} needs a list of source joint names, got {value!r}")
            if kind == "midpoint" and len(value) != 2:
                raise bad(f"midpoint needs exactly two joints, got {len(value)}")
            out: dict[str, float] = {}
            for v in value:
                out[v] = out.get(v, 0.0) + 1.0 / len(value)
            return out
        if kind == "weighted":
            if not isinstance(value, Mapping) or not value:
                raise bad(f"weighted needs a dictionary of source joint -> weight, got {value!r}")
            try:
                out = {str(k): float(w) for k, w in value.items()}
            except (TypeError, ValueError):
                raise bad(f"weights must be numbers, got {value!r}") from None
            total = sum(out.values())
            if not math.isclose(total, 1.0, abs_tol=1e-6):
                raise bad(f"weights sum to {total:g}; they must sum to 1 so that the point moves with the body")
            return out
    raise bad(f"expected a joint name, {{midpoint: [a, b]}}, {{mean: [...]}}, {{weighted: {{a: w, ...}}}} or "
              f"{{joint: a, offset: [x, y, z]}}, got {spec!r}")


def load_mapping_file(path: str | os.PathLike, *, source_names: Sequence[str] | None = None,
                      layout: Layout = H36M17) -> SkeletonMapping:
    """Read a YAML or JSON mapping file; validate it against the target layout and, when given,
    against the source skeleton's joint names. Raises MappingError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise MappingError(path, f"cannot read mapping file: {e}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        line = getattr(e, "lineno", None)
        mark = getattr(e, "problem_mark", None)
        if line is None and mark is not None:
            line = mark.line + 1
        raise MappingError(path, f"not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: "
                                 f"{str(e).splitlines()[0]}", line=line) from None
    mapping = mapping_from_dict(data, path=path, layout=layout)
    if source_names is not None:
        mapping.resolve(source_names, path=path)
    return mapping


@lru_cache(maxsize=1)
def _builtin_cache() -> tuple[SkeletonMapping, ...]:
    out = []
    for file in sorted(MAPPINGS_DIR.glob("*.yaml")):
        out.append(load_mapping_file(file))
    return tuple(out)


def builtin_mappings() -> dict[str, SkeletonMapping]:
    """The built-in mappings by name."""
    return {m.name: m for m in _builtin_cache()}


def detect_mapping(source_names: Sequence[str], *, path=None) -> SkeletonMapping:
    """The built-in mapping whose source joints the skeleton has (the most specific one when
    several fit). Raises MappingError listing the skeleton's joint names when none fits."""
    found = _detect_cached(tuple(source_names))
    if found is None:
        raise MappingError(path, f"no built-in joint mapping fits this skeleton; write a mapping file "
                                 f"(see posecurator/skeleton/mappings/ for examples) and pass it with --mapping. "
                                 f"The skeleton's {len(source_names)} joints are: {', '.join(source_names)}")
    return found


@lru_cache(maxsize=128)
def _detect_cached(source_names: tuple[str, ...]) -> SkeletonMapping | None:
    fitting = [m for m in _builtin_cache() if m.fits(source_names)]
    return max(fitting, key=lambda m: len(m.required_names)) if fitting else None


def get_mapping(mapping, source_names: Sequence[str], *, path=None) -> SkeletonMapping:
    """Resolve the ``mapping`` argument of the readers for a skeleton with ``source_names``.

    mapping: None (detect a built-in), a SkeletonMapping, a built-in name, a path to a YAML/JSON
    file, or a dict in the file format."""
    if mapping is None:
        return detect_mapping(source_names, path=path)
    if isinstance(mapping, SkeletonMapping):
        return mapping
    if isinstance(mapping, Mapping):
        return mapping_from_dict(mapping)
    if isinstance(mapping, (str, os.PathLike)):
        builtins = builtin_mappings()
        if isinstance(mapping, str) and mapping in builtins:
            return builtins[mapping]
        if Path(mapping).is_file():
            return load_mapping_file(mapping)
        raise MappingError(mapping, f"no such mapping file or built-in mapping (built-ins: {', '.join(builtins)})")
    raise TypeError(f"mapping must be None, a SkeletonMapping, a name, a path or a dict, got {type(mapping).__name__}")
