import json

import jsonschema
import pytest
import yaml

from dlc import config

from .conftest import ROOT


def test_params_yaml_is_valid_and_complete():
    cfg = config.load(ROOT / "params.yaml")
    assert cfg.preset == "tiny"
    assert cfg.active.data.kind == "shapes"
    assert set(cfg.presets) == {"tiny", "imagenet"}


def test_preset_switch_is_one_override():
    cfg = config.load(ROOT / "params.yaml", preset="imagenet")
    assert cfg.active.data.kind == "folder"
    assert cfg.active.data.folder.resolution == 256


def test_schema_file_is_generated_from_config():
    on_disk = (ROOT / config.SCHEMA_PATH).read_text()
    assert on_disk == config.json_schema_text(), "run `dlc schema`"


def test_configuration_reference_is_generated_from_config():
    on_disk = (ROOT / config.REFERENCE_PATH).read_text()
    assert on_disk == config.reference_markdown(), "run `dlc schema`"
    text = config.reference_markdown()
    assert "| `presets.<name>.dit.repa` | mapping or null |" in text
    assert "| `presets.<name>.dit.repa.weight` | number > 0 |" in text
    assert "| `toy.train.ema_decay` | number in [0, 1] |" in text
    assert "| `presets.<name>.resources.<rule>.gpu` | integer >= 0 |" in text


def test_schema_accepts_params_and_rejects_what_config_rejects(micro):
    schema = json.loads(config.json_schema_text())
    jsonschema.validate(yaml.safe_load((ROOT / "params.yaml").read_text()), schema)
    micro["toy"]["std"] = -1.0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(micro, schema)


@pytest.mark.parametrize("edit, message", [
    (lambda p: p["toy"].update(typo=1), "toy: unknown key(s) ['typo']"),
    (lambda p: p["toy"]["model"].pop("width"), "toy.model.width: missing"),
    (lambda p: p["toy"]["train"].update(steps="many"), "toy.train.steps: expected an integer"),
    (lambda p: p["toy"]["train"].update(steps=True), "toy.train.steps: expected an integer"),
    (lambda p: p["toy"].update(std=0.0), "toy.std: 0.0 must be greater than 0"),
    (lambda p: p["toy"].update(modes=[1, 5]), "toy.modes: 5 is not a perfect square"),
    (lambda p: p["toy"].update(scatter_modes=[9]), "toy.scatter_modes: [9] not in toy.modes"),
    (lambda p: p["toy"].update(variants=["oracle", "magic"]), "toy.variants[1]: 'magic'"),
    (lambda p: p["toy"]["train"].update(ema_decay=1.5), "toy.train.ema_decay: 1.5 is above"),
    (lambda p: p.update(preset="huge"), "preset: 'huge' is not one of"),
    (lambda p: p["presets"]["tiny"]["data"]["shapes"].update(holdout=[["blob", "red"]]),
     "presets.tiny.data.shapes.holdout: ['blob', 'red'] is not a [shape, colour] pair"),
    (lambda p: p["presets"]["tiny"]["data"].update(shapes=None),
     "presets.tiny.data.shapes: required when"),
    (lambda p: p["presets"]["tiny"]["data"]["shapes"].update(resolution=48),
     "presets.tiny.data.shapes.resolution: 48 is not one of [32, 64]"),
    (lambda p: p["presets"]["tiny"]["sem"]["loss"].update(dino_weight=0, ibot_weight=0,
                                                          nce_weight=0),
     "presets.tiny.sem.loss: dino_weight, ibot_weight and nce_weight are all 0"),
    (lambda p: p["presets"]["tiny"]["text_study"]["paraphrases"][0]["asks"].update(mood="calm"),
     "presets.tiny.text_study.paraphrases[0].asks: ['mood'] not among judge.attributes"),
    (lambda p: p["presets"]["tiny"]["text_pretrained"]["train"].update(split="test"),
     "presets.tiny.text_pretrained: train.split and captions must be those of text"),
    (lambda p: p["presets"]["tiny"]["text"]["train"].update(pretrained_lr=1e-4),
     "presets.tiny.text.train.pretrained_lr: only for the transformers back end"),
])
def test_bad_params_name_the_key(micro, edit, message):
    edit(micro)
    with pytest.raises(config.ConfigError) as error:
        config.parse(micro, "params.yaml")
    assert str(error.value).startswith("params.yaml: ")
    assert message in str(error.value)


def test_load_names_the_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(config.ConfigError, match="nope.yaml: parameter file not found"):
        config.load(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("toy: [unclosed")
    with pytest.raises(config.ConfigError, match="broken.yaml: not valid YAML"):
        config.load(broken)
