import numpy as np

from detectors.ood import knn_distance, ood_percentile, sigmoid


def unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_knn_distance_is_zero_on_the_reference_and_grows_away_from_it():
    reference = unit([[1, 0, 0], [0.9, 0.1, 0], [0.8, 0.2, 0]])
    near, far = knn_distance(unit([[1, 0.05, 0], [0, 0, 1]]), reference, k=2)
    assert 0 <= near < 0.05 and far > 0.9
    assert knn_distance(np.zeros((0, 3), np.float32), reference, 2).shape == (0,)


def test_percentile_maps_held_out_distances_onto_0_1():
    quantiles = np.linspace(0.1, 0.5, 11)  # held-out in-distribution distances at levels 0, 0.1, ... 1
    scores = ood_percentile(np.array([0.0, 0.1, 0.3, 0.5, 0.9]), quantiles)
    assert np.allclose(scores, [0.0, 0.0, 0.5, 1.0, 1.0])
    assert np.all(np.diff(ood_percentile(np.linspace(0, 1, 50), quantiles)) >= 0)  # monotonic


def test_sigmoid():
    assert np.allclose(sigmoid(np.array([0.0, 50.0, -50.0])), [0.5, 1.0, 0.0])
