"""Reusable report plots (PNG files), drawn with Matplotlib's Agg renderer.

Every function writes one PNG atomically (temporary name, then renamed) and returns its path.
Figures are built with :class:`matplotlib.figure.Figure` directly, never through ``pyplot``, so
no global backend or figure state is touched (safe in tests, servers and worker processes).

* :func:`draw_skeleton` one 3D (or 2D) pose as line segments on an existing axes;
* :func:`skeleton_gallery` a grid of poses with titles (rows can be groups: original / kept / dropped);
* :func:`score_histogram` score distributions of named groups (e.g. kept vs dropped);
* :func:`pca_map` 2-d points of named groups (e.g. the PCA map of original / kept / dropped);
* :func:`heatmap` a matrix with optional labels and cell annotations;
* :func:`per_bin_curve` one or more curves over bins, with optional error bands;
* renderers of the pipelines' plot data (the pipelines write arrays, the CLI passes these):
  :func:`render_add_plots`, :func:`render_difficulty_plots`, :func:`render_vae_experiment_plots`.

This is the report layer: nothing below it (io ... pipelines) imports it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from posecurator.skeleton import Layout, get_layout

# Colours of the left / right / central parts of a skeleton and of groups in plots.
LEFT_COLOR, RIGHT_COLOR, CENTER_COLOR = "#1f77b4", "#d62728", "#333333"
GROUP_COLORS = ("#7f7f7f", "#2ca02c", "#d62728", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")
# ADD maps (PCA, t-SNE): group -> (colour, marker size, alpha); the originals are drawn on top
ADD_GROUP_STYLE = {"original": ("#1f3f99", 5.0, 0.85), "kept": ("#2ca02c", 7.0, 0.5), "dropped": ("#d62728", 7.0, 0.5)}


def _figure(width: float, height: float, dpi: int = 100):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=dpi)


def _save(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` to ``path`` (PNG) via a temporary file, so a failed write leaves nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    try:
        fig.savefig(tmp, format="png", bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _layout(layout) -> Layout:
    return layout if isinstance(layout, Layout) else get_layout(layout)


def _side_of(layout: Layout, joint: int) -> str:
    name = layout.joints[joint]
    return "left" if name.startswith("left") else "right" if name.startswith("right") else "center"


def bone_colors(layout) -> list[str]:
    """Colour of every bone (parent -> child, in :attr:`Layout.bones` order): left blue, right red."""
    layout = _layout(layout)
    colors = {"left": LEFT_COLOR, "right": RIGHT_COLOR, "center": CENTER_COLOR}
    return [colors[_side_of(layout, int(child))] for _, child in layout.bones]


def draw_skeleton(ax, pose: np.ndarray, layout="h36m17", *, color: str | None = None, linewidth: float = 2.0,
                  joints: bool = True, equal: bool = True, floor: bool = True) -> None:
    """Draw one pose as line segments on ``ax``.

    ``pose`` (J, 3) mm in the world frame (Z up) on a 3D axes (``projection="3d"``), or (J, 2)
    on a 2D axes (image coordinates: y is flipped so the image is upright). Bones of the left
    side are blue, right red, centre dark grey (or all ``color``). ``equal`` gives the three
    axes one scale around the pose; ``floor`` draws the Z = 0 line of a 3D pose's ground.
    """
    layout = _layout(layout)
    pose = np.asarray(pose, dtype=np.float64)
    if pose.ndim != 2 or pose.shape[0] != layout.n_joints or pose.shape[1] not in (2, 3):
        raise ValueError(f"pose must be ({layout.n_joints}, 2 or 3) for layout {layout.name}, got {pose.shape}")
    colors = bone_colors(layout) if color is None else [color] * len(layout.bones)
    three_d = pose.shape[1] == 3
    for (a, b), c in zip(layout.bones, colors):
        seg = pose[[a, b]]
        if three_d:
            ax.plot(seg[:, 0], seg[:, 1], seg[:, 2], color=c, linewidth=linewidth)
        else:
            ax.plot(seg[:, 0], seg[:, 1], color=c, linewidth=linewidth)
    if joints:
        if three_d:
            ax.scatter(pose[:, 0], pose[:, 1], pose[:, 2], s=6, color=CENTER_COLOR, depthshade=False)
        else:
            ax.scatter(pose[:, 0], pose[:, 1], s=6, color=CENTER_COLOR)
    if three_d:
        centre = (pose.max(axis=0) + pose.min(axis=0)) / 2
        half = max(float(np.ptp(pose, axis=0).max()) / 2, 1.0) * 1.1
        if equal:
            ax.set_xlim(centre[0] - half, centre[0] + half)
            ax.set_ylim(centre[1] - half, centre[1] + half)
            ax.set_zlim(min(centre[2] - half, 0.0 if floor else centre[2] - half), centre[2] + half)
            try:
                ax.set_box_aspect((1, 1, 1))
            except (AttributeError, TypeError):  # very old Matplotlib
                pass
        if floor:
            ax.plot([centre[0] - half, centre[0] + half], [centre[1], centre[1]], [0.0, 0.0], color="#bbbbbb", linewidth=1)
        ax.set_xticklabels([])
        ax.set_yticklabels([])
        ax.set_zticklabels([])
    else:
        if equal:
            ax.set_aspect("equal", adjustable="datalim")
        if not ax.yaxis_inverted():
            ax.invert_yaxis()
        ax.set_xticks([])
        ax.set_yticks([])


def skeleton_gallery(poses: np.ndarray, titles: Sequence[str] | None, layout, path: str | os.PathLike, *,
                     ncols: int = 6, row_labels: Sequence[str] | None = None, colors: Sequence[str | None] | None = None,
                     suptitle: str | None = None, elev: float = 15.0, azim: float = -70.0, cell_size: float = 2.2) -> Path:
    """A grid of skeleton line drawings, one pose per cell, ``ncols`` per row.

    ``poses`` (K, J, 3) mm world frame (or (K, J, 2)); ``titles`` one short string per pose (or
    None); ``row_labels`` a label per row drawn at its left (e.g. "kept", "dropped");
    ``colors`` a colour per pose (None = left/right colouring). 3D poses are viewed from
    elevation ``elev`` and azimuth ``azim`` degrees.
    """
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3:
        raise ValueError(f"poses must be (K, J, 2 or 3), got {poses.shape}")
    k = len(poses)
    if titles is not None and len(titles) != k:
        raise ValueError(f"{len(titles)} titles for {k} poses")
    ncols = max(1, min(ncols, k)) if k else 1
    nrows = max(1, -(-k // ncols))
    fig = _figure(cell_size * ncols + (0.6 if row_labels else 0.0), cell_size * nrows + (0.4 if suptitle else 0.0))
    three_d = poses.shape[-1] == 3
    for i in range(nrows * ncols):
        if i >= k:
            continue
        ax = fig.add_subplot(nrows, ncols, i + 1, projection="3d" if three_d else None)
        draw_skeleton(ax, poses[i], layout, color=None if colors is None else colors[i], linewidth=1.6)
        if three_d:
            ax.view_init(elev=elev, azim=azim)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=8)
        if row_labels and i % ncols == 0 and i // ncols < len(row_labels):
            label = str(row_labels[i // ncols])
            if three_d:
                ax.text2D(-0.15, 0.5, label, transform=ax.transAxes, rotation=90, va="center", ha="center",
                          fontsize=10, fontweight="bold")
            else:
                ax.set_ylabel(label, fontsize=10, fontweight="bold")
    if suptitle:
        fig.suptitle(suptitle)
    return _save(fig, path)


def score_histogram(groups: Mapping[str, np.ndarray], path: str | os.PathLike, *, bins: int = 50,
                    title: str | None = None, xlabel: str = "score", colors: Sequence[str] | None = None,
                    log: bool = False) -> Path:
    """Overlaid histograms of named score groups (e.g. ``{"kept": s_kept, "dropped": s_drop}``)
    on common bin edges; non-finite scores are left out (their count goes in the legend)."""
    fig = _figure(6.0, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    finite = {name: np.asarray(v, dtype=np.float64)[np.isfinite(np.asarray(v, dtype=np.float64))] for name, v in groups.items()}
    allv = np.concatenate([v for v in finite.values() if len(v)]) if any(len(v) for v in finite.values()) else np.zeros(1)
    lo, hi = float(allv.min()), float(allv.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    for i, (name, v) in enumerate(finite.items()):
        n_bad = len(np.asarray(groups[name])) - len(v)
        label = f"{name} ({len(v)}" + (f", {n_bad} non-finite" if n_bad else "") + ")"
        c = (colors[i] if colors is not None else GROUP_COLORS[(i + 1) % len(GROUP_COLORS)])
        ax.hist(v, bins=edges, alpha=0.55, color=c, label=label, log=log)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("poses")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def pca_map(groups: Mapping[str, np.ndarray], path: str | os.PathLike, *, title: str | None = None,
            max_points: int = 5000, seed: int = 0, colors: Sequence[str] | None = None, sizes: Sequence[float] | None = None,
            xlabel: str = "PC 1", ylabel: str = "PC 2", density=None, on_top: Sequence[str] = (),
            alphas: Sequence[float] | None = None) -> Path:
    """Scatter of named groups of 2-d points (N_g, 2), drawn in the given order (later on top),
    except that the groups named in ``on_top`` are drawn last (e.g. the original poses, which
    would otherwise hide under the generated ones); the legend keeps the given order.

    At most ``max_points`` per group are drawn (a seeded random subset; the legend gives the
    full count). ``density`` optionally a callable (M, 2) -> (M,) log density drawn as contours
    under the points (e.g. the ADD reference mixture). Also used for t-SNE maps.
    """
    fig = _figure(5.6, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    rng = np.random.default_rng(seed)
    pts = {name: np.asarray(v, dtype=np.float64).reshape(-1, 2) for name, v in groups.items()}
    if density is not None and any(len(v) for v in pts.values()):
        allp = np.concatenate([v for v in pts.values() if len(v)])
        lo, hi = allp.min(axis=0), allp.max(axis=0)
        pad = (hi - lo) * 0.05 + 1e-9
        gx, gy = np.meshgrid(np.linspace(lo[0] - pad[0], hi[0] + pad[0], 120), np.linspace(lo[1] - pad[1], hi[1] + pad[1], 120))
        z = np.asarray(density(np.stack([gx.ravel(), gy.ravel()], axis=1)), dtype=np.float64).reshape(gx.shape)
        ax.contour(gx, gy, z, levels=10, colors="#bbbbbb", linewidths=0.6, zorder=0)
    names = list(pts)
    handles = {}
    top = [n for n in names if n in set(on_top)]
    for rank, name in enumerate([n for n in names if n not in set(on_top)] + top):
        i = names.index(name)
        v = pts[name]
        shown = v[rng.choice(len(v), max_points, replace=False)] if len(v) > max_points else v
        c = colors[i] if colors is not None else GROUP_COLORS[i % len(GROUP_COLORS)]
        s = sizes[i] if sizes is not None else 4.0
        a = alphas[i] if alphas is not None else 0.6
        handles[name] = ax.scatter(shown[:, 0], shown[:, 1], s=s, color=c, alpha=a, linewidths=0,
                                   label=f"{name} ({len(v)})" + (" - drawn on top" if name in top and len(names) > 1 else ""),
                                   zorder=2 + rank)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if handles:
        # below the axes: inside, it would cover points
        ax.legend([handles[n] for n in names], [handles[n].get_label() for n in names], fontsize=8, markerscale=3,
                  loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=min(len(names), 3), frameon=False)
    return _save(fig, path)


def heatmap(matrix: np.ndarray, path: str | os.PathLike, *, xlabels: Sequence[str] | None = None,
            ylabels: Sequence[str] | None = None, title: str | None = None, xlabel: str | None = None,
            ylabel: str | None = None, cmap: str = "viridis", colorbar: str | None = None, annotate: bool | None = None,
            fmt: str = "{:.2f}", vmin: float | None = None, vmax: float | None = None) -> Path:
    """A (R, C) matrix as coloured cells (row 0 at the top). ``annotate`` writes each value in its
    cell (default: when the matrix has at most 15 x 15 cells); NaN cells stay blank."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"matrix must be 2-d, got {m.shape}")
    r, c = m.shape
    fig = _figure(max(3.5, 0.45 * c + 2.0), max(3.0, 0.4 * r + 1.5))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    cb = fig.colorbar(im, ax=ax)
    if colorbar:
        cb.set_label(colorbar)
    if xlabels is not None:
        ax.set_xticks(range(c))
        ax.set_xticklabels([str(x) for x in xlabels], rotation=90 if c > 8 else 0, fontsize=7)
    if ylabels is not None:
        ax.set_yticks(range(r))
        ax.set_yticklabels([str(y) for y in ylabels], fontsize=7)
    _integer_ticks(ax, x=xlabels is None, y=ylabels is None)
    if annotate is None:
        annotate = r <= 15 and c <= 15
    if annotate and np.isfinite(m).any():
        mid = np.nanmean(m)
        for i in range(r):
            for j in range(c):
                if np.isfinite(m[i, j]):
                    ax.text(j, i, fmt.format(m[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if m[i, j] < mid else "black")
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def _integer_ticks(ax, *, x: bool = True, y: bool = False) -> None:
    """Only whole numbers as tick positions (bins, epochs, counts are never fractional)."""
    from matplotlib.ticker import MaxNLocator

    if x:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if y:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _bin_ticks(ax, x: np.ndarray, *, max_labels: int = 30) -> None:
    """Ticks of a bin axis: every bin when there are at most ``max_labels`` of them and they are
    whole numbers, else whole numbers only, chosen by Matplotlib."""
    x = np.asarray(x, dtype=np.float64)
    whole = len(x) > 0 and np.all(np.isfinite(x)) and np.allclose(x, np.round(x))
    if whole and len(x) <= max_labels:
        ax.set_xticks(np.round(x).astype(int))
        ax.set_xticklabels([str(int(v)) for v in np.round(x)], fontsize=7 if len(x) > 15 else 8)
    elif whole:
        _integer_ticks(ax)


def per_bin_curve(x: Sequence[float], curves: Mapping[str, np.ndarray], path: str | os.PathLike, *,
                  errors: Mapping[str, np.ndarray] | None = None, xlabel: str = "bin", ylabel: str = "value",
                  title: str | None = None, markers: bool = True, logy: bool = False,
                  colors: Mapping[str, str] | None = None) -> Path:
    """One line per named curve over the positions ``x`` (K,); ``errors`` (name -> (K,)) draws a
    +- band around a curve (e.g. the spread over seeds). NaN values leave gaps. Whole-number
    positions (bins) get whole-number ticks (every bin up to 30 bins). ``colors``: name -> colour
    (the same method keeps its colour across figures); others by position."""
    x = np.asarray(x, dtype=np.float64)
    fig = _figure(6.0, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, y) in enumerate(curves.items()):
        y = np.asarray(y, dtype=np.float64)
        if y.shape != x.shape:
            raise ValueError(f"curve {name!r} has shape {y.shape}, x has {x.shape}")
        c = (colors or {}).get(name) or GROUP_COLORS[(i + 3) % len(GROUP_COLORS)]
        ax.plot(x, y, marker="o" if markers else None, markersize=3, color=c, label=name)
        if errors is not None and name in errors:
            e = np.asarray(errors[name], dtype=np.float64)
            ax.fill_between(x, y - e, y + e, color=c, alpha=0.2, linewidth=0)
    if logy:
        ax.set_yscale("log")
    _bin_ticks(ax, x)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if len(curves) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def method_colors(names: Sequence[str]) -> dict[str, str]:
    """A fixed colour per method name (in the given order), for figures that show the same methods."""
    return {name: GROUP_COLORS[(i + 3) % len(GROUP_COLORS)] for i, name in enumerate(names)}


def stacked_bars(x: Sequence[float], stacks: Mapping[str, np.ndarray], path: str | os.PathLike, *,
                 xlabel: str = "bin", ylabel: str = "count", title: str | None = None,
                 colors: Sequence[str] | None = None) -> Path:
    """Stacked bars over the positions ``x`` (K,) (e.g. difficulty bins), one stack layer per
    named (K,) array (e.g. the poses of each activity per bin); whole-number ticks."""
    import matplotlib

    x = np.asarray(x, dtype=np.float64)
    fig = _figure(7.0, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    bottom = np.zeros(len(x))
    cmap = matplotlib.colormaps["tab20"]
    for i, (name, v) in enumerate(stacks.items()):
        v = np.nan_to_num(np.asarray(v, dtype=np.float64))
        if v.shape != x.shape:
            raise ValueError(f"stack {name!r} has shape {v.shape}, x has {x.shape}")
        c = colors[i] if colors is not None else cmap(i % 20)
        ax.bar(x, v, bottom=bottom, color=c, width=0.85, label=str(name), linewidth=0)
        bottom = bottom + v
    _bin_ticks(ax, x)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if stacks:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def grouped_bars(categories: Sequence[str], groups: Mapping[str, np.ndarray], path: str | os.PathLike, *,
                 xlabel: str = "", ylabel: str = "value", title: str | None = None,
                 colors: Sequence[str] | None = None) -> Path:
    """Side-by-side bars: one bar per group (e.g. "reference", "final") for every category (e.g.
    activities, joints); categories on the x axis, labels turned when there are many."""
    cats = [str(c) for c in categories]
    n_g = max(1, len(groups))
    fig = _figure(max(5.0, 0.32 * len(cats) * n_g + 2.0), 3.8)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(cats))
    width = 0.8 / n_g
    for i, (name, v) in enumerate(groups.items()):
        v = np.asarray(v, dtype=np.float64)
        if v.shape != (len(cats),):
            raise ValueError(f"group {name!r} has shape {v.shape}, expected ({len(cats)},)")
        c = colors[i] if colors is not None else GROUP_COLORS[(i + 3) % len(GROUP_COLORS)]
        ax.bar(x + (i - (n_g - 1) / 2) * width, v, width=width, color=c, label=str(name), linewidth=0)
    ax.set_xticks(x)
    ax.set_xticklabels(cats, rotation=45 if max((len(c) for c in cats), default=0) * len(cats) > 60 else 0,
                       ha="right" if max((len(c) for c in cats), default=0) * len(cats) > 60 else "center", fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if len(groups) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def training_curves(histories: Mapping[str, Mapping], path: str | os.PathLike, *, title: str | None = None,
                    loss_label: str = "train loss (MPJPE, mm)", val_label: str = "validation MPJPE (mm)",
                    offsets: Mapping[str, int] | None = None) -> Path:
    """Two panels over epochs: the training loss and the validation score of each named run.

    ``histories``: name -> a lifter's ``history.json`` (``{"epochs": [{"epoch", "train_loss",
    "val_mpjpe"}, ...], "best_epoch"}``) or a dict ``{"epoch": [...], "train": [...], "val":
    [...]}`` of lists (e.g. a VAE's history). ``offsets``: name -> first epoch number on the
    axis (a fine-tuning run drawn after the run it starts from). The best epoch is marked."""
    fig = _figure(9.0, 3.4)
    ax_l, ax_v = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i, (name, h) in enumerate(histories.items()):
        if "epochs" in h:
            recs = h.get("epochs") or []
            ep = np.array([r.get("epoch", k) for k, r in enumerate(recs)], dtype=np.float64)
            loss = np.array([np.nan if r.get("train_loss") is None else r["train_loss"] for r in recs], dtype=np.float64)
            val = np.array([np.nan if r.get("val_mpjpe") is None else r["val_mpjpe"] for r in recs], dtype=np.float64)
            best = h.get("best_epoch")
        else:
            ep = np.asarray(h.get("epoch", []), dtype=np.float64)
            loss = np.asarray(h.get("train", []), dtype=np.float64)
            val = np.asarray(h.get("val", [np.nan] * len(ep)), dtype=np.float64)
            best = None
        ep = ep + (offsets or {}).get(name, 0)
        c = GROUP_COLORS[(i + 3) % len(GROUP_COLORS)]
        ax_l.plot(ep, loss, color=c, label=name, linewidth=1.4)
        if np.isfinite(val).any():
            ax_v.plot(ep, val, color=c, label=name, linewidth=1.4)
            if best is not None and 0 <= int(best) < len(val):
                ax_v.scatter([ep[int(best)]], [val[int(best)]], color=c, s=30, marker="*", zorder=5)
    for ax, label in ((ax_l, loss_label), (ax_v, val_label)):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        _integer_ticks(ax)
        ax.grid(alpha=0.3)
        if len(histories) > 1 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _mixture_log_density(V: np.ndarray, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray) -> np.ndarray:
    """log sum_k w_k N(V | mu_k, Sigma_k) of 2-d points (M, 2) (for contour lines only)."""
    from posecurator.scoring.density import mixture_log_density

    return mixture_log_density(V, weights, means, covariances)


def render_add_plots(plot_dir: str | os.PathLike) -> dict[str, Path]:
    """Draw the ADD report from ``plot_dir/plot_data.npz`` (written by
    :func:`posecurator.pipelines.add.write_plot_data`): ``score_histogram.png`` (kept vs dropped
    ADD scores), ``pca_map.png`` (original / kept / dropped in the reference PCA plane, over the
    contour lines of the reference mixture) and ``gallery.png`` (rows: original, kept, dropped,
    dropped with the highest scores). Returns {name: path}."""
    plot_dir = Path(plot_dir)
    data_path = plot_dir / "plot_data.npz"
    try:
        with np.load(data_path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        from posecurator.errors import DataError

        raise DataError(data_path, f"cannot read the ADD plot data: {e}") from None
    files = {"score_histogram": score_histogram(
        {"kept": d["score_kept"], "dropped": d["score_dropped"]}, plot_dir / "score_histogram.png",
        xlabel="ADD score (higher = dropped first)", title="ADD quality distillation")}
    groups = {name: d[f"pca_{name}"] for name in ("original", "kept", "dropped") if len(d[f"pca_{name}"])}
    style = {name: ADD_GROUP_STYLE[name] for name in groups}
    w, m, c = d["gmm_weights"], d["gmm_means"], d["gmm_covariances"]
    # the original poses are drawn last, on top: under the (more numerous) generated poses they would hide
    files["pca_map"] = pca_map(groups, plot_dir / "pca_map.png", title="PCA map of the reference distribution",
                               colors=[s[0] for s in style.values()], sizes=[s[1] for s in style.values()],
                               alphas=[s[2] for s in style.values()], on_top=("original",),
                               density=lambda v: _mixture_log_density(v, w, m, c))
    rows = [str(r) for r in d["gallery_rows"]]
    if len(d["gallery_poses"]) and rows:
        files["gallery"] = skeleton_gallery(d["gallery_poses"], [str(t) for t in d["gallery_titles"]], "h36m17",
                                            plot_dir / "gallery.png", ncols=len(d["gallery_poses"]) // len(rows),
                                            row_labels=rows, suptitle=" / ".join(rows))
    return files


def _read_plot_npz(path: Path, what: str) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        from posecurator.errors import DataError

        raise DataError(path, f"cannot read the {what} plot data: {e}") from None


def render_difficulty_plots(out_dir: str | os.PathLike) -> dict[str, Path]:
    """Draw the ``posecurator difficulty`` report of one folder from ``out_dir/plot_data.npz``
    (written by :func:`posecurator.pipelines.vae_sampling.write_difficulty_plot_data`):
    ``heatmap.png`` (Fig. 3(b): mean EvalPose between difficulty bins), ``histogram.png`` (VAE
    scores, log counts), ``gallery.png`` (the easiest and the hardest poses) and
    ``bins_gallery.png`` (the median pose of every bin, Fig. 3(a)). Returns {name: path}."""
    out = Path(out_dir)
    d = _read_plot_npz(out / "plot_data.npz", "difficulty")
    space, title, layout = str(d["space"]), str(d["title"]), str(d["layout"])
    label = f"{title}: " if title else ""
    sim = d["similarity"]
    k = len(sim)
    files = {}
    files["heatmap"] = heatmap(sim, out / "heatmap.png", xlabels=range(k), ylabels=range(k), xlabel="bin (easy -> hard)",
                               ylabel="bin (easy -> hard)", colorbar="mean EvalPose", annotate=False,
                               title=f"{label}EvalPose between difficulty bins (Fig. 3b)")
    files["histogram"] = score_histogram({f"{space} VAE score": d["scores"]}, out / "histogram.png", log=True,
                                         xlabel="reconstruction error (Eq. 2, normalised pose)",
                                         title=f"{label}pose VAE difficulty")
    n_g = max(1, len(d["gallery_poses"]) // 2)
    files["gallery"] = skeleton_gallery(d["gallery_poses"], [str(t) for t in d["gallery_titles"]], layout,
                                        out / "gallery.png", ncols=n_g, row_labels=["easiest", "hardest"],
                                        suptitle=f"{label}easiest and hardest poses (VAE score)")
    files["bins_gallery"] = skeleton_gallery(d["bins_poses"], [str(t) for t in d["bins_titles"]], layout,
                                             out / "bins_gallery.png", ncols=min(len(d["bins_poses"]), 10),
                                             suptitle=f"{label}median pose of each bin (Fig. 3a)")
    return files


def render_vae_experiment_plots(out_dir: str | os.PathLike) -> dict[str, Path]:
    """Draw the figures of ``posecurator vae-bench`` from ``out_dir/vae_plot_data.json`` (written by
    :func:`posecurator.pipelines.bench_vae.write_vae_plot_data`): ``source_heatmap.png`` (Fig.
    3(b) of the source, first seed), per setting and binning ``per_bin_mpjpe*.png`` (target MPJPE
    per difficulty bin, mean ± std over seeds, Fig. 4) and ``per_bin_delta*.png`` (each method
    minus the baseline ``vae_all``), and ``target_bins.png`` (target poses per source bin).
    Suffixes: ``_target_quantiles`` for the target's own bins, ``_noisy`` for noisy 2D. Returns
    {name: path}."""
    import json

    out = Path(out_dir)
    path = out / "vae_plot_data.json"
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        from posecurator.errors import DataError

        raise DataError(path, f"cannot read the VAE experiment plot data: {e}") from None
    k, split_name, baseline = int(d["k"]), d["split"], d.get("baseline", "vae_all")

    def arr(values) -> np.ndarray:  # JSON null (an empty bin) -> NaN
        return np.asarray(values, dtype=np.float64)

    files = {"source_heatmap": heatmap(
        arr(d["source_similarity"]), out / "source_heatmap.png", xlabels=range(k), ylabels=range(k),
        xlabel="source bin (easy -> hard)", ylabel="source bin (easy -> hard)", colorbar="mean EvalPose", annotate=False,
        title=f"{d['train_label']}: EvalPose between VAE bins (seed {d['seed']})")}
    x = np.arange(k)
    for setting in d["settings"]:
        rows = [c for c in d["curves"] if c["setting"] == setting]
        if not rows:
            continue
        for binning, what in d["binnings"].items():
            rows_b = [c for c in rows if binning in c["per_bin"]]
            if not rows_b:
                continue
            curves = {c["method"]: arr(c["per_bin"][binning]["mpjpe"]) for c in rows_b}
            errs = {c["method"]: arr(c["per_bin"][binning]["mpjpe_std"]) for c in rows_b}
            colors = method_colors(list(dict.fromkeys(c["method"] for c in d["curves"])))
            name = "" if binning == "source_edges" else f"_{binning}"
            name += "" if setting == "gt" else f"_{setting}"
            files[f"per_bin_mpjpe{name}"] = per_bin_curve(
                x, curves, out / f"per_bin_mpjpe{name}.png", errors=errs, colors=colors, xlabel=f"bin (easy -> hard): {what}",
                ylabel="target MPJPE (mm)", title=f"{split_name}, {setting} 2D: MPJPE per difficulty bin (Fig. 4)")
            ref = curves.get(baseline)
            if ref is not None and len(curves) > 1:
                files[f"per_bin_delta{name}"] = per_bin_curve(
                    x, {m: c - ref for m, c in curves.items() if m != baseline}, out / f"per_bin_delta{name}.png", colors=colors,
                    xlabel=f"bin (easy -> hard): {what}", ylabel=f"MPJPE minus {baseline} (mm)",
                    title=f"{split_name}, {setting} 2D: per-bin change against all of the source")
    files["target_bins"] = per_bin_curve(x, {"target poses": arr(d["target_counts"])}, out / "target_bins.png",
                                         xlabel="source VAE bin (easy -> hard)", ylabel="target poses (mean over seeds)",
                                         title=f"{split_name}: target poses in the source's difficulty bins")
    return files


def hard_sample_gallery(samples: Sequence[Mapping], layout, path: str | os.PathLike, *, ncols: int = 4,
                        title: str | None = None, cell_size: float = 2.8) -> Path:
    """The hardest samples of ``posecurator hard``: per cell the given 2D (left blue, right red)
    and the estimator's prediction projected back (grey, dashed), titled with the error and the
    caption (wrapped). ``samples``: dicts with ``given`` and ``reprojected`` (J, 2) px (NaN =
    unlabelled), ``error``, ``caption``, ``sample_id``."""
    import textwrap

    layout = _layout(layout)
    k = len(samples)
    ncols = max(1, min(ncols, k)) if k else 1
    nrows = max(1, -(-k // ncols))
    fig = _figure(cell_size * ncols, (cell_size + 0.7) * nrows + (0.4 if title else 0.0))
    for i, s in enumerate(samples):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        given = np.asarray(s["given"], dtype=np.float64)
        reproj = np.asarray(s["reprojected"], dtype=np.float64)
        for (a, b) in layout.bones:
            seg = reproj[[a, b]]
            ax.plot(seg[:, 0], seg[:, 1], color="#999999", linewidth=1.4, linestyle="--")
        draw_skeleton(ax, given, layout, linewidth=1.8)
        caption = "\n".join(textwrap.wrap(str(s.get("caption", "")), 38)[:3])
        ax.set_title(f"#{s.get('sample_id', '')}  error {float(s.get('error', np.nan)):.3f}\n{caption}", fontsize=6.5)
    # room for the three-line titles between rows (they overlapped the row above)
    height = fig.get_figheight()
    fig.subplots_adjust(hspace=0.5, wspace=0.15, top=1.0 - (1.1 if title else 0.6) / height)
    if title:
        fig.suptitle(title, fontsize=10, y=1.0 - 0.1 / height, va="top")
    return _save(fig, path)


def render_hard_plots(out_dir: str | os.PathLike) -> dict[str, Path]:
    """Plots of a ``posecurator hard`` output folder: the gallery of the hardest samples
    (``hardest.png``), the error distribution with the hard and easy cut-offs
    (``error_histogram.png``) and, when the input had 3D, the 2D score against the true 3D error
    (``error_2d_vs_3d.png``). Written into ``out_dir/plots``."""
    import json

    out_dir = Path(out_dir)
    plots = out_dir / "plots"
    gallery = json.loads((out_dir / "gallery.json").read_text())
    summary = json.loads((out_dir / "summary.json").read_text())
    scores = _read_plot_npz(out_dir / "scores.npz", "scores")
    made = {"hardest": hard_sample_gallery(gallery["samples"], "h36m17", plots / "hardest.png",
                                           title=f"hardest samples for {summary['estimator']} (given 2D in colour, "
                                                 "prediction reprojected in grey)")}
    error = scores["error"]
    hard_lo = (summary["selection"].get("hard_error_range") or [np.nan])[0]
    easy_hi = (summary["selection"].get("easy_error_range") or [np.nan, np.nan])[-1]
    groups = {"easy": error[np.isfinite(error) & (error <= easy_hi)],
              "middle": error[np.isfinite(error) & (error > easy_hi) & (error < hard_lo)],
              "hard": error[np.isfinite(error) & (error >= hard_lo)]}
    made["error_histogram"] = score_histogram(groups, plots / "error_histogram.png", bins=60,
                                              title="reprojection error (EEM, Eq. 1) of every scored sample",
                                              xlabel=f"error ({summary['error_unit']})",
                                              colors=(GROUP_COLORS[3], GROUP_COLORS[0], GROUP_COLORS[2]))
    e2, e3 = scores["error_2d"], scores["error_3d"]
    ok = np.isfinite(e2) & np.isfinite(e3)
    if ok.any():
        fig = _figure(5.0, 4.0)
        ax = fig.add_subplot(1, 1, 1)
        ax.scatter(e2[ok], e3[ok], s=3, alpha=0.3, color=GROUP_COLORS[3])
        check = summary.get("check_against_3d", {})
        ax.set_xlabel("2D score (fraction of the person's size)")
        ax.set_ylabel("true 3D error of the prediction (mm)")
        ax.set_title(f"Spearman {check.get('spearman', float('nan')):.2f}, precision of the top {check.get('k', '')} "
                     f"{check.get('precision_at_k', float('nan')):.2f}", fontsize=9)
        made["error_2d_vs_3d"] = _save(fig, plots / "error_2d_vs_3d.png")
    return made
