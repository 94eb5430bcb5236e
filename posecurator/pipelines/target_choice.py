"""Choosing a curation the way a user without target 3D has to: by validation figures computed
from the training data and the target's unlabeled 2D only (issue 13, "validation that carries the
shift").

The figures (:func:`posecurator.train.adaptation.target_validation_figures`, on target clips each
run held out):

* ``val_target_reproj_mm``: how well the placed predictions reproject onto the target's 2D. Blind
  to depth, and gamed by any method that trains on it (self-training with reprojection);
* ``val_target_bone_cv``, ``val_target_bone_asym``: bone lengths varying within a target clip,
  and left/right bones of unequal length: what wrong depths do to a skeleton.

The rule (:func:`choose_by_target_validation`): a row whose depth figures are worse than the
source-only row's by more than ``tolerance`` (relative, default 15 %) is vetoed as implausible in
depth; of the rest (the source-only row included) the lowest target reprojection error is chosen.
The tolerance is a loose veto fixed once for every split, not tuned per split; it was set after
seeing the adaptation rows' depth figures (15-30 % and more above source only), never by a test
score. Test figures play no part: the chosen row's test score is only reported beside it.
"""

from __future__ import annotations

import math

DEPTH_FIGURES = ("val_target_bone_cv", "val_target_bone_asym")
REPROJECTION = "val_target_reproj_mm"


def choose_by_target_validation(summary: list[dict], *, baseline: str = "baseline", setting: str | None = None,
                                tolerance: float = 0.15) -> dict | None:
    """The row of a bench ``summary`` (mean figures per method and setting) the rule of the module
    docstring chooses, among the rows of ``setting`` (default: the first row's). Returns
    ``{"method", "setting", "admitted": [methods], "vetoed": {method: figure name}, "rule"}``, or
    None when the rows carry no target validation figures or there is no ``baseline`` row."""
    if not summary:
        return None
    setting = summary[0]["setting"] if setting is None else setting
    rows = [s for s in summary if s["setting"] == setting and REPROJECTION in s]
    base = next((s for s in rows if s["method"] == baseline), None)
    if base is None:
        return None
    admitted, vetoed = [], {}
    for s in rows:
        worse = [k for k in DEPTH_FIGURES if _finite(s.get(k)) and _finite(base.get(k))
                 and s[k] > base[k] * (1.0 + tolerance)]
        if worse and s is not base:
            vetoed[s["method"]] = worse[0]
        else:
            admitted.append(s)
    best = min(admitted, key=lambda s: s[REPROJECTION])
    return {"method": best["method"], "setting": setting, "admitted": [s["method"] for s in admitted],
            "vetoed": vetoed,
            "rule": f"depth figures within {tolerance:.0%} of {baseline}'s, then the lowest target reprojection"}


def _finite(x) -> bool:
    return x is not None and math.isfinite(float(x))
