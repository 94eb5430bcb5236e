"""Bench rows of the transfer methods (issue 13): lifter adaptation to the unlabeled target 2D and
target-aware selection of the source. They live with the benchmark, not in a method's module; the
methods themselves are :mod:`posecurator.train.adaptation` and :mod:`posecurator.scoring.target2d`.

============================  =====================================================================
method                        lifter
============================  =====================================================================
``adapt``                     source pairs + self-training on the target 2D (reprojection
                              consistency and the bone-length prior; ``adapt_weight`` 1, as
                              VideoPose3D weights its semi-supervised terms: fixed beforehand,
                              never chosen on a test split)
``adapt_cycle``               ``adapt`` + the rotation-cycle term (Chen et al. 2019; weight 1, turns
                              up to 60 degrees), which constrains the depths that reprojection and
                              bone lengths leave free
``adapt_hard33``              ``adapt`` with VAE hard mining (the cross-fitted hardest third of the
                              source, equal steps): the VAE paper's Table 1 combination
``adapt_curriculum``          ``adapt`` with the VAE curriculum (easy -> + medium -> + hard)
``target_near33``             no adaptation: the third of the source nearest the target's 2D
                              (lowest ``target_coverage``), equal steps
``target_novel33``            no adaptation: the third of the source the target shows most and the
                              rest of the source least (lowest ``target_novelty``), equal steps
``adapt_target_novel33``      ``target_novel33`` + adaptation
``aug_target_hard``           as ``aug_target_near``, but nearest the third of the target's 2D
                              that the reference lifter reprojects worst (PoseSyn's EEM on the
                              target, out of sample; the seed's held-out target clips left out):
                              augmentation steered towards the poses the estimator fails on
``add_target``                ADD as the ``add`` row (multiplier 1.6, keep 0.8, fine-tuned from the
                              shared reference lifter) with ``target_novelty`` as quality
                              distillation's diversity term (``posecurator add --target``); the
                              target scorer is fitted without the seed's held-out target clips
``aug_target_near``           ADD's full augmentation (the cached one of the ADD rows), then the
                              children nearest the target's 2D (lowest ``target_coverage``), as
                              many as ADD's distilled set (``multiplier`` - 1 = 0.6 x the train
                              part); lifter from scratch: quality distillation with the target in
                              place of ADD's typicality score
============================  =====================================================================

The target-aware scores of the source are cached beside the runs (``target-{scorer}-{key}.npz``,
keyed by the source, the target and the scorer's options); they do not depend on the seed.
Every method needs a split with a target (``bandai-to-hdm05-uda``, ``hdm05-to-coco``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from posecurator.errors import PoseCuratorError
from posecurator.fileio import atomic_savez
from posecurator.pipelines import bench
from posecurator.pipelines.bench import MethodContext
from posecurator.poseset import PoseSet

SUBSET_FRACTION = 0.33
TARGET_SCORERS = {"target_near33": "target_coverage", "target_novel33": "target_novelty",
                  "adapt_target_novel33": "target_novelty"}


def _need_target(ctx: MethodContext, method: str) -> PoseSet:
    if ctx.target is None:
        raise PoseCuratorError(f"bench method {method} needs a split with unlabeled target 2D "
                               "(bandai-to-hdm05-uda, hdm05-to-coco)")
    return ctx.target


def target_scores(ctx: MethodContext, scorer_name: str) -> np.ndarray:
    """(N,) ``scorer_name`` scores of the source ``ctx.train`` against ``ctx.target`` (cached)."""
    from posecurator.scoring.base import get_scorer

    target = _need_target(ctx, scorer_name)
    scorer = get_scorer(scorer_name)
    from posecurator.pipelines.vae_sampling import _poses_fingerprint

    key = hashlib.sha1((_poses_fingerprint(ctx.train) + _poses_fingerprint(target) + scorer_name
                        + json.dumps({k: repr(v) for k, v in sorted(vars(scorer).items())})).encode()).hexdigest()[:12]
    path = Path(ctx.work_dir).parent / f"target-{scorer_name}-{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            if np.array_equal(z["sample_id"], ctx.train.sample_id):
                return z["score"]
    if scorer_name == "target_novelty":
        scorer.fit(target, source=ctx.train)
    else:
        scorer.fit(target)
    scores = np.asarray(scorer.score_samples(ctx.train), dtype=np.float64)
    atomic_savez(path, sample_id=ctx.train.sample_id, score=scores)
    return scores


def _lowest_third_factory(scores: np.ndarray, train: PoseSet):
    """A sampler factory keeping the lowest-scoring third of the train part (``easy:0.33``), epochs
    stretched to the train part's size (equal steps, as the VAE methods). A pose without a score
    (no eligible neighbour: NaN) counts as the farthest and is never kept."""
    from posecurator.pipelines.vae_sampling import equal_steps_factory

    finite = np.isfinite(scores)
    ceiling = float(np.max(scores[finite])) + 1.0 if finite.any() else 0.0
    filled = np.where(finite, scores, ceiling)
    return equal_steps_factory(f"easy:{SUBSET_FRACTION}", scores=dict(zip(train.sample_id.tolist(), filled.tolist())))


def _vae_factory(ctx: MethodContext, spec: str, info: dict):
    from posecurator.pipelines.vae_sampling import SCORES_FILE, equal_steps_factory, scoring_label, source_scores

    _, vae_dir = source_scores(ctx.train, cache_dir=ctx.work_dir.parent, seed=ctx.seed, progress=ctx.progress)
    info["vae_dir"], info["vae_scoring"] = str(vae_dir), scoring_label(5)
    return equal_steps_factory(spec, scores=vae_dir / SCORES_FILE)


def _run(ctx: MethodContext, method: str, *, adapt: bool, factory=None, info: dict | None = None, **adapt_options) -> dict:
    from posecurator.train.trainer import LifterTrainer

    info = dict(info or {})
    config = dataclasses.replace(ctx.config, adapt="reprojection", **adapt_options) if adapt else ctx.config
    target = _need_target(ctx, method)
    t0 = time.perf_counter()
    summary = LifterTrainer(config).fit(ctx.train, out_dir=ctx.work_dir, sampler=factory, progress=ctx.progress,
                                        target=target)
    distinct = summary["n_train"] if factory is None else factory.made.distinct_indices(ctx.config.epochs)
    info.update(run_dir=str(ctx.work_dir), train_poses=int(distinct), train_time_s=time.perf_counter() - t0,
                steps=int(summary["steps"]), n_train_part=int(summary["n_train"]), adapt=config.adapt)
    return info


def bench_adapt(ctx: MethodContext) -> dict:
    return _run(ctx, "adapt", adapt=True)


def bench_adapt_cycle(ctx: MethodContext) -> dict:
    return _run(ctx, "adapt_cycle", adapt=True, adapt_cycle_weight=1.0)


def bench_adapt_hard33(ctx: MethodContext) -> dict:
    info: dict = {"sampler": f"hard:{SUBSET_FRACTION}"}
    return _run(ctx, "adapt_hard33", adapt=True, factory=_vae_factory(ctx, f"hard:{SUBSET_FRACTION}", info), info=info)


def bench_adapt_curriculum(ctx: MethodContext) -> dict:
    info: dict = {"sampler": "curriculum"}
    return _run(ctx, "adapt_curriculum", adapt=True, factory=_vae_factory(ctx, "curriculum", info), info=info)


def _target_subset(method: str, *, adapt: bool):
    def run(ctx: MethodContext) -> dict:
        scores = target_scores(ctx, TARGET_SCORERS[method])
        # the trainer's sampler sees the train part only: align the scores to its rows by sample id
        return _run(ctx, method, adapt=adapt, factory=_lowest_third_factory(scores, ctx.train),
                    info={"sampler": f"lowest {SUBSET_FRACTION:.0%} by {TARGET_SCORERS[method]}"})

    run.__name__ = f"bench_{method}"
    return run


def _augmentation_nearest(ctx: MethodContext, method: str, reference_2d) -> dict:
    """ADD's full augmentation (the cached one of the ADD rows), then the children nearest
    ``reference_2d(shared)`` (a 2D pose set; lowest ``target_coverage``), as many as ADD's
    distilled set; lifter from scratch on the train part + those children."""
    from posecurator.pipelines.add import train_lifter, with_augmentation
    from posecurator.pipelines.bench_add import _Shared
    from posecurator.scoring.base import get_scorer

    _need_target(ctx, method)
    sh = _Shared(ctx)
    aug, gen_s = sh.full_augmentation()
    n0 = len(sh.ctx.train_part)
    n = min(len(aug), max(0, int(round(sh.config.multiplier * n0)) - n0))
    t0 = time.perf_counter()
    reference = reference_2d(sh)
    scores = get_scorer("target_coverage").fit(reference).score_samples(aug)
    order = np.argsort(np.where(np.isfinite(scores), scores, np.inf), kind="stable")
    kept = aug.subset(np.sort(order[:n]))
    score_s = time.perf_counter() - t0
    res = train_lifter(with_augmentation(sh.ctx.train_part, kept), ctx.work_dir, sh.train_cfg, val=sh.ctx.val_part,
                       progress=ctx.progress)
    return {**sh.row(ctx.work_dir, len(kept), train_s=res["wall_s"], gen_s=gen_s, score_s=score_s),
            "reference_2d_poses": len(reference)}


def bench_aug_target_near(ctx: MethodContext) -> dict:
    return _augmentation_nearest(ctx, "aug_target_near", lambda sh: ctx.target)


def hard_target_rows(ctx: MethodContext, reference_dir, *, fraction: float = SUBSET_FRACTION) -> np.ndarray:
    """Rows of the target the reference lifter reprojects worst (PoseSyn's EEM, 2D): the top
    ``fraction`` by :class:`~posecurator.scoring.reprojection.ReprojectionErrorScorer` among the
    target clips this seed does not hold out for validation (the validation figures stay clean).
    The reference never trained on the target: its errors are out of sample."""
    from posecurator.scoring.reprojection import ReprojectionErrorScorer
    from posecurator.train.adaptation import held_out_target_clips
    from posecurator.train.estimator import LifterEstimator

    target = _need_target(ctx, "aug_target_hard")
    err = ReprojectionErrorScorer(estimator=LifterEstimator(reference_dir)).fit(target).score_samples(target)
    usable = np.isfinite(err) & ~held_out_target_clips(np.asarray(target.clip), fraction=ctx.config.target_val_fraction,
                                                       seed=ctx.seed)
    rows = np.flatnonzero(usable)
    n = max(1, int(round(fraction * len(rows))))
    return np.sort(rows[np.argsort(-err[rows], kind="stable")[:n]])


def bench_aug_target_hard(ctx: MethodContext) -> dict:
    """ADD's full augmentation, then the children nearest the target samples the reference lifter
    fails on (:func:`hard_target_rows`), as many as ADD's distilled set: augmentation steered by
    the estimator's error on the target (issue 13, item 3)."""
    return _augmentation_nearest(ctx, "aug_target_hard",
                                 lambda sh: ctx.target.subset(hard_target_rows(ctx, sh.reference()[0])))


def bench_add_target(ctx: MethodContext) -> dict:
    """ADD with the target's ``target_novelty`` as its diversity term (the ``add_target`` row)."""
    from posecurator.pipelines.bench_add import bench_add_variant
    from posecurator.train.adaptation import held_out_target_clips

    target = _need_target(ctx, "add_target")
    # the seed's held-out target clips judge the row (validation figures): they do not steer it
    held = held_out_target_clips(np.asarray(target.clip), fraction=ctx.config.target_val_fraction, seed=ctx.seed)
    return bench_add_variant(ctx, search="none", target=target.subset(~held), target_score="novelty")


bench.METHODS.update({
    "add_target": bench_add_target,
    "aug_target_hard": bench_aug_target_hard,
    "aug_target_near": bench_aug_target_near,
    "adapt": bench_adapt,
    "adapt_cycle": bench_adapt_cycle,
    "adapt_hard33": bench_adapt_hard33,
    "adapt_curriculum": bench_adapt_curriculum,
    "target_near33": _target_subset("target_near33", adapt=False),
    "target_novel33": _target_subset("target_novel33", adapt=False),
    "adapt_target_novel33": _target_subset("adapt_target_novel33", adapt=True),
})
