import numpy as np
import pytest
from scipy.stats import multivariate_normal

from dlc.data.gaussian_grid import GaussianGrid


def test_centres_form_a_centred_square_grid():
    grid = GaussianGrid(9, std=0.1, spacing=2.0)
    assert grid.centres.shape == (9, 2)
    np.testing.assert_allclose(grid.centres.mean(0), 0.0)
    assert sorted(set(grid.centres[:, 0])) == [-2.0, 0.0, 2.0]
    with pytest.raises(ValueError, match="perfect square"):
        GaussianGrid(8, 0.1, 1.0).centres


def test_log_prob_is_the_mixture_density():
    grid = GaussianGrid(4, std=0.3, spacing=1.0)
    points = np.random.default_rng(0).normal(size=(50, 2))
    expected = np.log(np.mean([multivariate_normal(c, 0.09 * np.eye(2)).pdf(points)
                               for c in grid.centres], axis=0))
    np.testing.assert_allclose(grid.log_prob(points), expected, rtol=1e-10)


def test_samples_have_the_closed_form_spread_and_labels():
    grid = GaussianGrid(16, std=0.05, spacing=1.0)
    points, component = grid.sample(200_000, np.random.default_rng(0))
    assert points.std(0) == pytest.approx([grid.data_std] * 2, rel=0.01)
    distance = np.linalg.norm(points - grid.centres[component], axis=1)
    assert distance.mean() == pytest.approx(0.05 * np.sqrt(np.pi / 2), rel=0.01)  # Rayleigh
