"""AugData Distillation (ADD, ../shared/papers/000_*.txt) end to end, and its benchmark rows.

:func:`run_add` wires the layers together; the logic lives in them:

1. Cut a validation part from the training poses by clip (:func:`posecurator.train.split_by_clip`,
   the trainer's own split with the lifter's ``val_fraction`` and seed). Everything below
   breeds, fits and trains on the rest (the *train part*); the validation part only judges
   (best epoch of every lifter, and the multiplier / Optuna searches). No test split is ever seen.
2. Train the *reference lifter* on the train part (``OUT/reference``).
3. Fit the plausibility prior (:class:`~posecurator.augment.JointAnglePrior`) and the reference
   distribution (:class:`~posecurator.scoring.density.DensityScorer`) on the train part, once.
4. Optionally search the multiplier (the paper's multi-scale search) or keep / multiplier / w
   jointly (Optuna TPE). Each candidate distils its augmentation and trains a *cheap* lifter on
   train part + candidate: ``search_epochs`` x the lifter's epochs (default 10 %), fine-tuned from
   the reference (or from scratch when ``retrain="scratch"``), judged by its best validation MPJPE.
   Budget: multiscale = up to 10 + 9 * (levels - 1) candidates (28 for the paper's 3 levels);
   bayes = ``n_trials`` candidates.
5. Scale distillation: generate -> quality-distil (keep the lowest-scoring ``keep`` fraction of
   ``w * (1 - prob) + (1 - w) * error'``) -> the distilled set joins the breeding population,
   until train part + distilled = ``multiplier`` x train part.
6. Retrain on train part + distilled: fine-tune from the reference lifter (the paper's way,
   ``finetune_epochs`` x the lifter's epochs at ``finetune_lr`` x its learning rate) or from
   scratch with the full schedule.
7. Write ``OUT/``: ``distilled.pcs`` (the original training poses, generation 0, plus the
   distilled augmentation, with lineage; written before the final lifter, which trains from it),
   ``lifter/`` (the final run folder), ``config.json`` +
   ``best.safetensors`` (a copy of the final lifter, so ``posecurator evaluate OUT DATA`` works
   as well as ``posecurator evaluate OUT/lifter DATA``), ``reference/`` (the reference lifter),
   ``add_config.json``, ``summary.json`` and ``plots/`` (``plot_data.npz``; the PNGs score
   histogram, PCA map and gallery when a renderer is given, as the CLI does), and ``stages/``
   (what each stage made, so that a rerun resumes: :mod:`posecurator.pipelines.stages`).

Memory (issue 12): scale distillation writes each generation's kept and dropped children to
disk as they are made (:func:`~posecurator.selection.scale_stream.distil_to_store`),
``distilled.pcs`` is written chunk by chunk, the final lifter trains from it and the plots read
the stored sets chunk by chunk. Given a stored set (:class:`~posecurator.poseset.PoseStore`,
as ``posecurator add X.pcs`` does) the input stays on disk too: the train part is a selection,
the prior and the density are fitted chunk by chunk and the reference lifter trains from the
store (the same files as the set in memory, tested). What is held beyond a constant: per-pose
arrays (scores, ids, the train part's rows; tens of bytes a pose), the validation part, and
for the searches (off by default) the train part.

Its benchmark rows (``full_aug``, ``add``, ...) live in :mod:`posecurator.pipelines.bench_add`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from posecurator.augment import EvolutionConfig, JointAnglePrior
from posecurator.augment.plausibility import fit_dataset
from posecurator.config_base import from_known_keys
from posecurator.errors import DataError, PoseCuratorError
from posecurator.fileio import atomic_link, atomic_savez, atomic_write_json, json_default, output_lock
from posecurator.pipelines.stages import STAGES_DIR, StageCache, poseset_fingerprint
from posecurator.poseset import PoseSet, PoseStore
from posecurator.scoring.density import DensityScorer
from posecurator.scoring.self_fit import density_self_scores
from posecurator.scoring.stream import iter_blocks, stream_block_size
from posecurator.scoring.lifter_error import LifterErrorScorer
from posecurator.selection.distill import (
    QualityDistiller,
    ScaleDistiller,
    UnitIntervalScore,
    multiplier_objective,
    multiscale_multiplier_search,
    optuna_search,
)
from posecurator.selection.scale_stream import distil_to_store
from posecurator.train.trainer import LifterTrainer, TrainConfig, check_finite_store, validation_mask

SEARCHES = ("none", "multiscale", "bayes")
RETRAINS = ("finetune", "scratch")
TARGET_SCORES = (None, "novelty", "coverage")


# ------------------------------------------------------------------------------------ config
@dataclass
class ADDConfig:
    """Every option of an ADD run (stored as ``add_config.json``; load with :meth:`load`).

    Generation: ``evolution`` (an :class:`EvolutionConfig` or its dict: operators and their
    rates, offspring ratio, batch size, max generations; its ``seed`` and ``multiple`` are set
    from ``seed`` / the multiplier here), ``prior`` (keyword options of :class:`JointAnglePrior`),
    ``full_multiple`` (T of the full-augmentation baseline, 5 as TAG-Net).
    Quality distillation: ``w`` weight of the diversity term ``1 - prob``, ``keep`` fraction kept
    per generation (0.8, the paper), ``density`` (options of :class:`DensityScorer`),
    ``error_normalization`` ("minmax" | "rank" | "robust"), ``error_views`` random cameras per
    pose for the lifter-error term, ``target_score`` (None, the paper: the diversity term is the
    density's 1 - prob; "novelty" | "coverage": it is the ``target_novelty`` / ``target_coverage``
    score against a target's unlabeled 2D, mapped onto [0, 1], so distillation keeps the children
    the target needs; the run then needs the target: ``run_add(..., target=...)``).
    Scale distillation: ``multiplier`` (1.6, the paper's best: train part + distilled = 1.6 x
    train part), ``population`` ("all" | "last").
    Search: ``search`` ("none" | "multiscale" | "bayes"), ``n_trials`` (bayes), ``search_batch``
    (bayes: trials asked of the sampler at once and evaluated side by side on an engine; 1 = one after
    the other, as before; the width changes the search, the engine never does), ``search_epochs``
    (fraction of the lifter's epochs a candidate trains), ``multiscale_whole`` and
    ``multiscale_levels`` (the paper: 1..10 and 3 levels), ``bayes_keep`` / ``bayes_multiplier`` /
    ``bayes_w`` (ranges, or one number to fix a parameter).
    Retraining: ``retrain`` ("finetune" from the reference lifter, as the paper, | "scratch"),
    ``finetune_epochs`` (fraction of the lifter's epochs), ``finetune_lr`` (factor on its lr).
    Lifter: ``lifter_preset`` (a :class:`TrainConfig` preset) with ``lifter`` overrides (any
    TrainConfig field), ``noise_px`` (2D noise of training and of the lifter-error term).
    ``seed`` seeds everything (it overrides the lifter's seed). Report: ``plots``,
    ``gallery`` poses per gallery row.
    """

    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    prior: dict = field(default_factory=dict)
    full_multiple: float = 5.0
    w: float = 0.5
    keep: float = 0.8
    density: dict = field(default_factory=dict)
    error_normalization: str = "minmax"
    error_views: int = 1
    target_score: str | None = None
    multiplier: float = 1.6
    population: str = "all"
    search: str = "none"
    n_trials: int = 8
    search_batch: int = 1
    search_epochs: float = 0.1
    multiscale_whole: list = field(default_factory=lambda: list(range(1, 11)))
    multiscale_levels: int = 3
    bayes_keep: list | float = field(default_factory=lambda: [0.5, 1.0])
    bayes_multiplier: list | float = field(default_factory=lambda: [1.0, 5.0])
    bayes_w: list | float = field(default_factory=lambda: [0.0, 1.0])
    retrain: str = "finetune"
    finetune_epochs: float = 0.5
    finetune_lr: float = 1.0
    lifter_preset: str = "fast"
    lifter: dict = field(default_factory=dict)
    noise_px: float = 0.0
    seed: int = 0
    plots: bool = True
    gallery: int = 6

    def __post_init__(self):
        if isinstance(self.evolution, dict):
            try:
                self.evolution = EvolutionConfig(**self.evolution)
            except TypeError as e:
                raise PoseCuratorError(f"bad ADD evolution options: {e}") from None
        checks = [
            (0.0 <= self.w <= 1.0, f"w must lie in [0, 1], got {self.w}"),
            (0.0 < self.keep <= 1.0, f"keep must lie in (0, 1], got {self.keep}"),
            (self.multiplier >= 1.0, f"multiplier must be >= 1 (the original counts), got {self.multiplier}"),
            (self.full_multiple >= 1.0, f"full_multiple must be >= 1, got {self.full_multiple}"),
            (self.search in SEARCHES, f"search must be one of {', '.join(SEARCHES)}, got {self.search!r}"),
            (self.retrain in RETRAINS, f"retrain must be one of {', '.join(RETRAINS)}, got {self.retrain!r}"),
            (self.n_trials >= 1, f"n_trials must be >= 1, got {self.n_trials}"),
            (isinstance(self.search_batch, int) and self.search_batch >= 1,
             f"search_batch must be an integer >= 1, got {self.search_batch!r}"),
            (0.0 < self.search_epochs <= 1.0, f"search_epochs must lie in (0, 1], got {self.search_epochs}"),
            (0.0 < self.finetune_epochs <= 1.0, f"finetune_epochs must lie in (0, 1], got {self.finetune_epochs}"),
            (self.finetune_lr > 0, f"finetune_lr must be > 0, got {self.finetune_lr}"),
            (self.multiscale_levels >= 1, "multiscale_levels must be >= 1"),
            (self.error_views >= 1, "error_views must be >= 1"),
            (self.population in ("all", "last"), f"population must be 'all' or 'last', got {self.population!r}"),
            (self.target_score in TARGET_SCORES, f"target_score must be one of {', '.join(map(str, TARGET_SCORES))}, "
                                                 f"got {self.target_score!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise PoseCuratorError(f"ADD config: {message}")

    # ---------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["evolution"] = self.evolution.to_dict()
        if d["target_score"] is None:  # the paper's diversity term: the dict (and cache keys) of earlier versions
            del d["target_score"]
        return json.loads(json.dumps(d))  # plain JSON types (tuples -> lists)

    @classmethod
    def from_dict(cls, d: dict) -> "ADDConfig":
        return from_known_keys(cls, d, "ADD")

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        _write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ADDConfig":
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except OSError as e:
            raise DataError(path, f"cannot read ADD config: {e.strerror or e}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(path, f"ADD config is not valid JSON: {e}") from None
        if not isinstance(doc, dict):
            raise DataError(path, "ADD config must be a JSON object of ADDConfig fields")
        try:
            return cls.from_dict(doc)
        except (PoseCuratorError, TypeError, ValueError) as e:
            raise DataError(path, str(e)) from None

    def replace(self, **changes) -> "ADDConfig":
        return dataclasses.replace(self, **changes)

    # ---------------------------------------------------------------- derived configs
    def train_config(self) -> TrainConfig:
        """The lifter's TrainConfig: preset + overrides, with this run's seed and 2D noise."""
        try:
            cfg = TrainConfig.preset(self.lifter_preset, **self.lifter)
        except TypeError as e:
            raise PoseCuratorError(f"ADD config: bad lifter overrides: {e}") from None
        cfg.seed, cfg.noise_px_train = int(self.seed), float(self.noise_px)
        return cfg

    def evolution_config(self, *, multiple: float | None = None) -> EvolutionConfig:
        """The evolution config with this run's seed (and ``multiple`` for full augmentation)."""
        return dataclasses.replace(self.evolution, seed=int(self.seed),
                                   multiple=self.full_multiple if multiple is None else float(multiple))


def target_diversity(kind: str, target: PoseSet | None, train_part: PoseSet, *, seed: int = 0) -> UnitIntervalScore:
    """The diversity term of ``ADDConfig.target_score``: the ``target_novelty`` ("novelty": D_T -
    D_S, against the target's 2D and the train part) or ``target_coverage`` ("coverage": D_T)
    score of a child, fitted once and mapped onto [0, 1]. Neither trains a model, so the children's
    scores are neither in nor out of sample (their new clip names make every source pose, their
    parents included, a neighbour: see :mod:`posecurator.scoring.target2d`)."""
    from posecurator.scoring.target2d import TargetCoverageScorer, TargetNoveltyScorer

    if target is None or target.joints2d is None:
        raise PoseCuratorError(f"ADD with target_score {kind!r} needs the target's unlabeled 2D (--target TARGET_2D)")
    if kind == "novelty":
        scorer = TargetNoveltyScorer(seed=seed).fit(target, source=train_part)
    elif kind == "coverage":
        scorer = TargetCoverageScorer(seed=seed).fit(target)
    else:
        raise PoseCuratorError(f"unknown target_score {kind!r}; known: novelty, coverage")
    return UnitIntervalScore(scorer)


def _write_json(path: Path, obj) -> None:
    atomic_write_json(path, obj, indent=1, default=json_default)



# ------------------------------------------------------------------------------- building blocks
def lifter_error_scorer(run_dir: str | os.PathLike, *, seed: int = 0, noise_px: float | None = None,
                        n_views: int = 1, which: str = "best") -> LifterErrorScorer:
    """A fitted :class:`LifterErrorScorer` for the lifter of a run folder: its predictions
    (``posecurator.train.predict``), the camera ranges it was trained with, and (unless given)
    its training 2D noise."""
    from posecurator.train.checkpoint import load_lifter
    from posecurator.train.evaluate import predict

    model, config = load_lifter(run_dir, which=which)
    train = config.get("train", {}) or {}
    noise = float(train.get("noise_px_train", 0.0) or 0.0) if noise_px is None else float(noise_px)
    scorer = LifterErrorScorer(predict_fn=lambda x2d: predict(model, x2d), camera=train.get("camera"),
                               n_views=n_views, noise_px=noise, seed=seed)
    return scorer.fit()


def split_validation(train: PoseSet, train_cfg: TrainConfig) -> tuple[PoseSet, PoseSet | None]:
    """(train part, validation part) cut by clip exactly as the trainer would cut it."""
    train_part, val_part, _ = split_validation_rows(train, train_cfg)
    return train_part, val_part


def check_training_set(train: PoseSet | PoseStore) -> None:
    """DataError unless ``train`` holds finite h36m17 3D poses (a stored set read chunk by chunk)."""
    stored = isinstance(train, PoseStore)
    where = train.path if stored else None
    if (stored and "joints3d" not in train.columns) or (not stored and train.joints3d is None):
        raise DataError(where, "ADD needs 3D poses (the training set has no joints3d)")
    if train.layout != "h36m17":
        raise DataError(where, f"ADD works on h36m17 poses, the training set is {train.layout}")
    if stored:
        check_finite_store(train)
    else:
        train.check_finite()


def split_validation_rows(train: PoseSet | PoseStore, train_cfg: TrainConfig, *, checked: bool = False
                          ) -> tuple[PoseSet | PoseStore, PoseSet | None, np.ndarray]:
    """:func:`split_validation` and the rows of ``train`` in the train part (``checked``: the set
    passed :func:`check_training_set` already). A stored set's train part is a lazy selection of
    it, its validation part (a few clips) is read into memory: the same cut, from the clip column."""
    if not checked:
        check_training_set(train)
    is_val = validation_mask(train, val_fraction=train_cfg.val_fraction, seed=train_cfg.seed, cut=train_cfg.val_cut)
    if is_val is None:
        return train, None, np.arange(len(train), dtype=np.int64)
    rows = np.flatnonzero(~is_val).astype(np.int64)
    if isinstance(train, PoseStore):
        return train.select(rows), train.select(np.flatnonzero(is_val)).load(), rows
    return train.subset(~is_val), train.subset(is_val), rows


def with_augmentation(train_part: PoseSet, augmented: PoseSet | None) -> PoseSet:
    """Train part (3D only) followed by the augmented poses: the set a lifter trains on."""
    base = train_part.replace(joints2d=None, visibility=None, camera=None)
    if augmented is None or len(augmented) == 0:
        return base
    return PoseSet.concatenate([base, augmented.replace(joints2d=None, visibility=None, camera=None)])


def finetune_config(train_cfg: TrainConfig, *, epochs_fraction: float, lr_factor: float = 1.0) -> TrainConfig:
    """The lifter config for fine-tuning: ``epochs_fraction`` of the epochs (at least one),
    learning rate times ``lr_factor``; everything else (seed, noise, cameras) unchanged."""
    return dataclasses.replace(train_cfg, epochs=max(1, int(round(train_cfg.epochs * epochs_fraction))),
                               lr=train_cfg.lr * lr_factor)


def train_lifter(poses: PoseSet, out_dir: str | os.PathLike, config: TrainConfig, *, val: PoseSet | None,
                 init_from=None, progress: bool = False, resume: bool = False) -> dict:
    """Train and return the trainer's summary plus ``wall_s``: afresh, or with ``resume`` from the
    checkpoint of a run of this config and data that ``out_dir`` holds (a stage of :func:`run_add`
    that a kill interrupted)."""
    t0 = time.perf_counter()
    result = LifterTrainer(config).fit(poses, out_dir=out_dir, val=val, init_from=init_from, resume=resume,
                                       progress=progress)
    result["wall_s"] = time.perf_counter() - t0
    return result


@dataclass
class ADDContext:
    """What one ADD run (or a benchmark row) works with: the config, the lifter's training
    config, the train / validation parts, the fitted prior and reference distribution, and (with
    ``config.target_score``) the target-aware diversity term that replaces the density's.

    Built from a stored set (:class:`PoseStore`), the original and the train part stay on disk
    (the train part a lazy selection; the validation part, a few clips, in memory): the prior and
    the density are fitted chunk by chunk (the same fits as in memory), the reference lifter trains
    from the store, and scale distillation reads the train part's joints into its population file.
    Only the searches and a target-aware diversity term load the train part (:meth:`train_poses`)."""

    config: ADDConfig
    train_config: TrainConfig
    original: PoseSet | PoseStore
    train_part: PoseSet | PoseStore
    val_part: PoseSet | None
    prior: JointAnglePrior
    density: DensityScorer
    times: dict = field(default_factory=dict)
    diversity: object | None = None
    train_rows: np.ndarray | None = None  # rows of `original` in the train part

    @classmethod
    def build(cls, train: PoseSet | PoseStore, config: ADDConfig, train_cfg: TrainConfig | None = None, *,
              target: PoseSet | None = None, checked: bool = False, progress: bool = False) -> "ADDContext":
        """``checked``: ``train`` passed :func:`check_training_set` already; ``progress``: a bar
        over a stored set's density pass."""
        train_cfg = config.train_config() if train_cfg is None else train_cfg
        stored = isinstance(train, PoseStore)
        train_part, val_part, train_rows = split_validation_rows(train, train_cfg, checked=checked)
        times = {}
        t0 = time.perf_counter()
        prior = JointAnglePrior(**config.prior)
        prior = fit_dataset(prior, train_part) if stored else prior.fit(train_part)
        times["prior_fit_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        options = {"seed": int(config.seed), **config.density}
        density = (density_self_scores(train_part, progress=progress, **options)[0] if stored
                   else DensityScorer(**options).fit(train_part))
        times["density_fit_s"] = time.perf_counter() - t0
        ctx = cls(config, train_cfg, train, train_part, val_part, prior, density, times, None, train_rows)
        if config.target_score is not None:
            t0 = time.perf_counter()
            ctx.diversity = target_diversity(config.target_score, target, ctx.train_poses(), seed=int(config.seed))
            times["target_fit_s"] = time.perf_counter() - t0
        elif target is not None:
            raise PoseCuratorError("a target was given but the ADD config's target_score is unset (novelty | coverage)")
        return ctx

    def train_poses(self) -> PoseSet:
        """The train part in memory (loaded once from a stored set; what the searches breed from)."""
        if not isinstance(self.train_part, PoseStore):
            return self.train_part
        if getattr(self, "_train_loaded", None) is None:
            self._train_loaded = self.train_part.load()
        return self._train_loaded

    def scale_distiller(self, *, reference_dir, multiplier: float | None = None, keep: float | None = None,
                        w: float | None = None, record: bool = False, progress: bool = False, engine=None) -> ScaleDistiller:
        """Quality + scale distillation around the reference lifter and the fitted reference distribution
        (``engine``: where the shards of each generation are bred, with ``evolution.shard_size`` set)."""
        cfg = self.config
        w = cfg.w if w is None else float(w)
        rationality = None
        if w < 1.0:
            rationality = lifter_error_scorer(reference_dir, seed=int(cfg.seed), noise_px=self.train_config.noise_px_train,
                                              n_views=cfg.error_views)
        distiller = QualityDistiller(w=w, keep=cfg.keep if keep is None else float(keep),
                                     density=self.density if self.diversity is None else self.diversity,
                                     rationality=rationality, error_normalization=cfg.error_normalization)
        distiller.fit(self.train_part)
        return ScaleDistiller(multiplier=cfg.multiplier if multiplier is None else float(multiplier), distiller=distiller,
                              prior=self.prior, evolution=cfg.evolution_config(), population=cfg.population,
                              progress=progress, record=record, engine=engine)

    def candidate_trainer(self, *, reference_dir, work_dir: Path, log=None) -> Callable[[PoseSet], float]:
        """``train_eval(augmented) -> validation MPJPE`` for the searches: a cheap lifter
        (``search_epochs`` of the schedule) on train part + augmented, fine-tuned from the
        reference (or from scratch), judged on the validation part. Trial runs are deleted."""
        cheap, init = self._candidate_training(reference_dir)
        counter = [0]

        def train_eval(augmented: PoseSet) -> float:
            counter[0] += 1
            run = work_dir / f"trial-{counter[0]:03d}"
            res = train_lifter(with_augmentation(self.train_poses(), augmented), run, cheap, val=self.val_part, init_from=init)
            shutil.rmtree(run, ignore_errors=True)
            err = float(res["best_val_mpjpe"])
            if log is not None:
                log(f"[add] search candidate {counter[0]}: {len(augmented)} augmented poses -> validation MPJPE {err:.1f} mm")
            return err

        return train_eval

    def _candidate_training(self, reference_dir) -> tuple[TrainConfig, object]:
        """(config, init_from) of the cheap lifter a search candidate trains."""
        if self.val_part is None:
            raise PoseCuratorError("the multiplier search needs a validation split: set the lifter's val_fraction > 0")
        cfg = self.config
        cheap = finetune_config(self.train_config, epochs_fraction=cfg.search_epochs,
                                lr_factor=cfg.finetune_lr if cfg.retrain == "finetune" else 1.0)
        return cheap, (reference_dir if cfg.retrain == "finetune" else None)

    def retrain_config(self) -> TrainConfig:
        """The training config of the final lifter (fine-tuning: a fraction of the schedule)."""
        cfg = self.config
        if cfg.retrain == "finetune":
            return finetune_config(self.train_config, epochs_fraction=cfg.finetune_epochs, lr_factor=cfg.finetune_lr)
        return self.train_config

    def retrain(self, augmented: PoseSet | None, out_dir, *, reference_dir, progress: bool = False, resume: bool = False,
                stored: PoseStore | None = None) -> dict:
        """The final lifter on train part + augmented: fine-tuned from the reference or from scratch
        (``resume``: continue the checkpoint of this training that ``out_dir`` holds). ``stored``
        instead of ``augmented``: train part + augmented as a stored set, read lazily
        (:func:`final_training_set`; the same rows in the same order, so the same lifter)."""
        init = reference_dir if self.config.retrain == "finetune" else None
        data = stored if stored is not None else with_augmentation(self.train_poses(), augmented)
        return train_lifter(data, out_dir, self.retrain_config(), val=self.val_part, init_from=init, progress=progress,
                            resume=resume)


@dataclass
class SearchTrials:
    """What every candidate of the Bayesian search needs, and the ``shared`` of its engine tasks
    (:func:`search_trial`): a candidate distils its augmentation with its parameters, trains a
    cheap lifter on train part + augmentation into ``work_dir/trial-NNN`` (deleted after) and is
    judged by its best validation MPJPE. Candidate ``index`` (1, 2, ...) names its folder, so
    candidates running side by side never share one; nothing else depends on the process."""

    scale: ScaleDistiller
    train_part: PoseSet
    val_part: PoseSet
    config: TrainConfig
    init_from: object
    work_dir: Path

    def evaluate(self, index: int, params: dict) -> tuple[float, int]:
        """(validation MPJPE, augmented poses) of candidate ``index`` with ``params`` (keep, multiplier, w)."""
        augmented, _ = self.scale.with_params(**params).run(self.train_part)
        run = self.work_dir / f"trial-{index:03d}"
        res = train_lifter(with_augmentation(self.train_part, augmented), run, self.config, val=self.val_part,
                           init_from=self.init_from)
        shutil.rmtree(run, ignore_errors=True)
        return float(res["best_val_mpjpe"]), len(augmented)


def search_trial(shared: SearchTrials, item: tuple[int, dict]) -> tuple[float, int]:
    """One candidate of the Bayesian search as an engine task (a module-level function: workers import it)."""
    index, params = item
    return shared.evaluate(index, params)


def run_search(ctx: ADDContext, *, reference_dir, work_dir: Path, log=None, engine=None) -> dict:
    """The configured search; returns {"multiplier", "keep", "w", "search": SearchResult dict, "search_s"}.

    Bayes: ``search_batch`` candidates are asked at once and evaluated as tasks of ``engine``
    (None = one after the other, here); the result depends on the config only, not on the engine."""
    cfg = ctx.config
    chosen = {"multiplier": cfg.multiplier, "keep": cfg.keep, "w": cfg.w}
    if cfg.search == "none":
        return {**chosen, "search": None, "search_s": 0.0}
    t0 = time.perf_counter()
    shutil.rmtree(work_dir, ignore_errors=True)  # trial runs of a search a kill interrupted
    work_dir.mkdir(parents=True, exist_ok=True)
    cheap, init = ctx._candidate_training(reference_dir)  # (fails first without a validation part)
    scale = ctx.scale_distiller(reference_dir=reference_dir)
    if cfg.search == "multiscale":
        train_eval = ctx.candidate_trainer(reference_dir=reference_dir, work_dir=work_dir, log=log)
        result = multiscale_multiplier_search(multiplier_objective(scale, ctx.train_poses(), train_eval),
                                              whole=tuple(float(m) for m in cfg.multiscale_whole), levels=cfg.multiscale_levels)
        chosen["multiplier"] = float(result.best)
    else:
        trials = SearchTrials(scale, ctx.train_poses(), ctx.val_part, cheap, init, work_dir)
        result = optuna_search(None, n_trials=cfg.n_trials, keep=_range(cfg.bayes_keep), multiplier=_range(cfg.bayes_multiplier),
                               w=_range(cfg.bayes_w), seed=int(cfg.seed), batch=int(cfg.search_batch),
                               evaluate_batch=_trial_batches(trials, engine, log))
        chosen.update({k: float(v) for k, v in result.best.items()})
    shutil.rmtree(work_dir, ignore_errors=True)
    return {**chosen, "search": result.to_dict(), "search_s": time.perf_counter() - t0}


def _trial_batches(trials: SearchTrials, engine, log) -> Callable[[list], list]:
    """``evaluate_batch`` of :func:`optuna_search`: a batch of candidates as tasks of ``engine``
    (in order; numbered on from the last batch)."""
    from posecurator.engine import LocalEngine

    engine = LocalEngine() if engine is None else engine
    counter = [0]

    def evaluate_batch(params_list: list) -> list:
        items = [(counter[0] + 1 + i, p) for i, p in enumerate(params_list)]
        counter[0] += len(items)
        errors = []
        for (index, _), (err, n_aug) in zip(items, engine.map(search_trial, items, shared=trials)):
            if log is not None:
                log(f"[add] search candidate {index}: {n_aug} augmented poses -> validation MPJPE {err:.1f} mm")
            errors.append(err)
        return errors

    return evaluate_batch


def _range(value):
    return float(value) if np.isscalar(value) else tuple(float(v) for v in value)


# ------------------------------------------------------------------------------------ run_add
def _stats(values) -> dict | None:
    if values is None:
        return None
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"n": 0}
    q = np.percentile(v, [5, 50, 95])
    return {"n": int(len(v)), "mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "p5": float(q[0]), "median": float(q[1]), "p95": float(q[2]), "max": float(v.max())}


def _default_log(progress: bool):
    return (lambda m: print(m, file=sys.stderr)) if progress else (lambda m: None)


def _link_or_copy(src: Path, dst: Path) -> None:
    atomic_link(src, dst)


def run_add(train: PoseSet | PoseStore, out_dir: str | os.PathLike, config: ADDConfig | None = None, *, progress: bool = True,
            log: Callable[[str], None] | None = None,
            render: Callable[[Path], dict] | None = None, engine=None, target: PoseSet | None = None) -> dict:
    """AugData Distillation on ``train`` (3D poses, H36M17, mm); writes ``out_dir`` (see the
    module docstring) and returns the summary dict (also ``out_dir/summary.json``).

    ``target``: the unlabeled 2D of the domain the lifter is for, with ``config.target_score``
    set (the diversity term of quality distillation is then a target-aware score; the stage keys
    include the target's fingerprint).

    Plots: with ``config.plots`` the plot data go to ``out_dir/plots/plot_data.npz``
    (:func:`write_plot_data`); ``render(plot_dir) -> {name: png path}`` draws them, normally
    :func:`posecurator.report.plots.render_add_plots` (the CLI passes it; the pipeline layer does
    not import the report layer above it).

    Summary keys: ``config``, ``sizes`` (original, train_part, validation, distilled, total,
    achieved multiplier), ``generations`` (per generation: population, made, rejected by the
    prior, rejection_rate, distilled, kept, seconds, mean scores), ``scores`` (statistics of
    the ADD score, the novelty 1 - prob and the lifter error (mm), for kept and dropped poses),
    ``chosen`` (multiplier, keep, w after the search), ``search`` (history or None),
    ``lifters`` (reference and final: best validation MPJPE, epochs, time), ``times`` (seconds:
    prior_fit, density_fit, reference_training, search, generation, scoring, final_training,
    total), ``validation_clips``, ``paths``.

    ``train``: a PoseSet, or a stored set opened lazily (``PoseSet.open``; see the module
    docstring: the same results, in memory that does not hold the set).

    Resumable (:mod:`posecurator.pipelines.stages`): the stages reference lifter, search,
    distillation (generations + quality and scale distillation), dataset (``distilled.pcs``),
    final lifter and report are
    cached in ``out_dir/stages/`` under keys of their inputs, config and code version. Rerun after
    a kill (at any instant), the same call skips the finished stages ("reusing stage X"),
    resumes an interrupted lifter from its last checkpoint, redoes an interrupted search or
    distillation, and ends with the same files, byte for byte (timings aside); a changed config
    reruns from the first stage it changes. One process at a time writes ``out_dir``.

    ``engine`` (:mod:`posecurator.engine`; None = this process): where the shards of each
    generation are bred (``evolution.shard_size`` set; a parallel engine needs it) and the
    Bayesian search's candidates are evaluated (``search_batch`` at once). The files do not
    depend on it.
    """
    config = ADDConfig() if config is None else config
    if engine is not None and getattr(engine, "parallel", False) and config.evolution.shard_size is None:
        raise PoseCuratorError(f"ADD on the {engine.name} engine breeds in independently seeded shards: set "
                               "evolution.shard_size in the ADD config (or --shard-size N); one random stream runs here")
    log = _default_log(progress) if log is None else log
    check_training_set(train)  # before the output folder is touched: bad input leaves nothing behind
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with output_lock(out, wait=False):
        return _run_add(train, out, config, progress=progress, log=log, render=render, engine=engine, target=target)


# Code version of each stage of run_add: bump one when a change alters what that stage makes, so
# that reruns in older run folders redo it (and every stage after it).
STAGE_VERSIONS = {"reference": 1, "search": 1, "distill": 1, "dataset": 1, "final": 2, "report": 2}
# The ADDConfig fields each stage depends on, besides the stages before it (the reference lifter
# depends on the lifter's TrainConfig alone).
_DISTILL_FIELDS = ("evolution", "prior", "density", "error_normalization", "error_views", "population", "seed", "noise_px")
_SEARCH_FIELDS = _DISTILL_FIELDS + ("search", "n_trials", "search_epochs", "multiscale_whole", "multiscale_levels",
                                    "bayes_keep", "bayes_multiplier", "bayes_w", "retrain", "finetune_lr",
                                    "multiplier", "keep", "w")
_FINAL_FIELDS = ("retrain", "finetune_epochs", "finetune_lr")


def _fields(config: ADDConfig, names) -> dict:
    d = config.to_dict()
    return {k: d[k] for k in names}


def _run_add(train: PoseSet | PoseStore, out: Path, config: ADDConfig, *, progress: bool, log, render, engine=None,
             target: PoseSet | None = None) -> dict:
    t_start = time.perf_counter()
    stages = StageCache(out, log=log, tag="[add]")
    # temporary files of writes a kill cut short (the lifters clean their own folders)
    stages.remove_stale_temps({"": ("add_config.json", "best.safetensors", "config.json", "summary.json"),
                               "plots": (PLOT_DATA,)})
    config.save(out / "add_config.json")
    log(f"[add] {len(train)} poses{' (read from disk chunk by chunk)' if isinstance(train, PoseStore) else ''}: "
        "cutting the validation clips, fitting the plausibility prior and the reference distribution")
    ctx = ADDContext.build(train, config, target=target, checked=True, progress=progress)
    # a target-aware diversity term: the search and the distillation depend on it and on the target
    target_key = {} if config.target_score is None else {"target_score": config.target_score,
                                                         "target": poseset_fingerprint(target)}
    n_val = 0 if ctx.val_part is None else len(ctx.val_part)
    log(f"[add] {len(train)} poses: train part {len(ctx.train_part)}, validation {n_val} "
        f"({'no validation' if ctx.val_part is None else _count(len(_val_clips(ctx)), 'clip')})")
    ref_dir = out / "reference"

    def train_reference(resume: bool) -> dict:
        log("[add] training the reference lifter on the original train part")
        return train_lifter(ctx.train_part, ref_dir, ctx.train_config, val=ctx.val_part, progress=progress, resume=resume)

    k_ref = stages.key("reference", version=STAGE_VERSIONS["reference"], config=ctx.train_config.to_dict(),
                       inputs=[poseset_fingerprint(train)])
    reference = stages.run("reference", k_ref, train_reference, outputs=["reference/best.safetensors"])

    # without a search the stage only passes the configured parameters on
    search_fields = _SEARCH_FIELDS if config.search != "none" else ("search", "multiplier", "keep", "w")
    search_key = {**_fields(config, search_fields), **(target_key if config.search != "none" else {})}
    if config.search == "bayes" and config.search_batch != 1:  # (1 keeps the keys of runs made before batches)
        search_key["search_batch"] = config.search_batch
    k_search = stages.key("search", version=STAGE_VERSIONS["search"], config=search_key, inputs=[k_ref])
    chosen = stages.run("search", k_search, lambda resume: run_search(ctx, reference_dir=ref_dir, work_dir=out / "search",
                                                                      log=log, engine=engine))
    if chosen["search"] is not None:
        log(f"[add] {config.search} search chose multiplier {chosen['multiplier']:.2f}, keep {chosen['keep']:.2f}, "
            f"w {chosen['w']:.2f} in {chosen['search_s']:.0f} s")

    params = {k: chosen[k] for k in ("multiplier", "keep", "w")}
    k_distill = stages.key("distill", version=STAGE_VERSIONS["distill"],
                           config={**_fields(config, _DISTILL_FIELDS), **target_key, "chosen": params}, inputs=[k_search])
    folder = stages.folder("distill")
    distill = stages.run("distill", k_distill, lambda resume: _distill(ctx, ref_dir, params, folder, progress=progress,
                                                                       engine=engine),
                         outputs=[f"{STAGES_DIR}/distill/{DISTILL_SCORES}"])
    distilled, record = load_distilled(folder, distill, ctx)
    steps = distill["steps"]
    gen_s = sum(s["generation_seconds"] for s in steps)
    score_s = sum(s["scoring_seconds"] for s in steps)
    log(f"[add] distilled {len(distilled)} poses in {len(steps)} generations "
        f"(generation {gen_s:.1f} s, scoring {score_s:.1f} s)")

    # the distilled dataset (the input, then the kept children renumbered), written chunk by chunk
    # before the final lifter, which trains on its train-part and augmented rows read lazily
    def write_dataset(resume: bool) -> dict:
        attrs = {**train.attrs, "add": {"multiplier": chosen["multiplier"], "keep": chosen["keep"], "w": chosen["w"],
                                        "seed": config.seed, "validation_clips": _val_clips(ctx)}}
        write_distilled_set(out / "distilled.pcs", train, distilled, attrs=attrs)
        return {"n": len(train) + len(distilled)}

    k_dataset = stages.key("dataset", version=STAGE_VERSIONS["dataset"], config={}, inputs=[k_distill])
    stages.run("dataset", k_dataset, write_dataset, outputs=["distilled.pcs"])

    def train_final(resume: bool) -> dict:
        log(f"[add] retraining the lifter ({config.retrain}) on {len(ctx.train_part) + len(distilled)} poses")
        return ctx.retrain(None, out / "lifter", reference_dir=ref_dir, progress=progress, resume=resume,
                           stored=final_training_set(out / "distilled.pcs", ctx))

    k_final = stages.key("final", version=STAGE_VERSIONS["final"],
                         config={**_fields(config, _FINAL_FIELDS), "train": ctx.retrain_config().to_dict()}, inputs=[k_dataset])
    final = stages.run("final", k_final, train_final, outputs=["lifter/best.safetensors"])

    def report(resume: bool) -> dict:
        return _write_report(out, train, ctx, chosen, reference, final, distilled, record, steps, render=render,
                             t_start=t_start)

    k_report = stages.key("report", version=STAGE_VERSIONS["report"],
                          config={"config": config.to_dict(), "render": render is not None, "out": str(out)}, inputs=[k_final])
    summary = stages.run("report", k_report, report, outputs=["summary.json", "best.safetensors", "config.json"])
    log(f"[add] done in {summary['times']['total']:.0f} s: validation MPJPE reference "
        f"{_fmt(summary['lifters']['reference']['best_val_mpjpe'])} -> final "
        f"{_fmt(summary['lifters']['final']['best_val_mpjpe'])} mm; results in {out}")
    return summary


# ------------------------------------------------------------------------ the distillation stage
DISTILL_SCORES = "scores.npz"


@dataclass
class DistillRecord:
    """What scale distillation recorded for the report (the attributes of a
    :class:`ScaleDistiller` run with ``record=True`` that the summary and the plots read)."""

    kept_score_: np.ndarray
    dropped_score_: np.ndarray
    dropped_: PoseSet | PoseStore
    kept_components_: dict
    dropped_components_: dict


def _distill(ctx: ADDContext, ref_dir: Path, params: dict, folder: Path, *, progress: bool, engine=None) -> dict:
    """Scale distillation with the chosen parameters; its poses and scores go to ``folder``
    (``augmented.pcs``, ``dropped.pcs``, ``scores.npz``), the per-generation steps to the result."""
    scale = ctx.scale_distiller(reference_dir=ref_dir, record=True, progress=progress, engine=engine, **params)
    # written generation by generation as they are made (the files of `run` + `save`; no folder
    # for an empty set)
    n_augmented, steps, rec = distil_to_store(scale, ctx.train_part, folder / "augmented.pcs",
                                              dropped_path=folder / "dropped.pcs")
    n_dropped = len(rec["dropped_score"])
    kept, dropped = rec["kept_components"], rec["dropped_components"]
    arrays = {"kept_score": rec["kept_score"], "dropped_score": rec["dropped_score"],
              "kept_novelty": kept["novelty"], "dropped_novelty": dropped["novelty"]}
    if kept["error"] is not None:
        arrays.update(kept_error=kept["error"], dropped_error=dropped["error"])
    atomic_savez(folder / DISTILL_SCORES, **{k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()})
    return {"steps": [s.to_dict() for s in steps], "n_augmented": n_augmented, "n_dropped": n_dropped}


def load_distilled(folder: Path, result: dict, ctx: ADDContext) -> tuple[PoseSet | PoseStore, DistillRecord]:
    """The distilled augmentation and its :class:`DistillRecord`, as the distillation stage
    wrote them to ``folder`` (a fresh run reads them back too, so it continues exactly as a rerun):
    the poses opened lazily (:class:`PoseStore`; an empty PoseSet where there are none)."""
    part = ctx.train_part
    none = part.take(np.zeros(0, np.int64)) if isinstance(part, PoseStore) else part.subset(slice(0, 0))
    empty = none.replace(joints2d=None, visibility=None, camera=None)
    distilled = PoseStore(folder / "augmented.pcs") if result["n_augmented"] else empty
    dropped = PoseStore(folder / "dropped.pcs") if result["n_dropped"] else empty
    with np.load(folder / DISTILL_SCORES, allow_pickle=False) as z:
        a = {k: z[k] for k in z.files}
    record = DistillRecord(kept_score_=a["kept_score"], dropped_score_=a["dropped_score"], dropped_=dropped,
                           kept_components_={"novelty": a["kept_novelty"], "error": a.get("kept_error")},
                           dropped_components_={"novelty": a["dropped_novelty"], "error": a.get("dropped_error")})
    return distilled, record


def _write_report(out: Path, train: PoseSet | PoseStore, ctx: ADDContext, chosen: dict, reference: dict, final: dict,
                  distilled: PoseSet | PoseStore, scale: DistillRecord, steps: list[dict], *, render, t_start: float) -> dict:
    """The report stage: OUT as a run folder of the final lifter, the plots and ``summary.json``
    (returned)."""
    config = ctx.config
    n_val = 0 if ctx.val_part is None else len(ctx.val_part)
    gen_s = sum(s["generation_seconds"] for s in steps)
    score_s = sum(s["scoring_seconds"] for s in steps)
    # OUT itself is a run folder too: `posecurator evaluate OUT DATA` evaluates the final lifter
    _link_or_copy(out / "lifter" / "best.safetensors", out / "best.safetensors")
    _link_or_copy(out / "lifter" / "config.json", out / "config.json")


    plots = {}
    if config.plots:
        write_plot_data(out / "plots", ctx, distilled, scale, seed=int(config.seed), n_gallery=config.gallery)
        plots["data"] = f"plots/{PLOT_DATA}"
        if render is not None:
            plots.update({name: str(Path(f).relative_to(out)) if Path(f).is_relative_to(out) else str(f)
                          for name, f in render(out / "plots").items()})

    n0 = len(ctx.train_part)
    summary = {
        "config": config.to_dict(),
        "train_config": ctx.train_config.to_dict(),
        "sizes": {"original": len(train), "train_part": n0, "validation": n_val, "distilled": len(distilled),
                  "dropped_by_score": len(scale.dropped_), "total_training": n0 + len(distilled),
                  "multiplier_achieved": (n0 + len(distilled)) / n0},
        "generations": steps,
        "scores": {
            "direction": "higher = more likely meaningless (dropped first); score = w * (1 - prob) + (1 - w) * normalised error",
            # what "novelty" holds: the density's 1 - prob, or the target-aware term of --target
            "diversity_term": ("1 - prob (density of the train part)" if ctx.config.target_score is None else
                               f"target_{ctx.config.target_score} against the target's 2D, mapped onto [0, 1]"),
            "score": {"kept": _stats(scale.kept_score_), "dropped": _stats(scale.dropped_score_)},
            "novelty": {"kept": _stats(scale.kept_components_["novelty"]), "dropped": _stats(scale.dropped_components_["novelty"])},
            "lifter_error_mm": {"kept": _stats(scale.kept_components_["error"]), "dropped": _stats(scale.dropped_components_["error"])},
        },
        "chosen": {k: chosen[k] for k in ("multiplier", "keep", "w")},
        "search": chosen["search"],
        "lifters": {name: {k: r.get(k) for k in ("best_val_mpjpe", "best_epoch", "epochs", "steps", "training_time_s", "wall_s")}
                    for name, r in (("reference", reference), ("final", final))},
        "times": {**{k[:-2] if k.endswith("_s") else k: v for k, v in ctx.times.items()},
                  "reference_training": reference["wall_s"], "search": chosen["search_s"], "generation": gen_s,
                  "scoring": score_s, "final_training": final["wall_s"], "total": time.perf_counter() - t_start},
        "validation_clips": _val_clips(ctx),
        "paths": {"distilled": "distilled.pcs", "lifter": "lifter", "reference": "reference", "plots": plots,
                  "evaluate": f"posecurator evaluate {out} DATASET"},
    }
    _write_json(out / "summary.json", summary)
    return summary


def renumber_children(children: PoseSet, *, first_id: int) -> PoseSet:
    """Give generated poses fresh sample ids from ``first_id`` on (in their order), keeping their
    lineage: parent ids that point at other generated poses of the set follow them; parent ids
    of original poses stay. Needed when the children were bred from a part of a set (the train
    part) and are stored with the whole set (their ids could collide with the held-out part's)."""
    if len(children) == 0:
        return children
    return ChildRenumbering(children.sample_id, first_id=first_id).apply(children, start=0)


class ChildRenumbering:
    """:func:`renumber_children` of a set of generated poses given block by block: built from
    the whole set's sample ids (``old_ids``, in row order; 8 bytes a pose), it renumbers any run
    of consecutive rows (``apply(block, start=first row)``) as the whole set would be."""

    def __init__(self, old_ids: np.ndarray, *, first_id: int):
        old_ids = np.asarray(old_ids, dtype=np.int64)
        self.first_id = int(first_id)
        self.order = None if np.all(old_ids[1:] > old_ids[:-1]) else np.argsort(old_ids, kind="stable")
        self.sorted_ids = old_ids if self.order is None else old_ids[self.order]

    def _new_id(self, pos: np.ndarray) -> np.ndarray:
        rows = pos if self.order is None else self.order[pos]
        return self.first_id + rows.astype(np.int64)

    def apply(self, block: PoseSet, *, start: int) -> PoseSet:
        n = len(self.sorted_ids)
        parents = block.parents.copy()
        pos = np.clip(np.searchsorted(self.sorted_ids, parents), 0, max(n - 1, 0))
        hit = (parents >= 0) & (self.sorted_ids[pos] == parents)
        parents[hit] = self._new_id(pos[hit])
        new_ids = self.first_id + start + np.arange(len(block), dtype=np.int64)
        return block.replace(sample_id=new_ids, parents=parents)


def final_training_set(path: Path, ctx: ADDContext) -> PoseStore:
    """The final lifter's training poses in ``distilled.pcs`` (its first ``len(ctx.original)``
    rows are the input, then the augmentation): the train part's rows, then the augmentation's, as
    a lazy selection: the rows and order of ``with_augmentation(ctx.train_part, augmented)``."""
    store = PoseStore(path)
    n0 = len(ctx.original)
    return store.select(np.concatenate([ctx.train_rows, np.arange(n0, len(store), dtype=np.int64)]))


def write_distilled_set(path: Path, train: PoseSet | PoseStore, augmented, *, attrs: dict) -> Path:
    """``distilled.pcs``: ``train`` (3D only) followed by the distilled augmentation renumbered
    (:func:`renumber_children`, ids after the train set's), written chunk by chunk: stored sets
    (:class:`~posecurator.poseset.PoseStore`) are read one chunk at a time. The same bytes as
    ``PoseSet.concatenate`` of the two and ``save``."""
    from posecurator.augment.streaming import Rechunker
    from posecurator.poseset import DEFAULT_CHUNK, PoseSetWriter

    def parts(poses):
        return poses.iter_chunks() if isinstance(poses, PoseStore) else [poses]

    def column(poses, name):
        return poses.column(name) if isinstance(poses, PoseStore) else getattr(poses, name)

    def three_d(part):
        return part.replace(joints2d=None, visibility=None, camera=None)

    with PoseSetWriter(path, layout=train.layout, fps=train.fps, chunk_size=DEFAULT_CHUNK, attrs=attrs) as w:
        w.cameras = list(train.cameras)
        out = Rechunker(w, DEFAULT_CHUNK)
        for part in parts(train):
            out.add(three_d(part))
        if len(augmented):
            train_ids = column(train, "sample_id")
            renumbering = ChildRenumbering(column(augmented, "sample_id"),
                                           first_id=int(train_ids.max()) + 1 if len(train_ids) else 0)
            start = 0
            for part in parts(augmented):
                out.add(renumbering.apply(three_d(part), start=start))
                start += len(part)
        out.flush()
    return path


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def _val_clips(ctx: ADDContext) -> list[str]:
    return [] if ctx.val_part is None else sorted(np.unique(ctx.val_part.clip).tolist())


PLOT_DATA = "plot_data.npz"


def write_plot_data(plot_dir: Path, ctx: ADDContext, distilled: PoseSet, scale: ScaleDistiller, *, seed: int = 0,
                    n_gallery: int = 6) -> Path:
    """What the ADD plots show, as plain arrays in ``plot_dir/plot_data.npz`` (no pickle):

    ``score_kept`` / ``score_dropped`` (ADD scores), ``pca_original`` / ``pca_kept`` /
    ``pca_dropped`` (N, 2) embeddings in the reference PCA plane, ``gmm_weights`` (K,),
    ``gmm_means`` (K, 2), ``gmm_covariances`` (K, 2, 2) of the reference mixture, and a gallery:
    ``gallery_poses`` (R * C, 17, 3) mm world frame, ``gallery_titles`` (R * C,), ``gallery_rows``
    (R,) labels, rows of ``n_gallery`` poses: original (random), kept (random), dropped (random),
    dropped with the highest scores. The report layer draws them
    (:func:`posecurator.report.plots.render_add_plots`); pipelines never import the report layer.
    """
    plot_dir = Path(plot_dir)
    plot_dir.mkdir(parents=True, exist_ok=True)
    density = ctx.density
    empty2 = np.zeros((0, 2))

    def embed(poses):  # block by block (a stored set chunk by chunk): 2 numbers a pose are kept
        if not len(poses):
            return empty2
        parts = poses.iter_chunks(columns=["joints3d"]) if isinstance(poses, PoseStore) else [poses]
        blocks = iter_blocks(parts, stream_block_size(density, 65_536))
        return np.concatenate([density.embed(b) for b in blocks])

    def joints(poses, idx):
        return poses.take(idx, columns=["joints3d"]).joints3d if isinstance(poses, PoseStore) else poses.joints3d[idx]

    arrays = {
        "score_kept": np.asarray(scale.kept_score_, dtype=np.float64),
        "score_dropped": np.asarray(scale.dropped_score_, dtype=np.float64),
        "pca_original": embed(ctx.train_part),
        "pca_kept": embed(distilled),
        "pca_dropped": embed(scale.dropped_),
        "gmm_weights": density.gmm_.weights_, "gmm_means": density.gmm_.means_,
        "gmm_covariances": density.gmm_.covariances_,
    }
    rng = np.random.default_rng([seed, 101])
    rows, titles, labels = [], [], []

    def random_pick(n):
        return np.sort(rng.choice(n, min(n_gallery, n), replace=False))

    def worst_pick(n):
        return np.argsort(-scale.dropped_score_, kind="stable")[:min(n_gallery, n)]

    for label, poses, scores, pick in (("original", ctx.train_part, None, random_pick),
                                       ("kept", distilled, scale.kept_score_, random_pick),
                                       ("dropped", scale.dropped_, scale.dropped_score_, random_pick),
                                       ("worst", scale.dropped_, scale.dropped_score_, worst_pick)):
        if len(poses) == 0 or n_gallery <= 0:
            continue
        idx = pick(len(poses))
        row = joints(poses, idx)
        row_titles = [label if scores is None else f"{label} {scores[i]:.2f}" for i in idx]
        pad = n_gallery - len(idx)  # short rows are padded (blank titles) so each group starts a row
        if pad:
            row = np.concatenate([row, np.repeat(row[-1:], pad, axis=0)])
            row_titles += [""] * pad
        rows.append(row)
        titles.extend(row_titles)
        labels.append(label)
    arrays["gallery_poses"] = np.concatenate(rows) if rows else np.zeros((0, 17, 3), np.float32)
    arrays["gallery_titles"] = np.asarray(titles, dtype=str)
    arrays["gallery_rows"] = np.asarray(labels, dtype=str)
    path = plot_dir / PLOT_DATA
    atomic_savez(path, **arrays)
    return path
