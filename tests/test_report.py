"""One HTML report per run (posecurator.report.html, `posecurator report`): small ADD, difficulty and
hard runs made here through the CLI on a few real HDM05 clips, each report checked to be
self-contained (every image an embedded PNG, nothing fetched from outside) and opened in headless
Chromium, where every <img> must have loaded (naturalWidth > 0). Also: command.json, kind
detection, the plot fixes (original poses on top in the PCA map, whole-number bin ticks)."""

from __future__ import annotations

import base64
import json
from html import escape as html_escape
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from posecurator.cli.main import main
from posecurator.poseset import PoseSet

TINY_LIFTER = {"width": 64, "blocks": 1, "epochs": 2, "batch_size": 64, "dropout": 0.0, "val_fraction": 0.3,
               "max_epoch_pairs": 2000}
CLIPS = {"HDM_bd_squat1Reps": 2, "HDM_bd_kickLFront1Reps": 2, "HDM_bd_grabHighR": 2}
CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium", shutil.which("chromium-browser"),
                             shutil.which("google-chrome")) if p and Path(p).is_file()), None)


def run_cli(capsys, *argv):
    code = main([*map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def dataset(shared_data, tmp_path_factory) -> Path:
    from posecurator.io import import_path

    amc = shared_data / "hdm05" / "amc"
    files = [f for prefix, n in CLIPS.items() for f in sorted(amc.glob(f"{prefix}_*.amc.gz"))[:n]]
    assert len(files) == sum(CLIPS.values()), f"expected HDM05 files missing in {amc}"
    path = tmp_path_factory.mktemp("report_data") / "bd.pcs"
    PoseSet.concatenate([import_path(f, progress=False) for f in files], renumber=True).save(path)
    return path


@pytest.fixture(scope="module")
def runs(dataset, tmp_path_factory):
    """An ADD run, a difficulty run and a hard run, each made by its command (which writes the report)."""
    root = tmp_path_factory.mktemp("report_runs")
    cfg = root / "add.json"
    cfg.write_text(json.dumps({"lifter": TINY_LIFTER, "gallery": 4}))
    out = {"add": root / "add", "difficulty": root / "diff", "hard": root / "hard"}
    assert main(["add", str(dataset), "-o", str(out["add"]), "--config", str(cfg), "--seed", "1", "-q"]) == 0
    assert main(["difficulty", str(dataset), "-o", str(out["difficulty"]), "--bins", "6", "--epochs", "5", "-q"]) == 0
    assert main(["hard", str(dataset), "--estimator", str(out["add"] / "lifter"), "-o", str(out["hard"]), "--top", "40",
                 "--bottom", "20", "--no-embed", "-q"]) == 0
    return out


def _images(html: str) -> list[str]:
    return re.findall(r'<img\s[^>]*src="([^"]*)"', html)


def check_self_contained(path: Path) -> str:
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    # nothing to fetch: no scripts, external style sheets, fonts or remote URLs
    for pattern in (r"<script", r"<link\b", r"@import", r"url\(", r'src="(?!data:)', r'href="(?:https?:)?//'):
        assert not re.search(pattern, html, re.I), f"{path.name}: {pattern} found"
    images = _images(html)
    assert images, f"{path.name} has no image"
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    return html


def chromium_image_check(report: Path, tmp_path: Path) -> tuple[int, int]:
    """(images loaded with naturalWidth > 0, images) of ``report`` opened in headless Chromium: a
    copy of the page with an inline script that writes the count into the DOM, read back by --dump-dom."""
    page = tmp_path / f"check-{report.parent.name}.html"
    script = ("<script>window.addEventListener('load',function(){var im=document.images,ok=0;"
              "for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0){ok++;}}"
              "var d=document.createElement('div');d.id='imgcheck';d.textContent=ok+'/'+im.length;"
              "document.body.appendChild(d);});</script>")
    page.write_text(report.read_text(encoding="utf-8").replace("</body>", script + "</body>"), encoding="utf-8")
    profile = tmp_path / f"chromium-profile-{report.parent.name}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--dump-dom", page.as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    m = re.search(r'<div id="imgcheck">(\d+)/(\d+)</div>', res.stdout)
    assert m, f"chromium gave no image check (exit {res.returncode}): {res.stderr[-800:]}"
    return int(m.group(1)), int(m.group(2))


# ------------------------------------------------------------------------------ the three reports
@pytest.mark.parametrize("kind", ["add", "difficulty", "hard"])
def test_command_writes_a_self_contained_report(runs, kind):
    from posecurator.report.html import detect_kind

    run = runs[kind]
    assert detect_kind(run) == kind
    html = check_self_contained(run / "report.html")
    # the command line was recorded before the run and is shown
    rec = json.loads((run / "command.json").read_text())
    assert rec["command"] == kind and rec["canonical"].startswith(f"posecurator {kind} ")
    assert rec["posecurator_version"] == __import__("posecurator").__version__
    assert html_escape(rec["canonical"]) in html
    assert "command.json before it started" in html
    for section in ("Commands", "Results", "Data", "Configuration", "Files"):
        assert f">{section}</h2>" in html, section
    if kind == "add":
        for section in ("Maps of the pose pool", "Skeleton galleries", "Error per activity and per joint (before / after)",
                        "Training curves", "Distillation and scores"):
            assert f">{section}</h2>" in html, section
        assert "t-SNE" in html and "val. MPJPE (mm)" in html and "drawn last so they stay visible" in html
        assert len(_images(html)) >= 7  # histogram, PCA, t-SNE, gallery, per activity, per joint, curves
        summary = json.loads((run / "summary.json").read_text())
        ref = summary["lifters"]["reference"]["best_val_mpjpe"]
        assert f"{ref:.1f}" in html  # the validation figure the lifter was chosen by
    elif kind == "difficulty":
        for section in ("Scores and bins", "Map of the pose pool", "Skeleton galleries", "Training curves"):
            assert f">{section}</h2>" in html, section
        assert "hard:0.33" in html and len(_images(html)) >= 7
    else:
        for section in ("Error distribution", "Hardest samples"):
            assert f">{section}</h2>" in html, section
        assert "Spearman" in html


def test_reports_open_in_chromium_with_every_image_loaded(runs, tmp_path):
    if CHROMIUM is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium); the reports' images "
                    "were checked as embedded PNGs only")
    for kind, run in runs.items():
        loaded, total = chromium_image_check(run / "report.html", tmp_path)
        assert total == len(_images((run / "report.html").read_text(encoding="utf-8"))) and total > 0, kind
        assert loaded == total, f"{kind}: {total - loaded} of {total} images did not load"


def test_report_command_rebuilds_and_names_its_output(runs, tmp_path, capsys):
    out = tmp_path / "elsewhere" / "add.html"
    code, stdout, err = run_cli(capsys, "report", runs["add"], "-o", out, "-q")
    assert code == 0, err
    assert out.is_file() and str(out) in stdout
    check_self_contained(out)
    # a folder that is no run: one line, exit code 2
    code, stdout, err = run_cli(capsys, "report", tmp_path, "-q")
    assert code == 2 and "not a posecurator run folder" in err and len(err.strip().splitlines()) == 1


def test_lifter_run_report_with_a_test_set(runs, dataset, tmp_path):
    from posecurator.report.html import lifter_errors, write_report
    from posecurator.train.evaluate import evaluate_run

    run = runs["add"] / "lifter"
    path = write_report(run, test=dataset, output=tmp_path / "lifter.html")
    html = check_self_contained(path)
    assert "MPJPE per activity on the test set" in html and "Mean error of each joint on the test set" in html
    # the per-joint errors average to the MPJPE evaluate_run reports
    test = PoseSet.load(dataset)
    errs = lifter_errors({"lifter": run}, test)
    assert np.mean(errs["per_joint"]["lifter"]) == pytest.approx(evaluate_run(run, test)["mpjpe"], rel=1e-5)


def test_command_json_is_put_back_when_the_command_fails(tmp_path, capsys):
    out = tmp_path / "new"
    code, stdout, err = run_cli(capsys, "difficulty", tmp_path / "missing.pcs", "-o", out, "-q")
    assert code == 2
    assert not out.exists()  # no half-written output, not even an empty folder


# ------------------------------------------------------------------------------ the plot fixes
def _capture_figures(monkeypatch):
    from posecurator.report import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or Path(path))
    return figures


def test_pca_map_draws_the_original_poses_on_top(monkeypatch, tmp_path):
    from posecurator.report import plots

    figures = _capture_figures(monkeypatch)
    rng = np.random.default_rng(0)
    plots.pca_map({"original": rng.normal(size=(50, 2)), "kept": rng.normal(size=(80, 2)), "dropped": rng.normal(size=(30, 2))},
                  tmp_path / "pca.png", on_top=("original",))
    ax = figures[0].axes[0]
    z = {c.get_label().split(" ")[0]: c.get_zorder() for c in ax.collections}
    assert z["original"] > max(z["kept"], z["dropped"])
    # the legend keeps the given order
    assert [t.get_text().split(" ")[0] for t in ax.get_legend().get_texts()] == ["original", "kept", "dropped"]


@pytest.mark.parametrize("k", [5, 10, 25, 60])
def test_per_bin_plots_have_whole_number_ticks(monkeypatch, tmp_path, k):
    from posecurator.report import plots

    figures = _capture_figures(monkeypatch)
    x = np.arange(k)
    plots.per_bin_curve(x, {"a": np.linspace(1, 2, k), "b": np.linspace(2, 1, k)}, tmp_path / "c.png")
    plots.stacked_bars(x, {"walk": np.ones(k), "run": np.arange(k, dtype=float)}, tmp_path / "s.png")
    plots.heatmap(np.eye(k), tmp_path / "h.png")
    for fig in figures:
        ax = fig.axes[0]
        ticks = [t for t in ax.get_xticks() if -0.5 <= t <= k - 0.5]
        assert ticks and all(float(t).is_integer() for t in ticks), (k, ticks)
