"""Named operator presets (posecurator.augment.operators.OPERATOR_PRESETS)."""

import json
from pathlib import Path

import pytest

from posecurator.augment.operators import OPERATOR_PRESETS, OperatorConfig

REPO = Path(__file__).resolve().parents[1]


def test_default_preset_is_the_default_config():
    assert OperatorConfig.preset("default") == OperatorConfig()


def test_tagnet_preset_and_its_benchmark_config_agree():
    tagnet = OperatorConfig.preset("tagnet")
    assert tagnet.crossover_rate == 1.0 and tagnet.limb_rate == 0.3 and tagnet.limb_sigma_deg == 10.0
    assert tagnet.bone_length_rate == 0.5 and tagnet.global_rate == 0.1
    config = json.loads((REPO / "benchmarks" / "add_tagnet.json").read_text())
    assert config["evolution"]["operators"] == OPERATOR_PRESETS["tagnet"]
    assert config["evolution"]["offspring_ratio"] == 0.1
    assert OperatorConfig.preset("tagnet", limb_sigma_deg=5.0).limb_sigma_deg == 5.0


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(ValueError, match="known: default, tagnet"):
        OperatorConfig.preset("evo")
