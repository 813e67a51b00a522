import numpy as np

from detectors.build.tier1 import expected_calibration_error, threshold_at_fpr, tpr_at_fpr


def test_threshold_keeps_false_positives_within_target():
    rng = np.random.default_rng(0)
    negatives, positives = rng.uniform(0, 0.8, 1000), rng.uniform(0.5, 1, 1000)
    scores = np.concatenate([negatives, positives])
    labels = np.concatenate([np.zeros(1000, int), np.ones(1000, int)])
    threshold = threshold_at_fpr(scores, labels, 0.01)
    assert np.mean(negatives >= threshold) <= 0.01
    assert np.mean(negatives >= np.nextafter(threshold, 0) - 0.01) > 0.01  # and not needlessly strict
    assert 0 < tpr_at_fpr(scores, labels, 0.01) < 1


def test_perfectly_calibrated_scores_have_no_calibration_error():
    scores = np.array([0.25] * 4 + [0.75] * 4)
    labels = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    assert expected_calibration_error(scores, labels) == 0.0
    assert expected_calibration_error(np.array([0.9, 0.9]), np.array([0, 0])) > 0.8
