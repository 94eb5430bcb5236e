"""`posecurator demo`: the main job on data every install has.

pybullet ships the DeepMimic reference motions (real motion capture retargeted to its humanoid).
The demo imports them, holds out three activities as the test set, trains the lifter on the rest
(validation split cut from the training clips) and evaluates it through the fixed evaluation rig,
with GT and noisy 2D. Then it runs ADD (evolutionary augmentation, quality and scale
distillation, fine-tuning) on the same training clips and evaluates that lifter the same way.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from posecurator.poseset import PoseSet

TEST_ACTIVITIES = ("walk", "spinkick", "jump")


def load_demo_clips(progress: bool = True) -> PoseSet:
    from posecurator.io.deepmimic import demo_clips, read_deepmimic

    parts = [read_deepmimic(p) for p in demo_clips()]
    return PoseSet.concatenate(parts, renumber=True)


def run_demo(*, out_dir: str | Path = "demo-out", preset: str = "fast", seed: int = 0, progress: bool = True, log=print,
             render_add=None, with_add: bool = True) -> dict:
    """``render_add``: the report layer's ADD plot renderer (the CLI passes it; pipelines do not
    import the report layer)."""
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
    results = {}
    for method, run_dir in runs.items():
        for setting, noise in (("gt", 0.0), ("noisy", 5.0)):
            r = results.setdefault(method, {})[setting] = evaluate_run(run_dir, test, noise_px=noise, seed=seed)
            log(f"[demo] {method:>8} {setting:>5} 2D: MPJPE {r['mpjpe']:.1f} mm, PA-MPJPE {r['pa_mpjpe']:.1f} mm, "
                f"PCK3D@150 {100 * r['pck3d']:.1f}%, AUC {100 * r['auc']:.1f}% on {r['n_poses']} 2D-3D pairs")
    results["wall_time_s"] = time.perf_counter() - t0
    (out_dir / "demo.json").write_text(json.dumps(results, indent=1))
    log(f"[demo] done in {results['wall_time_s']:.0f} s; results in {out_dir / 'demo.json'}")
    return results
