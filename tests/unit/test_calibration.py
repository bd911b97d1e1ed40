"""Temperature scaling and the label-free accuracy estimate it gives (models.calibration)."""

from __future__ import annotations

import numpy as np
import pytest

from models.calibration import Calibration, calibrated, decision_confidence, fit_calibration
from streams.observability.metrics import RecentMeans

LABELS = ["negative", "neutral", "positive"]


def overconfident(rows: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Softmax outputs whose logits are three times too sharp for how often they are right."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(size=(rows, 3))
    truth = [LABELS[int(rng.choice(3, p=np.exp(row) / np.exp(row).sum()))] for row in true_logits]
    sharp = np.exp(3 * true_logits)
    return sharp / sharp.sum(1, keepdims=True), truth


def test_the_fitted_temperature_undoes_overconfidence_and_the_mean_confidence_tracks_accuracy() -> (
    None
):
    probabilities, truth = overconfident(4000, seed=1)
    record = fit_calibration(probabilities, LABELS, truth)
    assert record["temperature"] == pytest.approx(3.0, rel=0.15)
    assert record["nll_after"] < record["nll_before"]
    # Raw, the model claims far more than it delivers; calibrated, the claim is its accuracy.
    raw = probabilities.max(1).mean()
    assert raw - record["accuracy"] > 0.1
    assert abs(record["mean_confidence"] - record["accuracy"]) < 0.02
    # On fresh rows from the same source the estimate holds without their labels.
    fresh, fresh_truth = overconfident(4000, seed=2)
    estimate = decision_confidence(fresh, record["temperature"]).mean()
    accuracy = np.mean([LABELS[i] == t for i, t in zip(fresh.argmax(1), fresh_truth, strict=True)])
    assert abs(estimate - accuracy) < 0.03


def test_validation_rows_all_right_leave_the_softmax_as_it_is() -> None:
    # Fitted, the temperature would fall to its bound and every result would read as certain.
    probabilities = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7]] * 10)
    record = fit_calibration(probabilities, LABELS, LABELS * 10)
    assert record["temperature"] == 1.0 and record["accuracy"] == 1.0
    assert record["mean_confidence"] == pytest.approx(0.6)


def test_calibration_changes_no_prediction() -> None:
    probabilities, _ = overconfident(200, seed=3)
    for temperature in (0.5, 1.0, 4.0):
        scaled = calibrated(probabilities, temperature)
        assert np.allclose(scaled.sum(1), 1)
        assert (scaled.argmax(1) == probabilities.argmax(1)).all()
    assert np.allclose(calibrated(probabilities, 1.0), probabilities, atol=1e-9)


def test_bad_calibration_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        fit_calibration(np.zeros((0, 3)), LABELS, [])
    with pytest.raises(ValueError, match="labels the model does not know: bullish"):
        fit_calibration(np.full((1, 3), 1 / 3), LABELS, ["bullish"])


def test_a_model_without_a_record_is_uncalibrated() -> None:
    assert Calibration.of({}) == Calibration(1.0, None)
    assert Calibration.of({"calibration": {"temperature": 1.7, "accuracy": 0.86}}) == Calibration(
        1.7, 0.86
    )


def test_recent_means_keep_a_window_per_domain_and_version() -> None:
    means = RecentMeans(3)
    assert means.mean("news", "v1") is None
    means.add("news", "v1", [1.0, 1.0, 0.0, 0.0])
    means.add("news", "v2", [1.0])
    assert means.mean("news", "v1") == pytest.approx(1 / 3)
    assert means.mean("news", "v2") == 1.0
