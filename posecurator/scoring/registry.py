"""Imports every scorer module so they register themselves (see scoring.base.SCORERS)."""

import importlib

for _mod in ("density", "lifter_error", "vae", "reprojection", "target2d"):
    try:
        importlib.import_module(f"posecurator.scoring.{_mod}")
    except ModuleNotFoundError as e:  # a scorer module not written yet
        if e.name != f"posecurator.scoring.{_mod}":
            raise
