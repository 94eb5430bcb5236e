"""Reports: plots (PNG) of what the pipelines did. The top layer: nothing below imports it."""

from posecurator.report.plots import (
    draw_skeleton,
    heatmap,
    pca_map,
    per_bin_curve,
    render_add_plots,
    score_histogram,
    skeleton_gallery,
)

__all__ = ["draw_skeleton", "skeleton_gallery", "score_histogram", "pca_map", "heatmap", "per_bin_curve",
           "render_add_plots"]
