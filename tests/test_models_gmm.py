import numpy as np
from sklearn.mixture import GaussianMixture

from dlc.data.gaussian_grid import GaussianGrid
from dlc.models.gmm import FittedGMM


def test_assign_equals_scikit_learn_predict():
    grid = GaussianGrid(16, std=0.1, spacing=1.0)
    rng = np.random.default_rng(0)
    train = grid.sample(3000, rng)[0]
    reference = GaussianMixture(16, covariance_type="full", random_state=0).fit(train)
    ours = FittedGMM(reference.weights_, reference.means_, reference.covariances_)
    points = rng.uniform(-2.5, 2.5, size=(4000, 2))  # also far from every mode
    np.testing.assert_array_equal(ours.assign(points), reference.predict(points))


def test_fit_finds_the_grid_and_json_round_trips():
    grid = GaussianGrid(9, std=0.05, spacing=1.0)
    points, truth = grid.sample(4500, np.random.default_rng(1))
    gmm = FittedGMM.fit(points, 9, max_iter=200, n_init=1, seed=0)
    assigned = gmm.assign(points)
    # A perfect fit is a relabelling: every true component maps to one GMM component.
    assert all(len(set(assigned[truth == k])) == 1 for k in range(9))
    copy = FittedGMM.from_json(gmm.to_json())
    np.testing.assert_array_equal(copy.assign(points), assigned)
