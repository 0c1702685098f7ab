"""Frechet distance against closed forms and torch-fidelity's own function; KID's basic
behaviour; Vendi's closed forms for identity, all-ones and block kernels."""

import math

import numpy as np
import pytest
import torch

from dlc.metrics.frechet import (
    frechet_distance,
    frechet_distance_of_features,
    kernel_distance,
    statistics,
)
from dlc.metrics.vendi import renyi_exp_entropy, vendi_from_features, vendi_from_kernel


def random_spd(rng, dim):
    a = rng.normal(size=(dim, dim))
    return a @ a.T + dim * np.eye(dim)


def test_diagonal_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    a, b = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected,
                                                                              rel=1e-10)


def test_general_spd_closed_forms():
    rng = np.random.default_rng(1)
    sigma = random_spd(rng, 6)
    mu = rng.normal(size=6)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)
    # a scaled covariance c^2 S: the trace term is tr(S) (1 - c)^2
    c = 1.7
    assert frechet_distance(mu, sigma, mu + 1, c ** 2 * sigma) == pytest.approx(
        6 + np.trace(sigma) * (1 - c) ** 2, rel=1e-9)


def test_equals_torch_fidelity_on_the_same_features():
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    rng = np.random.default_rng(2)
    a = rng.normal(size=(500, 16))
    b = rng.normal(size=(400, 16)) @ rng.normal(size=(16, 16)) * 0.5 + 0.3
    theirs = fid_statistics_to_metric(fid_features_to_statistics(torch.from_numpy(a)),
                                      fid_features_to_statistics(torch.from_numpy(b)), False)
    assert frechet_distance_of_features(a, b) == pytest.approx(
        theirs["frechet_inception_distance"], rel=1e-8)
    # fewer samples than dimensions: singular covariances, still the same number
    a, b = rng.normal(size=(5, 10)), rng.normal(size=(6, 10))
    theirs = fid_statistics_to_metric(fid_features_to_statistics(torch.from_numpy(a)),
                                      fid_features_to_statistics(torch.from_numpy(b)), False)
    assert frechet_distance_of_features(a, b) == pytest.approx(
        theirs["frechet_inception_distance"], rel=1e-6)


def test_statistics_are_float64_and_errors_are_clear():
    mu, sigma = statistics(np.ones((10, 3), np.float16) + np.eye(10, 3, dtype=np.float16))
    assert mu.dtype == sigma.dtype == np.float64 and sigma.shape == (3, 3)
    with pytest.raises(ValueError, match="N >= 2"):
        statistics(np.ones((1, 3)))
    with pytest.raises(ValueError, match="different dimension"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(3)
    same = kernel_distance(rng.normal(size=(300, 8)), rng.normal(size=(300, 8)),
                           subsets=20, subset_size=100)
    shifted = kernel_distance(rng.normal(size=(300, 8)), rng.normal(size=(300, 8)) + 1,
                              subsets=20, subset_size=100)
    assert abs(same["kid"]) < 0.05 < shifted["kid"]
    assert kernel_distance(rng.normal(size=(50, 8)), rng.normal(size=(80, 8)),
                           subsets=5)["kid_subset_size"] == 50


def test_vendi_closed_forms():
    n = 12
    assert vendi_from_kernel(np.eye(n)) == pytest.approx(n)
    assert vendi_from_kernel(np.ones((n, n))) == pytest.approx(1.0)
    sizes = [6, 4, 2]                      # blocks of identical samples
    kernel = np.zeros((n, n))
    start = 0
    for size in sizes:
        kernel[start:start + size, start:start + size] = 1
        start += size
    p = np.array(sizes) / n
    assert vendi_from_kernel(kernel) == pytest.approx(math.exp(-(p * np.log(p)).sum()))
    assert vendi_from_kernel(kernel, q=2) == pytest.approx(1 / (p ** 2).sum())
    assert vendi_from_kernel(kernel, q=math.inf) == pytest.approx(1 / p.max())
    with pytest.raises(ValueError, match="unit diagonal"):
        vendi_from_kernel(2 * np.eye(3))


def test_vendi_from_features_uses_the_cosine_kernel_either_way_round():
    rng = np.random.default_rng(4)
    for n, dim in ((10, 30), (40, 5)):     # n < D and n > D take different routes
        x = rng.normal(size=(n, dim))
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        for q in (0.5, 1.0, 2.0):
            assert vendi_from_features(x, q) == pytest.approx(vendi_from_kernel(unit @ unit.T, q))
    assert vendi_from_features(np.tile([[1.0, 2.0, 3.0]], (7, 1))) == pytest.approx(1.0)
    assert renyi_exp_entropy(np.array([0.5, 0.5, 0.0]), 1.0) == pytest.approx(2.0)
