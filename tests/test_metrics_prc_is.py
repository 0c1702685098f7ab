"""Precision/recall and the Inception score: the wrappers against direct computations and
hand-made cases with known answers."""

import numpy as np
import pytest

from dlc.metrics.inception import inception_score
from dlc.metrics.prc import precision_recall


def direct_precision_recall(generated, real, k):
    """Kynkaanniemi et al. written out with numpy: a point is covered by the other set's
    manifold if it lies within some point's k-NN radius (the point itself excluded)."""
    def radii(points):
        d = np.linalg.norm(points[:, None] - points[None], axis=-1)
        return np.sort(d, axis=1)[:, k]           # column 0 is the point itself

    cross = np.linalg.norm(generated[:, None] - real[None], axis=-1)   # (G, R)
    precision = (cross <= radii(real)[None]).any(axis=1).mean()
    recall = (cross.T <= radii(generated)[None]).any(axis=1).mean()
    return precision, recall


def test_precision_recall_match_the_direct_computation():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(120, 6))
    generated = rng.normal(loc=0.7, scale=0.6, size=(90, 6))
    result = precision_recall(generated, real, neighborhood=3)
    precision, recall = direct_precision_recall(generated, real, 3)
    assert result["precision"] == pytest.approx(precision, abs=1e-6)
    assert result["recall"] == pytest.approx(recall, abs=1e-6)
    assert 0 < result["precision"] < 1 and 0 < result["recall"] < 1


def test_mode_collapse_keeps_precision_and_loses_recall():
    """Samples from one of two real clusters are plausible (precision near 1) but cover only
    half of the real data (recall about 1/2): the argument order matters."""
    rng = np.random.default_rng(1)
    real = np.concatenate([rng.normal(size=(100, 4)), rng.normal(size=(100, 4)) + 50])
    generated = rng.normal(size=(100, 4))
    result = precision_recall(generated, real)
    swapped = precision_recall(real, generated)
    assert result["precision"] >= 0.85 and 0.35 <= result["recall"] <= 0.5
    assert swapped["recall"] >= 0.85 and swapped["precision"] <= 0.5


def test_precision_recall_refuse_mismatched_features():
    with pytest.raises(ValueError, match="one D"):
        precision_recall(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(ValueError, match="more than k"):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)))


def confident_logits(labels, classes, confidence=1e4):
    return np.log(np.eye(classes)[labels] * (1 - classes / confidence) + 1 / confidence)


def test_inception_score_of_hand_made_tables():
    # Every image sure of its class, classes balanced in every split: IS = number of classes.
    labels = np.tile(np.arange(5), 40)
    assert inception_score(confident_logits(labels, 5))["inception_score"] == pytest.approx(
        5, rel=1e-2)
    # The same prediction for every image: p(y|x) = p(y), KL = 0, IS = 1.
    same = np.tile(np.log([0.1, 0.2, 0.7]), (50, 1))
    result = inception_score(same, splits=5)
    assert result["inception_score"] == pytest.approx(1.0) and result["inception_score_std"] < 1e-9


def test_inception_score_uses_consecutive_splits_without_shuffling():
    """Split 1 sees only class 0 (IS 1), split 2 classes 0..3 evenly (IS 4): mean 2.5. A
    shuffled split would mix them and give something else."""
    first = confident_logits(np.zeros(40, int), 4)
    second = confident_logits(np.tile(np.arange(4), 10), 4)
    result = inception_score(np.concatenate([first, second]), splits=2)
    assert result["inception_score"] == pytest.approx(2.5, rel=1e-2)
    assert result["inception_score_std"] == pytest.approx(1.5, rel=1e-2)


def test_inception_score_matches_the_formula_on_random_logits():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(60, 7)) * 2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scores = []
    for chunk in np.split(p, 3):
        marginal = chunk.mean(0, keepdims=True)
        scores.append(np.exp((chunk * (np.log(chunk) - np.log(marginal))).sum(1).mean()))
    assert inception_score(logits, splits=3)["inception_score"] == pytest.approx(
        np.mean(scores), rel=1e-9)
