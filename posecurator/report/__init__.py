"""Reports: plots (PNG) of what the pipelines did, and one self-contained HTML report per run
(:func:`write_report`). The top layer: nothing below imports it (only the CLI does)."""

from posecurator.report.html import detect_kind, write_report
from posecurator.report.plots import (
    draw_skeleton,
    grouped_bars,
    heatmap,
    pca_map,
    per_bin_curve,
    render_add_plots,
    score_histogram,
    skeleton_gallery,
    stacked_bars,
    training_curves,
)

__all__ = ["draw_skeleton", "skeleton_gallery", "score_histogram", "pca_map", "heatmap", "per_bin_curve",
           "stacked_bars", "grouped_bars", "training_curves", "render_add_plots", "write_report", "detect_kind"]
