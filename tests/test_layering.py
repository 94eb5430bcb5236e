"""The package's layering (DEVELOPERS.md): data flow one way and lower layers never import higher ones.

io -> skeleton, camera -> augment -> scoring -> selection -> synthesis -> models, train -> pipelines
-> report, cli; ``errors`` and ``poseset`` are the base everyone imports and ``metrics`` is a leaf
utility of plain functions that anybody may import. Every module under ``posecurator/`` is parsed
with :mod:`ast`; every import counts, wherever it stands (module level, inside a function, under
``if TYPE_CHECKING``), as does ``importlib.import_module("posecurator....")`` with a literal name.
No data is read; this is a static check of the source.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "posecurator"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# layer of each top-level subpackage / module of posecurator (higher may import lower, never the reverse)
RANK: dict[str, int] = {
    "errors": 0, "poseset": 0, "fileio": 0, "config_base": 0,
    "engine": 0,  # where tasks run (local / Ray): callers pass their own functions in, it imports none of them
    "io": 1,
    "skeleton": 2, "camera": 2,
    "augment": 3,
    "scoring": 4,
    "selection": 5,
    "synthesis": 6,
    "models": 7, "train": 7,
    "pipelines": 8,
    "report": 9,
    "cli": 10,
}
# metrics is a leaf utility (plain functions on arrays): anybody may import it, so as a *target* it
# ranks 0; as an importer it sits between train and pipelines
TARGET_RANK = {**RANK, "metrics": 0}
SOURCE_RANK = {**RANK, "metrics": 7}
EXEMPT_MODULES = {f"{PACKAGE}/__init__.py", f"{PACKAGE}/__main__.py"}  # the package facade and the entry point

# Known exceptions (importer layer or module, imported layer) -> why. Keep this list short; a new
# entry needs a reason that the data flow really requires it.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {
    # Readers apply the skeleton mapping so that every reader returns the target layout (H36M17):
    # io needs the layouts and the retargeting of posecurator.skeleton.
    ("io", "skeleton"): "readers map every skeleton to the target layout",
    # The VideoPose3D export projects 3D through the evaluation rig when a set has no 2D.
    ("io.h36m_npz", "camera"): "the VideoPose3D export projects 3D through the evaluation rig",
}


def _layer(module: str) -> str | None:
    """Top-level subpackage / module of a dotted ``posecurator.x.y`` name (None: not posecurator)."""
    parts = module.split(".")
    if parts[0] != PACKAGE or len(parts) < 2:
        return None
    return parts[1]


def _resolve_relative(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_modules(source: str, importer: str, *, is_package: bool = False) -> list[tuple[str, int]]:
    """(dotted module name, line) of every import in ``source``: ``import x``, ``from x import y``
    (also ``from posecurator import train``: the submodule ``posecurator.train``), relative imports,
    and ``importlib.import_module("...")`` / ``__import__("...")`` with a string literal, at any depth."""
    out: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = _resolve_relative(node, importer, is_package) if node.level else (node.module or "")
            if mod == PACKAGE:  # from posecurator import train -> the subpackage
                out += [(f"{PACKAGE}.{alias.name}", node.lineno) for alias in node.names]
            else:
                out.append((mod, node.lineno))
        elif isinstance(node, ast.Call) and node.args:
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
            arg = node.args[0]
            if name in ("import_module", "__import__") and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                out.append((arg.value, node.lineno))
            elif name in ("import_module", "__import__") and isinstance(arg, ast.JoinedStr):
                # f"posecurator.scoring.{name}": the constant prefix names the layer
                prefix = "".join(v.value for v in arg.values[:1] if isinstance(v, ast.Constant))
                if prefix.startswith(f"{PACKAGE}."):
                    out.append((prefix.rstrip("."), node.lineno))
    return out


def _is_known_exception(importer: str, target_layer: str) -> bool:
    parts = importer.split(".")[1:]  # without "posecurator"
    return any((".".join(parts[:n]), target_layer) in KNOWN_EXCEPTIONS for n in range(1, len(parts) + 1))


def layer_violations(source: str, importer: str, *, is_package: bool = False, path: str = "<string>") -> list[str]:
    """One line per import of ``source`` (the module ``importer``, dotted) that reaches a higher layer."""
    src_layer = _layer(importer)
    if src_layer is None or src_layer not in SOURCE_RANK:
        return [f"{path}: module {importer} is in no known layer (add it to RANK in tests/test_layering.py)"]
    out = []
    for target, line in imported_modules(source, importer, is_package=is_package):
        tgt_layer = _layer(target)
        if tgt_layer is None or tgt_layer == src_layer:
            continue
        if tgt_layer not in TARGET_RANK:
            out.append(f"{path}:{line}: {importer} imports {target}, which is in no known layer")
        elif TARGET_RANK[tgt_layer] > SOURCE_RANK[src_layer] and not _is_known_exception(importer, tgt_layer):
            out.append(f"{path}:{line}: {importer} ({src_layer}, layer {SOURCE_RANK[src_layer]}) imports {target} "
                       f"({tgt_layer}, layer {TARGET_RANK[tgt_layer]})")
    return out


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).as_posix()
        if rel in EXEMPT_MODULES:
            continue
        dotted = rel[:-3].replace("/", ".")
        is_package = path.name == "__init__.py"
        if is_package:
            dotted = dotted[: -len(".__init__")]
        yield path, rel, dotted, is_package


def test_package_layout_is_known():
    layers = {p.name.removesuffix(".py") for p in ROOT.iterdir()
              if (p.is_dir() and (p / "__init__.py").is_file()) or (p.suffix == ".py" and p.name not in ("__init__.py", "__main__.py"))}
    assert layers <= set(SOURCE_RANK), f"layers without a rank: {sorted(layers - set(SOURCE_RANK))}"


def test_no_module_imports_a_higher_layer():
    problems = []
    n = 0
    for path, rel, dotted, is_package in _modules():
        problems += layer_violations(path.read_text(encoding="utf-8"), dotted, is_package=is_package, path=rel)
        n += 1
    assert n > 20  # the walk found the package
    assert not problems, "layering violations (lower layers must not import higher ones):\n" + "\n".join(problems)


def test_known_exceptions_are_still_needed():
    """An exception nobody uses any more must be removed from the list."""
    used = set()
    for path, rel, dotted, is_package in _modules():
        parts = dotted.split(".")[1:]
        for target, _ in imported_modules(path.read_text(encoding="utf-8"), dotted, is_package=is_package):
            tgt = _layer(target)
            for n in range(1, len(parts) + 1):
                if (".".join(parts[:n]), tgt) in KNOWN_EXCEPTIONS:
                    used.add((".".join(parts[:n]), tgt))
    assert used == set(KNOWN_EXCEPTIONS), f"unused exceptions: {sorted(set(KNOWN_EXCEPTIONS) - used)}"


@pytest.mark.parametrize("source, importer, bad", [
    ("from posecurator.train.vae_trainer import train_vae\n", "posecurator.scoring.vae", True),
    ("def f():\n    import posecurator.models.pose_vae as m\n    return m\n", "posecurator.scoring.vae", True),
    ("import importlib\nimportlib.import_module('posecurator.report.plots')\n", "posecurator.pipelines.x", True),
    ("from importlib import import_module\nimport_module(f'posecurator.train.{x}')\n", "posecurator.selection.s", True),
    ("from posecurator import cli\n", "posecurator.report.plots", True),
    ("from ..train import vae_trainer\n", "posecurator.scoring.vae", True),
    ("if True:\n    class A:\n        def g(self):\n            from posecurator.pipelines import add\n",
     "posecurator.train.trainer", True),
    ("from posecurator.camera import Camera\n", "posecurator.io.bvh", True),  # only h36m_npz may
    ("from posecurator.camera import Camera\n", "posecurator.io.h36m_npz", False),
    ("from posecurator.skeleton import H36M17\n", "posecurator.io.bvh", False),
    ("from posecurator.metrics import mpjpe\nfrom posecurator.errors import DataError\n", "posecurator.io.bvh", False),
    ("from posecurator.scoring.base import PoseScorer\nimport numpy\n", "posecurator.train.vae_trainer", False),
    ("from . import base\nfrom .density import DensityScorer\n", "posecurator.scoring.vae", False),
    ("from posecurator.report.plots import heatmap\n", "posecurator.cli.main", False),
])
def test_checker_catches_violations(source, importer, bad):
    assert bool(layer_violations(source, importer)) == bad


def test_scorers_below_training_take_injected_models():
    """The lifter-error and VAE scorers work from injected predict / fit functions: nothing under
    scoring/ (nor selection/) imports models or train, even lazily."""
    for sub in ("scoring", "selection"):
        for path in sorted((ROOT / sub).glob("*.py")):
            dotted = f"{PACKAGE}.{sub}.{path.stem}"
            targets = {_layer(t) for t, _ in imported_modules(path.read_text(encoding="utf-8"), dotted)}
            assert not targets & {"models", "train", "pipelines", "report", "cli"}, (path, targets)
