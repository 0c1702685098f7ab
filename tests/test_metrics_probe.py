import numpy as np
import pytest
import torch

from dlc.metrics.probe import CodeProbe, FeatureProbe, held_out_rows, probe_codes, probe_features

FIT = {"lrs": [0.05], "val_fraction": 0.1, "epochs": 20, "batch_size": 64, "weight_decay": 0.0,
       "seed": 0}


def test_embedding_bag_is_the_one_hot_linear_map_of_every_head():
    torch.manual_seed(0)
    probe = CodeProbe(length=4, vocab=5, classes=3, heads=2)
    for weight, bias in zip(probe.weight, probe.bias):
        torch.nn.init.normal_(weight)
        torch.nn.init.normal_(bias)
    codes = torch.randint(0, 5, (7, 4))
    one_hot = torch.nn.functional.one_hot(codes, 5).flatten(1).float()  # (7, L*V)
    logits = probe(codes)
    assert logits.shape == (7, 2, 3)
    for head in range(2):
        expected = one_hot @ probe.weight[head] + probe.bias[head]
        assert torch.allclose(logits[:, head], expected, atol=1e-6)


def test_feature_heads_standardise_then_apply_their_own_weights():
    mean, std = torch.tensor([1.0, -2.0]), torch.tensor([2.0, 0.5])
    probe = FeatureProbe(mean, std, classes=2, heads=2)
    with torch.no_grad():
        probe.weight[1].copy_(torch.eye(2))
    logits = probe(torch.tensor([[3.0, -1.0]]))
    assert torch.equal(logits[0, 0], torch.zeros(2))
    assert torch.allclose(logits[0, 1], torch.tensor([1.0, 2.0]))


def test_probe_reads_a_planted_token():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 8, (600, 6)).astype(np.uint8)
    labels = (codes[:, 2] % 3).astype(np.int64)  # the class is a function of one position
    result = probe_codes(codes[:400], labels[:400], codes[400:], labels[400:], 8, 3, **FIT)
    assert result.accuracy == 1.0 and result.lr == 0.05
    shuffled = rng.permutation(labels)            # and nothing is readable from noise
    chance = probe_codes(codes[:400], shuffled[:400], codes[400:], shuffled[400:], 8, 3, **FIT)
    assert chance.accuracy < 0.5
    assert np.array_equal(result.predicted, labels[400:])            # the predictions behind
    assert (chance.predicted == shuffled[400:]).mean() == pytest.approx(chance.accuracy)


def test_the_lr_is_chosen_on_held_out_training_rows():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 8, (600, 6)).astype(np.uint8)
    labels = (codes[:, 2] % 3).astype(np.int64)
    grid = {**FIT, "lrs": [1e-7, 0.05]}           # the first lr cannot move the zero init
    result = probe_codes(codes[:400], labels[:400], codes[400:], labels[400:], 8, 3, **grid)
    assert result.lr == 0.05 and result.accuracy == 1.0
    assert result.validation[0.05] == 1.0 and result.validation[1e-7] < 0.5


def test_held_out_rows_are_seeded_and_sized():
    rows = held_out_rows(1000, [0.1, 0.3], 0.1, seed=3)
    assert rows.sum() == 100 and torch.equal(rows, held_out_rows(1000, [0.1, 0.3], 0.1, seed=3))
    assert not held_out_rows(1000, [0.1], 0.1, seed=3).any()  # one lr: nothing to choose


def test_feature_probe_on_separable_data():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 800)
    features = rng.normal(size=(800, 10)) * 0.3 + 100.0  # a large offset: standardised first
    features[np.arange(800), labels] += 2.0
    result = probe_features(features[:600], labels[:600], features[600:], labels[600:], 4,
                            **FIT)
    assert result.accuracy > 0.95
