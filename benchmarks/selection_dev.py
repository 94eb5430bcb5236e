"""Choose the curation rule of a domain-adaptation split on a development split made from its
source alone (issue 13's "done when": a choice judged on training data and unlabeled target 2D).

The validation figures of the UDA tables (target reprojection, bone-length variation, left/right
asymmetry) measure plausibility, which every candidate rule has, so they cannot tell the rules
apart. Here a held-out part of the *source* plays the target: its 2D (through seeded random
training cameras, 3D dropped) is the unlabeled target, and its own 3D, which the source has,
judges each candidate rule. The rule with the lowest development MPJPE (mean over seeds) is the
choice for the real split; no figure of the real split's target or test enters it.

Development splits (files split by a fixed rule, never by a score):

* ``bandai-dev`` for ``bandai-to-hdm05-uda``: source Bandai dataset-1 (3D); unlabeled target the
  dataset-2 takes of styles active, normal, feminine (2D); development test the dataset-2 takes of
  the other styles (youthful, masculine, exhausted, elderly: other "people"), every third take.
* ``hdm05-dev`` for ``hdm05-to-coco``: source HDM05 bd + bk (3D); unlabeled target HDM05 dg's
  odd-numbered takes (2D); development test dg's even-numbered takes (3D).

Command (fast preset, the candidates of the "done when"):
    python benchmarks/selection_dev.py bandai-dev hdm05-dev --seeds 0 1 2 -o bench-out/selection-dev
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

import numpy as np

CANDIDATES = ("baseline", "full_aug", "target_novel33")
TARGET_STYLES = ("active", "normal", "feminine")
FOR_SPLIT = {"bandai-dev": "bandai-to-hdm05-uda", "hdm05-dev": "hdm05-to-coco"}


def _linked(folder: Path, files: list[Path]) -> Path:
    """A folder of links to ``files`` (one import of a part, as the splits import folders)."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        link = folder / f.name
        if not link.is_symlink():
            link.symlink_to(f.resolve())
    return folder


def bandai_dev(root: Path, parts: Path):
    from posecurator.pipelines.splits import Split, SplitPart, TargetPart

    bandai = root / "bandai"
    rows = [r for r in csv.DictReader(open(bandai / "index.csv")) if r["dataset"] == "dataset-2"]
    files = {r["name"]: bandai / "dataset-2" / "data" / f"{r['name']}.bvh.gz" for r in rows}
    target = sorted(files[r["name"]] for r in rows if r["style"] in TARGET_STYLES)
    test = sorted(files[r["name"]] for r in rows if r["style"] not in TARGET_STYLES)[::3]
    return Split("bandai-dev", SplitPart([bandai / "dataset-1"], None, "Bandai dataset-1"),
                 SplitPart([_linked(parts / "test", test)], None,
                           f"Bandai dataset-2, styles other than {'/'.join(TARGET_STYLES)}, every third take"),
                 "development split of bandai-to-hdm05-uda (source data only)",
                 target=TargetPart([_linked(parts / "target", target)], None,
                                   f"Bandai dataset-2 styles {'/'.join(TARGET_STYLES)} (2D, unlabeled)",
                                   project=True, seed=0, n_views=1))


def hdm05_dev(root: Path, parts: Path):
    from posecurator.pipelines.splits import Split, SplitPart, TargetPart

    amc = root / "hdm05" / "amc"
    asf = root / "hdm05" / "asf" / "HDM_dg.asf"
    dg = sorted(amc.glob("HDM_dg_*.amc*"))
    take = [int(re.search(r"_(\d+)_\d+\.amc", f.name).group(1)) for f in dg]
    odd = [f for f, t in zip(dg, take) if t % 2 == 1]
    even = [f for f, t in zip(dg, take) if t % 2 == 0]
    if not odd or not even or not asf.is_file():
        raise SystemExit(f"hdm05-dev needs HDM05 dg takes and {asf}")
    return Split("hdm05-dev", SplitPart([root / "hdm05"], ["bd", "bk"], "HDM05 bd+bk"),
                 SplitPart([_linked(parts / "test", even + [asf])], None, "HDM05 dg even takes"),
                 "development split of hdm05-to-coco (source data only)",
                 target=TargetPart([_linked(parts / "target", odd + [asf])], None, "HDM05 dg odd takes (2D, unlabeled)",
                                   project=True, seed=0, n_views=1))


def main() -> None:
    from posecurator.pipelines.bench import run_bench
    from posecurator.pipelines.splits import default_data_root

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("splits", nargs="+", choices=sorted(FOR_SPLIT))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=list(CANDIDATES))
    ap.add_argument("--data", default=None, help="data root (default ../shared/data)")
    ap.add_argument("-o", "--output", default="bench-out/selection-dev")
    args = ap.parse_args()
    root = Path(args.data) if args.data else default_data_root()
    out = Path(args.output)
    choices = {}
    for name in args.splits:
        split = {"bandai-dev": bandai_dev, "hdm05-dev": hdm05_dev}[name](root, out / name / "parts")
        res = run_bench(split, out_dir=out / name, seeds=tuple(args.seeds), settings=("gt",), methods=tuple(args.methods),
                        progress=False, log=print)
        dev = {}
        for r in res["runs"]:
            dev.setdefault(r["method"], []).append(float(r["mpjpe"]))
        ranked = sorted(dev, key=lambda m: np.mean(dev[m]))
        choices[FOR_SPLIT[name]] = {"development_split": name, "chosen": ranked[0],
                                    "dev_mpjpe": {m: [float(np.mean(v)), float(np.std(v)), len(v)] for m, v in dev.items()}}
        print(f"\n{name} (for {FOR_SPLIT[name]}): development MPJPE, mean ± std over seeds")
        for m in ranked:
            print(f"  {m:<16} {np.mean(dev[m]):7.1f} ± {np.std(dev[m]):4.1f} mm  ({len(dev[m])} seeds)")
        print(f"  chosen: {ranked[0]}")
    (out / "choices.json").write_text(json.dumps(choices, indent=1))
    print(f"\nchoices: {out / 'choices.json'}")


if __name__ == "__main__":
    main()
