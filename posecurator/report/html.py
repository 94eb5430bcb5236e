"""One self-contained HTML report per run: ``RUN_DIR/report.html``.

:func:`write_report` tells the kind of a run folder by its files (:func:`detect_kind`) and writes
one HTML file (atomically: a temporary file renamed into place) that opens offline: every image is
an embedded base64 PNG, the style is inline CSS, and there is no script, font or link to anything
outside the file (links to the reports of a demo's parts are relative and optional reading).

Sections, as the run has the data: an overview; the commands that reproduce the run (from
``RUN_DIR/command.json``, which every run-producing command writes before it starts); the result
table with the validation figures the models were chosen by; a data summary (read from the
datasets' ``posecurator.json`` headers and the run's summary files, never from the pose arrays
when a header suffices); score histograms; maps (the ADD PCA map with the original poses drawn on
top, a t-SNE map of a seeded subsample of at most :data:`TSNE_MAX_POSES` poses of the pool, as the
ADD paper's Fig. 6); skeleton galleries; per-activity and per-joint error of the run's lifters
before / after (the ADD paper's Fig. 4), measured when the run folder holds what it needs
(its lifters and validation clips, or a test set given with ``test=``); per-bin plots (difficulty
bins, with whole-number bin ticks); the training curves; the full configuration; the files.

Kinds (:data:`KINDS`): ``add`` (summary.json + add_config.json), ``difficulty`` (summary.json +
bins.json), ``hard`` (summary.json with "selection"), ``bench`` / ``vae-bench`` (results.json +
table.md; vae_results.json for the latter), ``lifter`` (config.json + history.json), ``demo``
(demo.json).

This is the report layer: it reads what the pipelines wrote (and may call the layers below to
evaluate a lifter or embed poses); nothing below it imports it.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from posecurator.errors import DataError

REPORT_FILE = "report.html"
COMMAND_FILE = "command.json"
TSNE_MAX_POSES = 2000  # t-SNE maps embed a seeded subsample of at most this many poses of the pool
TSNE_ITERATIONS = 400  # 250 of them early exaggeration (scikit-learn's minimum); more changes little on pose data
EVAL_MAX_POSES = 4000  # per-activity / per-joint errors: at most this many poses (seeded subsample)
KINDS = {
    "demo": "posecurator demo: import -> train -> evaluate, ADD, VAE difficulty sampling, hard samples and PoseSyn on the "
            "DeepMimic clips shipped in pybullet",
    "add": "AugData Distillation run (posecurator add)",
    "difficulty": "VAE difficulty scores and bins (posecurator difficulty)",
    "hard": "hard samples of an estimator (posecurator hard, PoseSyn's error extraction)",
    "vae-bench": "VAE difficulty-sampling experiment (posecurator vae-bench)",
    "bench": "benchmark split (posecurator bench)",
    "lifter": "lifter training run (posecurator train)",
}


# ============================================================================ detection
def _read_json(path: Path, default=None):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default


def detect_kind(run_dir) -> str:
    """The kind of run folder ``run_dir`` is, told by its files (see :data:`KINDS`)."""
    d = Path(run_dir)
    if not d.is_dir():
        raise DataError(d, "not a folder")
    if (d / "demo.json").is_file():
        return "demo"
    summary = _read_json(d / "summary.json") if (d / "summary.json").is_file() else None
    if isinstance(summary, dict):
        if (d / "add_config.json").is_file():
            return "add"
        if "selection" in summary:
            return "hard"
        if (d / "bins.json").is_file() or "vae" in summary:
            return "difficulty"
    if (d / "results.json").is_file() and (d / "table.md").is_file():
        return "vae-bench" if (d / "vae_results.json").is_file() else "bench"
    if (d / "config.json").is_file() and (d / "history.json").is_file():
        return "lifter"
    raise DataError(d, "not a posecurator run folder (none of demo.json; summary.json with add_config.json, bins.json "
                       "or a selection; results.json + table.md; config.json + history.json)")


# ============================================================================ HTML pieces
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1d1d1f;background:#fff;
 max-width:1180px;margin:0 auto;padding:0 24px 48px;line-height:1.45;font-size:15px}
header{border-bottom:2px solid #1f3f99;margin-bottom:8px;padding:18px 0 10px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:30px 0 8px;border-bottom:1px solid #ddd;padding-bottom:3px}
h3{font-size:16px;margin:18px 0 6px}
.meta{color:#555;font-size:13px;margin:2px 0}
nav{font-size:13px;margin:10px 0 0}nav a{margin-right:12px;white-space:nowrap}
a{color:#1f3f99}
table{border-collapse:collapse;margin:8px 0 14px;font-size:13px}
th,td{border:1px solid #d6d6d6;padding:4px 9px;vertical-align:top}
th{background:#eef1f8;text-align:left;font-weight:600}
tr:nth-child(even) td{background:#fafafa}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.key{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;white-space:nowrap}
.tcap{color:#444;font-size:13px;margin:10px 0 2px;max-width:900px}
.cols{display:flex;flex-wrap:wrap;gap:0 28px;align-items:flex-start}.kv{max-width:100%;overflow-x:auto}
figure{margin:10px 0 20px}figure img{max-width:100%;height:auto;border:1px solid #e4e4e4}
figcaption{color:#444;font-size:13px;margin-top:4px;max-width:900px}
.figrow{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}.figrow figure{flex:1 1 420px;max-width:100%}
pre,code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
pre{background:#f5f6f8;border:1px solid #e1e4ea;padding:8px 10px;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
.note{color:#6b4e00;background:#fff8e1;border-left:3px solid #e0b000;padding:5px 10px;font-size:13px;margin:8px 0}
.lead{font-size:15px;margin:8px 0 4px}
details{margin:6px 0}summary{cursor:pointer;color:#1f3f99}
footer{margin-top:36px;color:#777;font-size:12px;border-top:1px solid #ddd;padding-top:8px}
"""


def esc(x) -> str:
    return html.escape(str(x), quote=True)


def fmt(v, nd: int | None = None) -> str:
    """A cell value: numbers compact (``nd`` decimals when given), lists joined, None as a dash."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}".replace(",", " ") if abs(int(v)) >= 10000 else str(int(v))
    if isinstance(v, (float, np.floating)):
        nd = getattr(v, "nd", nd)
        v = float(v)
        if not np.isfinite(v):
            return "–"
        if nd is not None:
            return f"{v:.{nd}f}"
        if v == int(v) and abs(v) < 1e6:
            return str(int(v))
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    if isinstance(v, (list, tuple)):
        if len(v) > 24:
            return ", ".join(fmt(x) for x in v[:24]) + f", … ({len(v)} in all)"
        return ", ".join(fmt(x) for x in v) if v else "[]"
    if isinstance(v, dict):
        return json.dumps(v) if len(json.dumps(v)) < 200 else json.dumps(v)[:200] + "…"
    return str(v)


def _is_num(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def table(header: Sequence[str], rows: Iterable[Sequence], *, caption: str | None = None, raw: bool = False) -> str:
    """An HTML table; numbers are right-aligned. ``raw``: cells are HTML already (else escaped)."""
    out = [f'<p class="tcap">{esc(caption)}</p>' if caption else "", "<table>"]
    out.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead><tbody>")
    for row in rows:
        cells = []
        for v in row:
            if raw and isinstance(v, str):
                cells.append(f"<td>{v}</td>")
            else:
                cells.append(f'<td class="num">{esc(fmt(v))}</td>' if _is_num(v) else f"<td>{esc(fmt(v))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def flatten(d, prefix: str = "") -> list[tuple[str, object]]:
    """Nested dicts -> (dotted key, value) pairs; lists of plain values stay one value."""
    out = []
    if isinstance(d, dict):
        if not d and prefix:
            return [(prefix, "{}")]
        for k, v in d.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict):
                out += flatten(v, key)
            else:
                out.append((key, v))
    else:
        out.append((prefix, d))
    return out


def kv_table(d: Mapping, *, caption: str | None = None, header=("option", "value")) -> str:
    rows = flatten(dict(d))
    out = ['<div class="kv">', f'<p class="tcap">{esc(caption)}</p>' if caption else "", "<table>"]
    out.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead><tbody>")
    for k, v in rows:
        if isinstance(v, (list, dict, bool, int)) or v is None:  # options as they are written in JSON
            shown = json.dumps(v) if len(json.dumps(v)) <= 300 else json.dumps(v)[:300] + "…"
        else:
            shown = fmt(v)
        out.append(f'<tr><td class="key">{esc(k)}</td><td>{esc(shown)}</td></tr>')
    out.append("</tbody></table></div>")
    return "".join(out)


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def para(text: str, cls: str | None = None) -> str:
    return f'<p class="{cls}">{esc(text)}</p>' if cls else f"<p>{esc(text)}</p>"


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def link(href: str, text: str) -> str:
    return f'<a href="{esc(href)}">{esc(text)}</a>'


def figure(png: bytes | None, caption: str, *, alt: str | None = None) -> str:
    """An embedded PNG (base64 data URI) with its caption; None -> a one-line note."""
    if not png:
        return note(f"Figure not available: {caption}")
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt or caption)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def figrow(*figures: str) -> str:
    """Figures side by side (they wrap on a narrow window); notes among them go below the row."""
    figs = [f for f in figures if f and f.startswith("<figure")]
    rest = [f for f in figures if f and not f.startswith("<figure")]
    return ('<div class="figrow">' + "".join(figs) + "</div>" if figs else "") + "".join(rest)


def cols(*blocks: str) -> str:
    """Blocks (e.g. option tables) side by side, wrapping."""
    return '<div class="cols">' + "".join(b for b in blocks if b) + "</div>"


class Page:
    """The sections of one report, rendered by :meth:`html`."""

    def __init__(self, title: str, kind: str, run_dir: Path):
        self.title, self.kind, self.run_dir = title, kind, run_dir
        self.sections: list[tuple[str, str, str]] = []
        self.lead: list[str] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="posecurator-report-")
        self._n = 0

    def add(self, title: str, *blocks: str) -> None:
        body = "".join(b for b in blocks if b)
        if body:
            sid = "s-" + "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")
            while any(s[0] == sid for s in self.sections):
                sid += "-2"
            self.sections.append((sid, title, body))

    def tmp_png(self, stem: str) -> Path:
        self._n += 1
        return Path(self._tmp.name) / f"{self._n:03d}-{stem}.png"

    def draw(self, fn: Callable[..., Path], *args, **kwargs) -> bytes | None:
        """Run a plots.py function that writes a PNG (its path argument given as ``path=``) into
        a temporary file and return the PNG's bytes (None when it fails: the figure is left out)."""
        path = self.tmp_png(getattr(fn, "__name__", "fig"))
        try:
            fn(*args, path=path, **kwargs)
            return path.read_bytes()
        except (ValueError, KeyError, IndexError, TypeError, OSError) as e:
            self.lead.append(note(f"a figure ({getattr(fn, '__name__', 'plot')}) could not be drawn: {e}"))
            return None

    def close(self) -> None:
        self._tmp.cleanup()

    def html(self) -> str:
        import posecurator

        when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        nav = "".join(link(f"#{sid}", title) for sid, title, _ in self.sections)
        parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
                 '<meta name="viewport" content="width=device-width, initial-scale=1">',
                 f"<title>{esc(self.title)}</title><style>{CSS}</style></head><body>",
                 f"<header><h1>{esc(self.title)}</h1>",
                 f'<p class="meta">{esc(KINDS.get(self.kind, self.kind))} · folder <code>{esc(self.run_dir)}</code></p>',
                 f'<p class="meta">report written {esc(when)} by posecurator {esc(posecurator.__version__)}; '
                 "self-contained (images embedded), opens offline</p>",
                 f"<nav>{nav}</nav></header>", *self.lead]
        for sid, title, body in self.sections:
            parts.append(f'<section id="{sid}"><h2>{esc(title)}</h2>{body}</section>')
        parts.append(f"<footer>Rebuild this report with <code>posecurator report {esc(self.run_dir)}</code>.</footer>")
        parts.append("</body></html>")
        return "\n".join(parts)


# ============================================================================ shared readers
def _png(path: Path) -> bytes | None:
    try:
        return Path(path).read_bytes() if Path(path).is_file() else None
    except OSError:
        return None


def dataset_header(path) -> dict | None:
    """What a dataset folder's ``posecurator.json`` says (no pose array is read): frames, clips,
    subjects, activities, sources, layout, fps, format version. None when ``path`` is not one."""
    from posecurator.poseset import read_meta

    try:
        meta = read_meta(path)
    except DataError:
        return None
    strings = meta.get("strings", {}) or {}

    def names(col):
        return sorted(v for v in strings.get(col, []) if v != "")

    return {"path": str(path), "frames": int(meta.get("n", sum(c["n"] for c in meta.get("chunks", [])))),
            "clips": len(names("clip")), "subjects": names("subject"), "activities": names("activity"),
            "sources": names("source"), "operators": names("operator"), "layout": meta.get("layout"), "fps": meta.get("fps"),
            "version": meta.get("version"), "attrs": meta.get("attrs", {}) or {}}


def data_table(datasets: Sequence[tuple[str, dict | None]], *, caption: str | None = None) -> str:
    rows = []
    for role, h in datasets:
        if h is None:
            continue
        rows.append([role, h["path"], h["frames"], h["clips"], _names(h["subjects"]), _names(h["activities"]),
                     _names(h["sources"]), f"{h['layout']}, {fmt(h['fps'])} fps"])
    if not rows:
        return ""
    return table(["role", "dataset", "frames", "clips", "subjects", "activities", "sources", "layout"], rows,
                 caption=caption or "Read from each dataset's posecurator.json header (no pose array loaded).")


def _names(values: Sequence[str], limit: int = 12) -> str:
    if not values:
        return "–"
    shown = ", ".join(values[:limit])
    return f"{len(values)}: {shown}" + (f", … ({len(values)} in all)" if len(values) > limit else "")


def _resolve(run_dir: Path, p) -> Path | None:
    """A path written in a run's files: as written (absolute or relative to the working folder),
    else relative to the run folder, else the same name inside the run folder."""
    if p is None:
        return None
    p = Path(str(p))
    for cand in (p, run_dir / p, run_dir / p.name, run_dir / "runs" / p.name):
        if cand.exists():
            return cand
    return None


def sample_rows(path, n_max: int, *, seed: int = 0, columns: list[str] | None = None):
    """A seeded subsample of at most ``n_max`` rows of a dataset folder, read chunk by chunk (the
    whole set is never in memory). Returns (PoseSet, total rows)."""
    from posecurator.poseset import PoseSet, iter_chunks, read_meta

    meta = read_meta(path)
    n = int(meta.get("n", sum(c["n"] for c in meta["chunks"])))
    rng = np.random.default_rng([seed, 6])
    pick = np.arange(n) if n <= n_max else np.sort(rng.choice(n, n_max, replace=False))
    parts, start = [], 0
    for chunk in iter_chunks(path, columns=columns):
        m = len(chunk)
        sel = pick[(pick >= start) & (pick < start + m)] - start
        if len(sel):
            parts.append(chunk.subset(sel))
        start += m
    if not parts:
        raise DataError(path, "empty dataset")
    return (parts[0] if len(parts) == 1 else PoseSet.concatenate(parts)), n


def select_rows(path, keep: Callable, *, columns: list[str] | None = None):
    """The rows of a dataset folder for which ``keep(chunk) -> (n,) bool`` holds, read chunk by
    chunk (only those rows are kept in memory); None when there are none."""
    from posecurator.poseset import PoseSet, iter_chunks

    parts = []
    for chunk in iter_chunks(path, columns=columns):
        mask = np.asarray(keep(chunk), dtype=bool)
        if mask.any():
            parts.append(chunk.subset(np.flatnonzero(mask)))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else PoseSet.concatenate(parts)


def tsne_map(joints: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """(N, J, 3) poses -> (N, 2) t-SNE coordinates (sklearn.manifold.TSNE) of their pose features
    (:func:`posecurator.skeleton.canonical.pose_features`: root-relative, facing one way), first
    reduced to 12 principal components (seeded, :data:`TSNE_ITERATIONS` iterations: seconds for 2,000 poses)."""
    from sklearn.manifold import TSNE

    from posecurator.skeleton.canonical import pose_features

    x = pose_features(np.asarray(joints, dtype=np.float64))
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    y = x @ vt[:12].T
    perplexity = float(min(30.0, max(2.0, (len(y) - 1) / 3.0)))
    kwargs = dict(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed)
    try:
        model = TSNE(max_iter=TSNE_ITERATIONS, **kwargs)
    except TypeError:  # scikit-learn < 1.5
        model = TSNE(n_iter=TSNE_ITERATIONS, **kwargs)
    from threadpoolctl import threadpool_limits

    # one OpenMP thread: with torch loaded, two OpenMP runtimes share the cores and t-SNE's
    # Barnes-Hut loop runs 5x slower than on one thread
    with threadpool_limits(limits=1):
        return model.fit_transform(y)


def lifter_errors(runs: Mapping[str, Path], test, *, noise_px: float = 0.0, seed: int = 0,
                  max_poses: int = EVAL_MAX_POSES) -> dict:
    """Per-activity and per-joint MPJPE (mm) of each lifter run on ``test`` (3D poses) through the
    evaluation rig (:func:`posecurator.train.pairs.evaluation_pairs`, GT 2D unless ``noise_px``),
    as :func:`posecurator.train.evaluate.evaluate_run` measures them (its ``mpjpe`` is the mean of
    ``per_joint`` here). At most ``max_poses`` test poses (a seeded subsample) are used."""
    from posecurator.skeleton import get_layout
    from posecurator.train.checkpoint import load_lifter
    from posecurator.train.evaluate import predict
    from posecurator.train.pairs import evaluation_pairs

    n_all = len(test)
    if n_all > max_poses:
        test = test.subset(np.sort(np.random.default_rng([seed, 7]).choice(n_all, max_poses, replace=False)))
    pairs = evaluation_pairs(test, noise_px=noise_px, seed=seed)
    act = np.asarray(test.activity[pairs.pose_index]).astype(str)
    names, inv = np.unique(act, return_inverse=True)
    inv = inv.reshape(-1)
    counts = np.bincount(inv, minlength=len(names))
    out = {"activities": [n if n else "(none)" for n in names.tolist()], "joints": list(get_layout(test.layout).joints),
           "poses_per_activity": (counts // 4).tolist(), "n_poses": len(test), "n_poses_all": n_all,
           "per_activity": {}, "per_joint": {}, "mpjpe": {}}
    y = pairs.y3d.astype(np.float64)
    for name, run in runs.items():
        model, _ = load_lifter(run)
        err = np.linalg.norm(predict(model, pairs.x2d).astype(np.float64) - y, axis=-1)  # (M, J) mm
        per_pair = err.mean(axis=1)
        out["per_activity"][name] = (np.bincount(inv, weights=per_pair, minlength=len(names)) / np.maximum(counts, 1)).tolist()
        out["per_joint"][name] = err.mean(axis=0).tolist()
        out["mpjpe"][name] = float(per_pair.mean())
    return out


def error_sections(page: Page, errors: dict, *, where: str) -> list[str]:
    """Figures and tables of :func:`lifter_errors` (the ADD paper's Fig. 4: per activity and per
    joint, before / after)."""
    from posecurator.report import plots

    names = list(errors["per_activity"])
    blocks = []
    sub = (f" ({errors['n_poses']} of {errors['n_poses_all']} poses, a seeded subsample)"
           if errors["n_poses"] < errors["n_poses_all"] else f" ({errors['n_poses']} poses)")
    acts = errors["activities"]
    png = page.draw(plots.grouped_bars, acts, {n: np.asarray(errors["per_activity"][n]) for n in names},
                    ylabel="MPJPE (mm)", title="MPJPE per activity")
    blocks.append(figure(png, f"MPJPE per activity on {where}{sub}, GT 2D through the four evaluation cameras: "
                              + " vs ".join(names) + " (lower is better)."))
    rows = [[a, errors["poses_per_activity"][i], *[errors["per_activity"][n][i] for n in names]]
            + ([errors["per_activity"][names[-1]][i] - errors["per_activity"][names[0]][i]] if len(names) == 2 else [])
            for i, a in enumerate(acts)]
    header = ["activity", "poses", *[f"{n} MPJPE (mm)" for n in names]] + (["change (mm)"] if len(names) == 2 else [])
    rows.append(["all", errors["n_poses"], *[errors["mpjpe"][n] for n in names]]
                + ([errors["mpjpe"][names[-1]] - errors["mpjpe"][names[0]]] if len(names) == 2 else []))
    blocks.append(table(header, [[r[0], r[1], *[_r1(v) for v in r[2:]]] for r in rows]))
    joints = errors["joints"]
    png = page.draw(plots.grouped_bars, joints, {n: np.asarray(errors["per_joint"][n]) for n in names},
                    ylabel="mean joint error (mm)", title="error per joint (root-relative; the root is 0 by definition)")
    blocks.append(figure(png, f"Mean error of each joint on {where}{sub}: " + " vs ".join(names)
                              + ". The pelvis is the root (0 mm by construction)."))
    return blocks


def history_of(run: Path | None) -> dict | None:
    if run is None:
        return None
    h = _read_json(Path(run) / "history.json")
    return h if isinstance(h, dict) and h.get("epochs") else None


def history_table(runs: Mapping[str, dict]) -> str:
    rows = []
    for name, h in runs.items():
        recs = h.get("epochs") or []
        rows.append([name, len(recs), h.get("best_epoch"), _r1(h.get("best_val_mpjpe")),
                     _r1(recs[-1].get("train_loss") if recs else None), h.get("steps"), _r1(h.get("training_time_s")),
                     None if h.get("poses_per_s") is None else round(float(h["poses_per_s"]))])
    return table(["run", "epochs", "best epoch", "best val. MPJPE (mm)", "last train loss (mm)", "steps",
                  "training time (s)", "pairs/s"], rows)


class Fixed(float):
    """A number shown with a fixed count of decimals (115.0 stays "115.0", not "115")."""

    def __new__(cls, value, nd: int = 1):
        obj = super().__new__(cls, value)
        obj.nd = nd
        return obj


def _r1(v, nd: int = 1):
    return None if v is None else Fixed(float(v), nd)


def commands_section(run_dir: Path, extra: Sequence[tuple[str, str]] = ()) -> list[str]:
    """The command line recorded in ``run_dir/command.json`` (or a note that there is none), then
    ``extra`` (what, command) lines: how to use or rebuild the run's outputs."""
    import posecurator

    blocks = []
    rec = _read_json(run_dir / COMMAND_FILE)
    if isinstance(rec, dict):
        line = rec.get("typed") or rec.get("canonical") or " ".join(map(str, rec.get("argv", [])))
        cwd = rec.get("cwd")
        text = (f"cd {cwd}\n" if cwd else "") + str(line)
        if not rec.get("part_of"):
            blocks.append(para("The command that made this run (recorded in command.json before it started):"))
        blocks.append(pre(text))
        facts = [f"posecurator {rec.get('posecurator_version', '?')}", f"Python {rec.get('python', '?')}",
                 f"started {rec.get('started', '?')}"]
        if rec.get("posecurator_version") not in (None, posecurator.__version__):
            facts.append(f"this report: posecurator {posecurator.__version__}")
        blocks.append(para("; ".join(facts) + ".", "meta"))
        if rec.get("part_of"):
            blocks.insert(0, para(f"This run is a part of `{rec['part_of']}`; the command below makes this part alone "
                                  "(same data, options and seed)."))
        elif not rec.get("typed") and rec.get("canonical"):
            blocks.append(para("(Rebuilt from the parsed options: the command was run from Python, so sys.argv is not the "
                               "command line.)", "meta"))
        blocks.append("<details><summary>as recorded (sys.argv and parsed options)</summary>"
                      + pre(json.dumps({"argv": rec.get("argv"), "options": rec.get("options")}, indent=1)) + "</details>")
    else:
        blocks.append(note(f"No {COMMAND_FILE} in this run folder (it was made by an older posecurator or through the "
                           "Python API), so the command that made it is not known; the configuration below has every "
                           "option of the run."))
    if extra:
        blocks.append(para("Further commands on this run:"))
        blocks.append(pre("\n".join(f"# {what}\n{cmd}" for what, cmd in extra)))
    return blocks


def files_section(run_dir: Path, *, depth: int = 1) -> str:
    """The run folder's entries (a folder: its total size), linked relative to the report."""
    rows = []
    try:
        entries = sorted(p for p in run_dir.iterdir() if not p.name.startswith(".") and p.name != REPORT_FILE)
    except OSError:
        return ""
    for p in entries:
        size = _size(p)
        kind = "folder" if p.is_dir() else "file"
        href = p.name + ("/" if p.is_dir() else "")
        rows.append([link(href, p.name), kind, esc(_human(size))])
    return table(["entry", "kind", "size"], rows, raw=True,
                 caption="What the run folder holds (links are relative: they work while the report stays in its folder).")


def _size(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    total = 0
    for root, _, files in os.walk(p):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _load_test(test):
    if test is None:
        return None
    from posecurator.poseset import PoseSet

    if isinstance(test, PoseSet):
        return test
    from posecurator.pipelines.splits import load_dataset

    return load_dataset(test, progress=False)


# ============================================================================ ADD
def _add_report(page: Page, d: Path, *, test=None, redraw: bool = False, log=None) -> None:
    from posecurator.report import plots

    summary = _read_json(d / "summary.json") or {}
    config = _read_json(d / "add_config.json") or summary.get("config", {})
    sizes, lifters, chosen = summary.get("sizes", {}), summary.get("lifters", {}), summary.get("chosen", {})
    ref, fin = lifters.get("reference", {}), lifters.get("final", {})
    plot_dir = d / "plots"
    names = ("score_histogram", "pca_map", "gallery")
    if (plot_dir / "plot_data.npz").is_file() and (redraw or not all((plot_dir / f"{n}.png").is_file() for n in names)):
        plots.render_add_plots(plot_dir)

    page.lead.append(para(
        f"{fmt(sizes.get('train_part'))} original training poses (plus {fmt(sizes.get('validation'))} validation poses in "
        f"{len(summary.get('validation_clips', []))} clips) were augmented by evolution and distilled to "
        f"{fmt(sizes.get('distilled'))} poses (x{fmt(sizes.get('multiplier_achieved'), 2)} the train part; "
        f"{fmt(sizes.get('dropped_by_score'))} generated poses dropped by the ADD score). Validation MPJPE "
        f"(the number the lifters were chosen by): reference {fmt(ref.get('best_val_mpjpe'), 1)} mm -> final "
        f"{fmt(fin.get('best_val_mpjpe'), 1)} mm.", "lead"))
    page.add("Commands", *commands_section(d, [("evaluate the final lifter", f"posecurator evaluate {d} TEST_DATASET --json"),
                                               ("train on the distilled set from scratch",
                                                f"posecurator train {d / 'distilled.pcs'} -o runs/on-distilled"),
                                               ("rebuild this report", f"posecurator report {d}")]))

    # ---- results
    test_ps = _load_test(test)
    blocks = []
    rows = []
    what = {"reference": "trained on the original train part",
            "final": ("fine-tuned from the reference on train part + distilled" if config.get("retrain", "finetune") == "finetune"
                      else "trained from scratch on train part + distilled")}
    for name, r in (("reference", ref), ("final", fin)):
        rows.append([name, what[name], _r1(r.get("best_val_mpjpe")), r.get("best_epoch"), r.get("epochs"), r.get("steps"),
                     _r1(r.get("training_time_s"))])
    blocks.append(table(["lifter", "what", "val. MPJPE (mm)", "best epoch", "epochs", "steps", "training time (s)"], rows,
                        caption="The lifters of the run. Each was chosen by its best validation MPJPE: the validation clips "
                                "are cut from the training data by clip and never bred from."))
    runs = {"reference": d / "reference", "final": d / "lifter"}
    have_runs = all((r / "best.safetensors").is_file() for r in runs.values())
    if test_ps is not None and have_runs:
        from posecurator.train.evaluate import evaluate_run

        trows = []
        for setting, noise in (("gt", 0.0), ("noisy", 5.0)):
            for name, run in runs.items():
                m = evaluate_run(run, test_ps, noise_px=noise, seed=0)
                trows.append([name, setting, _r1(m["mpjpe"]), _r1(m["pa_mpjpe"]), _r1(100 * m["pck3d"]),
                              _r1(100 * m["auc"]), m["n_poses"]])
        blocks.append(table(["lifter", "2D", "MPJPE (mm)", "PA-MPJPE (mm)", "PCK3D@150 (%)", "AUC (%)", "2D-3D pairs"], trows,
                            caption=f"On the test set {test if not hasattr(test, 'joints3d') else '(given)'} "
                                    "through the fixed evaluation rig (../shared/BENCHMARK.md)."))
    size_rows = [[k.replace("_", " "), v] for k, v in sizes.items()]
    blocks.append(table(["size", "poses"], size_rows, caption="Sizes (train part = the training poses minus the validation clips)."))
    if chosen:
        blocks.append(table(["multiplier", "keep", "w"], [[chosen.get("multiplier"), chosen.get("keep"), chosen.get("w")]],
                            caption=f"Distillation parameters used (search: {config.get('search', 'none')})."))
    page.add("Results", *blocks)

    # ---- data
    distilled = dataset_header(d / "distilled.pcs")
    rec = _read_json(d / COMMAND_FILE) or {}
    src = (rec.get("options") or {}).get("dataset")
    src_h = dataset_header(src) if src and Path(src).is_dir() else None
    blocks = [data_table([("input (training set)", src_h), ("distilled.pcs (original + distilled)", distilled)])]
    if summary.get("validation_clips"):
        blocks.append(para(f"Validation clips ({len(summary['validation_clips'])}): " + ", ".join(summary["validation_clips"][:30])
                           + (" …" if len(summary["validation_clips"]) > 30 else "")))
    if src_h is None and src:
        blocks.append(para(f"Input: {src} (not a dataset folder; its header is not read)."))
    page.add("Data", *blocks)

    # ---- distillation
    blocks = []
    gens = summary.get("generations") or []
    if gens:
        keys = [k for k in ("generation", "population", "made", "rejected", "rejection_rate", "distilled", "kept", "seconds")
                if k in gens[0]]
        extra = [k for k in gens[0] if k.startswith("mean") or k.endswith("_mean")]
        blocks.append(table([k.replace("_", " ") for k in keys + extra],
                            [[g.get(k) for k in keys + extra] for g in gens],
                            caption="Scale distillation, generation by generation (rejected = by the plausibility prior)."))
    sc = summary.get("scores", {})
    stat_rows = []
    for what_, label in (("score", "ADD score"), ("novelty", "novelty 1 - prob"), ("lifter_error_mm", "lifter error (mm)")):
        for group in ("kept", "dropped"):
            s = (sc.get(what_) or {}).get(group) or {}
            if s.get("n"):
                stat_rows.append([label, group, s["n"], s.get("mean"), s.get("p5"), s.get("median"), s.get("p95")])
    if stat_rows:
        blocks.append(table(["score", "group", "poses", "mean", "5 %", "median", "95 %"], stat_rows,
                            caption=sc.get("direction", "")))
    blocks.append(figure(_png(plot_dir / "score_histogram.png"),
                         "ADD score of the generated poses kept vs dropped by quality distillation (score = w (1 - prob) + "
                         "(1 - w) normalised lifter error; higher = dropped first)."))
    page.add("Distillation and scores", *blocks)

    # ---- maps
    blocks = [figure(_png(plot_dir / "pca_map.png"),
                     "The original training poses (blue, drawn last so they stay visible), the kept (green) and the dropped "
                     "(red) generated poses in the 2-d PCA plane of the reference distribution, over the contour lines of "
                     "its Gaussian mixture.")]
    blocks += _add_tsne(page, d, summary, plot_dir)
    page.add("Maps of the pose pool", figrow(*blocks))

    page.add("Skeleton galleries", figure(
        _png(plot_dir / "gallery.png"),
        "Rows: random original poses, random kept poses, random dropped poses, and the dropped poses with the highest "
        "ADD scores (titles give the score). Left limbs blue, right red."))

    # ---- errors per activity and joint
    blocks = []
    where = None
    eval_set = None
    if not have_runs:
        blocks.append(note("Left out: the run folder lacks its reference/ or lifter/ weights."))
    elif test_ps is not None:
        eval_set, where = test_ps, "the test set"
    elif summary.get("validation_clips") and (d / "distilled.pcs").is_dir():
        eval_set = select_rows(d / "distilled.pcs",
                               lambda c: (c.generation == 0) & np.isin(c.clip, summary["validation_clips"]))
        if eval_set is not None:
            where = ("the run's validation clips (the data the best epochs were chosen on, not a test set: give one with "
                     "`posecurator report RUN --test DATA`)")
    else:
        blocks.append(note("Left out: the run has no validation clips and no test set was given "
                           "(posecurator report RUN --test DATA)."))
    if eval_set is not None:
        if log:
            log("[report] per-activity and per-joint errors of the reference and final lifters")
        blocks += error_sections(page, lifter_errors(runs, eval_set), where=where)
    page.add("Error per activity and per joint (before / after)", *blocks)

    # ---- training curves
    hr, hf = history_of(d / "reference"), history_of(d / "lifter")
    hist = {k: v for k, v in (("reference", hr), ("final", hf)) if v}
    if hist:
        offsets = {"final": len(hr["epochs"])} if hr and hf and config.get("retrain", "finetune") == "finetune" else {}
        png = page.draw(plots.training_curves, hist, offsets=offsets, title="lifter training")
        page.add("Training curves", figure(png, "Training loss (MPJPE on the training pairs) and validation MPJPE per epoch; "
                                                "the star marks the best epoch (the weights kept). The final lifter "
                                                + ("is fine-tuned from the reference, drawn after it." if offsets else
                                                   "is trained from scratch.")),
                 history_table(hist))

    search = summary.get("search")
    if search:
        blocks = [kv_table({k: v for k, v in search.items() if k != "history"}, caption="Search result")]
        histo = search.get("history") or search.get("trials") or []
        if histo and isinstance(histo, list) and isinstance(histo[0], dict):
            keys = list(histo[0])
            blocks.append(table(keys, [[h.get(k) for k in keys] for h in histo], caption="Every search candidate"))
        page.add("Search", *blocks)

    page.add("Configuration", cols(kv_table(config, caption="add_config.json: every ADD option of the run"),
                                   kv_table(summary.get("train_config", {}), caption="The lifter's training config (TrainConfig)")
                                   + kv_table(summary.get("times", {}), caption="Time (s)", header=("stage", "seconds"))))
    page.add("Files", files_section(d))


def _add_tsne(page: Page, d: Path, summary: dict, plot_dir: Path) -> list[str]:
    """t-SNE map of the ADD pool (Fig. 6 of the paper): original train part, kept, dropped."""
    from posecurator.report import plots

    if not (d / "distilled.pcs").is_dir():
        return [note("t-SNE map left out: the run has no distilled.pcs.")]
    pool, n_all = sample_rows(d / "distilled.pcs", TSNE_MAX_POSES, seed=0, columns=["generation", "clip"])
    val = np.isin(pool.clip, summary.get("validation_clips", []))
    groups = {"original": pool.joints3d[(pool.generation == 0) & ~val], "kept": pool.joints3d[pool.generation > 0]}
    dropped_note = None
    try:
        with np.load(plot_dir / "plot_data.npz", allow_pickle=False) as z:
            dropped = z["dropped_joints3d"] if "dropped_joints3d" in z.files else None
    except (OSError, ValueError):
        dropped = None
    if dropped is not None and len(dropped):
        # as many dropped poses as their share of the pool, within the same budget
        share = summary.get("sizes", {}).get("dropped_by_score", len(dropped))
        n_d = int(min(len(dropped), max(1, round(len(pool) * share / max(n_all, 1)))))
        idx = np.sort(np.random.default_rng([0, 8]).choice(len(dropped), n_d, replace=False))
        groups["dropped"] = np.asarray(dropped, dtype=np.float64)[idx]
    else:
        dropped_note = ("The dropped poses are not stored by this run (plot_data.npz has no dropped_joints3d), so the "
                        "t-SNE map shows the original and kept poses only.")
    groups = {k: v for k, v in groups.items() if len(v)}
    if sum(len(v) for v in groups.values()) < 10:
        return [note("t-SNE map left out: fewer than 10 poses.")]
    t0 = time.perf_counter()
    emb = tsne_map(np.concatenate(list(groups.values())), seed=0)
    parts, start = {}, 0
    for k, v in groups.items():
        parts[k] = emb[start:start + len(v)]
        start += len(v)
    style = [plots.ADD_GROUP_STYLE[k] for k in parts]
    png = page.draw(plots.pca_map, parts, colors=[s[0] for s in style], sizes=[s[1] for s in style],
                    alphas=[s[2] for s in style], on_top=("original",), xlabel="t-SNE 1", ylabel="t-SNE 2",
                    title="t-SNE map of the pose pool (ADD Fig. 6)")
    n = sum(len(v) for v in groups.values())
    others = " and ".join(f"the {k} generated poses" for k in parts if k != "original")
    out = [figure(png, f"t-SNE of {n} poses of the pool (a seeded subsample of at most {TSNE_MAX_POSES}; pose features: "
                       "root-relative joints facing one way, reduced to 12 principal components): the original train part "
                       f"(blue) drawn on top of {others} ({time.perf_counter() - t0:.1f} s).")]
    if dropped_note:
        out.append(note(dropped_note))
    return out


# ============================================================================ difficulty
def _difficulty_report(page: Page, d: Path, *, test=None, redraw: bool = False, log=None) -> None:
    from posecurator.report import plots

    summary = _read_json(d / "summary.json") or {}
    bins = _read_json(d / "bins.json") or {}
    need = ("heatmap", "histogram", "gallery", "bins_gallery")
    for folder in (d, d / "heldout"):
        if (folder / "plot_data.npz").is_file() and (redraw or not all((folder / f"{n}.png").is_file() for n in need)):
            plots.render_difficulty_plots(folder)
    rep = summary.get("report", {})
    q = rep.get("score_quantiles", bins.get("score_quantiles", {}))
    k = int(summary.get("k", bins.get("k", 0)) or 0)
    vae = summary.get("vae", {})
    page.lead.append(para(
        f"A pose VAE ({summary.get('space', '?')}, {fmt((vae.get('config') or {}).get('epochs'))} epochs) scored "
        f"{fmt(rep.get('n_scored'))} of {fmt(summary.get('n_poses'))} poses by its reconstruction error (Eq. 2: higher = "
        f"harder); the scores are cut into {k} equal-size bins (0 = easiest). Median score {fmt(q.get('q50'))} "
        f"(10 %: {fmt(q.get('q10'))}, 90 %: {fmt(q.get('q90'))}).", "lead"))
    ds = summary.get("dataset")
    page.add("Commands", *commands_section(d, [
        ("train a lifter on the hardest third (VAE-HM)",
         f"posecurator train {ds if ds and ds != '<PoseSet>' else 'DATASET'} -o runs/hard --sampler hard:0.33 --scores {d / 'scores.npz'}"),
        ("or a curriculum easy -> hard (VAE-CL)",
         f"posecurator train {ds if ds and ds != '<PoseSet>' else 'DATASET'} -o runs/curriculum --sampler curriculum --scores {d / 'scores.npz'}"),
        ("rebuild this report", f"posecurator report {d}")]))

    # ---- results
    fin = vae.get("final", {})
    rows = [["poses", summary.get("n_poses")], ["scored", rep.get("n_scored")], ["unscored (too few labelled joints)", rep.get("n_unscored")],
            ["bins", k], *[[f"score {name}", v] for name, v in q.items()],
            ["VAE training poses / validation poses", f"{fmt(vae.get('n_train'))} / {fmt(vae.get('n_val'))}"],
            ["VAE final reconstruction error train / val.", f"{fmt(fin.get('train_recon'))} / {fmt(fin.get('val_recon'))}"],
            ["VAE final KL train / val.", f"{fmt(fin.get('train_kl'))} / {fmt(fin.get('val_kl'))}"],
            ["VAE training time (s)", _r1(vae.get("train_s"))], ["wall time (s)", _r1(summary.get("wall_time_s"))]]
    page.add("Results", table(["quantity", "value"], rows,
                              caption="Scores: the VAE's reconstruction error of each normalised pose (Eq. 2). The VAE was "
                                      "trained on a part of the set and validated on the held-back clips (val.)."))

    # ---- data
    h = dataset_header(ds) if ds and ds != "<PoseSet>" and Path(ds).is_dir() else None
    blocks = [data_table([("scored set", h)])] if h else [para(f"Dataset: {ds} ({fmt(summary.get('n_poses'))} poses; not a "
                                                             "dataset folder, so no header is read).")]
    if summary.get("left_out_sparse"):
        blocks.append(para(f"Left out (fewer than {summary.get('min_keypoints')} labelled joints): {summary['left_out_sparse']}"))
    page.add("Data", *blocks)

    # ---- scores and bins
    blocks = [figure(_png(d / "histogram.png"), "Distribution of the VAE difficulty scores (reconstruction error of the "
                                                "normalised pose, log counts).")]
    stats = bins.get("bins") or []
    if stats:
        x = np.arange(len(stats))
        curves = {"median": np.array([b.get("score_median", np.nan) for b in stats], dtype=np.float64),
                  "min": np.array([b.get("score_min", np.nan) for b in stats], dtype=np.float64),
                  "max": np.array([b.get("score_max", np.nan) for b in stats], dtype=np.float64)}
        png = page.draw(plots.per_bin_curve, x, curves, xlabel="difficulty bin (0 = easiest)", ylabel="VAE score",
                        title="score range of each bin", logy=bool(np.nanmin(curves["min"]) > 0))
        blocks = [figrow(blocks[0], figure(png, "Minimum, median and maximum VAE score of each equal-size difficulty bin."))]
        label = next((c for c in ("activity", "source", "subject") if f"{c}_top" in stats[0]), None)
        if label:
            totals: dict[str, int] = {}
            for b in stats:
                for name, n in b.get(f"{label}_top", []):
                    totals[name] = totals.get(name, 0) + int(n)
            top = [n for n, _ in sorted(totals.items(), key=lambda t: -t[1])[:11]]
            layers = {n: np.array([dict(map(tuple, b.get(f"{label}_top", []))).get(n, 0) for b in stats], dtype=np.float64)
                      for n in top}
            other = np.array([b["count"] for b in stats], dtype=np.float64) - sum(layers.values())
            if (other > 0).any():
                layers["other"] = np.maximum(other, 0)
            png = page.draw(plots.stacked_bars, x, layers, xlabel="difficulty bin (0 = easiest)", ylabel="poses",
                            title=f"{label} mix of each bin")
            plural = {"activity": "activities", "source": "sources", "subject": "subjects"}[label]
            blocks.append(figure(png, f"Poses of each bin by {label} (the {len(top)} most frequent; 'other' = the rest, and "
                                      f"any {label} outside a bin's top 5): which {plural} the VAE finds hard."))
        rows = [[b["bin"], b["count"], b.get("score_min"), b.get("score_median"), b.get("score_max"),
                 ", ".join(f"{n} {c}" for n, c in b.get(f"{label}_top", [])) if label else "–"] for b in stats]
        blocks.append(table(["bin", "poses", "score min", "median", "max", f"top {label or 'labels'}"], rows,
                            caption="bins.json: per-bin statistics (bin 0 = easiest)."))
    blocks.append(figure(_png(d / "heatmap.png"), "Mean EvalPose (pose similarity, higher = more alike) between the poses of "
                                                  "difficulty bin i and bin j (the paper's Fig. 3(b)); bins from easy to hard."))
    page.add("Scores and bins", *blocks)

    # ---- maps
    blocks = []
    if summary.get("space", "3d") != "3d":
        blocks.append(note("t-SNE map left out: a 2D difficulty run (the map embeds 3D pose features)."))
    elif h is None:
        blocks.append(note("t-SNE map left out: the scored set is not a dataset folder (import it with posecurator import)."))
    else:
        blocks += _difficulty_tsne(page, d, ds)
    page.add("Map of the pose pool", *blocks)

    page.add("Skeleton galleries",
             figure(_png(d / "bins_gallery.png"), "The median-score pose of every bin, easy to hard (the paper's Fig. 3(a))."),
             figure(_png(d / "gallery.png"), "The easiest (top row) and the hardest (bottom row) poses by VAE score."))

    held = summary.get("heldout")
    if held:
        hd = d / "heldout"
        blocks = [para(f"Held-out set {held.get('dataset')}: {fmt(held.get('n_scored'))} of {fmt(held.get('n_poses'))} poses "
                       f"scored by {'the same VAE' if not str(summary.get('scoring', '')).startswith('crossfit') else 'the mean of the fold VAEs'}"
                       " (never trained on).")]
        counts = held.get("counts_in_reference_bins")
        if counts:
            png = page.draw(plots.stacked_bars, np.arange(len(counts)), {"held-out poses": np.asarray(counts, dtype=np.float64)},
                            xlabel="training-set bin (0 = easiest)", ylabel="held-out poses",
                            title="held-out poses in the training set's bins")
            blocks.append(figure(png, "Held-out poses counted in the training set's difficulty bins (equal counts if the "
                                      "held-out set were distributed like the training set)."))
        blocks += [figure(_png(hd / "histogram.png"), "Held-out set: VAE scores."),
                   figure(_png(hd / "heatmap.png"), "Held-out set: EvalPose between its own bins."),
                   figure(_png(hd / "gallery.png"), "Held-out set: easiest and hardest poses.")]
        page.add("Held-out set", *blocks)

    # one VAE (in-sample scores) or one per fold (cross-fitted: vae/fold{k}/)
    docs = {"pose VAE": d / "vae" / "vae.json"} if (d / "vae" / "vae.json").is_file() else \
        {f"fold {p.parent.name[4:]}": p for p in sorted((d / "vae").glob("fold*/vae.json"))}
    curves = {}
    for label, path in docs.items():
        hist = (_read_json(path) or {}).get("history") or {}
        if hist.get("epoch"):
            curves[label] = {"epoch": hist["epoch"], "train": hist.get("train_loss", []), "val": hist.get("val_loss", [])}
    if curves:
        png = page.draw(plots.training_curves, curves, loss_label="training loss (Eq. 1)",
                        val_label="validation loss (Eq. 1)", title="pose VAE training")
        page.add("Training curves", figure(png, "The pose VAE's loss (reconstruction + lambda KL) per epoch on its training "
                                                "poses and on the held-back validation clips"
                                                + (" (one VAE per cross-fitting fold)." if len(curves) > 1 else ".")))

    cfg = {"k": k, "space": summary.get("space"), "min_keypoints": summary.get("min_keypoints"),
           "dataset": ds, "vae": (vae.get("config") or {})}
    page.add("Configuration", kv_table(cfg, caption="Every option of the run (vae.*: the VAEConfig)"))
    page.add("Files", files_section(d))


def _difficulty_tsne(page: Page, d: Path, ds) -> list[str]:
    from posecurator.report import plots
    from posecurator.selection.bins import load_scores

    try:
        ids, scores = load_scores(d / "scores.npz")
    except (DataError, OSError, ValueError) as e:
        return [note(f"t-SNE map left out: {e}")]
    pool, _ = sample_rows(ds, TSNE_MAX_POSES, seed=0, columns=["sample_id"])
    order = np.argsort(ids)
    pos = np.clip(np.searchsorted(ids[order], pool.sample_id), 0, len(ids) - 1)
    found = ids[order][pos] == pool.sample_id
    sc = np.where(found, scores[order][pos], np.nan)
    ok = np.isfinite(sc)
    if ok.sum() < 10:
        return [note("t-SNE map left out: the scores do not match the dataset's sample ids.")]
    finite = scores[np.isfinite(scores)]
    lo, hi = np.quantile(finite, [1 / 3, 2 / 3])
    groups = {"easiest third": pool.joints3d[ok & (sc <= lo)], "middle third": pool.joints3d[ok & (sc > lo) & (sc < hi)],
              "hardest third (what hard:0.33 trains on)": pool.joints3d[ok & (sc >= hi)]}
    groups = {k_: v for k_, v in groups.items() if len(v)}
    emb = tsne_map(np.concatenate(list(groups.values())), seed=0)
    parts, start = {}, 0
    for k_, v in groups.items():
        parts[k_] = emb[start:start + len(v)]
        start += len(v)
    colour = {"easiest": "#1f77b4", "middle": "#bbbbbb", "hardest": "#d62728"}
    png = page.draw(plots.pca_map, parts, colors=[colour[name.split()[0]] for name in parts], sizes=[6.0] * len(parts),
                    on_top=tuple(n for n in parts if n.startswith("hardest")), xlabel="t-SNE 1", ylabel="t-SNE 2",
                    title="t-SNE map of the scored poses by VAE difficulty")
    return [figure(png, f"t-SNE of {int(ok.sum())} scored poses (a seeded subsample of at most {TSNE_MAX_POSES}), coloured by "
                        "the third of the VAE score they fall in: where in pose space the hard poses lie.")]


# ============================================================================ hard
def _hard_report(page: Page, d: Path, *, test=None, redraw: bool = False, log=None) -> None:
    from posecurator.report import plots

    summary = _read_json(d / "summary.json") or {}
    if (d / "gallery.json").is_file() and (redraw or not (d / "plots" / "hardest.png").is_file()
                                           or not (d / "plots" / "error_histogram.png").is_file()):
        plots.render_hard_plots(d)
    sel = summary.get("selection", {})
    q = summary.get("quantiles", {})
    check = summary.get("check_against_3d") or {}
    page.lead.append(para(
        f"{fmt(summary.get('n_scored'))} samples scored for {summary.get('estimator', '?')} by the "
        f"{'reprojection error (PoseSyn Eq. 1)' if summary.get('error') == '2d' else 'true 3D error'} in "
        f"{summary.get('error_unit', '?')}; median {fmt(q.get('q50'))}, 95 % {fmt(q.get('q95'))}. Selected: "
        f"{len(sel.get('hard_sample_ids', []))} hard, {len(sel.get('easy_sample_ids', []))} easy and "
        f"{len(sel.get('random_sample_ids', []))} random samples."
        + (f" Against the true 3D error: Spearman {fmt(check.get('spearman'), 2)}, precision of the top {check.get('k')} "
           f"{fmt(check.get('precision_at_k'), 2)} (chance {fmt(check.get('chance_precision'), 2)})." if "spearman" in check else ""),
        "lead"))
    est = str(summary.get("estimator", ""))
    est_dir = est[len("lifter "):] if est.startswith("lifter ") else "RUN_DIR"
    page.add("Commands", *commands_section(d, [
        ("the estimator on the hard set", f"posecurator evaluate {est_dir} {d / 'hard.pcs'} --json"),
        ("rebuild this report", f"posecurator report {d}")]))

    rows = [["scored", summary.get("n_scored")], *[[f"status: {k}", v] for k, v in (summary.get("status") or {}).items()],
            *[[f"error {k}", v] for k, v in q.items()],
            ["hard: error range", fmt(sel.get("hard_error_range"))], ["easy: error range", fmt(sel.get("easy_error_range"))],
            *[[f"captions from {k}", v] for k, v in ((summary.get("captions") or {}).get("sources") or {}).items()],
            ["wall time (s)", _r1(summary.get("wall_time_s"))]]
    blocks = [table(["quantity", "value"], rows, caption=f"Error unit: {summary.get('error_unit', '?')}.")]
    if "spearman" in check:
        blocks.append(table(["check", "value"], [["what", check.get("what")], ["samples", check.get("n")],
                                                 ["Spearman rank correlation", check.get("spearman")],
                                                 [f"precision of the top {check.get('k')}", check.get("precision_at_k")],
                                                 ["chance precision", check.get("chance_precision")]],
                            caption="How well the 2D score finds the samples that are truly hard in 3D (3D input only)."))
    page.add("Results", *blocks)

    # ---- data
    sets = [(name, dataset_header(d / f"{name}.pcs")) for name in ("hard", "easy", "random")]
    blocks = [kv_table(summary.get("data", {}), caption="Input and its preparation", header=("fact", "value")),
              data_table(sets, caption="The selected sets (read from their posecurator.json headers).")]
    acts = _activity_counts(d)
    if acts:
        names = sorted(set().union(*[set(c) for c in acts.values()]), key=lambda a: -sum(c.get(a, 0) for c in acts.values()))
        rows = [[a, *[acts[s].get(a, 0) for s in acts]] for a in names[:40]]
        blocks.append(table(["activity", *[f"{s} samples" for s in acts]], rows,
                            caption="Samples per activity in each selection (the random selection shows the base rate)."))
    page.add("Data", *blocks)

    page.add("Error distribution", figrow(
             figure(_png(d / "plots" / "error_histogram.png"), "Error of every scored sample: easy (blue, the bottom "
                                                                "selection), middle (grey) and hard (red, the top selection)."),
             figure(_png(d / "plots" / "error_2d_vs_3d.png"), "The 2D score against the true 3D error of the same prediction "
                                                              "(only for input with 3D).")))
    gallery = _read_json(d / "gallery.json") or {}
    blocks = [figure(_png(d / "plots" / "hardest.png"), "The hardest samples: the given 2D (left blue, right red) and the "
                                                        "estimator's prediction placed in the camera and projected back "
                                                        "(grey, dashed); titles give sample id, error and caption.")]
    samples = gallery.get("samples") or []
    if samples:
        blocks.append(table(["sample id", "clip", "error", "caption"],
                            [[s.get("sample_id"), s.get("clip"), round(float(s.get("error", np.nan)), 4), s.get("caption")]
                             for s in samples], caption="The hardest samples with their captions (captions.json has all)."))
    page.add("Hardest samples", *blocks)
    options = {k: summary.get(k) for k in ("estimator", "in_sample", "error", "error_unit")}
    options.update({k: sel.get(k) for k in ("top", "bottom", "seed")})
    options["weights"] = summary.get("weights")
    page.add("Configuration", kv_table(options, caption="Every option of the run (weights: joint -> weight of the error)"))
    page.add("Files", files_section(d))


def _activity_counts(d: Path) -> dict[str, dict[str, int]]:
    from posecurator.poseset import PoseSet

    out = {}
    for name in ("hard", "easy", "random"):
        p = d / f"{name}.pcs"
        if not p.is_dir():
            continue
        try:
            ps = PoseSet.load(p, columns=["activity"])
        except DataError:
            continue
        a, c = np.unique(np.asarray(ps.activity).astype(str), return_counts=True)
        out[name] = {str(x) or "(none)": int(n) for x, n in zip(a, c)}
    return out if any(len(c) > 1 or "(none)" not in c for c in out.values()) else {}


# ============================================================================ lifter run
def _lifter_report(page: Page, d: Path, *, test=None, redraw: bool = False, log=None) -> None:
    from posecurator.report import plots

    cfg = _read_json(d / "config.json") or {}
    h = history_of(d) or _read_json(d / "history.json") or {}
    data = cfg.get("data", {})
    rec = _read_json(d / COMMAND_FILE) or {}
    opts = rec.get("options") or {}
    page.lead.append(para(
        f"A 2D-to-3D lifter trained on {fmt(data.get('n_train'))} poses, validated on {fmt(data.get('n_val'))} poses of "
        f"{len(data.get('val_clips', []))} held-out clips; best validation MPJPE {fmt(h.get('best_val_mpjpe'), 1)} mm at "
        f"epoch {fmt(h.get('best_epoch'))} of {len(h.get('epochs') or [])}."
        + (f" Sampler: {opts.get('sampler')}." if opts.get("sampler") else ""), "lead"))
    page.add("Commands", *commands_section(d, [("evaluate it", f"posecurator evaluate {d} TEST_DATASET --json"),
                                               ("rebuild this report (with per-activity errors on a test set)",
                                                f"posecurator report {d} --test TEST_DATASET")]))
    page.add("Results", history_table({"lifter": h}) if h.get("epochs") else note("No epochs in history.json."),
             para("The weights kept (best.safetensors) are those of the best validation epoch."))
    src = opts.get("dataset")
    sh = dataset_header(src) if src and Path(str(src)).is_dir() else None
    blocks = [data_table([("training set", sh)])] if sh else []
    blocks.append(kv_table(data, caption="config.json: data (n_train = train part, n_val = validation part)", header=("fact", "value")))
    page.add("Data", *blocks)
    if h.get("epochs"):
        png = page.draw(plots.training_curves, {"lifter": h}, title="lifter training")
        page.add("Training curves", figure(png, "Training loss and validation MPJPE per epoch; the star marks the best epoch."))
    test_ps = _load_test(test)
    if test_ps is not None and (d / "best.safetensors").is_file():
        page.add("Error per activity and per joint", *error_sections(page, lifter_errors({"lifter": d}, test_ps), where="the test set"))
    else:
        page.add("Error per activity and per joint", note("Left out: a lifter run folder holds no test set "
                                                          "(posecurator report RUN --test DATA measures it)."))
    page.add("Configuration", cols(kv_table(cfg.get("train", {}), caption="TrainConfig"),
                                   kv_table(cfg.get("model", {}), caption="model")
                                   + kv_table(cfg.get("camera", {}), caption="training cameras")),
             kv_table({"layout": cfg.get("layout"), "init_from": cfg.get("init_from"), **(cfg.get("io") or {})},
                      caption="input / output"))
    page.add("Files", files_section(d))


# ============================================================================ bench / vae-bench
def _bench_report(page: Page, d: Path, *, test=None, redraw: bool = False, log=None) -> None:
    from posecurator.report import plots

    res = _read_json(d / "results.json") or {}
    vae = _read_json(d / "vae_results.json") if page.kind == "vae-bench" else None
    if vae is not None and (d / "vae_plot_data.json").is_file() and (
            redraw or not all((d / f).is_file() for f in (vae.get("files") or {}).values() if f.endswith(".png"))):
        plots.render_vae_experiment_plots(d)
    summary = res.get("summary") or []
    page.lead.append(para(
        f"Split {res.get('split')}: {res.get('measures', '')}. Train {res.get('train', {}).get('label')} "
        f"({fmt(res.get('train', {}).get('poses'))} poses), test {res.get('test', {}).get('label')} "
        f"({fmt(res.get('test', {}).get('poses'))} poses); seeds {res.get('seeds')}; preset {res.get('preset')}.", "lead"))
    extra = []
    if page.kind == "bench":
        split = res.get("split")
        where = (f"custom --train {res.get('train', {}).get('label')} --test {res.get('test', {}).get('label')}"
                 if split == "custom" else split)
        rec = _read_json(d / COMMAND_FILE) or {}
        again = (rec.get("canonical") or "") if rec.get("command") == "bench" else ""
        again = (again if "--table-only" in again else again + " --table-only") if again else \
            f"posecurator bench {where} -o {d} --table-only"
        extra.append(("tabulate again without training (the same training config)", again))
    page.add("Commands", *commands_section(d, [*extra, ("rebuild this report", f"posecurator report {d}")]))
    two_d = bool(summary) and "mpjpe" not in summary[0]

    def pm(s, key, scale=1.0, nd=1):
        return f"{s[key] * scale:.{nd}f} ± {s[key + '_std'] * scale:.{nd}f}" if key in s else "–"

    if two_d:
        rows = [[s["method"], s["setting"], s.get("n_seeds"), pm(s, "pck_0.05", 100), pm(s, "pck_0.1", 100),
                 pm(s, "val_mpjpe"), int(s.get("train_poses", 0)), round(s.get("train_time_s", 0))] for s in summary]
        header = ["method", "2D", "seeds", "PCK@0.05 (%)", "PCK@0.1 (%)", "val. MPJPE (mm)", "train poses", "train time (s)"]
    else:
        rows = [[s["method"], s["setting"], s.get("n_seeds"), pm(s, "mpjpe"), pm(s, "pa_mpjpe"), pm(s, "pck3d", 100),
                 pm(s, "auc", 100), pm(s, "val_mpjpe"), int(s.get("train_poses", 0)), round(s.get("train_time_s", 0))]
                for s in summary]
        header = ["method", "2D", "seeds", "MPJPE (mm)", "PA-MPJPE (mm)", "PCK3D@150 (%)", "AUC (%)", "val. MPJPE (mm)",
                  "train poses", "train time (s)"]
    blocks = [table(header, rows, caption="Mean ± std over seeds on the test set; val. MPJPE is what each lifter's best epoch "
                                          "was chosen by (validation clips cut from the training data).")]
    if vae:
        vrows = [[s["method"], s["setting"], pm(s, "mpjpe"), pm(s, "evalpose", 100, 2), int(s.get("train_poses", 0)),
                  int(s.get("steps", 0))] for s in vae.get("summary", [])]
        blocks.append(table(["method", "2D", "MPJPE (mm)", "EvalPose x 100", "distinct train poses", "steps"], vrows,
                            caption="The VAE experiment: every method makes the same number of steps."))
        if vae.get("verdict"):
            blocks.append(table(["method", "2D", "MPJPE minus vae_all (mm)", "seed spread (mm)", "outcome"],
                                [[v["method"], v["setting"], round(v["mpjpe_minus_all"], 1), round(v["spread"], 1), v["outcome"]]
                                 for v in vae["verdict"]]))
    page.add("Results", *blocks)
    page.add("Data", table(["part", "label", "poses", "clips"],
                           [[p, res.get(p, {}).get("label"), res.get(p, {}).get("poses"), res.get(p, {}).get("clips")]
                            for p in ("train", "test")]))

    runs = res.get("runs") or []
    if runs and not two_d:
        setting = "gt" if any(r["setting"] == "gt" for r in runs) else runs[0]["setting"]
        methods = list(dict.fromkeys(r["method"] for r in runs if r["setting"] == setting))
        acts = sorted({a for r in runs for a in (r.get("per_activity") or {})})
        if acts:
            groups = {}
            for m in methods:
                vals = [[(r.get("per_activity") or {}).get(a, {}).get("mpjpe", np.nan) for a in acts]
                        for r in runs if r["method"] == m and r["setting"] == setting]
                groups[m] = np.nanmean(np.asarray(vals, dtype=np.float64), axis=0)
            png = page.draw(plots.grouped_bars, acts, groups, ylabel="MPJPE (mm)", title=f"test MPJPE per activity ({setting} 2D)")
            page.add("Error per activity", figure(png, f"Test MPJPE per activity, {setting} 2D, mean over seeds, one bar per method."),
                     table(["activity", *methods], [[a, *[_r1(groups[m][i]) for m in methods]] for i, a in enumerate(acts)]))
    if vae:
        files = vae.get("files") or {}
        caps = {"per_bin_mpjpe": "Target MPJPE per difficulty bin (target poses in the source VAE's bins), mean ± std over "
                                 "seeds (Fig. 4).",
                "per_bin_delta": "Each method's per-bin MPJPE minus all of the source (vae_all).",
                "target_bins": "Target poses per source difficulty bin.",
                "source_heatmap": "EvalPose between the source's difficulty bins (Fig. 3(b), first seed)."}
        def caption(name: str) -> str:
            base = name.replace("_noisy", "").replace("_target_quantiles", "")
            text = caps.get(base, name.replace("_", " "))
            if "_target_quantiles" in name:
                text += " Here the bins are equal-size bins of the target poses by the source VAE's score."
            if name.endswith("_noisy"):
                text += " Noisy (5 px) 2D."
            return text

        figs = [figure(_png(d / f), caption(name)) for name, f in files.items() if str(f).endswith(".png")]
        page.add("Per-bin figures", *figs)
    if runs:
        first_seed = runs[0]["seed"]
        setting = runs[0]["setting"]
        hist = {}
        for r in runs:
            if r["seed"] == first_seed and r["setting"] == setting:
                h = history_of(_resolve(d, r.get("run_dir")))
                if h:
                    hist[r["method"]] = h
        if hist:
            png = page.draw(plots.training_curves, hist, title=f"seed {first_seed}, {setting} 2D")
            page.add("Training curves", figure(png, f"Training loss and validation MPJPE per epoch of every method (seed "
                                                    f"{first_seed}, {setting} 2D); stars: best epochs."), history_table(hist))
    page.add("Configuration", cols(kv_table({"split": res.get("split"), "preset": res.get("preset"), "seeds": res.get("seeds"),
                                             "settings": sorted({r["setting"] for r in runs}),
                                             "methods": list(dict.fromkeys(r["method"] for r in runs))}, caption="The bench"),
                                   kv_table(res.get("train_config") or {},
                                            caption="The lifters' TrainConfig (seed and 2D noise set per run)")))
    page.add("Files", files_section(d))


# ============================================================================ demo
def _demo_report(page: Page, d: Path, *, test=None, redraw: bool = False, log=None) -> None:
    from posecurator.report import plots

    doc = _read_json(d / "demo.json") or {}
    methods = [m for m, v in doc.items() if isinstance(v, dict) and "gt" in v]
    runs = {m: d / p for m, p in (doc.get("runs") or {}).items()}
    if not runs:  # demo.json of an older demo: the two runs it always had
        runs = {"baseline": d / "lifter", "add": d / "add" / "lifter"}
    train_h, test_h = dataset_header(d / "train.pcs"), dataset_header(d / "test.pcs")
    best = min(methods, key=lambda m: doc[m]["gt"]["mpjpe"]) if methods else None
    page.lead.append(para(
        f"The DeepMimic reference clips shipped in pybullet: {fmt(train_h and train_h['frames'])} training frames "
        f"({len(train_h['activities']) if train_h else '?'} activities) and {fmt(test_h and test_h['frames'])} test frames of the "
        f"held-out activities {', '.join(test_h['activities']) if test_h else '?'}. Lifters: " + ", ".join(methods)
        + (f"; the lowest test MPJPE (GT 2D) is {best}'s, {doc[best]['gt']['mpjpe']:.1f} mm" if best else "")
        + f". Wall time {fmt(doc.get('wall_time_s'), 0)} s.", "lead"))
    cmds = [(what, c) for what, c in (doc.get("commands") or {}).items()]
    page.add("Commands", *commands_section(d, [*[(f"the {what} part alone", c) for what, c in cmds],
                                               ("rebuild this report", f"posecurator report {d}")]))

    # ---- results
    rows = []
    for m in methods:
        h = history_of(runs.get(m))
        for setting in ("gt", "noisy"):
            r = doc[m].get(setting)
            if r:
                rows.append([m, setting, _r1(r["mpjpe"]), _r1(r["pa_mpjpe"]), _r1(100 * r["pck3d"]), _r1(100 * r["auc"]),
                             _r1(h.get("best_val_mpjpe")) if h else None, h.get("steps") if h else None])
    blocks = [table(["lifter", "2D", "MPJPE (mm)", "PA-MPJPE (mm)", "PCK3D@150 (%)", "AUC (%)", "val. MPJPE (mm)", "steps"], rows,
                    caption="On the held-out test activities through the fixed evaluation rig (GT and 5 px noisy 2D). val. "
                            "MPJPE: the best validation MPJPE each lifter was chosen by (validation clips cut from the "
                            "training clips; ADD and vae_hard33 cut their own the same way).")]
    what = {"baseline": "the lifter on the training clips",
            "add": "ADD: its reference lifter (the baseline's twin: same data, split and seed) fine-tuned on the training "
                   "clips + the distilled augmentation (add/); steps: the fine-tuning's, after the reference's",
            "vae_hard33": "VAE-HM: trained on the VAE-hardest third of the training poses each epoch (hard:0.33 with the "
                          "scores of difficulty/), as posecurator train --sampler does: a third of the poses per epoch, so "
                          "about a third of the baseline's steps (posecurator vae-bench gives every method equal steps)"}
    blocks.append(table(["lifter", "what", "run folder"], [[m, what.get(m, ""), str(runs.get(m, ""))] for m in methods]))
    ps = doc.get("posesyn")
    if isinstance(ps, dict) and ps.get("mpjpe"):
        m, pa = ps["mpjpe"], ps.get("pa_mpjpe") or {}
        ps_dir = d / (doc.get("parts") or {}).get("posesyn", "posesyn")
        rel = os.path.relpath(ps_dir / "summary.json", d)
        blocks.append(table(["PoseSyn", "MPJPE before (mm)", "MPJPE after (mm)", "MPJPE control (mm)", "PA-MPJPE after (mm)",
                             "synthetic pairs kept", "run folder"],
                            [[esc(f"{ps.get('mode', 'ft')}, motion model {ps.get('motion_preset', '?')}"), _r1(m.get("before")),
                              _r1(m.get("after")), _r1(m.get("control_real_only")), _r1(pa.get("after")),
                              esc(f"{fmt(ps.get('kept'))} of {fmt(ps.get('synthesized_pairs'))}"),
                              link(rel, rel) if (ps_dir / "summary.json").is_file() else esc(str(ps_dir))]], raw=True,
                            caption="PoseSyn (stage 2, small preset): the baseline lifter fine-tuned on the training clips + "
                                    "the synthetic poses that pass the filter, from a tiny motion model on the training clips "
                                    f"and the {fmt(ps.get('top'))} hardest test frames seen through random cameras; control: the "
                                    "same fine-tuning on the real poses alone. Test clips, GT 2D."))
    page.add("Results", *blocks)
    page.add("Data", data_table([("training clips", train_h), ("test clips", test_h)]))

    # ---- per activity / joint / bin
    blocks = []
    acts = sorted({a for m in methods for a in doc[m]["gt"].get("per_activity", {})})
    if acts:
        groups = {m: np.array([doc[m]["gt"]["per_activity"].get(a, {}).get("mpjpe", np.nan) for a in acts]) for m in methods}
        png = page.draw(plots.grouped_bars, acts, groups, ylabel="MPJPE (mm)", title="test MPJPE per activity (GT 2D)")
        blocks.append(figure(png, "Test MPJPE per held-out activity, GT 2D, one bar per lifter (lower is better)."))
        blocks.append(table(["activity", *methods], [[a, *[_r1(groups[m][i]) for m in methods]] for i, a in enumerate(acts)]))
    ready = {m: r for m, r in runs.items() if m in methods and (Path(r) / "best.safetensors").is_file()}
    if ready and (d / "test.pcs").is_dir():
        from posecurator.poseset import PoseSet

        err = lifter_errors(ready, PoseSet.load(d / "test.pcs"))
        png = page.draw(plots.grouped_bars, err["joints"], {m: np.asarray(v) for m, v in err["per_joint"].items()},
                        ylabel="mean joint error (mm)", title="test error per joint (GT 2D)")
        blocks.append(figure(png, "Mean error of each joint on the test clips (GT 2D), one bar per lifter; the pelvis is the "
                                  "root (0 mm by construction)."))
    pb = doc.get("per_bin")
    if pb and pb.get("mpjpe"):
        k = int(pb.get("k", len(next(iter(pb["mpjpe"].values())))))
        png = page.draw(plots.per_bin_curve, np.arange(k), {m: np.asarray(v, dtype=np.float64) for m, v in pb["mpjpe"].items()},
                        xlabel="difficulty bin of the training set's VAE (0 = easiest)", ylabel="test MPJPE (mm)",
                        title="test MPJPE per difficulty bin (GT 2D, Fig. 4)")
        blocks.append(figure(png, "Test poses scored by the difficulty VAE trained on the training clips and put into the "
                                  "training set's bins; MPJPE of each lifter per bin (empty bins leave gaps). Test poses per "
                                  f"bin: {pb.get('counts')}."))
    page.add("Error per activity, joint and difficulty bin", *blocks)

    hist = {}
    for m, r in runs.items():
        h = history_of(r)
        if h:
            hist[m] = h
    if hist:
        # the ADD lifter is fine-tuned from its reference, the baseline's twin: drawn after the baseline's epochs
        ref = history_of(d / "add" / "reference")
        offsets = {"add": len(ref["epochs"])} if "add" in hist and ref else {}
        png = page.draw(plots.training_curves, hist, offsets=offsets, title="the demo's lifters")
        page.add("Training curves", figure(png, "Training loss and validation MPJPE per epoch of every lifter of the demo; "
                                                + ("the ADD lifter is fine-tuned from its reference (the baseline's twin), "
                                                   "so it is drawn after the reference's epochs; " if offsets else "")
                                                + "stars: best epochs."), history_table(hist))

    # ---- the parts
    parts = doc.get("parts") or {}
    for name, title, figs in (
            ("add", "Part: ADD", [("plots/pca_map.png", "PCA map: original (blue, on top), kept (green), dropped (red)."),
                                  ("plots/score_histogram.png", "ADD score of the kept vs dropped generated poses.")]),
            ("difficulty", "Part: VAE difficulty", [("heatmap.png", "EvalPose between difficulty bins (Fig. 3(b))."),
                                                    ("histogram.png", "VAE difficulty scores."),
                                                    ("bins_gallery.png", "The median pose of each bin, easy to hard.")]),
            ("hard", "Part: hard samples (PoseSyn error extraction)",
             [("plots/error_histogram.png", "Reprojection error of the baseline lifter on the test clips seen through random "
                                            "cameras: easy / middle / hard."),
              ("plots/error_2d_vs_3d.png", "2D score against the true 3D error.")])):
        folder = d / parts.get(name, name)
        if not folder.is_dir():
            continue
        rel = os.path.relpath(folder / REPORT_FILE, d)
        text = []
        if (folder / REPORT_FILE).is_file():
            text.append(f"<p>The full report of this part: {link(rel, rel)} (relative link; every part's report is "
                        "self-contained too).</p>")
        s = _read_json(folder / "summary.json") or {}
        if name == "add":
            sz = s.get("sizes", {})
            text.append(para(f"{fmt(sz.get('train_part'))} training poses + {fmt(sz.get('distilled'))} distilled "
                             f"({fmt(sz.get('dropped_by_score'))} generated poses dropped by the ADD score)."))
        elif name == "hard":
            c = s.get("check_against_3d") or {}
            if "spearman" in c:
                text.append(para(f"{fmt(s.get('n_scored'))} test frames scored; the 2D score against the true 3D error: "
                                 f"Spearman {c['spearman']:.2f}, precision of the top {c.get('k')} "
                                 f"{c.get('precision_at_k', float('nan')):.2f} (chance {c.get('chance_precision', float('nan')):.2f})."))
        elif name == "difficulty":
            q = (s.get("report") or {}).get("score_quantiles", {})
            text.append(para(f"{fmt(s.get('n_poses'))} training poses scored by a pose VAE, {fmt(s.get('k'))} bins; median "
                             f"score {fmt(q.get('q50'))}. Its scores.npz drives the vae_hard33 lifter."))
        shown = [figure(_png(folder / f), cap) for f, cap in figs if (folder / f).is_file()]
        page.add(title, *text, figrow(*shown[:2]), *shown[2:])

    cfg = {k: doc.get(k) for k in ("preset", "seed", "test_activities") if k in doc}
    lcfg = _read_json(d / "lifter" / "config.json") or {}
    page.add("Configuration", cols(
        (kv_table(cfg, caption="The demo's options") if cfg else "")
        + (kv_table(doc.get("difficulty_vae") or {}, caption="The difficulty part's VAE options (the rest: defaults)")
           if doc.get("difficulty_vae") else ""),
        kv_table(lcfg.get("train", {}), caption="The baseline lifter's TrainConfig (ADD and vae_hard33 use the same preset)")))
    page.add("Files", files_section(d))


# ============================================================================ entry point
BUILDERS = {"add": _add_report, "difficulty": _difficulty_report, "hard": _hard_report, "lifter": _lifter_report,
            "bench": _bench_report, "vae-bench": _bench_report, "demo": _demo_report}
TITLES = {"add": "ADD run", "difficulty": "Difficulty run", "hard": "Hard samples", "lifter": "Lifter run",
          "bench": "Benchmark", "vae-bench": "VAE sampling experiment", "demo": "posecurator demo"}


def write_report(run_dir, *, kind: str | None = None, output=None, test=None, redraw: bool = False,
                 log: Callable[[str], None] | None = None) -> Path:
    """Write the HTML report of the run folder ``run_dir`` (``run_dir/report.html``, or
    ``output``) atomically and return its path.

    ``kind``: see :data:`KINDS` (default :func:`detect_kind`). ``test``: a 3D test set (path or
    PoseSet) the run's lifters are measured on per activity and per joint (ADD and lifter runs;
    without it an ADD run uses its own validation clips). ``redraw``: draw the run's PNG plots
    again from their plot data before embedding them (missing ones are always drawn).
    """
    run_dir = Path(run_dir)
    kind = detect_kind(run_dir) if kind is None else kind
    if kind not in BUILDERS:
        raise ValueError(f"unknown report kind {kind!r}; known: {', '.join(BUILDERS)}")
    t0 = time.perf_counter()
    page = Page(f"{TITLES[kind]}: {run_dir.resolve().name}", kind, run_dir)
    try:
        BUILDERS[kind](page, run_dir, test=test, redraw=redraw, log=log)
        text = page.html()
    finally:
        page.close()
    out = Path(output) if output is not None else run_dir / REPORT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if log:
        log(f"[report] {kind} report -> {out} ({len(text) / 1e6:.1f} MB, {time.perf_counter() - t0:.1f} s)")
    return out
