"""`posecurator demo`: the main job on data every install has.

pybullet ships the DeepMimic reference motions (real motion capture retargeted to its humanoid).
The demo imports them, holds out three activities as the test set, trains the lifter on the rest
(validation split cut from the training clips) and evaluates it through the fixed evaluation rig,
with GT and noisy 2D.
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


def run_demo(*, out_dir: str | Path = "demo-out", preset: str = "fast", seed: int = 0, progress: bool = True, log=print) -> dict:
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
    results = {}
    for setting, noise in (("gt", 0.0), ("noisy", 5.0)):
        results[setting] = evaluate_run(out_dir / "lifter", test, noise_px=noise, seed=seed)
        r = results[setting]
        log(f"[demo] {setting:>5} 2D: MPJPE {r['mpjpe']:.1f} mm, PA-MPJPE {r['pa_mpjpe']:.1f} mm, "
            f"PCK3D@150 {100 * r['pck3d']:.1f}%, AUC {100 * r['auc']:.1f}% on {r['n_poses']} 2D-3D pairs")
    results["wall_time_s"] = time.perf_counter() - t0
    (out_dir / "demo.json").write_text(json.dumps(results, indent=1))
    log(f"[demo] done in {results['wall_time_s']:.0f} s; results in {out_dir / 'demo.json'}")
    return results
