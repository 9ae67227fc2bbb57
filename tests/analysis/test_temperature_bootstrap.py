"""Calibration after temperature scaling gets the paired image bootstrap: held-out scaled rows on
the fixed folds, and |T* − 1| with T* refitted on every resample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from studylib import analysis
from studylib.metrics import expected_calibration_error, fit_temperature

from test_analysis_summary import random_rows


def _pair(sharpen_b: float = 3.0) -> pd.DataFrame:
    a = random_rows(900, seed=11, config="a@1", n_images=150)
    b = random_rows(900, seed=11, config="b@1", sharpen=sharpen_b, n_images=150)
    return pd.concat([a, b], ignore_index=True)


def test_held_out_scaled_rows_give_the_summary_ece_after():
    rows = _pair()
    scaled = analysis.held_out_scaled(rows, n_folds=5, seed=0)
    summary = analysis.temperature_summary(rows, n_folds=5, seed=0).set_index("config")
    assert len(scaled) == len(rows) and (scaled["correct"] == rows["correct"]).all(), "argmax unchanged"
    for config in ("a@1", "b@1"):
        part = scaled[scaled["config"] == config]
        assert expected_calibration_error(part["confidence"], part["correct"]) == pytest.approx(
            summary.loc[config, "ece_after"], abs=1e-12)
        assert np.allclose([sum(p) for p in part["probs"]], 1.0)
    delta = analysis.paired_delta(scaled, "a@1", "b@1", "ece", n_bootstrap=200, seed=0)
    assert delta.estimate == pytest.approx(summary.loc["b@1", "ece_after"] - summary.loc["a@1", "ece_after"])


def test_t_star_deviation_delta_is_the_fitted_difference_with_a_ci():
    rows = _pair(sharpen_b=3.0)  # b is over-confident by a factor 3: T*(b) ≈ 3, T*(a) ≈ 1
    delta = analysis.paired_delta(rows, "a@1", "b@1", "t_star_dev", n_bootstrap=300, seed=0)
    fitted = {}
    for config in ("a@1", "b@1"):
        part = rows[rows["config"] == config]
        logits = np.stack(part["logits"].to_numpy())
        labels = np.array([c.index(y) for c, y in zip(part["choices"], part["label"])])
        fitted[config] = fit_temperature(logits, labels)
    assert delta.estimate == pytest.approx(abs(fitted["b@1"] - 1) - abs(fitted["a@1"] - 1), rel=1e-9)
    assert delta.low < delta.estimate < delta.high and delta.low > 0.5
    same = analysis.paired_delta(pd.concat([rows[rows["config"] == "a@1"],
                                            rows[rows["config"] == "a@1"].assign(config="c@1")]),
                                 "a@1", "c@1", "t_star_dev", n_bootstrap=50, seed=0)
    assert same.estimate == 0 and np.all(same.distribution == 0)



def test_a_warm_start_reaches_the_same_temperature():
    part = random_rows(900, seed=12, config="b@1", sharpen=2.5, n_images=150)
    logits = np.stack(part["logits"].to_numpy())
    labels = np.array([c.index(y) for c, y in zip(part["choices"], part["label"])])
    cold = fit_temperature(logits, labels)
    for start in (0.2, cold, 40.0):
        assert fit_temperature(logits, labels, start=start) == pytest.approx(cold, rel=1e-8)
