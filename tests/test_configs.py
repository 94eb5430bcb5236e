"""Config files: YAML or JSON, validated before anything runs, one line naming the key; `posecurator
config NAME` prints defaults that read back to the same config."""

from __future__ import annotations

import dataclasses

import pytest

from posecurator.cli.configs import build, default_config_text, read_config_file
from posecurator.cli.main import main
from posecurator.errors import DataError
from posecurator.pipelines.add import ADDConfig
from posecurator.train.trainer import TrainConfig
from posecurator.train.vae_trainer import VAEConfig


@pytest.mark.parametrize("data, says", [
    ({"lr": "x"}, "lr: input should be a valid number, got 'x'"),
    ({"epochs": 2.5}, "epochs: input should be a valid integer, got 2.5"),
    ({"epochs": True}, "epochs: input should be a valid integer"),
    ({"lrr": 0.1}, "unknown option 'lrr'"),
    ({"camera": {"distanse": [1, 2]}}, "unknown option 'camera.distanse' (known here: azimuth"),
    ({"batch_size": 1}, "bad option value: batch_size must be >= 2"),
    ({"input_mode": "wild"}, "input_mode must be one of absolute, root_scale"),
])
def test_train_config_errors_name_the_key(data, says):
    with pytest.raises(DataError) as e:
        build(TrainConfig, data, path="cfg.yaml")
    assert str(e.value).startswith("cfg.yaml: ") and says in str(e.value) and "\n" not in str(e.value)


def test_nested_add_options_are_checked():
    for data, says in (({"lifter": {"lr": "x"}}, "lifter.lr:"), ({"evolution": {"operators": {"bogus": 1}}},
                       "unknown option 'evolution.operators.bogus' (known here: bone_length_rate"),
                       ({"prior": {"bogus": 1}}, "unknown option 'prior.bogus'"), ({"keep": 1.5}, "keep must lie in")):
        with pytest.raises(DataError, match="add.yaml") as e:
            build(ADDConfig, data, path="add.yaml")
        assert says in str(e.value)
    assert build(ADDConfig, {"keep": 0.7, "lifter": {"epochs": 3}, "evolution": {"multiple": 3}}).keep == 0.7


@pytest.mark.parametrize("name, cls", [("train", TrainConfig), ("add", ADDConfig), ("difficulty", VAEConfig)])
def test_default_config_reads_back_the_same(tmp_path, name, cls, capsys):
    assert main(["config", name]) == 0
    text = capsys.readouterr().out
    assert text == default_config_text(name) and text.count("#") > 10
    (tmp_path / "c.yaml").write_text(text)
    loaded = build(cls, read_config_file(tmp_path / "c.yaml"), path=tmp_path / "c.yaml")
    default = TrainConfig.preset("fast") if cls is TrainConfig else cls()
    assert dataclasses.asdict(loaded) | {"preset_name": ""} == dataclasses.asdict(default) | {"preset_name": ""}


def test_bad_config_on_the_command_line_is_one_line_and_writes_nothing(tmp_path, capsys, shared_data):
    (tmp_path / "bad.yaml").write_text("epochs: 2.5\n")
    (tmp_path / "broken.yaml").write_text("epochs: [1,\n")
    clip = sorted((shared_data / "hdm05" / "amc").glob("HDM_bd_squat1Reps_*"))[0]
    for cfg, says in (("bad.yaml", "epochs: input should be a valid integer"), ("broken.yaml", "not valid YAML/JSON")):
        assert main(["train", str(clip), "-o", str(tmp_path / "run"), "--config", str(tmp_path / cfg), "-q"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and says in err and cfg in err
    assert not (tmp_path / "run").exists()
    (tmp_path / "add.yaml").write_text("evolution:\n  operators:\n    bogus: 1\n")
    assert main(["add", str(clip), "-o", str(tmp_path / "add-run"), "--config", str(tmp_path / "add.yaml"), "-q"]) == 2
    assert "evolution.operators.bogus" in capsys.readouterr().err and not (tmp_path / "add-run").exists()
