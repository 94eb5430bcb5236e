"""VAE difficulty sampling's rows of the benchmark table and its experiment (``posecurator
vae-bench``), apart from the method's pipeline (:mod:`posecurator.pipelines.vae_sampling`: the
VAE scores, their cross-fitting and the ``difficulty`` report).

* Bench methods registered in :data:`posecurator.pipelines.bench.METHODS` when this module is
  imported: ``vae_all`` (every source pose; the baseline under the name the VAE table uses),
  ``random33`` (a random third), ``vae_hard33`` (VAE-HM: the hardest third by VAE score) and
  ``vae_curriculum`` (VAE-CL: easy -> +medium -> +hard over thirds of the epochs), every one with
  the same number of optimisation steps (the protocol is in the pipeline module's docstring).
* :func:`run_vae_experiment` (``posecurator vae-bench``): those four methods through
  :func:`posecurator.pipelines.bench.run_bench`, then EvalPose between predicted and true 3D as an
  extra metric and the per-bin accuracy on the target (the paper's Fig. 4): target poses are
  scored by the *source-trained* VAE and put into the source's bins (``bin_edges`` /
  ``assign_bins``) and, as the paper bins its target, into equal-size bins of their own scores;
  the MPJPE of every method is averaged per bin. It writes ``vae_plot_data.json`` and calls an
  optional ``render(out_dir)`` (the CLI passes
  :func:`~posecurator.report.plots.render_vae_experiment_plots`).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from posecurator.errors import PoseCuratorError
from posecurator.fileio import atomic_write_text
from posecurator.pipelines import bench
from posecurator.pipelines.bench import MethodContext
from posecurator.pipelines.splits import Split, load_part
from posecurator.pipelines.vae_sampling import (
    DEFAULT_BINS,
    DEFAULT_CROSSFIT,
    HEATMAP_PER_BIN,
    METHOD_SPECS,
    SCORES_FILE,
    VAE_METHODS,
    _relative,
    _stderr,
    _write_json,
    crossfit_folds,
    equal_steps_factory,
    score_with_source_vae,
    scoring_label,
    source_scores,
)
from posecurator.poseset import PoseSet


# ------------------------------------------------------------------------------ bench methods
def make_method(name: str, *, vae_config=None, crossfit: int | None = DEFAULT_CROSSFIT) -> Callable[[MethodContext], dict]:
    """The bench method ``name`` of :data:`METHOD_SPECS` (``vae_config``, ``crossfit``: the VAE's
    options as for :func:`source_scores`; the run's info records ``vae_scoring``)."""
    if name not in METHOD_SPECS:
        raise ValueError(f"unknown VAE sampling method {name!r}; known: {', '.join(METHOD_SPECS)}")
    spec = METHOD_SPECS[name]

    def method(ctx: MethodContext) -> dict:
        from posecurator.train.trainer import LifterTrainer

        info: dict = {"sampler": spec or "all"}
        factory = None
        if spec is not None:
            needs_scores = spec.split(":")[0] in ("hard", "curriculum")
            scores_file = None
            if needs_scores:
                _, vae_dir = source_scores(ctx.train, cache_dir=ctx.work_dir.parent, seed=ctx.seed, vae_config=vae_config,
                                           progress=ctx.progress, log=_stderr if ctx.progress else None,
                                           crossfit=crossfit)
                scores_file = vae_dir / SCORES_FILE
                info["vae_dir"], info["vae_scoring"] = str(vae_dir), scoring_label(crossfit)
            factory = equal_steps_factory(spec, scores=scores_file)
        t0 = time.perf_counter()
        summary = LifterTrainer(ctx.config).fit(ctx.train, out_dir=ctx.work_dir, sampler=factory, progress=ctx.progress)
        elapsed = time.perf_counter() - t0
        distinct = summary["n_train"] if factory is None else factory.made.distinct_indices(ctx.config.epochs)
        info.update(run_dir=str(ctx.work_dir), train_poses=int(distinct), train_time_s=elapsed,
                    steps=int(summary["steps"]), n_train_part=int(summary["n_train"]))
        return info

    method.__name__ = f"train_{name}"
    method.__doc__ = f"Bench method {name!r}: the lifter trained with sampler {spec or 'all (none)'}, equal steps."
    return method


for _name in VAE_METHODS:
    bench.METHODS[_name] = make_method(_name)



# ------------------------------------------------------------------------------ the experiment
def evaluate_with_evalpose(run_dir, test: PoseSet, *, noise_px: float, seed: int,
                           binnings: dict[str, np.ndarray] | None = None, k: int = DEFAULT_BINS) -> dict:
    """The benchmark metrics of a run (the pairs of :func:`posecurator.train.evaluate.evaluate_run`,
    so the same numbers) plus ``evalpose``: the mean EvalPose between predicted and true 3D pose
    over all test pairs (higher = better; scale, rotation and translation invariant, so it measures
    the pose's geometry only). ``binnings``: name -> (N,) bin (0..k-1) of every test pose; for each,
    ``per_bin[name]`` holds (k,) lists ``mpjpe``, ``pa_mpjpe``, ``evalpose`` (NaN for an empty bin)
    and ``counts`` (test poses per bin)."""
    from posecurator.metrics import evalpose
    from posecurator.selection.bins import per_bin_mean
    from posecurator.skeleton import get_layout
    from posecurator.train.checkpoint import load_lifter
    from posecurator.train.evaluate import predict, score_pairs
    from posecurator.train.pairs import evaluation_pairs

    model, _ = load_lifter(run_dir)
    pairs = evaluation_pairs(test, noise_px=noise_px, seed=seed)
    pred = predict(model, pairs.x2d)
    result, per_pose = score_pairs(pred, pairs.y3d, activity=test.activity[pairs.pose_index])
    ep = evalpose(pred, pairs.y3d, layout=get_layout(test.layout))
    result["evalpose"] = float(np.nanmean(ep))
    result["per_bin"] = {}
    values = np.stack([per_pose["mpjpe"], per_pose["pa_mpjpe"], ep], axis=1)
    for name, bins in (binnings or {}).items():
        bins = np.asarray(bins, dtype=np.int64)
        if bins.shape != (len(test),):
            raise ValueError(f"binning {name!r} must be ({len(test)},), got {bins.shape}")
        means, _ = per_bin_mean(values, bins[pairs.pose_index], k)
        result["per_bin"][name] = {"mpjpe": means[:, 0].tolist(), "pa_mpjpe": means[:, 1].tolist(),
                                   "evalpose": means[:, 2].tolist(), "counts": np.bincount(bins, minlength=k).tolist()}
    return result


TABLE_KEYS = ("mpjpe", "pa_mpjpe", "pck3d", "auc", "evalpose", "train_poses", "steps", "train_time_s")
# How target poses are put into bins for the per-bin figure:
BINNINGS = {
    # Fig. 4 of the paper: the source VAE's score, cut at the SOURCE's bin edges (a target pose
    # falls in the bin of the source poses it is as hard as; off-distribution poses pile up at the top)
    "source_edges": "target poses in the source's VAE bins",
    # the paper's own Fig. 4 binning of the target set: equal-size bins of the target poses by the
    # same source-trained VAE's score (every bin holds N/k target poses)
    "target_quantiles": "equal-size bins of the target poses by the source VAE's score",
}


def run_vae_experiment(split: Split, *, out_dir: str | Path, seeds: Sequence[int] = (0, 1, 2),
                       settings: Sequence[str] = ("gt",), methods: Sequence[str] = VAE_METHODS, preset: str = "fast",
                       config=None, vae_config=None, k: int = DEFAULT_BINS, progress: bool = True,
                       log: Callable[[str], None] = print, render: Callable[[Path], dict] | None = None,
                       crossfit: int | None = DEFAULT_CROSSFIT) -> dict:
    """The VAE difficulty-sampling experiment on one split: ``methods`` x ``seeds`` x ``settings`` through
    :func:`posecurator.pipelines.bench.run_bench` (``results.json``, ``table.md``), then

    * ``vae_table.md`` / ``vae_results.json``: MPJPE, PA-MPJPE, PCK3D, AUC and EvalPose (x 100)
      between predicted and true 3D on the target, distinct training poses, steps; mean ± std over
      seeds; and each method minus all of the source against the seed spread;
    * the per-bin accuracy on the target (Fig. 4): each seed's source-trained VAE scores the target
      poses, which are binned two ways (:data:`BINNINGS`): at the source's bin edges
      (``per_bin_mpjpe.png``) and in equal-size target bins (``per_bin_mpjpe_target_quantiles.png``);
      MPJPE per bin, mean ± std over seeds, one curve per method; ``per_bin_delta*.png`` (each
      method minus ``vae_all``), ``target_bins.png`` (target poses per source bin) and
      ``source_heatmap.png`` (Fig. 3(b) of the source, first seed). Noisy-2D figures get a
      ``_noisy`` suffix.

    ``crossfit`` (default 5): the source poses' VAE scores (which the hard-mining and curriculum
    methods rank, and whose bins the target is put in) are cross-fitted by clip over K folds;
    None / 0 / 1: in sample (:func:`source_scores`). The target poses are scored by the mean of
    the seed's K fold VAEs (in sample: by its one VAE): none of them saw the target, so target
    scores are out of sample like the cross-fitted source scores, made by the same models of the
    same training size, hence comparable with them and binned at the source's edges.
    ``vae_results.json`` records both (``vae_scoring``, ``target_scoring``). An ``out_dir`` whose
    finished hard-mining / curriculum runs used the other scoring is refused (use another folder).

    ``vae_config``: the methods' VAE (a VAEConfig, or a dict of fields overriding
    :func:`bench_vae_config`; None: that config); ``config`` a
    TrainConfig overriding ``preset``. Runs (and VAEs) already finished in ``out_dir`` are reused.

    The figures' data go to ``vae_plot_data.json`` (:func:`write_vae_plot_data`); ``render(out_dir)
    -> {name: png path}`` draws them, normally
    :func:`posecurator.report.plots.render_vae_experiment_plots` (the CLI passes it; the pipeline
    layer does not import the report layer). Without ``render`` no PNG is written.
    """
    from posecurator.selection.bins import assign_bins, bin_edges, bin_similarity_matrix, difficulty_bins

    out = Path(out_dir)
    label = scoring_label(crossfit)
    stale = [r for r in bench.read_done_rows(out / "runs.jsonl")
             if (METHOD_SPECS.get(r["method"]) or "").split(":")[0] in ("hard", "curriculum")
             and r.get("vae_scoring", "in_sample") != label]
    if stale:
        raise PoseCuratorError(f"{out} holds finished {stale[0]['method']} runs trained on "
                               f"{stale[0].get('vae_scoring', 'in_sample')} VAE scores, not {label}; "
                               "use another output folder (or the same --crossfit setting)")
    saved = {name: bench.METHODS.get(name) for name in METHOD_SPECS}
    for name in METHOD_SPECS:
        bench.METHODS[name] = make_method(name, vae_config=vae_config, crossfit=crossfit)
    try:
        results = bench.run_bench(split, out_dir=out, seeds=seeds, settings=settings, methods=methods, preset=preset,
                                  config=config, progress=progress, log=log)
    finally:
        bench.METHODS.update({n: m for n, m in saved.items() if m is not None})
    t0 = time.perf_counter()
    train = load_part(split.train, cache_dir=out / "cache", progress=progress)
    test = load_part(split.test, cache_dir=out / "cache", progress=progress)
    per_seed = {}
    for seed in seeds:
        src, vae_dir = source_scores(train, cache_dir=out / "runs", seed=seed, vae_config=vae_config, progress=progress,
                                     log=log, crossfit=crossfit)
        src_bins = difficulty_bins(src, k)
        edges = bin_edges(src, src_bins, k)
        tgt = score_with_source_vae(vae_dir, test)
        per_seed[seed] = {"source_bins": src_bins, "edges": edges,
                          "binnings": {"source_edges": assign_bins(tgt, edges), "target_quantiles": difficulty_bins(tgt, k)},
                          "score_quantiles": {"source": np.percentile(src, [10, 50, 90]).tolist(),
                                              "target": np.percentile(tgt, [10, 50, 90]).tolist()}}
    rows = []
    for run in results["runs"]:
        ps = per_seed[run["seed"]]
        extra = evaluate_with_evalpose(run["run_dir"], test, noise_px=bench.SETTINGS[run["setting"]], seed=run["seed"],
                                       binnings=ps["binnings"], k=k)
        row = {key: run.get(key) for key in ("method", "setting", "seed", "run_dir", "train_poses", "steps",
                                             "train_time_s", "sampler")}
        row.update({key: extra[key] for key in ("mpjpe", "pa_mpjpe", "pck3d", "auc", "evalpose", "per_bin")})
        rows.append(row)
    summary = summarize_vae_runs(rows, k)
    seed0 = seeds[0]
    sim = bin_similarity_matrix(train.joints3d, per_seed[seed0]["source_bins"], layout=train.layout, k=k, seed=seed0,
                                n_per_bin=HEATMAP_PER_BIN)
    counts = np.mean([np.bincount(per_seed[s]["binnings"]["source_edges"], minlength=k) for s in seeds], axis=0)
    write_vae_plot_data(out, split_name=split.name, train_label=split.train.label, seed=seed0, k=k, settings=settings,
                        source_similarity=sim, target_counts=counts, summary=summary)
    files = {"plot_data": VAE_PLOT_DATA}
    if render is not None:
        files.update({name: _relative(f, out) for name, f in render(out).items()})
    doc = {"split": split.name, "measures": split.measures, "train": results["train"], "test": results["test"],
           "preset": results["preset"], "train_config": results["train_config"], "seeds": list(seeds),
           "settings": list(settings), "k": k, "binnings": BINNINGS, "vae_scoring": label,
           "target_scoring": (f"out_of_sample: mean of the {crossfit_folds(crossfit)} fold VAEs of each seed"
                              if crossfit_folds(crossfit) else "out_of_sample: the one source VAE of each seed"),
           "vae": {str(s): {"edges": per_seed[s]["edges"].tolist(),
                            "score_quantiles_10_50_90": per_seed[s]["score_quantiles"]} for s in seeds},
           "target_in_source_bins_mean": counts.tolist(), "runs": rows, "summary": summary,
           "verdict": verdict(summary), "files": files,
           "bench_wall_time_s": results["wall_time_s"], "analysis_wall_time_s": time.perf_counter() - t0}
    _write_json(out / "vae_results.json", doc)
    atomic_write_text(out / "vae_table.md", format_vae_table(doc))
    log(f"[vae] table -> {out / 'vae_table.md'}; per-bin figures -> {out}")
    return doc


VAE_PLOT_DATA = "vae_plot_data.json"


def write_vae_plot_data(out_dir: str | Path, *, split_name: str, train_label: str, seed: int, k: int,
                        settings: Sequence[str], source_similarity: np.ndarray, target_counts: np.ndarray,
                        summary: list[dict]) -> Path:
    """What the figures of :func:`run_vae_experiment` show, in ``out_dir/vae_plot_data.json``:
    ``source_similarity`` (k, k) mean EvalPose between the source's VAE bins (first seed),
    ``target_counts`` (k,) target poses per source bin (mean over seeds), ``binnings`` (name ->
    what it is, :data:`BINNINGS`), and ``curves``: per (method, setting), for every binning,
    ``mpjpe`` / ``mpjpe_std`` (k,) target MPJPE per bin, mm (null = empty bin). The report layer
    draws them (:func:`posecurator.report.plots.render_vae_experiment_plots`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    curves = [{"method": s["method"], "setting": s["setting"],
               "per_bin": {b: {"mpjpe": s["per_bin"][b]["mpjpe"], "mpjpe_std": s["per_bin"][b]["mpjpe_std"]}
                           for b in BINNINGS if b in s.get("per_bin", {})}} for s in summary]
    doc = {"split": split_name, "train_label": train_label, "seed": int(seed), "k": int(k), "settings": list(settings),
           "binnings": BINNINGS, "baseline": "vae_all", "source_similarity": np.asarray(source_similarity),
           "target_counts": np.asarray(target_counts), "curves": curves}
    path = out / VAE_PLOT_DATA
    _write_json(path, doc)
    return path


def summarize_vae_runs(rows: list[dict], k: int) -> list[dict]:
    """Mean and sample std over seeds per (method, setting) of :data:`TABLE_KEYS` and of every
    per-bin curve (``per_bin[binning][metric]`` and ``..._std``, (k,) lists)."""
    out = []
    for method, setting in dict.fromkeys((r["method"], r["setting"]) for r in rows):
        group = [r for r in rows if r["method"] == method and r["setting"] == setting]
        s = {"method": method, "setting": setting, "n_seeds": len(group)}
        for key in TABLE_KEYS:
            vals = np.array([r[key] for r in group if r.get(key) is not None], dtype=np.float64)
            if len(vals):
                s[key], s[key + "_std"] = float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        s["per_bin"] = {}
        for binning in group[0].get("per_bin", {}):
            s["per_bin"][binning] = {"counts": group[0]["per_bin"][binning]["counts"]}
            for metric in ("mpjpe", "pa_mpjpe", "evalpose"):
                curves = np.array([r["per_bin"][binning][metric] for r in group], dtype=np.float64).reshape(len(group), k)
                with warnings.catch_warnings():  # a bin no target pose fell in is NaN for every seed
                    warnings.simplefilter("ignore", RuntimeWarning)
                    s["per_bin"][binning][metric] = np.nanmean(curves, axis=0).tolist()
                    s["per_bin"][binning][metric + "_std"] = (np.nanstd(curves, axis=0, ddof=1) if len(group) > 1
                                                              else np.zeros(k)).tolist()
        out.append(s)
    return out


def verdict(summary: list[dict]) -> list[dict]:
    """Per setting, each method minus ``vae_all`` in MPJPE, and whether the difference exceeds the
    seed spread (the sum of the two standard deviations): "better", "worse" or "within the seed spread"."""
    out = []
    for s in summary:
        ref = next((r for r in summary if r["method"] == "vae_all" and r["setting"] == s["setting"]), None)
        if s["method"] == "vae_all" or ref is None or "mpjpe" not in s:
            continue
        diff = s["mpjpe"] - ref["mpjpe"]
        spread = s.get("mpjpe_std", 0.0) + ref.get("mpjpe_std", 0.0)
        out.append({"method": s["method"], "setting": s["setting"], "mpjpe_minus_all": diff, "spread": spread,
                    "outcome": "better" if diff < -spread else "worse" if diff > spread else "within the seed spread"})
    return out


def format_vae_table(doc: dict) -> str:
    """Markdown table of :func:`run_vae_experiment` (mean ± std over seeds)."""
    lines = [
        f"Split `{doc['split']}`: train {doc['train']['label']} ({doc['train']['poses']} poses), test "
        f"{doc['test']['label']} ({doc['test']['poses']} poses x 4 cameras). Lifter preset `{doc['preset']}`, "
        f"seeds {doc['seeds']}, mean ± std over seeds. Every method makes the same number of steps; "
        "'train poses' = distinct poses it trains on. EvalPose x 100 (higher = better).",
        "",
        "| method | 2D | MPJPE (mm) | PA-MPJPE (mm) | PCK3D@150 (%) | AUC (%) | EvalPose | train poses | steps | train time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in doc["summary"]:
        def pm(key, scale=1.0, nd=1):
            return f"{s[key] * scale:.{nd}f} ± {s[key + '_std'] * scale:.{nd}f}" if key in s else "-"
        lines.append(f"| {s['method']} | {s['setting']} | {pm('mpjpe')} | {pm('pa_mpjpe')} | {pm('pck3d', 100)} | "
                     f"{pm('auc', 100)} | {pm('evalpose', 100, 2)} | {int(s.get('train_poses', 0))} | "
                     f"{int(s.get('steps', 0))} | {s.get('train_time_s', 0):.0f} |")
    if doc.get("verdict"):
        lines += ["", "MPJPE minus `vae_all` (negative = better) against the seed spread (sum of the two stds):", ""]
        for v in doc["verdict"]:
            lines.append(f"- {v['method']} ({v['setting']}): {v['mpjpe_minus_all']:+.1f} mm, spread {v['spread']:.1f} mm"
                         f" -> {v['outcome']}")
    counts = doc.get("target_in_source_bins_mean")
    if counts:
        top = sum(counts[-3:]) / max(sum(counts), 1)
        lines += ["", f"Target poses in the source's top 3 of {doc['k']} VAE bins: {100 * top:.0f}% "
                      f"({100 * 3 / doc['k']:.0f}% if the target were distributed like the source); source scores "
                      f"{doc.get('vae_scoring', 'in_sample')}, target scores {doc.get('target_scoring', 'out_of_sample')}."]
    return "\n".join(lines) + "\n"
