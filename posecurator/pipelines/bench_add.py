"""ADD's rows of the benchmark table (``posecurator bench``), apart from the method's pipeline.

Benchmark methods (registered in :data:`posecurator.pipelines.bench.METHODS`): ``full_aug``,
``random_subset``, ``quality_only``, ``scale_only``, ``add``, ``add_scratch``, ``add_optuna``; see
:func:`bench_full_aug` and its neighbours. Each honours the bench's lifter config (seed, 2D noise),
is deterministic given the seed, and caches what methods of one (setting, seed) share (the
reference lifter, the full augmentation) in ``<runs>/shared-<setting>-seed<seed>/``. The ADD
options of the bench rows are :data:`BENCH_CONFIG`, or the JSON file named by the environment
variable ``POSECURATOR_ADD_CONFIG``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from posecurator.augment import evolve
from posecurator.fileio import json_default
from posecurator.pipelines.add import (
    ADDConfig,
    ADDContext,
    _write_json,
    run_search,
    target_diversity,
    train_lifter,
    with_augmentation,
)
from posecurator.poseset import PoseSet
from posecurator.train.trainer import data_fingerprint

# ADD options of the benchmark rows (the lifter config comes from the bench: seed, 2D noise, preset).
BENCH_CONFIG = ADDConfig(n_trials=6, search_epochs=0.1, plots=False)
ENV_CONFIG = "POSECURATOR_ADD_CONFIG"


def bench_config(ctx) -> ADDConfig:
    """:data:`BENCH_CONFIG` (or the JSON file in $POSECURATOR_ADD_CONFIG) with the bench's seed and noise."""
    path = os.environ.get(ENV_CONFIG)
    base = ADDConfig.load(path) if path else BENCH_CONFIG
    return base.replace(seed=int(ctx.seed), noise_px=float(ctx.noise_px), plots=False)


def _setting_name(noise_px: float) -> str:
    from posecurator.pipelines.bench import SETTINGS

    for name, noise in SETTINGS.items():
        if float(noise) == float(noise_px):
            return name
    return f"noise{noise_px:g}"


def _key(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=json_default).encode()).hexdigest()[:10]


class _Shared:
    """What the methods of one (setting, seed) share, cached on disk in ``shared-<setting>-seed<seed>``."""

    def __init__(self, bctx):
        self.bctx = bctx
        self.config = bench_config(bctx)
        self.train_cfg = bctx.config
        self.root = Path(bctx.work_dir).parent / f"shared-{_setting_name(bctx.noise_px)}-seed{bctx.seed}"
        self.fingerprint = data_fingerprint(bctx.train)
        memo_key = (str(self.root), self.fingerprint, _key(self.config.to_dict(), self.train_cfg.to_dict()))
        if memo_key not in _CONTEXTS:
            while len(_CONTEXTS) >= _MAX_CONTEXTS:  # a table has 2 settings x 3 seeds; keep memory bounded
                _CONTEXTS.pop(next(iter(_CONTEXTS)))
            _CONTEXTS[memo_key] = ADDContext.build(bctx.train, self.config, self.train_cfg)
        self.ctx = _CONTEXTS[memo_key]

    def _train_key(self) -> dict:
        d = self.train_cfg.to_dict()
        for k in ("preset_name", "device", "num_threads"):
            d.pop(k, None)
        return d

    def reference(self) -> tuple[Path, float]:
        """The reference lifter (trained on the train part, once per setting and seed) and its training seconds."""
        run = self.root / f"reference-{_key(self._train_key(), self.fingerprint)}"
        marker = run / "add_cache.json"
        if marker.is_file() and (run / "best.safetensors").is_file():
            return run, float(json.loads(marker.read_text())["train_time_s"])
        baseline = self._finished_baseline()
        if baseline is not None:
            return baseline
        res = train_lifter(self.ctx.train_part, run, self.train_cfg, val=self.ctx.val_part, progress=self.bctx.progress)
        _write_json(marker, {"train_time_s": res["wall_s"], "best_val_mpjpe": res["best_val_mpjpe"]})
        return run, res["wall_s"]

    def _finished_baseline(self) -> tuple[Path, float] | None:
        """The bench's ``baseline`` run of this setting and seed, when it is finished and is exactly
        the reference lifter: the same training config and data, the validation part cut by the
        trainer itself (``split_validation`` cuts the same one), so the weights are bit-identical
        and training it again would only cost time. None otherwise."""
        from posecurator.pipelines.bench import run_name

        run = Path(self.bctx.work_dir).parent / run_name("baseline", _setting_name(self.bctx.noise_px), self.bctx.seed)
        try:
            meta = json.loads((run / "config.json").read_text())
            history = json.loads((run / "history.json").read_text())
        except (OSError, json.JSONDecodeError):
            return None
        train = {k: v for k, v in meta.get("train", {}).items() if k not in ("preset_name", "device", "num_threads")}
        data = meta.get("data", {})
        finished = len(history.get("epochs") or []) == self.train_cfg.epochs and (run / "best.safetensors").is_file()
        if finished and train == self._train_key() and data.get("fingerprint") == self.fingerprint and not data.get("val_given"):
            return run, float(history["training_time_s"])
        return None

    def full_augmentation(self) -> tuple[PoseSet, float]:
        """TAG-Net's full augmentation of the train part to ``full_multiple`` x (once per setting and
        seed) and the seconds it took (generation + plausibility)."""
        evo = self.config.evolution_config()
        key = _key(evo.to_dict(), self.config.prior, self.fingerprint, self.train_cfg.val_fraction, self.train_cfg.seed)
        path = self.root / f"full-aug-{key}.pcs"
        meta = self.root / f"full-aug-{key}.json"
        if meta.is_file() and path.is_dir():
            return PoseSet.load(path), float(json.loads(meta.read_text())["gen_time_s"])
        t0 = time.perf_counter()
        aug, stats = evolve(self.ctx.train_part, prior=self.ctx.prior, config=evo, progress=self.bctx.progress)
        gen_s = time.perf_counter() - t0
        aug.save(path)
        _write_json(meta, {"gen_time_s": gen_s, "generations": [s.to_dict() for s in stats]})
        return aug, gen_s

    def row(self, run_dir, augmented_n: int, *, train_s: float, gen_s: float, score_s: float = 0.0, **extra) -> dict:
        n0 = len(self.ctx.train_part)
        return {"run_dir": str(run_dir), "train_poses": len(self.bctx.train) + int(augmented_n),
                "augmented_poses": int(augmented_n), "data_amount": (n0 + augmented_n) / n0,
                "train_time_s": float(train_s), "gen_time_s": float(gen_s), "score_time_s": float(score_s), **extra}


_CONTEXTS: dict = {}  # in-process memo of fitted priors / reference distributions
_MAX_CONTEXTS = 8


def bench_full_aug(bctx) -> dict:
    """Full evolutionary augmentation to T = 5 x the train part; lifter from scratch on all of it."""
    sh = _Shared(bctx)
    aug, gen_s = sh.full_augmentation()
    res = train_lifter(with_augmentation(sh.ctx.train_part, aug), bctx.work_dir, sh.train_cfg, val=sh.ctx.val_part,
                       progress=bctx.progress)
    return sh.row(bctx.work_dir, len(aug), train_s=res["wall_s"], gen_s=gen_s)


def bench_random_subset(bctx) -> dict:
    """A seeded random subset of the full augmentation, as large as ADD's distilled set at the
    default multiplier ((multiplier - 1) x the train part); lifter from scratch."""
    sh = _Shared(bctx)
    aug, gen_s = sh.full_augmentation()
    n0 = len(sh.ctx.train_part)
    n = min(len(aug), max(0, int(round(sh.config.multiplier * n0)) - n0))
    pick = np.sort(np.random.default_rng([int(bctx.seed), 202]).choice(len(aug), n, replace=False))
    subset = aug.subset(pick)
    res = train_lifter(with_augmentation(sh.ctx.train_part, subset), bctx.work_dir, sh.train_cfg, val=sh.ctx.val_part,
                       progress=bctx.progress)
    return sh.row(bctx.work_dir, len(subset), train_s=res["wall_s"], gen_s=gen_s)


def bench_quality_only(bctx) -> dict:
    """Quality distillation of the full augmentation (keep the lowest-scoring ``keep`` = 80 %);
    lifter from scratch on train part + kept. Train time includes the reference lifter the
    score needs."""
    sh = _Shared(bctx)
    aug, gen_s = sh.full_augmentation()
    ref_dir, ref_s = sh.reference()
    t0 = time.perf_counter()
    distiller = sh.ctx.scale_distiller(reference_dir=ref_dir).distiller
    kept, _ = distiller.select(aug)
    score_s = time.perf_counter() - t0
    res = train_lifter(with_augmentation(sh.ctx.train_part, kept), bctx.work_dir, sh.train_cfg, val=sh.ctx.val_part,
                       progress=bctx.progress)
    return sh.row(bctx.work_dir, len(kept), train_s=ref_s + res["wall_s"], gen_s=gen_s, score_s=score_s,
                  reference_time_s=ref_s)


def bench_scale_only(bctx) -> dict:
    """Scale distillation without the quality filter (keep = 1): generations, each breeding from
    everything so far, until train part + augmented = ``multiplier`` x; lifter from scratch."""
    sh = _Shared(bctx)
    t0 = time.perf_counter()
    aug, _ = evolve(sh.ctx.train_part, prior=sh.ctx.prior, config=sh.config.evolution_config(multiple=sh.config.multiplier),
                    progress=False)
    gen_s = time.perf_counter() - t0
    res = train_lifter(with_augmentation(sh.ctx.train_part, aug), bctx.work_dir, sh.train_cfg, val=sh.ctx.val_part,
                       progress=bctx.progress)
    return sh.row(bctx.work_dir, len(aug), train_s=res["wall_s"], gen_s=gen_s)


def bench_add_variant(bctx, *, search: str, retrain: str | None = None, target: PoseSet | None = None,
                      target_score: str | None = None) -> dict:
    """An ADD bench row: the shared reference lifter, the search, scale distillation, the retrained
    lifter; ``target`` + ``target_score``: the target-aware diversity term (``add --target``)."""
    sh = _Shared(bctx)
    ref_dir, ref_s = sh.reference()
    ctx = sh.ctx
    overrides = {"search": search} if search != "none" else {}
    if retrain is not None:
        overrides["retrain"] = retrain
    if target_score is not None:
        overrides["target_score"] = target_score
    if overrides:
        ctx = dataclasses.replace(ctx, config=ctx.config.replace(**overrides))
    if target_score is not None:
        ctx = dataclasses.replace(ctx, diversity=target_diversity(target_score, target, ctx.train_part, seed=int(bctx.seed)))
    chosen = run_search(ctx, reference_dir=ref_dir, work_dir=Path(bctx.work_dir).parent / f"{Path(bctx.work_dir).name}-search")
    scale = ctx.scale_distiller(reference_dir=ref_dir, multiplier=chosen["multiplier"], keep=chosen["keep"], w=chosen["w"])
    distilled, steps = scale.run(ctx.train_part)
    res = ctx.retrain(distilled, bctx.work_dir, reference_dir=ref_dir, progress=bctx.progress)
    return sh.row(bctx.work_dir, len(distilled), train_s=ref_s + chosen["search_s"] + res["wall_s"],
                  gen_s=sum(s.generation_seconds for s in steps), score_s=sum(s.scoring_seconds for s in steps),
                  reference_time_s=ref_s, search_time_s=chosen["search_s"], generations=len(steps),
                  retrain=ctx.config.retrain, chosen={k: chosen[k] for k in ("multiplier", "keep", "w")})


def bench_add(bctx) -> dict:
    """ADD: quality + scale distillation at multiplier 1.6, keep 0.8; fine-tuned from the
    reference lifter (its training counts in the train time)."""
    return bench_add_variant(bctx, search="none")


def bench_add_scratch(bctx) -> dict:
    """ADD as :func:`bench_add`, but the final lifter is trained from scratch on train part +
    distilled, like every non-ADD row: the ablation that separates what the distilled data does
    from what fine-tuning the reference does (the paper's default retraining fine-tunes). The
    reference lifter still counts in the train time: the quality score needs it."""
    return bench_add_variant(bctx, search="none", retrain="scratch")


def bench_add_optuna(bctx) -> dict:
    """ADD with the joint Optuna search of keep, multiplier and w (``n_trials`` cheap candidates
    judged on the validation part), then as :func:`bench_add` with the best parameters. Train
    time = reference + the whole search (mostly its cheap trainings) + the final fine-tuning."""
    return bench_add_variant(bctx, search="bayes")


BENCH_METHODS = {"full_aug": bench_full_aug, "random_subset": bench_random_subset, "quality_only": bench_quality_only,
                 "scale_only": bench_scale_only, "add": bench_add, "add_scratch": bench_add_scratch,
                 "add_optuna": bench_add_optuna}


def _register() -> None:
    from posecurator.pipelines.bench import METHODS

    METHODS.update(BENCH_METHODS)


_register()
