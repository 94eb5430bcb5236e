"""How far does augmentation explore, and what holds it back: the operators' magnitudes or the
plausibility prior's strictness?

For the training part of a split (default: HDM05 bd + bk of `hdm05-xsub`), evolves the same
number of children under several settings and prints, per setting: the prior's rejection rate
(all children and per single operator), the children's distance from their first parents
(posecurator.augment.exploration: joint angles, root-relative pose, 2D seen by a camera), and the
fraction of real poses the lifter never trains on (the split's test part) that the prior accepts
(a prior that rejects real people is too strict).

Command:
    python benchmarks/augment_exploration.py --split hdm05-xsub --children 50000
"""

from __future__ import annotations

import argparse
import time


SETTINGS = {
    # name: (operator overrides, prior overrides or None for no prior)
    "default": ({}, {}),
    "no prior": ({}, None),
    "limb sigma 10": ({"limb_sigma_deg": 10.0}, {}),
    "limb sigma 40": ({"limb_sigma_deg": 40.0}, {}),
    "prior dilate 0": ({}, {"dilate": 0}),
    "prior dilate 2": ({}, {"dilate": 2}),
    "prior resolution 4": ({}, {"resolution": 4}),
    "prior min_count 5": ({}, {"min_count": 5}),
    "prior 4 of 6 limbs": ({}, {"min_valid_limbs": 4}),
    "prior length margin 0.3": ({}, {"length_margin": 0.3}),
    "prior length margin 0.3, dilate 2": ({}, {"length_margin": 0.3, "dilate": 2}),
    "limb sigma 40, length margin 0.3, dilate 2": ({"limb_sigma_deg": 40.0}, {"length_margin": 0.3, "dilate": 2}),
    # EvoSkeleton's (TAG-Net's) published defaults mapped onto our operators (OPERATOR_PRESETS["tagnet"])
    "TAG-Net-like": ("tagnet", {}),
}
SINGLE = ("crossover", "limb_mutation", "bone_length", "global_rotation")


def main() -> None:
    from posecurator.augment import JointAnglePrior
    from posecurator.augment.evolution import EvolutionConfig, evolve
    from posecurator.augment.exploration import exploration_summary
    from posecurator.augment.operators import OperatorConfig
    from posecurator.pipelines.splits import load_part, resolve_split

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="hdm05-xsub")
    ap.add_argument("--children", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--only", nargs="+", metavar="SETTING", help="run these settings only (names as in the table)")
    args = ap.parse_args()
    unknown = sorted(set(args.only or ()) - set(SETTINGS))
    if unknown:
        ap.error(f"unknown setting(s) {unknown}; known: {list(SETTINGS)}")
    split = resolve_split(args.split)
    train = load_part(split.train, progress=False)
    test = load_part(split.test, progress=False)
    print(f"split {split.name}: train {split.train.label} ({len(train)} poses), held-out real poses "
          f"{split.test.label} ({len(test)}); {args.children} children per setting, seed {args.seed}\n")
    rows = {}
    header = ("| setting | rejected (%) | " + " | ".join(f"rej. {n} (%)" for n in SINGLE)
              + " | angle median (deg) | pose median (mm) | 2D median | real held-out accepted (%) | s |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name, (op_over, prior_over) in SETTINGS.items():
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        prior = JointAnglePrior(**prior_over).fit(train) if prior_over is not None else None
        accepted = float(prior.check(test.joints3d).mean()) if prior is not None else 1.0
        operators = OperatorConfig.preset(op_over) if isinstance(op_over, str) else OperatorConfig(**op_over)
        cfg = EvolutionConfig(seed=args.seed, operators=operators, max_generations=200)
        aug, stats = evolve(train, prior=prior, config=cfg, target_size=len(train) + args.children, progress=False)
        s = exploration_summary(aug, train, stats)
        by = s["by_operator"]
        rej = [f"{100 * by[n]['rejection_rate']:.1f}" if n in by and "rejection_rate" in by[n] else "-" for n in SINGLE]
        a = s["all"]
        print(f"| {name} | {100 * (a['rejection_rate'] or 0):.1f} | " + " | ".join(rej)
              + f" | {a['joint_angle_deg']['median']:.1f} | {a['pose_mm']['median']:.0f} | {a['view_2d']['median']:.3f}"
              f" | {100 * accepted:.1f} | {time.perf_counter() - t0:.0f} |", flush=True)
        rows[name] = {"operators": op_over, "prior": prior_over, "summary": s, "real_accepted": accepted}
    if args.json:
        from posecurator.fileio import atomic_write_json

        atomic_write_json(args.json, rows)
    print("\nrej. X: rejection rate of children made by operator X alone (children that drew several operators "
          "are counted under their combination, not here); medians over the kept children.")


if __name__ == "__main__":
    main()
