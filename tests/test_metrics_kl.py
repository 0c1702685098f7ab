"""KL estimators on two Gaussians, whose KL is known in closed form."""

import numpy as np
import pytest

from dlc.metrics.kl import kde_kl, knn_kl, mode_coverage


def gaussian_kl(mu_p, var_p, mu_q, var_q, d):
    """KL(N(mu_p, var_p I) || N(mu_q, var_q I)) in d dimensions."""
    return 0.5 * (d * var_p / var_q + np.sum((mu_q - mu_p) ** 2) / var_q - d
                  + d * np.log(var_q / var_p))


def log_normal(x, mu, var):
    d = x.shape[1]
    return -0.5 * (((x - mu) ** 2).sum(1) / var + d * np.log(2 * np.pi * var))


def test_knn_kl_matches_closed_form():
    rng = np.random.default_rng(0)
    mu_q = np.array([1.0, 0.0])
    p = rng.standard_normal((6000, 2))
    q = mu_q + np.sqrt(2.0) * rng.standard_normal((6000, 2))
    expected = gaussian_kl(np.zeros(2), 1.0, mu_q, 2.0, 2)          # 0.443
    assert knn_kl(p, q, k=1) == pytest.approx(expected, abs=0.06)
    assert knn_kl(p, q, k=5) == pytest.approx(expected, abs=0.05)


def test_knn_kl_floor_is_near_zero():
    rng = np.random.default_rng(1)
    assert knn_kl(rng.standard_normal((5000, 2)), rng.standard_normal((5000, 2))) == \
        pytest.approx(0.0, abs=0.05)


def test_kde_kl_matches_closed_form_including_the_bandwidth():
    """A Silverman KDE of n samples of N(mu, I) tends to N(mu, (1 + h^2) I) with Silverman's
    factor h = (n (d + 2) / 4)^(-1 / (d + 4)); the log of the sum adds a small positive
    (Jensen) bias that shrinks with n, so use many model samples."""
    rng = np.random.default_rng(2)
    d, n_eval, n_model = 2, 5000, 50_000
    mu_q = np.array([1.0, 0.0])
    eval_points = rng.standard_normal((n_eval, d))
    true_log_prob = log_normal(eval_points, 0.0, 1.0)
    h = (n_model * (d + 2) / 4.0) ** (-1.0 / (d + 4))
    estimate = kde_kl(true_log_prob, eval_points, mu_q + rng.standard_normal((n_model, d)))
    assert estimate == pytest.approx(gaussian_kl(np.zeros(d), 1.0, mu_q, 1.0 + h ** 2, d),
                                     abs=0.03)
    floor = kde_kl(true_log_prob, eval_points, rng.standard_normal((n_eval, d)))
    h = (n_eval * (d + 2) / 4.0) ** (-1.0 / (d + 4))
    assert floor == pytest.approx(gaussian_kl(np.zeros(d), 1.0, np.zeros(d), 1 + h ** 2, d),
                                  abs=0.02)


def test_mode_coverage():
    centres = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    everywhere = np.repeat(centres, 250, axis=0)
    result = mode_coverage(everywhere, centres, std=0.05)
    assert result == {"mode_kl": pytest.approx(0.0, abs=1e-12), "modes_covered": 1.0,
                      "off_mode_fraction": 0.0}
    collapsed = mode_coverage(np.zeros((1000, 2)) + [0.5, 0.0], centres, std=0.05)
    assert collapsed["modes_covered"] == 0.25
    assert collapsed["off_mode_fraction"] == 1.0
    # Uniform over 4 modes vs all mass (smoothed) on one: sum_k 1/4 log((1/4) / h_k).
    h = (np.array([1000, 0, 0, 0]) + 0.5) / (1000 + 2.0)
    assert collapsed["mode_kl"] == pytest.approx(np.mean(np.log(0.25 / h)))
