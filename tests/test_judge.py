"""The attribute judge: network shapes, agreement against hand counts, training on micro data,
and the report of a preset without a judge."""

import numpy as np
import pandas as pd
import pytest
import torch

from dlc.models.judge import AttributeJudge, agreement, load_judge, predict
from dlc.stages import data, train_judge


def test_heads_and_features_have_the_right_shapes():
    judge = AttributeJudge({"shape": 8, "colour": 5}, width=4)
    out = judge(torch.zeros(3, 3, 32, 32))
    assert out["shape"].shape == (3, 8) and out["colour"].shape == (3, 5)
    assert judge.features(torch.zeros(2, 3, 64, 64)).shape == (2, judge.feature_dim) == (2, 32)


def test_agreement_counts_matches_per_attribute_and_jointly():
    predicted = pd.DataFrame({"shape": ["a", "b", "c", "a"], "colour": ["r", "g", "g", "r"]})
    reference = pd.DataFrame({"shape": ["a", "b", "x", "x"], "colour": ["r", "r", "g", "r"]})
    assert agreement(predicted, reference) == {"shape": 0.5, "colour": 0.75, "all": 0.25}


def test_training_on_micro_data_writes_weights_and_held_out_accuracy(micro_config, tmp_path):
    preset = micro_config.active
    data.write_table(preset.data, tmp_path / "images.parquet", tmp_path / "report.json")
    report = train_judge.train(preset.judge, tmp_path / "images.parquet", 32, tmp_path / "j")
    assert set(report["accuracy"]) == {*preset.judge.attributes, "all"}
    judge, loaded = load_judge(tmp_path / "j")
    assert loaded["classes"] == report["classes"]
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    predicted = predict(judge, images, report["classes"])
    assert list(predicted.columns) == preset.judge.attributes and len(predicted) == 5
    for name, names in report["classes"].items():
        assert set(predicted[name]) <= set(names)


def test_a_preset_without_a_judge_and_an_unknown_value(tmp_path):
    train_judge.write_none(tmp_path, "presets.imagenet.judge is null")
    judge, report = load_judge(tmp_path)
    assert judge is None and "null" in report["reason"]
    with pytest.raises(ValueError, match="never seen in training"):
        train_judge._targets(pd.DataFrame({"shape": ["circle", "blob"]}),
                             {"shape": ["circle", "square"]})
