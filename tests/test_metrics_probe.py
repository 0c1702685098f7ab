import numpy as np
import torch

from dlc.metrics.probe import CodeProbe, probe_codes, probe_features

FIT = {"epochs": 20, "batch_size": 64, "lr": 0.05, "weight_decay": 0.0, "seed": 0}


def test_embedding_bag_is_the_one_hot_linear_map():
    torch.manual_seed(0)
    probe = CodeProbe(length=4, vocab=5, classes=3)
    torch.nn.init.normal_(probe.weights.weight)
    codes = torch.randint(0, 5, (7, 4))
    one_hot = torch.nn.functional.one_hot(codes, 5).flatten(1).float()  # (7, L*V)
    expected = one_hot @ probe.weights.weight + probe.bias
    assert torch.allclose(probe(codes), expected, atol=1e-6)


def test_probe_reads_a_planted_token():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 8, (600, 6)).astype(np.uint8)
    labels = (codes[:, 2] % 3).astype(np.int64)  # the class is a function of one position
    accuracy = probe_codes(codes[:400], labels[:400], codes[400:], labels[400:], 8, 3, **FIT)
    assert accuracy == 1.0
    shuffled = rng.permutation(labels)            # and nothing is readable from noise
    chance = probe_codes(codes[:400], shuffled[:400], codes[400:], shuffled[400:], 8, 3, **FIT)
    assert chance < 0.5


def test_feature_probe_on_separable_data():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 800)
    features = rng.normal(size=(800, 10)) * 0.3 + 100.0  # a large offset: standardised first
    features[np.arange(800), labels] += 2.0
    accuracy = probe_features(features[:600], labels[:600], features[600:], labels[600:], 4,
                              **FIT)
    assert accuracy > 0.95
