"""VAE difficulty sampling (paper 002) as a pipeline: the VAE scores and the ``difficulty`` report.

* :func:`run_difficulty` (``posecurator difficulty``): train a pose VAE on a data set, score every
  pose (Eq. 2), cut the scores into k equal-size bins and write the scores (``scores.npz``, keyed
  by sample_id, usable by ``posecurator train --sampler hard:0.33 --scores``), per-bin statistics
  (``bins.json``), the bin-to-bin EvalPose heatmap of the paper's Fig. 3(b), a score histogram and
  skeleton galleries of the easiest / hardest poses and of one pose per bin (Fig. 3(a)). With a
  held-out set it also scores and bins that set with the same VAE (:func:`run_coco_difficulty`:
  COCO train2017 subset -> val2017 subset, 2D).
* :func:`source_scores`: a training source's scores by one VAE or cross-fitted fold VAEs, cached
  per seed; :data:`METHOD_SPECS`: the samplers of the methods (hard mining, curriculum).
* The benchmark rows (``vae_all``, ``random33``, ``vae_hard33``, ``vae_curriculum``) and the
  experiment (``posecurator vae-bench``) live in :mod:`posecurator.pipelines.bench_vae`.

Plots: the pipeline writes what the figures show (``plot_data.npz`` per difficulty report) and
calls an optional ``render(out_dir)`` callback that draws the PNGs; the CLI passes
:func:`posecurator.report.plots.render_difficulty_plots` (this layer does not import the report
layer above it).

Protocol decisions (why):

* **The VAE sees the training source only**, never the target: it is trained on the split's
  training part (all of it, including the lifter's validation clips, which are source data too);
  target poses are only *scored* by it, for the per-bin analysis.
* **Same number of optimisation steps for every method.** A subset method sees fewer distinct
  poses, not fewer updates: each epoch of a sampler method is stretched to as many indices as the
  full training part has poses (:class:`EqualLengthSampler` cycles through reshuffled passes of
  the subset), and the trainer's ``max_epoch_pairs`` then caps every method's epoch at the same
  number of pairs. With the "fast" preset on Bandai (about 375k training poses, a third is 124k
  poses, the curriculum's first stage 135k) every epoch of every method is exactly
  ``max_epoch_pairs`` = 10,000 pairs = 156 steps of 64, 9,360 steps in all; the stretching matters
  on smaller sources, where a third of the poses is below the cap. The ``steps`` column of the
  table shows the count of every run.
* **Source scores out of sample (cross-fitted by clip).** A VAE scores the poses it trained on
  lower than equally typical poses it did not see (HDM05 bd + bk, bench config, seed 0: 52.7 % of
  the VAE's own validation-clip poses land in the hardest third, 39.5 % cross-fitted, where random
  10 %-clip sets give 33 +- 11 %; benchmarks/crossfit_skew.py), so "hard" would partly mean "not
  trained on". By default (``crossfit=5``) the source is cut into 5 folds of whole clips and every pose is
  scored by the VAE trained on the other 4 (:class:`posecurator.scoring.crossfit.CrossFitScorer`);
  ``crossfit=None`` (or 0 / 1) keeps the one in-sample VAE. The output files say which
  (``scoring``: "in_sample" or "crossfit K").
* **Target poses are scored by the mean of the K fold VAEs** (in sample: by the one VAE). No VAE
  ever saw the target, so its scores are out of sample like the source's cross-fitted ones, and
  the fold VAEs are the very models (same training size, (K - 1) / K of the source) that scored
  the source: both sets are on one scale and can share the source's bins. (A VAE refitted on all
  of the source would score everything a little lower than the fold VAEs did.)
* **One set of VAEs per seed**, shared by the methods of that seed (and by the GT / noisy
  settings): the scores are cached in the bench's ``runs/`` folder (``vae-seed{S}-{key}/`` in
  sample, ``vae-seed{S}-cf{K}-{key}/`` cross-fitted; ``key`` = hash of the training poses, the VAE
  config and the cross-fit setting). Each VAE's cost is bounded by :func:`vae_config_for` (about
  one million pose passes: on Bandai a seeded 100k-pose subset for 10 epochs; a fold VAE makes as
  many passes as the single VAE, so K folds cost K times as much), then all source poses are
  scored (forward passes only).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from posecurator.errors import DataError, PoseCuratorError
from posecurator.fileio import atomic_savez, atomic_write_json, output_lock
from posecurator.pipelines.splits import Split, SplitPart, bandai_to_cmu_split, default_data_root, load_dataset, load_part  # noqa: F401
from posecurator.poseset import PoseSet

DEFAULT_BINS = 25
HARD_FRACTION = 0.33
# bench method name -> sampler spec of posecurator.selection.samplers (None: no sampler, every pose)
METHOD_SPECS: dict[str, str | None] = {
    "vae_all": None,
    "random33": f"random:{HARD_FRACTION}",
    "vae_hard33": f"hard:{HARD_FRACTION}",
    "vae_curriculum": "curriculum",
}
VAE_METHODS = tuple(METHOD_SPECS)
# VAE training cost: about this many pose forward/backward passes (epochs * poses used)
DIFFICULTY_POSE_PASSES = 2_000_000
BENCH_POSE_PASSES = 1_000_000
BENCH_MAX_SAMPLES = 100_000
MIN_VAE_EPOCHS, MAX_VAE_EPOCHS = 5, 300
SCORES_FILE = "scores.npz"
HEATMAP_PER_BIN = 100  # poses drawn per bin for the Fig. 3(b) heatmap (k * 100 squared EvalPose pairs)
MAX_LABELS = 200  # per-bin label counts only for columns with at most this many distinct values


# ------------------------------------------------------------------------------ VAE config
def vae_config_for(n_poses: int, *, space: str = "3d", seed: int = 0, pose_passes: int = DIFFICULTY_POSE_PASSES,
                   max_samples: int | None = None, **overrides):
    """A :class:`~posecurator.train.vae_trainer.VAEConfig` whose training cost is about
    ``pose_passes`` pose passes whatever the size of the set: epochs =
    ``clip(ceil(pose_passes / n_used), 5, 300)`` with ``n_used = min(n_poses, max_samples)``
    (small sets such as COCO get many epochs, Bandai's 417k poses few). ``overrides``: any
    VAEConfig field (an explicit ``epochs`` wins)."""
    from posecurator.train.vae_trainer import VAEConfig

    n_used = max(1, min(int(n_poses), int(max_samples)) if max_samples else int(n_poses))
    epochs = int(np.clip(math.ceil(pose_passes / n_used), MIN_VAE_EPOCHS, MAX_VAE_EPOCHS))
    fields = {"space": space, "seed": int(seed), "epochs": epochs, "max_samples": max_samples, **overrides}
    return VAEConfig.from_dict(fields)


def bench_vae_config(n_poses: int, *, seed: int, space: str = "3d", **overrides):
    """The VAE of the bench methods: 3D, at most ``BENCH_MAX_SAMPLES`` poses, about
    ``BENCH_POSE_PASSES`` pose passes (both may be overridden, as ``max_samples`` / ``pose_passes``)."""
    max_samples = overrides.pop("max_samples", BENCH_MAX_SAMPLES)
    pose_passes = overrides.pop("pose_passes", BENCH_POSE_PASSES)
    return vae_config_for(n_poses, space=space, seed=seed, pose_passes=pose_passes, max_samples=max_samples, **overrides)


def _poses_fingerprint(poses: PoseSet) -> str:
    h = hashlib.sha1()
    for arr in (poses.joints3d, poses.joints2d, poses.sample_id):
        if arr is not None:
            h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def crossfit_folds(crossfit: int | None) -> int:
    """The number of folds of a ``crossfit`` option: 0 = in sample (None, 0 or 1), else K >= 2."""
    if crossfit is None:
        return 0
    if isinstance(crossfit, bool) or int(crossfit) != crossfit or crossfit < 0:
        raise PoseCuratorError(f"crossfit must be None, 0, 1 (in sample) or a number of folds >= 2, got {crossfit!r}")
    return 0 if int(crossfit) <= 1 else int(crossfit)


def scoring_label(crossfit: int | None) -> str:
    """How the training poses' scores were made, as written in the output files: "in_sample"
    (one VAE trained on the set scores the set) or "crossfit K" (each pose scored by the fold VAE
    that never saw its clip)."""
    k = crossfit_folds(crossfit)
    return "in_sample" if k == 0 else f"crossfit {k}"


def crossfit_train_size(n_poses: int, crossfit: int | None) -> int:
    """Poses a fold VAE trains on (on average): ``n * (K - 1) / K``; ``n`` in sample. The VAE
    configs are sized on it, so that each fold VAE makes as many pose passes as the single
    in-sample VAE would (K folds cost about K times one VAE)."""
    k = crossfit_folds(crossfit)
    return int(n_poses) if k == 0 else max(1, int(round(n_poses * (k - 1) / k)))


FIT_MARKER = "fit.json"  # in a fold VAE's folder: what it was trained on (a finished fold is reused)


def _fold_vae_factory(cfg, folder: Path, *, progress: bool, resumable: bool) -> Callable:
    """``make_scorer`` of :class:`~posecurator.scoring.crossfit.CrossFitScorer` for pose VAEs: the
    k-th call (CrossFitScorer makes them in fold order) trains into ``folder/fold{k}/``. A fold
    folder that already holds the VAE of the same training poses and config (``fit.json``) is
    loaded instead of trained again, so an interrupted cross-fit resumes at the first unfinished
    fold; ``resumable``: the fold being trained also keeps checkpoints (:func:`train_vae`)."""
    from posecurator.pipelines.stages import poseset_fingerprint
    from posecurator.train.vae_trainer import CONFIG_FILE, WEIGHTS_FILE, load_vae, make_vae_scorer, train_vae

    calls = itertools.count()

    def make():
        fold_dir = folder / f"fold{next(calls)}"

        def fit_fn(reference: PoseSet):
            marker = {"config": cfg.to_dict(), "poses": poseset_fingerprint(reference)}
            try:
                done = json.loads((fold_dir / FIT_MARKER).read_text()) == marker
            except (OSError, ValueError):
                done = False
            if done and (fold_dir / CONFIG_FILE).is_file() and (fold_dir / WEIGHTS_FILE).is_file():
                model, _ = load_vae(fold_dir)
                return model, json.loads((fold_dir / CONFIG_FILE).read_text()).get("history", {})
            (fold_dir / FIT_MARKER).unlink(missing_ok=True)
            model, hist = train_vae(reference, cfg, out_dir=fold_dir, progress=progress, resumable=resumable)
            atomic_write_json(fold_dir / FIT_MARKER, marker)
            return model, hist

        scorer = make_vae_scorer(cfg, progress=progress)
        scorer.fit_fn = fit_fn
        return scorer

    return make


def crossfit_vae(poses: PoseSet, cfg, *, folds: int, seed: int, folder: str | Path, progress: bool = True,
                 resumable: bool = False):
    """A :class:`~posecurator.scoring.crossfit.CrossFitScorer` of pose VAEs fitted on ``poses``:
    ``folds`` fold VAEs (config ``cfg`` each), folds of whole clips seeded by ``seed``, saved to
    ``folder/fold{k}/`` (a finished fold is reused). Its ``oof_scores_`` score every pose by the
    VAE that never saw its clip; ``score_samples`` scores new poses by the mean of the fold VAEs."""
    from posecurator.scoring.crossfit import CrossFitScorer

    factory = _fold_vae_factory(cfg, Path(folder), progress=progress, resumable=resumable)
    return CrossFitScorer(factory, folds=folds, group="clip", seed=seed, new="mean").fit(poses)


def score_with_source_vae(vae_dir: str | Path, poses: PoseSet) -> np.ndarray:
    """(N,) float64 scores of *new* poses (never trained on, such as the target) by the VAE(s) of
    a :func:`source_scores` folder: the mean of the K fold VAEs of a cross-fitted folder (the
    ``fold_dirs`` of its ``crossfit.json``; as ``CrossFitScorer.score_samples`` with
    ``new="mean"``), the single VAE of an in-sample one. Higher = harder."""
    doc_path = Path(vae_dir) / CROSSFIT_FILE
    dirs = [Path(vae_dir)]
    if doc_path.is_file():
        dirs = [Path(vae_dir) / d for d in json.loads(doc_path.read_text())["fold_dirs"]]
    return _mean_vae_scores(dirs, poses)


def _mean_vae_scores(dirs: Sequence[Path], poses: PoseSet) -> np.ndarray:
    """(N,) mean score of ``poses`` under the saved VAEs in ``dirs``."""
    from posecurator.train.vae_trainer import load_vae, score_poses

    total = None
    for d in dirs:
        model, vcfg = load_vae(d)
        s = score_poses(model, poses, projection_seed=vcfg.projection_seed)
        total = s if total is None else total + s
    return total / len(dirs)


DEFAULT_CROSSFIT = 5
CROSSFIT_FILE = "crossfit.json"


def source_scores(train: PoseSet, *, cache_dir: str | Path, seed: int, vae_config=None, progress: bool = True,
                  log: Callable[[str], None] | None = None,
                  crossfit: int | None = DEFAULT_CROSSFIT) -> tuple[np.ndarray, Path]:
    """VAE difficulty of every row of the source ``train``: ((N,) float64, folder of the VAE(s)).
    Higher = harder.

    ``crossfit`` K >= 2 (default 5): out of sample. The poses are cut into K folds of whole clips
    (seeded by ``seed``, balanced by pose count), K VAEs are trained, each on the other K - 1
    folds, and every pose is scored by the VAE that never saw its clip
    (:class:`~posecurator.scoring.crossfit.CrossFitScorer`). ``None``, 0 or 1: in sample, the old
    behaviour: one VAE trained on ``train`` scores all of it, so the poses it trained on score
    lower than those it did not (its own validation clips, ~10 %).

    The VAEs are trained on ``train`` alone, seeded by ``seed``. ``vae_config``: a VAEConfig (used
    as it is for every VAE), or a dict of fields overriding :func:`bench_vae_config`, or None for
    that config; the bench config is sized on the poses one VAE trains on
    (:func:`crossfit_train_size`), so a fold VAE costs about what the single VAE costs.

    Cached in ``cache_dir/vae-seed{seed}-{key}/`` (in sample: ``vae.safetensors``, ``vae.json``)
    or ``cache_dir/vae-seed{seed}-cf{K}-{key}/`` (``fold{k}/`` VAEs and ``crossfit.json``: the
    folds' clips and sizes), each with ``scores.npz`` (``sample_id``, ``score``, ``scoring`` =
    :func:`scoring_label`, and ``fold`` when cross-fitted) written last; ``key`` hashes the poses,
    the config and (cross-fitted only, so in-sample caches of earlier versions stay valid) the
    cross-fit setting. Every method of one seed reuses it. New poses (the target) are scored with
    :func:`score_with_source_vae`.
    """
    from posecurator.selection.bins import align_scores, load_scores

    k_folds = crossfit_folds(crossfit)
    n_clips = len(np.unique(train.clip))
    if k_folds and n_clips < k_folds:
        raise PoseCuratorError(f"cross-fitting the VAE scores over {k_folds} folds needs at least {k_folds} clips; "
                               f"the source has {n_clips} (use fewer folds, or crossfit 0 for in-sample scores)")
    n_fit = crossfit_train_size(len(train), k_folds)
    if vae_config is None or isinstance(vae_config, dict):
        overrides = {key: v for key, v in (vae_config or {}).items() if key != "seed"}
        cfg = bench_vae_config(n_fit, seed=seed, **overrides)
    else:
        cfg = type(vae_config).from_dict({**vae_config.to_dict(), "seed": int(seed)})
    text = _poses_fingerprint(train) + json.dumps(cfg.to_dict(), sort_keys=True)
    if k_folds:
        text += json.dumps({"crossfit": k_folds, "group": "clip", "fold_seed": int(seed)}, sort_keys=True)
    key = hashlib.sha1(text.encode()).hexdigest()[:12]
    folder = Path(cache_dir) / (f"vae-seed{seed}-{key}" if not k_folds else f"vae-seed{seed}-cf{k_folds}-{key}")
    scores_path = folder / SCORES_FILE
    done_marker = folder / ("vae.json" if not k_folds else CROSSFIT_FILE)
    if scores_path.is_file() and done_marker.is_file():
        ids, sc = load_scores(scores_path)
        return align_scores(train.sample_id, ids, sc, path=scores_path), folder
    t0 = time.perf_counter()
    label = scoring_label(k_folds)
    if not k_folds:
        from posecurator.train.vae_trainer import score_poses, train_vae

        model, _ = train_vae(train, cfg, out_dir=folder, progress=progress)
        scores = score_poses(model, train, projection_seed=cfg.projection_seed)
        extra = {}
    else:
        cf = crossfit_vae(train, cfg, folds=k_folds, seed=seed, folder=folder, progress=progress)
        scores, extra = cf.oof_scores_, {"fold": cf.fold_}
        atomic_write_json(folder / CROSSFIT_FILE, _crossfit_doc(cf, train), indent=1)
    # written last: marks the cache entry complete
    atomic_savez(scores_path, sample_id=np.asarray(train.sample_id, dtype=np.int64),
                 score=np.asarray(scores, dtype=np.float64), scoring=np.asarray(label), **extra)
    if log is not None:
        log(f"[vae] seed {seed}: {max(k_folds, 1)} pose VAE(s) ({cfg.space}, {cfg.epochs} epochs, "
            f"{min(n_fit, cfg.max_samples or n_fit)} poses each) trained and {len(train)} poses scored ({label}) "
            f"in {time.perf_counter() - t0:.0f} s -> {folder}")
    return scores, folder


def _crossfit_doc(cf, poses: PoseSet) -> dict:
    """What ``crossfit.json`` records of a fitted CrossFitScorer: the scoring, the folds' clips and sizes."""
    return {"scoring": f"crossfit {cf.n_folds_}", "folds": cf.n_folds_, "group": cf.group, "seed": cf.seed,
            "new_poses": "mean of the fold VAEs" if cf.new == "mean" else "a VAE fitted on every pose",
            "fold_dirs": [f"fold{k}" for k in range(cf.n_folds_)],
            "fold_poses": np.bincount(cf.fold_, minlength=cf.n_folds_).tolist(),
            "fold_clips": [g.tolist() for g in cf.fold_groups_],
            "n_poses": len(poses)}


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


# ------------------------------------------------------------------------------ samplers
def equal_steps_factory(spec: str, *, scores=None) -> Callable:
    """A trainer sampler factory for ``spec`` (see ``posecurator.selection.samplers.SAMPLER_SPECS``)
    whose epochs are stretched to the training part's size (:class:`EqualLengthSampler`).
    ``scores``: anything :func:`~posecurator.selection.samplers.resolve_scores` takes (a score
    file keyed by sample_id, an aligned array, a dict). The sampler made by the last call is kept
    in ``factory.made``."""
    from posecurator.selection.samplers import EqualLengthSampler, parse_sampler_spec

    inner = parse_sampler_spec(spec, scores=scores)

    def factory(train_part: PoseSet, scores=None, *, epochs: int | None = None, seed: int | None = None):
        base = inner(train_part, scores, epochs=epochs, seed=seed)
        factory.made = EqualLengthSampler(base, len(train_part), seed=0 if seed is None else seed)
        return factory.made

    factory.spec, factory.accepts_epochs, factory.made = spec, True, None
    return factory


# ------------------------------------------------------------------------------ difficulty report
def _pose_arrays_for_report(poses: PoseSet, space: str, projection_seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Poses as the VAE saw them (3D world mm, or 2D pixels / scoring projections) with visibility;
    unlabelled joints (NaN) set to 0 so that EvalPose's masked products stay finite."""
    from posecurator.models.pose_vae import pose_arrays

    raw, vis = pose_arrays(poses, 3 if space == "3d" else 2, projection_seed=projection_seed)
    raw = np.asarray(raw, dtype=np.float64)
    if vis is not None:
        raw = np.where(np.asarray(vis)[..., None] > 0, raw, 0.0)
    return np.nan_to_num(raw, nan=0.0), None if vis is None else np.asarray(vis, dtype=np.float32)


def _representatives(scores: np.ndarray, bins: np.ndarray, k: int) -> np.ndarray:
    """(k,) index of the pose whose score is the median of its bin (one pose per bin, Fig. 3(a))."""
    order = np.lexsort((scores, bins))  # by bin, then by score
    starts = np.searchsorted(bins[order], np.arange(k))
    ends = np.searchsorted(bins[order], np.arange(k), side="right")
    return order[(starts + ends - 1) // 2]


def bin_report(poses: PoseSet, scores: np.ndarray, *, out_dir: str | Path, k: int = DEFAULT_BINS, space: str = "3d",
               projection_seed: int = 0, n_gallery: int = 6, heatmap_per_bin: int = HEATMAP_PER_BIN,
               seed: int = 0, title: str = "", edges=None, render: Callable[[Path], dict] | None = None,
               scoring: str | None = None, fold=None) -> dict:
    """Bins, statistics and plots of scored poses, written to ``out_dir``; returns the summary.

    poses: N poses; scores: (N,) VAE scores (NaN = unscored: too few labelled joints; left out of
    the bins, bin -1 in the score file). Files: ``scores.npz`` (sample_id, score, bin),
    ``bins.json`` (per-bin statistics, edges, the heatmap matrix), ``heatmap.png`` (Fig. 3(b):
    mean EvalPose between the poses of bin i and bin j, ``heatmap_per_bin`` poses drawn per bin),
    ``histogram.png``, ``gallery.png`` (the ``n_gallery`` easiest and hardest poses) and
    ``bins_gallery.png`` (the median-score pose of every bin). ``edges``: another set's
    :func:`~posecurator.selection.bins.bin_edges`; when given, the summary also counts these poses
    in those bins (``counts_in_reference_bins``: held-out poses in the training set's bins).
    ``scoring``: how the scores were made ("in_sample", "crossfit K", or for a held-out set e.g.
    "out_of_sample: mean of 5 fold VAEs"), written to ``scores.npz`` (``scoring``) and
    ``bins.json``; ``fold``: (N,) fold VAE that scored each pose, written to ``scores.npz``.

    Plots: what they show goes to ``plot_data.npz`` (:func:`write_difficulty_plot_data`);
    ``render(out_dir) -> {name: png path}`` draws the PNGs, normally
    :func:`posecurator.report.plots.render_difficulty_plots` (the CLI passes it; the pipeline layer
    does not import the report layer above it). Without ``render`` no PNG is written.
    """
    from posecurator.selection.bins import (assign_bins, bin_edges, bin_similarity_matrix, bin_statistics,
                                            difficulty_bins, save_scores)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scores = np.asarray(scores, dtype=np.float64)
    scored = np.flatnonzero(np.isfinite(scores))
    if len(scored) < k:
        raise DataError(None, f"only {len(scored)} poses could be scored (too few labelled joints in the rest); "
                              f"cannot cut them into {k} bins (use --bins smaller)")
    sub_scores = scores[scored]
    sub_bins = difficulty_bins(sub_scores, k)
    all_bins = np.full(len(scores), -1, dtype=np.int64)
    all_bins[scored] = sub_bins
    extra = {} if scoring is None else {"scoring": np.asarray(str(scoring))}
    if fold is not None:
        extra["fold"] = np.asarray(fold, dtype=np.int64)
    if extra:
        atomic_savez(out / SCORES_FILE, sample_id=np.asarray(poses.sample_id, dtype=np.int64), score=scores,
                     bin=all_bins, **extra)
    else:
        save_scores(out / SCORES_FILE, poses.sample_id, scores, bins=all_bins)

    arrays, vis = _pose_arrays_for_report(poses, space, projection_seed)
    arrays, vis = arrays[scored], None if vis is None else vis[scored]
    extras = {}
    for name in ("source", "subject", "activity"):
        col = getattr(poses, name)
        # labels worth counting per bin: more than one value, and not one per pose (COCO's image ids)
        if col is not None and 1 < len(np.unique(col)) <= MAX_LABELS:
            extras[name] = col[scored]
    if vis is not None:
        extras["visible_joints"] = (vis > 0).sum(axis=1).astype(np.float64)
    stats = bin_statistics(sub_scores, sub_bins, k, **extras)
    t0 = time.perf_counter()
    sim = bin_similarity_matrix(arrays, sub_bins, layout=poses.layout, n_per_bin=heatmap_per_bin, k=k, seed=seed,
                                visibility=vis)
    heat_s = time.perf_counter() - t0
    edges_own = bin_edges(sub_scores, sub_bins, k)
    files = {"scores": SCORES_FILE, "bins": "bins.json"}
    n_g = max(1, min(int(n_gallery), len(scored) // 2))
    order = np.argsort(sub_scores, kind="stable")
    picks = np.concatenate([order[:n_g], order[::-1][:n_g]])
    reps = _representatives(sub_scores, sub_bins, k)
    write_difficulty_plot_data(
        out, similarity=sim, scores=sub_scores, space=space, title=title, layout=poses.layout,
        gallery_poses=_gallery_poses(arrays, vis, picks, space), gallery_titles=[f"{sub_scores[i]:.3g}" for i in picks],
        bins_poses=_gallery_poses(arrays, vis, reps, space),
        bins_titles=[f"bin {b}: {sub_scores[i]:.3g}" for b, i in enumerate(reps)])
    files["plot_data"] = DIFFICULTY_PLOT_DATA
    if render is not None:
        files.update({name: _relative(f, out) for name, f in render(out).items()})
    summary = {
        "title": title, "scoring": scoring, "space": space, "k": k, "n_poses": int(len(scores)),
        "n_scored": int(len(scored)),
        "n_unscored": int(len(scores) - len(scored)),
        "score_quantiles": {f"q{q}": float(np.percentile(sub_scores, q)) for q in (0, 10, 50, 90, 100)},
        "edges": edges_own.tolist(), "bins": stats, "similarity": sim.tolist(),
        "similarity_note": "mean EvalPose (higher = more similar) between up to "
                           f"{heatmap_per_bin} poses of bin i and of bin j (Fig. 3(b)); rows/cols 0 = easiest",
        "heatmap_s": heat_s, "files": files,
    }
    if edges is not None:
        ref = assign_bins(sub_scores, edges)
        summary["counts_in_reference_bins"] = np.bincount(ref, minlength=len(edges) - 1).tolist()
    _write_json(out / "bins.json", summary)
    return summary


DIFFICULTY_PLOT_DATA = "plot_data.npz"


def write_difficulty_plot_data(out_dir: str | Path, *, similarity: np.ndarray, scores: np.ndarray, space: str,
                               title: str, layout: str, gallery_poses: np.ndarray, gallery_titles: Sequence[str],
                               bins_poses: np.ndarray, bins_titles: Sequence[str]) -> Path:
    """What the difficulty plots show, as plain arrays in ``out_dir/plot_data.npz`` (no pickle):
    ``similarity`` (k, k) mean EvalPose between bins (Fig. 3(b)), ``scores`` (M,) the finite VAE
    scores, ``gallery_poses`` (2 n, J, D) the n easiest then the n hardest poses (3D world mm, or
    2D pixels centred per pose; unlabelled joints NaN) with ``gallery_titles``, ``bins_poses``
    (k, J, D) the median pose of every bin with ``bins_titles``, and the strings ``space``,
    ``title``, ``layout``. The report layer draws them
    (:func:`posecurator.report.plots.render_difficulty_plots`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {"similarity": np.asarray(similarity, dtype=np.float64), "scores": np.asarray(scores, dtype=np.float64),
              "gallery_poses": np.asarray(gallery_poses, dtype=np.float64), "gallery_titles": np.asarray(list(gallery_titles), dtype=str),
              "bins_poses": np.asarray(bins_poses, dtype=np.float64), "bins_titles": np.asarray(list(bins_titles), dtype=str),
              "space": np.asarray(space), "title": np.asarray(title or ""), "layout": np.asarray(str(layout))}
    path = out / DIFFICULTY_PLOT_DATA
    _write_npz(path, arrays)
    return path


def _write_npz(path: Path, arrays: dict) -> None:
    atomic_savez(path, **arrays)


def _relative(path, root: Path) -> str:
    path = Path(path)
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _gallery_poses(arrays: np.ndarray, vis: np.ndarray | None, picks: np.ndarray, space: str) -> np.ndarray:
    poses = arrays[picks].astype(np.float64)
    if vis is not None:  # unlabelled joints are not drawn (NaN segments are skipped)
        poses = np.where(vis[picks][..., None] > 0, poses, np.nan)
    if space == "3d":
        return poses
    # 2D drawing: centre each pose in its own frame (image coordinates, y down)
    return poses - np.nanmean(poses, axis=1, keepdims=True)


def _write_json(path: Path, obj) -> None:
    atomic_write_json(path, _json_safe(obj), indent=1)


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, (np.floating, np.integer)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def run_difficulty(dataset, *, out_dir: str | Path, k: int = DEFAULT_BINS, space: str | None = None, seed: int = 0,
                   vae_config=None, heldout=None, mapping: str | None = None, n_gallery: int = 6,
                   heatmap_per_bin: int = HEATMAP_PER_BIN, min_keypoints: int = 0, progress: bool = True,
                   log: Callable[[str], None] = print, render: Callable[[Path], dict] | None = None,
                   crossfit: int | None = DEFAULT_CROSSFIT) -> dict:
    """``posecurator difficulty``: pose VAE -> scores -> bins -> statistics and plots.

    ``crossfit`` K >= 2 (default 5): the scores of the data set are out of sample: K VAEs, each
    trained on K - 1 folds of whole clips (seeded by ``seed``), each scoring the fold it did not
    see (:class:`~posecurator.scoring.crossfit.CrossFitScorer`); saved to ``out_dir/vae/fold{k}/``
    with ``out_dir/vae/crossfit.json`` (the folds' clips); ``scores.npz`` holds each pose's
    ``fold``. The held-out set is scored by the mean of the K fold VAEs (never trained on it,
    same training size as the models that scored the data set, so it shares its bins). ``None``,
    0 or 1: in sample (one VAE in ``out_dir/vae/`` trained on the whole set scores it, as before).
    ``scores.npz``, ``bins.json`` and ``summary.json`` say which (``scoring``: "in_sample" or
    "crossfit K"). The VAE config is sized on the poses one VAE trains on, so each fold VAE costs
    about what the single VAE costs.

    dataset: a path (pose-set folder or any importable file/folder) or a PoseSet. space: "3d"
    (default when the set has 3D) or "2d" (default for 2D-only sets such as COCO; a 3D set is
    then seen through one deterministic camera per pose). vae_config: a VAEConfig or dict of its
    fields (missing fields from :func:`vae_config_for`; its seed is ``seed``). heldout: a second
    data set (path or PoseSet) scored by the same VAE, never trained on; its report goes to
    ``out_dir/heldout/``. Writes ``out_dir/vae/`` (the VAE), the files of :func:`bin_report` and
    ``summary.json``; returns the summary. ``render``: draws the PNGs of each report folder (see
    :func:`bin_report`; the CLI passes :func:`posecurator.report.plots.render_difficulty_plots`).
    ``min_keypoints``: 2D poses with fewer labelled joints are left out (a VAE reconstructs a
    pose of four labelled joints trivially, so sparse annotations would fill the easy bins).

    Resumable: the stages VAE, scores and report are cached in ``out_dir/stages/``
    (:mod:`posecurator.pipelines.stages`) and the VAE keeps checkpoints while it trains, so a
    rerun after a kill continues where the run stopped and ends with the same files, byte for
    byte (timings aside); a rerun of a finished run reuses every stage. One process at a time
    writes ``out_dir``.
    """
    from posecurator.train.vae_trainer import VAEConfig

    t0 = time.perf_counter()
    poses = _load(dataset, mapping=mapping, progress=progress)
    held = _load(heldout, mapping=mapping, progress=progress) if heldout is not None else None
    if space is None:
        space = "3d" if poses.joints3d is not None else "2d"
    if space not in ("2d", "3d"):
        raise PoseCuratorError(f"space must be 2d or 3d, got {space!r}")
    dropped = {}
    if min_keypoints > 0 and space == "2d":
        for name, ps in (("dataset", poses), ("heldout", held)):
            if ps is not None and ps.visibility is not None:
                keep = (ps.visibility > 0).sum(axis=1) >= min_keypoints
                dropped[name] = int((~keep).sum())
                if name == "dataset":
                    poses = ps.subset(keep)
                else:
                    held = ps.subset(keep)
        log(f"[difficulty] left out poses with fewer than {min_keypoints} labelled joints: {dropped}")
    for name, ps in (("dataset", poses), ("held-out set", held)):
        if ps is None:
            continue
        if space == "3d" and ps.joints3d is None:
            raise PoseCuratorError(f"the {name} has 2D poses only; use --space 2d")
        if ps.layout != poses.layout:
            raise PoseCuratorError(f"the held-out set's layout {ps.layout} differs from the dataset's {poses.layout}")
    if len(poses) < k:
        raise PoseCuratorError(f"{len(poses)} poses cannot be cut into {k} bins")
    k_folds = crossfit_folds(crossfit)
    n_clips = len(np.unique(poses.clip))
    if k_folds and n_clips < k_folds:
        raise PoseCuratorError(f"--crossfit {k_folds} needs at least {k_folds} clips; the dataset has {n_clips} "
                               "(use fewer folds, or --crossfit 0 for in-sample scores)")
    if isinstance(vae_config, VAEConfig):
        cfg = VAEConfig.from_dict({**vae_config.to_dict(), "space": space, "seed": seed})
    else:
        extra = dict(vae_config or {})
        extra.pop("space", None)
        extra.pop("seed", None)
        cfg = vae_config_for(crossfit_train_size(len(poses), k_folds), space=space, seed=seed, **extra)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_fit = crossfit_train_size(len(poses), k_folds)
    log(f"[difficulty] {len(poses)} poses ({poses.layout}, {space}); "
        + (f"{k_folds} fold pose VAEs (cross-fitted by clip)" if k_folds else "pose VAE (in sample)")
        + f": {cfg.epochs} epochs"
        + (f" on {cfg.max_samples} sampled poses" if cfg.max_samples and cfg.max_samples < n_fit else ""))
    with output_lock(out, wait=False):
        report = dict(k=k, space=space, n_gallery=n_gallery, heatmap_per_bin=heatmap_per_bin, seed=seed,
                      min_keypoints=min_keypoints, dropped=dropped, render=render,
                      dataset=str(dataset) if not isinstance(dataset, PoseSet) else "<PoseSet>",
                      heldout=None if held is None else str(heldout) if not isinstance(heldout, PoseSet) else "<PoseSet>")
        summary = _difficulty_stages(poses, held, cfg, out, progress=progress, log=log, t0=t0, crossfit=k_folds,
                                     **report)
    log(f"[difficulty] scores, bins and plots -> {out} ({summary['wall_time_s']:.0f} s)")
    return summary


# Code version of each stage of run_difficulty (bump one when a change alters what it makes).
DIFFICULTY_STAGE_VERSIONS = {"vae": 1, "scores": 1, "report": 2}
STAGE_SCORES = "scores.npz"  # in OUT/stages/scores/: the raw scores of the dataset (and held-out set)
CROSSFIT_SCORES = "crossfit.npz"  # in OUT/vae/ (cross-fitted): sample_id, out-of-fold score, fold


def _difficulty_stages(poses: PoseSet, held: PoseSet | None, cfg, out: Path, *, progress: bool, log, t0: float,
                       k: int, space: str, n_gallery: int, heatmap_per_bin: int, seed: int, min_keypoints: int,
                       dropped: dict, render, dataset: str, heldout: str | None, crossfit: int = 0) -> dict:
    """The stages of :func:`run_difficulty`, each cached in ``out/stages/`` (see
    :mod:`posecurator.pipelines.stages`): the VAE(s) (resumable from their checkpoints; a
    cross-fit also from its finished folds), the scores, the bins / report / plots / summary.
    ``crossfit``: 0 (in sample) or K folds."""
    from posecurator.pipelines.stages import StageCache, poseset_fingerprint
    from posecurator.train.vae_trainer import load_vae, score_poses, train_vae

    stages = StageCache(out, log=log, tag="[difficulty]")
    # temporary files of writes a kill cut short (the VAE cleans its own folder)
    report_files = ("bins.json", SCORES_FILE, DIFFICULTY_PLOT_DATA)
    stages.remove_stale_temps({"": (*report_files, "summary.json"), "heldout": report_files,
                               "vae": (CROSSFIT_SCORES, CROSSFIT_FILE)})
    versions = DIFFICULTY_STAGE_VERSIONS
    label = scoring_label(crossfit)
    vae_dir = out / "vae"
    dirs = [vae_dir / f"fold{f}" for f in range(crossfit)]

    def final_of(hist: dict) -> dict:
        return {"final": _json_safe({key: hist[key][-1] for key in ("train_recon", "train_kl", "val_recon", "val_kl")}),
                "n_train": hist["n_train"], "n_val": hist["n_val"]}

    def train(resume: bool) -> dict:
        t1 = time.perf_counter()
        if not crossfit:
            _, hist = train_vae(poses, cfg, out_dir=vae_dir, progress=progress, resumable=True)
            return {"train_s": time.perf_counter() - t1, **final_of(hist)}
        cf = crossfit_vae(poses, cfg, folds=crossfit, seed=seed, folder=vae_dir, progress=progress, resumable=True)
        atomic_savez(vae_dir / CROSSFIT_SCORES, sample_id=np.asarray(poses.sample_id, dtype=np.int64),
                     score=cf.oof_scores_, fold=cf.fold_)
        atomic_write_json(vae_dir / CROSSFIT_FILE, _crossfit_doc(cf, poses), indent=1)
        return {"train_s": time.perf_counter() - t1, "folds": [final_of(e.history_) for e in cf.estimators_]}

    if crossfit:
        k_vae = stages.key("vae", version=versions["vae"], config={"vae": cfg.to_dict(), "crossfit": crossfit},
                           inputs=[poseset_fingerprint(poses)])
        vae_outputs = [f"vae/{CROSSFIT_SCORES}", f"vae/{CROSSFIT_FILE}"] + [
            f"vae/fold{f}/{name}" for f in range(crossfit) for name in ("vae.safetensors", "vae.json")]
    else:
        k_vae = stages.key("vae", version=versions["vae"], config=cfg.to_dict(), inputs=[poseset_fingerprint(poses)])
        vae_outputs = ["vae/vae.safetensors", "vae/vae.json"]
    vae = stages.run("vae", k_vae, train, outputs=vae_outputs)

    folder = stages.folder("scores")

    def score(resume: bool) -> dict:
        # a fresh run scores with the saved VAE(s) too, as a rerun does
        if not crossfit:
            model, _ = load_vae(vae_dir)
            arrays = {"score": score_poses(model, poses, projection_seed=cfg.projection_seed)}
            if held is not None:
                arrays["heldout_score"] = score_poses(model, held, projection_seed=cfg.projection_seed)
        else:
            with np.load(vae_dir / CROSSFIT_SCORES, allow_pickle=False) as z:
                arrays = {"score": z["score"], "fold": z["fold"]}
            if held is not None:  # new poses: the mean of the fold VAEs
                arrays["heldout_score"] = _mean_vae_scores(dirs, held)
        atomic_savez(folder / STAGE_SCORES, **arrays)
        return {"n": len(poses), "n_heldout": None if held is None else len(held)}

    score_config = {"projection_seed": cfg.projection_seed, **({"crossfit": crossfit} if crossfit else {})}
    k_scores = stages.key("scores", version=versions["scores"], config=score_config,
                          inputs=[k_vae, poseset_fingerprint(poses), poseset_fingerprint(held)])
    stages.run("scores", k_scores, score, outputs=[f"stages/scores/{STAGE_SCORES}"])
    with np.load(folder / STAGE_SCORES, allow_pickle=False) as z:
        scores = z["score"]
        fold = z["fold"] if crossfit else None
        held_scores = z["heldout_score"] if held is not None else None
    held_label = (f"out_of_sample: mean of the {crossfit} fold VAEs" if crossfit
                  else "out_of_sample: the VAE of the data set")

    def write_report(resume: bool) -> dict:
        report = bin_report(poses, scores, out_dir=out, k=k, space=space, projection_seed=cfg.projection_seed,
                            n_gallery=n_gallery, heatmap_per_bin=heatmap_per_bin, seed=seed, title="training set",
                            render=render, scoring=label, fold=fold)
        vae_doc = {"config": cfg.to_dict(), "train_s": vae["train_s"], "folder": "vae"}
        if crossfit:  # n_train / n_val / final: the mean over the fold VAEs (each fold's in "folds")
            folds = vae["folds"]
            mean_final = {key: _nanmean([f["final"].get(key) for f in folds]) for key in folds[0]["final"]}
            vae_doc.update(n_train=int(round(np.mean([f["n_train"] for f in folds]))),
                           n_val=int(round(np.mean([f["n_val"] for f in folds]))), final=mean_final,
                           per_fold_note="n_train, n_val and final are means over the fold VAEs",
                           folds=folds, fold_dirs=[f"vae/fold{f}" for f in range(crossfit)],
                           crossfit=f"vae/{CROSSFIT_FILE}")
        else:
            vae_doc.update({key: vae[key] for key in ("final", "n_train", "n_val")})
        summary = {"dataset": dataset, "space": space, "k": k, "scoring": label,
                   "n_poses": len(poses), "min_keypoints": min_keypoints, "left_out_sparse": dropped,
                   "vae": vae_doc,
                   "report": {key: report[key] for key in ("n_scored", "n_unscored", "score_quantiles", "files")}}
        if held is not None:
            held_report = bin_report(held, held_scores, out_dir=out / "heldout", k=k, space=space,
                                     projection_seed=cfg.projection_seed, n_gallery=n_gallery,
                                     heatmap_per_bin=heatmap_per_bin, seed=seed, title="held-out set",
                                     edges=np.asarray(report["edges"]), render=render, scoring=held_label)
            summary["heldout"] = {"dataset": heldout, "n_poses": len(held), "scoring": held_label,
                                  **{key: held_report[key] for key in ("n_scored", "n_unscored", "score_quantiles",
                                                                       "counts_in_reference_bins", "files")}}
        summary["wall_time_s"] = time.perf_counter() - t0
        _write_json(out / "summary.json", summary)
        return _json_safe(summary)

    k_report = stages.key("report", version=versions["report"],
                          config={"k": k, "space": space, "n_gallery": n_gallery, "heatmap_per_bin": heatmap_per_bin,
                                  "seed": seed, "min_keypoints": min_keypoints, "left_out_sparse": dropped,
                                  "dataset": dataset, "heldout": heldout, "render": render is not None},
                          inputs=[k_scores])
    return stages.run("report", k_report, write_report, outputs=["summary.json", "bins.json", SCORES_FILE])


def _nanmean(values) -> float | None:
    arr = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else None


def _load(dataset, *, mapping, progress) -> PoseSet:
    return dataset if isinstance(dataset, PoseSet) else load_dataset(dataset, mapping=mapping, progress=progress)


COCO_TRAIN = "person_keypoints_train2017_subset2155.json"
COCO_HELDOUT = "person_keypoints_val2017_subset2213.json"


def run_coco_difficulty(data_root=None, *, out_dir: str | Path, k: int = DEFAULT_BINS, seed: int = 0, vae_config=None,
                        min_keypoints: int = 8, progress: bool = True, log: Callable[[str], None] = print,
                        render: Callable[[Path], dict] | None = None) -> dict:
    """The 2D-only case of the VAE-sampling experiment: a 2D pose VAE trained on the COCO train2017 subset scores
    and bins the held-out val2017 subset (per-bin statistics, Fig. 3(b) heatmap, galleries);
    ``summary["heldout"]["counts_in_reference_bins"]`` shows how the held-out poses spread over
    the training set's bins. No lifter is involved."""
    root = Path(data_root) if data_root is not None else default_data_root()
    coco = root / "coco"
    for name in (COCO_TRAIN, COCO_HELDOUT):
        if not (coco / name).is_file():
            raise DataError(coco / name, "COCO keypoint file not found (give the data root)")
    return run_difficulty(coco / COCO_TRAIN, out_dir=out_dir, k=k, space="2d", seed=seed, vae_config=vae_config,
                          heldout=coco / COCO_HELDOUT, min_keypoints=min_keypoints, progress=progress, log=log,
                          render=render)
