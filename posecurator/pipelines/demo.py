"""`posecurator demo`: the main job on data every install has.

pybullet ships the DeepMimic reference motions (real motion capture retargeted to its humanoid).
The demo imports them, holds out three activities as the test set, trains the lifter on the rest
(validation split cut from the training clips) and evaluates it through the fixed evaluation rig,
with GT and noisy 2D. Then it runs every method pipeline on the same clips:

* ADD (evolutionary augmentation, quality and scale distillation, fine-tuning) -> ``add/``;
* VAE difficulty sampling: ``posecurator difficulty`` on the training clips (a small pose VAE,
  :data:`DIFFICULTY_BINS` bins) -> ``difficulty/``, then a lifter on the VAE-hardest third
  (``hard:0.33`` with those scores, as ``posecurator train --sampler hard:0.33 --scores`` does)
  -> ``hard33/``; the test poses are scored by the same VAE and put into the training set's bins,
  and every lifter's test MPJPE is given per bin (``per_bin``, the paper's Fig. 4);
* PoseSyn's error extraction (``posecurator hard``) of the baseline lifter on the TEST clips seen
  as 2D through seeded random cameras -> ``hard/`` (no text embeddings: fast);
* PoseSyn stage 2 with a small preset: a motion model ("tiny" MotionConfig, :data:`MOTION_OVERRIDES`) on the training clips
  -> ``motion/``, then ``posecurator posesyn`` of the baseline lifter on the test clips seen through
  the same random cameras (:data:`POSESYN_OPTIONS`, fine-tuned, with the real-only control) ->
  ``posesyn/``; test MPJPE before / after / control. Skipped, with one line saying what to
  install, when the text encoder package is missing.

Every lifter is evaluated the same way. ``demo.json`` holds the results, the run folders
(``runs``, ``parts``) and the command lines that make each part alone (``commands``). Plots and
the HTML report are drawn by the report layer, which the CLI passes in (``render_*``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from posecurator.fileio import atomic_write_json
from posecurator.poseset import PoseSet

TEST_ACTIVITIES = ("walk", "spinkick", "jump")
DIFFICULTY_BINS = 10  # few poses (880): 10 bins of 88
DIFFICULTY_VAE = {"epochs": 60}  # a small VAE budget (~2 s): the demo shows the method, not its best VAE
HARD_TOP, HARD_BOTTOM = 30, 20  # of the 130 test frames
MOTION_PRESET = "tiny"  # the motion model's MotionConfig preset: seconds, shows the pipeline, not a good model
# more epochs than "tiny"'s 3 + 2 (+5 s): with those its motions are noise (VQ-VAE reconstruction ~600 mm)
# and the filter keeps none of them, so the fine-tuned lifter would be the control's twin
MOTION_OVERRIDES = {"vq_epochs": 60, "tf_epochs": 20}
POSESYN_OPTIONS = {"top": 20, "bottom": 10, "per_sample": 2, "mode": "ft", "control": True}


def load_demo_clips(progress: bool = True) -> PoseSet:
    from posecurator.io.deepmimic import demo_clips, read_deepmimic

    parts = [read_deepmimic(p) for p in demo_clips()]
    return PoseSet.concatenate(parts, renumber=True)


def run_demo(*, out_dir: str | Path = "demo-out", preset: str = "fast", seed: int = 0, progress: bool = True, log=print,
             render_add=None, with_add: bool = True, render_difficulty=None, render_hard=None,
             with_difficulty: bool = True, with_hard: bool = True, with_posesyn: bool = True) -> dict:
    """``render_add`` / ``render_difficulty`` / ``render_hard``: the report layer's plot renderers
    (the CLI passes them; pipelines do not import the report layer)."""
    from posecurator.pipelines.add import ADDConfig, run_add
    from posecurator.train.evaluate import evaluate_run
    from posecurator.train.trainer import LifterTrainer, TrainConfig

    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    ps = load_demo_clips(progress)
    test_mask = np.isin(ps.activity, TEST_ACTIVITIES)
    train, test = ps.subset(~test_mask), ps.subset(test_mask)
    train.save(out_dir / "train.pcs")
    test.save(out_dir / "test.pcs")
    log(f"[demo] imported {len(ps)} frames of {len(np.unique(ps.clip))} DeepMimic clips; "
        f"train {len(train)} frames ({len(np.unique(train.activity))} activities), "
        f"test {len(test)} frames ({', '.join(TEST_ACTIVITIES)})")
    config = TrainConfig.preset(preset)
    config.seed = seed
    LifterTrainer(config).fit(train, out_dir=out_dir / "lifter", progress=progress)
    runs = {"baseline": out_dir / "lifter"}
    if with_add:
        log("[demo] ADD: evolve the training poses, distil them (quality + scale, 1.6x), fine-tune the lifter")
        run_add(train, out_dir / "add", ADDConfig(seed=seed, lifter_preset=preset), progress=progress,
                log=lambda m: log(f"[demo] {m}"), render=render_add)
        runs["add"] = out_dir / "add" / "lifter"
    if with_difficulty:
        runs["vae_hard33"] = _difficulty_part(train, out_dir, config, seed=seed, progress=progress, log=log,
                                              render=render_difficulty)
    results = {}
    for method, run_dir in runs.items():
        for setting, noise in (("gt", 0.0), ("noisy", 5.0)):
            r = results.setdefault(method, {})[setting] = evaluate_run(run_dir, test, noise_px=noise, seed=seed)
            log(f"[demo] {method:>8} {setting:>5} 2D: MPJPE {r['mpjpe']:.1f} mm, PA-MPJPE {r['pa_mpjpe']:.1f} mm, "
                f"PCK3D@150 {100 * r['pck3d']:.1f}%, AUC {100 * r['auc']:.1f}% on {r['n_poses']} 2D-3D pairs")
    if with_difficulty:
        results["per_bin"] = _per_bin(runs, test, out_dir / "difficulty", seed=seed)
    if with_hard:
        results["hard"] = _hard_part(test, out_dir, seed=seed, log=log, render=render_hard)
    if with_posesyn:
        results["posesyn"] = _posesyn_part(train, test, out_dir, seed=seed, progress=progress, log=log)
        with_posesyn = results["posesyn"] is not None
        if not with_posesyn:
            del results["posesyn"]
    results.update(_description(out_dir, runs, preset=preset, seed=seed, with_add=with_add,
                                with_difficulty=with_difficulty, with_hard=with_hard, with_posesyn=with_posesyn))
    results["wall_time_s"] = time.perf_counter() - t0
    atomic_write_json(out_dir / "demo.json", results, indent=1)
    log(f"[demo] done in {results['wall_time_s']:.0f} s; results in {out_dir / 'demo.json'}")
    return results


def _difficulty_part(train: PoseSet, out_dir: Path, config, *, seed: int, progress: bool, log, render) -> Path:
    """``posecurator difficulty`` on the training clips, then a lifter on the VAE-hardest third."""
    from posecurator.pipelines.vae_sampling import run_difficulty
    from posecurator.selection.samplers import parse_sampler_spec
    from posecurator.train.trainer import LifterTrainer

    log(f"[demo] VAE difficulty: a pose VAE scores the training poses, {DIFFICULTY_BINS} bins; then a lifter on the hardest third")
    run_difficulty(out_dir / "train.pcs", out_dir=out_dir / "difficulty", k=DIFFICULTY_BINS, seed=seed,
                   vae_config=dict(DIFFICULTY_VAE), min_keypoints=8, progress=progress, log=lambda m: log(f"[demo] {m}"), render=render)
    sampler = parse_sampler_spec("hard:0.33", scores=out_dir / "difficulty" / "scores.npz")
    LifterTrainer(config).fit(train, out_dir=out_dir / "hard33", sampler=sampler, progress=progress)
    return out_dir / "hard33"


def _per_bin(runs: dict, test: PoseSet, diff_dir: Path, *, seed: int) -> dict:
    """Test MPJPE (GT 2D) of every lifter per difficulty bin: the test poses scored by the
    training set's VAE and put into its bins (the paper's Fig. 4)."""
    import json

    from posecurator.pipelines.bench_vae import evaluate_with_evalpose
    from posecurator.pipelines.vae_sampling import score_with_source_vae
    from posecurator.selection.bins import assign_bins

    edges = np.asarray(json.loads((diff_dir / "bins.json").read_text())["edges"], dtype=np.float64)
    k = len(edges) - 1
    # the test poses by the VAE(s) that scored the training poses: the mean of the fold VAEs when
    # the scores were cross-fitted (the default), the one VAE when they were in sample
    bins = assign_bins(score_with_source_vae(diff_dir / "vae", test), edges)
    out = {"what": "test MPJPE (mm, GT 2D) per difficulty bin: test poses scored by the training set's pose VAE, "
                   "put into the training set's bins (0 = easiest); null = no test pose in the bin",
           "k": k, "counts": np.bincount(bins, minlength=k).tolist(), "mpjpe": {}}
    for method, run_dir in runs.items():
        r = evaluate_with_evalpose(run_dir, test, noise_px=0.0, seed=seed, binnings={"source_edges": bins}, k=k)
        out["mpjpe"][method] = [None if not np.isfinite(v) else float(v) for v in r["per_bin"]["source_edges"]["mpjpe"]]
    return out


def _hard_part(test: PoseSet, out_dir: Path, *, seed: int, log, render) -> dict:
    """``posecurator hard`` of the baseline lifter on the test clips (seen through random cameras)."""
    from posecurator.pipelines.hard_samples import run_hard
    from posecurator.train.estimator import LifterEstimator

    log("[demo] hard samples: the baseline lifter on the test clips seen through random cameras (PoseSyn error extraction)")
    summary = run_hard(test, LifterEstimator(out_dir / "lifter"), out_dir=out_dir / "hard", top=HARD_TOP, bottom=HARD_BOTTOM,
                       seed=seed, embed=False, log=lambda m: log(f"[demo] {m}"))
    if render is not None:
        render(out_dir / "hard")
    check = summary.get("check_against_3d", {})
    return {"n_scored": summary["n_scored"], "quantiles": summary["quantiles"],
            **{k: check[k] for k in ("spearman", "precision_at_k", "chance_precision", "k") if k in check}}


def _posesyn_part(train: PoseSet, test: PoseSet, out_dir: Path, *, seed: int, progress: bool, log) -> dict | None:
    """PoseSyn stage 2, small: a "tiny" motion model on the training clips, then ``posecurator
    posesyn`` of the baseline lifter on the test clips (seen through seeded random cameras, as the
    hard part sees them), evaluated on the test clips. None (one line said) when the text
    encoder's package is missing."""
    from posecurator.errors import PoseCuratorError
    from posecurator.pipelines.posesyn import run_posesyn
    from posecurator.synthesis.text_embedding import locate_model_package
    from posecurator.train.motion_config import MotionConfig
    from posecurator.train.motion_trainer import train_motion_model

    try:
        locate_model_package()
    except PoseCuratorError as e:
        log(f"[demo] PoseSyn skipped: {e}")
        return None
    log(f"[demo] PoseSyn: a {MOTION_PRESET!r} motion model on the training clips, then PoseSyn of the baseline lifter on the "
        "test clips seen through random cameras (fine-tuned, with the real-only control)")
    atomic_write_json(out_dir / "motion_config.json", MOTION_OVERRIDES, indent=1)  # the motion part's --config
    train_motion_model(train, out_dir=out_dir / "motion", config=MotionConfig.preset(MOTION_PRESET, seed=seed, **MOTION_OVERRIDES),
                       progress=progress, log=lambda m: log(f"[demo] [motion] {m}"))
    summary = run_posesyn(test, estimator_run=out_dir / "lifter", train=train, motion_model_dir=out_dir / "motion",
                          out_dir=out_dir / "posesyn", seed=seed, test=test, progress=progress,
                          log=lambda m: log(f"[demo] {m}"), **POSESYN_OPTIONS)
    ev, d = summary["evaluation"], summary["data"]
    out = {"mpjpe": {k: ev[k]["mpjpe"] for k in ("before", "after", "control_real_only") if k in ev},
           "pa_mpjpe": {k: ev[k]["pa_mpjpe"] for k in ("before", "after", "control_real_only") if k in ev and "pa_mpjpe" in ev[k]},
           "n_poses": ev.get("n_poses"), "synthesized_pairs": d["synthesized_pairs"], "kept": d["kept"],
           "pass_rate": d["pass_rate"], "motion_preset": MOTION_PRESET, "motion_overrides": dict(MOTION_OVERRIDES),
           **POSESYN_OPTIONS}
    m = out["mpjpe"]
    log(f"[demo] PoseSyn: kept {d['kept']} of {d['synthesized_pairs']} synthetic pairs; test MPJPE (GT 2D) before "
        f"{m['before']:.1f} mm, after {m['after']:.1f} mm, control (real only) {m.get('control_real_only', float('nan')):.1f} mm")
    return out


def _description(out_dir: Path, runs: dict, *, preset: str, seed: int, with_add: bool, with_difficulty: bool,
                 with_hard: bool, with_posesyn: bool = False) -> dict:
    """Where each part is and the commands that make it alone (same data, options and seed)."""
    import shlex

    o = out_dir

    def q(path) -> str:
        return shlex.quote(str(path))

    parts = {"baseline": "lifter"}
    commands = {"baseline": f"posecurator train {q(o / 'train.pcs')} -o {q(o / 'lifter')} --preset {preset} --seed {seed}"}
    if with_add:
        parts["add"] = "add"
        commands["add"] = f"posecurator add {q(o / 'train.pcs')} -o {q(o / 'add')} --preset {preset} --seed {seed}"
    if with_difficulty:
        parts.update(difficulty="difficulty", vae_hard33="hard33")
        commands["difficulty"] = (f"posecurator difficulty {q(o / 'train.pcs')} -o {q(o / 'difficulty')} --bins {DIFFICULTY_BINS} "
                                  f"--epochs {DIFFICULTY_VAE['epochs']} --seed {seed}")
        commands["vae_hard33"] = (f"posecurator train {q(o / 'train.pcs')} -o {q(o / 'hard33')} --preset {preset} --seed {seed} "
                                  f"--sampler hard:0.33 --scores {q(o / 'difficulty' / 'scores.npz')}")
    if with_hard:
        parts["hard"] = "hard"
        commands["hard"] = (f"posecurator hard {q(o / 'test.pcs')} --estimator {q(o / 'lifter')} -o {q(o / 'hard')} --top {HARD_TOP} "
                            f"--bottom {HARD_BOTTOM} --seed {seed} --no-embed")
    if with_posesyn:
        parts.update(motion="motion", posesyn="posesyn")
        commands["motion"] = (f"posecurator motion-train {q(o / 'train.pcs')} -o {q(o / 'motion')} --preset {MOTION_PRESET} "
                              f"--config {q(o / 'motion_config.json')} --seed {seed}")
        p = POSESYN_OPTIONS
        commands["posesyn"] = (f"posecurator posesyn {q(o / 'test.pcs')} --estimator {q(o / 'lifter')} --train {q(o / 'train.pcs')} "
                               f"--model {q(o / 'motion')} -o {q(o / 'posesyn')} --top {p['top']} --bottom {p['bottom']} "
                               f"--per-sample {p['per_sample']} --mode {p['mode']}{' --control' if p['control'] else ''} "
                               f"--test {q(o / 'test.pcs')} --seed {seed}")
    return {"preset": preset, "seed": seed, "test_activities": list(TEST_ACTIVITIES),
            "runs": {m: str(Path(r).relative_to(o)) for m, r in runs.items()}, "parts": parts, "commands": commands,
            "difficulty_vae": dict(DIFFICULTY_VAE) if with_difficulty else None}
