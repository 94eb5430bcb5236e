"""`posecurator bench`: one split of ../shared/BENCHMARK.md, every method, several seeds.

For each method, seed and 2D setting (GT 2D, noisy 2D) a lifter is trained on the split's
training part (validation cut from it, by clip) and evaluated on the test part through the fixed
evaluation rig. The table reports the mean and the spread (sample standard deviation) over seeds.
Methods register themselves in :data:`METHODS`, so later pipelines (ADD, VAE sampling) add rows
to the same table with the same protocol.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from posecurator.fileio import atomic_write_json, atomic_write_text, json_default
from posecurator.pipelines.splits import Split, load_part, load_target_2d
from posecurator.poseset import PoseSet
from posecurator.train.trainer import TrainConfig

SETTINGS = {"gt": 0.0, "noisy": 5.0}  # 2D noise in pixels (BENCHMARK.md)
METRIC_KEYS = ("mpjpe", "pa_mpjpe", "pck3d", "auc")
METRIC_KEYS_2D = ("pck_0.05", "pck_0.1", "pckh_0.5")  # 2D-only test sets (coco-2d)


@dataclass
class MethodContext:
    """What a method gets: the training poses, where to write, the seed and the 2D setting."""

    train: PoseSet
    work_dir: Path
    seed: int
    noise_px: float
    config: "TrainConfig"  # the lifter's training config, seed and 2D noise already set
    progress: bool = True
    target: PoseSet | None = None  # unlabeled target 2D of a domain-adaptation split (else None)


def run_name(method: str, setting: str, seed: int) -> str:
    """The folder (under ``OUT/runs``) of one method's run for a 2D setting and seed."""
    return f"{method}-{setting}-seed{seed}"


def train_baseline(ctx: MethodContext) -> dict:
    """The baseline: the lifter trained on the original training poses, no augmentation."""
    from posecurator.train.trainer import LifterTrainer

    config = ctx.config
    t0 = time.perf_counter()
    LifterTrainer(config).fit(ctx.train, out_dir=ctx.work_dir, progress=ctx.progress)
    return {"run_dir": str(ctx.work_dir), "train_poses": len(ctx.train), "train_time_s": time.perf_counter() - t0}


METHODS: dict[str, Callable[[MethodContext], dict]] = {"baseline": train_baseline}
# Pipelines that add rows to the table register their methods in METHODS when imported.
METHOD_MODULES = ("posecurator.pipelines.bench_add", "posecurator.pipelines.bench_vae", "posecurator.pipelines.bench_transfer")


def _load_method_modules() -> None:
    import importlib

    for name in METHOD_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise


def run_bench(split: Split, *, out_dir: str | Path, seeds=(0, 1, 2), settings=("gt", "noisy"),
              methods=("baseline",), preset: str = "fast", config: TrainConfig | None = None,
              progress: bool = True, log=print, table_only: bool = False) -> dict:
    """Run a split; writes ``results.json`` and ``table.md`` to ``out_dir``; returns the results.

    ``config`` (a TrainConfig) overrides the named ``preset`` for every lifter trained; without
    it the preset is trained with the split's own ``train_overrides`` (coco-2d: root-scale input).
    ``table_only``: train nothing; tabulate the runs already finished in ``out_dir``."""
    from posecurator.train.evaluate import evaluate_run

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = out_dir / "cache"
    t0 = time.perf_counter()
    train = load_part(split.train, cache_dir=cache, progress=progress)
    test = load_part(split.test, cache_dir=cache, progress=progress)
    # the unlabeled target 2D of a domain-adaptation split: only methods that adapt use it
    target = load_target_2d(split, cache_dir=cache, progress=progress) if split.target is not None else None
    import_s = time.perf_counter() - t0
    log(f"[bench] {split.name}: train {split.train.label} {len(train)} poses, test {split.test.label} {len(test)} poses"
        + (f", unlabeled target {split.target.label} {len(target)} poses" if target is not None else "")
        + f" (import {import_s:.0f} s)")
    _load_method_modules()
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    # Finished runs are kept in runs.jsonl, so an interrupted bench resumes where it stopped and
    # more methods or seeds can be added to a table later.
    done_path = out_dir / "runs.jsonl"
    base_config = config if config is not None else TrainConfig.preset(preset, **split.train_overrides)
    base = base_config.to_dict()
    config_hash = hashlib.sha1(json.dumps({k: v for k, v in base.items() if k not in ("seed", "noise_px_train")},
                                          sort_keys=True).encode()).hexdigest()[:12]
    done = {}
    for row in read_done_rows(done_path):
        if row.get("config_hash") == config_hash:  # rows of another training config are not reused
            done[(row["method"], row["setting"], row["seed"])] = row
    runs = []
    # seed-major order: a bench cut short still has every method for the seeds it finished
    for setting in settings:
        noise = SETTINGS[setting]
        for seed in seeds:
            for method in methods:
                if (method, setting, seed) in done:
                    row = done[(method, setting, seed)]
                    if target is not None and "val_target_bone_asym" not in row and Path(row["run_dir"]).is_dir():
                        # rows from before a figure existed get it from their saved lifter
                        row.update(target_validation_of_run(row["run_dir"], target))
                    runs.append(_with_history(row))
                    continue
                if table_only:
                    continue
                work = out_dir / "runs" / run_name(method, setting, seed)
                run_config = TrainConfig.from_dict(base_config.to_dict())
                run_config.seed, run_config.noise_px_train = seed, noise
                ctx = MethodContext(train=train, work_dir=work, seed=seed, noise_px=noise, config=run_config, progress=progress,
                                    target=target)
                t_run = time.perf_counter()
                info = METHODS[method](ctx)
                metrics = evaluate_run(info["run_dir"], test, noise_px=noise, seed=seed)
                if target is not None:  # judged on training-side data only: held-out clips of the target's 2D
                    metrics.update(target_validation_of_run(info["run_dir"], target))
                row = _with_history({"method": method, "setting": setting, "seed": seed, "config_hash": config_hash,
                                     **info, **metrics, "run_wall_s": time.perf_counter() - t_run})
                runs.append(row)
                _append_line(done_path, json.dumps(row, default=json_default))
                if "mpjpe" in metrics:
                    log(f"[bench] {method} {setting} seed {seed}: MPJPE {metrics['mpjpe']:.1f} PA-MPJPE {metrics['pa_mpjpe']:.1f} mm")
                else:
                    log(f"[bench] {method} {setting} seed {seed}: PCK@0.05 {100 * metrics['pck_0.05']:.1f}% "
                        f"PCK@0.1 {100 * metrics['pck_0.1']:.1f}% ({metrics['n_poses']} people)")
    results = {
        "split": split.name,
        "measures": split.measures,
        "train": {"label": split.train.label, "poses": len(train), "clips": int(len(np.unique(train.clip)))},
        "test": {"label": split.test.label, "poses": len(test), "clips": int(len(np.unique(test.clip)))},
        "preset": preset if config is None else "custom config",
        "train_config": base,
        "seeds": list(seeds),
        "runs": runs,
        "summary": summarize(runs),
        "wall_time_s": time.perf_counter() - t0,  # this call only (a resumed bench reuses finished runs)
        "runs_wall_time_s": float(sum(r.get("run_wall_s", 0.0) for r in runs)),
    }
    atomic_write_json(out_dir / "results.json", results, indent=1, default=json_default)
    atomic_write_text(out_dir / "table.md", format_table(results))
    return results


# the validation figures of a domain-adaptation split's rows (train.adaptation.target_validation_figures)
TARGET_FIGURES = ("val_target_reproj_mm", "val_target_bone_cv", "val_target_bone_asym")


def target_validation_of_run(run_dir, target: PoseSet) -> dict[str, float]:
    """The target validation figures of a finished run (:func:`posecurator.train.adaptation.target_validation_figures`
    of its best weights, on the target clips its seed holds out); NaN figures are left out."""
    from posecurator.train.adaptation import target_validation_figures
    from posecurator.train.checkpoint import load_lifter

    model, doc = load_lifter(run_dir)
    train = doc.get("train") or {}
    figures = target_validation_figures(model, target, seed=int(train.get("seed", 0)),
                                        fraction=float(train.get("target_val_fraction", 0.1)))
    return {k: v for k, v in figures.items() if np.isfinite(v)}


def read_done_rows(path: Path) -> list[dict]:
    """The finished runs of ``runs.jsonl`` (one JSON object a line, appended as runs finish). A
    line that does not parse is one whose writer was killed in the middle of its append (or a
    worker's line torn by a kill): that run is simply not finished, and is run again."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and {"method", "setting", "seed"} <= set(row):
            rows.append(row)
    return rows


def run_bench_parallel(split: Split, *, jobs: int = 1, out_dir: str | Path, seeds=(0, 1, 2), settings=("gt", "noisy"),
                       methods=("baseline",), preset: str = "fast", config: TrainConfig | None = None, log=print,
                       engine=None) -> None:
    """Run the (setting, seed) pairs of a bench side by side: in ``jobs`` local worker processes,
    or as the tasks of ``engine`` (:mod:`posecurator.engine`, e.g. a Ray cluster; ``jobs`` is then
    not used: the engine's workers are).

    The parts are imported into the cache first (once, in this process); each worker then runs
    :func:`run_bench` for one (setting, seed) into the same ``out_dir``, appending its finished
    runs to ``runs.jsonl`` (one short line per run, in one O_APPEND write: lines of parallel
    workers never interleave; on a multi-node cluster ``out_dir`` must be a file system every node
    mounts). Every method of a pair runs in one worker, so what the ADD rows share per (setting,
    seed) is never built twice at once; that is why the tasks are pairs, not single runs. The
    numbers are those of a sequential bench: a run depends on its method, setting and seed only.
    Pairs already finished in ``runs.jsonl`` are skipped by their worker. Afterwards tabulate with
    ``run_bench(..., table_only=True)``.
    """
    run_bench(split, out_dir=out_dir, seeds=seeds, settings=settings, methods=methods, preset=preset, config=config,
              progress=False, log=log, table_only=True)  # import (and check methods) before the workers start
    pairs = [(setting, seed) for seed in seeds for setting in settings]
    common = dict(out_dir=out_dir, methods=tuple(methods), preset=preset, config=config)
    tasks = [(split, s, seed, common) for s, seed in pairs]
    if engine is not None:
        for setting, seed, wall in engine.map(bench_pair_task, tasks):
            log(f"[bench] {setting} seed {seed}: every method finished ({wall:.0f} s)")
        return
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # fresh interpreters: no torch thread pools or open files shared by fork
    with ctx.Pool(processes=min(int(jobs), len(pairs)), maxtasksperchild=1) as pool:
        for setting, seed, wall in pool.imap_unordered(_bench_pair, tasks):
            log(f"[bench] {setting} seed {seed}: every method finished ({wall:.0f} s)")


def _append_line(path: Path, line: str) -> None:
    """Append one line to ``path`` in a single write (O_APPEND: lines of parallel workers never
    interleave). A file whose last line a kill tore gets a newline first, so that torn line stays
    one unreadable line of its own (skipped by :func:`read_done_rows`) instead of swallowing this one."""
    data = (line + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and _last_byte(path, size) != b"\n":
            data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _last_byte(path: Path, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(size - 1)
        return f.read(1)


def bench_pair_task(shared, task) -> tuple[str, int, float]:
    """One (setting, seed) pair of :func:`run_bench_parallel` as an engine task (module-level:
    workers import it; ``shared`` is not used)."""
    return _bench_pair(task)


def _bench_pair(task) -> tuple[str, int, float]:
    split, setting, seed, common = task
    t0 = time.perf_counter()
    run_bench(split, seeds=(seed,), settings=(setting,), progress=False, **common,
              log=lambda m: print(m, file=sys.stderr, flush=True))
    return setting, seed, time.perf_counter() - t0


def _with_history(row: dict) -> dict:
    """The row plus what its lifter's history says: training throughput and the best validation
    MPJPE (mm), the number the lifter was chosen by (validation cut from the training data; the
    same validation part for every method of a seed), so a table shows what selection saw."""
    history = _read_history(row["run_dir"]) if row.get("run_dir") else None
    if history:
        row.setdefault("train_poses_per_s", history.get("poses_per_s"))
        row.setdefault("val_mpjpe", history.get("best_val_mpjpe"))
    return row


def _read_history(run_dir) -> dict | None:
    p = Path(run_dir) / "history.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        return None



def summarize(runs: list[dict]) -> list[dict]:
    """Mean and spread (sample std over seeds) per (method, setting)."""
    out = []
    order = list(dict.fromkeys(r["method"] for r in runs))
    keys = sorted({(r["method"], r["setting"]) for r in runs}, key=lambda k: (k[1], order.index(k[0])))
    for method, setting in keys:
        rows = [r for r in runs if r["method"] == method and r["setting"] == setting]
        s = {"method": method, "setting": setting, "n_seeds": len(rows)}
        for k in METRIC_KEYS + METRIC_KEYS_2D + ("val_mpjpe",) + TARGET_FIGURES + ("train_time_s", "train_poses", "train_poses_per_s", "data_amount", "gen_time_s"):
            vals = np.array([r[k] for r in rows if r.get(k) is not None], dtype=np.float64)
            if len(vals):
                s[k] = float(vals.mean())
                s[k + "_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        out.append(s)
    return out


def _target_choice_lines(summary: list[dict]) -> list[str]:
    """Below a domain-adaptation table: the row the validation-only rule chooses per 2D setting
    (:func:`posecurator.pipelines.target_choice.choose_by_target_validation`)."""
    from posecurator.pipelines.target_choice import choose_by_target_validation

    out = []
    for setting in dict.fromkeys(s["setting"] for s in summary):
        choice = choose_by_target_validation(summary, setting=setting)
        if choice is None:
            continue
        vetoed = ", ".join(f"{m} ({k})" for m, k in choice["vetoed"].items()) or "none"
        out.append(f"Chosen by validation only ({setting}; {choice['rule']}): **{choice['method']}**; vetoed: {vetoed}.")
    return [""] + out if out else []


def _target_columns(summary: list[dict]):
    """Header, rule and a row's cells of the target validation figures present in ``summary``
    (a split with unlabeled target 2D): reprojection (mm), bone-length variation and left/right
    asymmetry (both in %)."""
    names = {"val_target_reproj_mm": ("target val. reproj. (mm)", 1.0),
             "val_target_bone_cv": ("target val. bone CV (%)", 100.0),
             "val_target_bone_asym": ("target val. L/R asym. (%)", 100.0)}
    present = [k for k in TARGET_FIGURES if any(k in s for s in summary)]

    def cells(s: dict) -> list[str]:
        return [f"{s[k] * names[k][1]:.1f} ± {s[k + '_std'] * names[k][1]:.1f}" if k in s else "-" for k in present]

    return "".join(f" {names[k][0]} |" for k in present), "---|" * len(present), cells


def format_table(results: dict) -> str:
    if results["summary"] and "mpjpe" not in results["summary"][0] and "pck_0.05" in results["summary"][0]:
        return format_table_2d(results)
    t_head, t_rule, t_cells = _target_columns(results["summary"])
    lines = [
        f"Split `{results['split']}`: {results['measures']}. Train {results['train']['label']} "
        f"({results['train']['poses']} poses, {results['train']['clips']} clips), test {results['test']['label']} "
        f"({results['test']['poses']} poses x 4 cameras). Preset `{results['preset']}`, seeds {results['seeds']}; "
        "mean ± std over seeds.",
        "",
        "| method | 2D | MPJPE (mm) | PA-MPJPE (mm) | PCK3D@150 (%) | AUC (%) | val. MPJPE (mm) |"
        + t_head + " train poses | data (x orig.) "
        "| generation (s) | train time (s) | poses/s |",
        "|---|---|---|---|---|---|---|" + t_rule + "---|---|---|---|---|",
    ]
    for s in results["summary"]:
        pm = lambda k, scale=1.0, nd=1: f"{s[k] * scale:.{nd}f} ± {s[k + '_std'] * scale:.{nd}f}" if k in s else "-"  # noqa: E731
        lines.append(
            f"| {s['method']} | {s['setting']} | {pm('mpjpe')} | {pm('pa_mpjpe')} | {pm('pck3d', 100)} | {pm('auc', 100)} | {pm('val_mpjpe')} "
            + "".join(f"| {c} " for c in t_cells(s))
            + f"| {int(s.get('train_poses', 0))} | {s.get('data_amount', 1.0):.2f} | {s.get('gen_time_s', 0):.1f} "
            f"| {s.get('train_time_s', 0):.0f} | {s.get('train_poses_per_s') or 0:.0f} |"
        )
    return "\n".join(lines + _target_choice_lines(results["summary"])) + "\n"


def format_table_2d(results: dict) -> str:
    """The table of a split whose test set is 2D only: PCK of the reprojected predictions."""
    has_h = any("pckh_0.5" in s for s in results["summary"])
    t_head, t_rule, t_cells = _target_columns(results["summary"])
    lines = [
        f"Split `{results['split']}`: {results['measures']}. Train {results['train']['label']} "
        f"({results['train']['poses']} poses, {results['train']['clips']} clips), test {results['test']['label']} "
        f"({results['test']['poses']} annotations). Preset `{results['preset']}`, seeds {results['seeds']}; mean ± std over seeds.",
        "",
        "| method | 2D | PCK@0.05 (%) | PCK@0.1 (%) |" + (" PCKh@0.5 (%) |" if has_h else "")
        + " people | val. MPJPE (mm) |" + t_head + " train poses | train time (s) |",
        "|---|---|---|---|" + ("---|" if has_h else "") + "---|---|" + t_rule + "---|---|",
    ]
    people = {(r["method"], r["setting"]): r.get("n_poses") for r in results["runs"]}
    for s in results["summary"]:
        pm = lambda k, scale=1.0, nd=1: f"{s[k] * scale:.{nd}f} ± {s[k + '_std'] * scale:.{nd}f}" if k in s else "-"  # noqa: E731
        lines.append(f"| {s['method']} | {s['setting']} | {pm('pck_0.05', 100)} | {pm('pck_0.1', 100)} |"
                     + (f" {pm('pckh_0.5', 100)} |" if has_h else "")
                     + f" {people.get((s['method'], s['setting']), '-')} | {pm('val_mpjpe')} |"
                     + "".join(f" {c} |" for c in t_cells(s))
                     + f" {int(s.get('train_poses', 0))} | {s.get('train_time_s', 0):.0f} |")
    return "\n".join(lines + _target_choice_lines(results["summary"])) + "\n"
