"""Metrics of blocks of resamples from multiplicities agree with the metrics recomputed on the
resampled rows, for every metric, with ties, mixed question types and image clusters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from studylib.analysis.resampled import CaptionResamples, ScoredResamples
from studylib.analysis.views import CHAIR_METRICS, METRICS, SELECTIVE_COVERAGE, _ChairView, _View
from studylib.metrics import resample_counts, resample_indices


def scored_rows(n=240, seed=0, n_images=40, mixed=True):
    """Yes/no (and some 4-way) rows with many tied confidences (rounded, and saturated at 1)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        mc = mixed and i % 5 == 0
        choices = ["A", "B", "C", "D"] if mc else ["yes", "no"]
        probs = rng.dirichlet(np.full(len(choices), 0.7))
        probs = np.round(probs, 1) if i % 3 else probs
        if i % 17 == 0:
            probs = np.eye(len(choices))[0]
        probs = probs / probs.sum()
        label = choices[rng.integers(len(choices))]
        prediction = choices[int(np.argmax(probs))]
        rows.append({"qid": f"q{i}", "image": f"i{i % n_images}", "task": "mc" if mc else "yesno",
                     "choices": choices, "probs": probs.tolist(), "label": label, "prediction": prediction,
                     "confidence": float(probs.max()), "correct": prediction == label})
    return pd.DataFrame(rows)


def caption_rows(n=90, seed=0):
    rng = np.random.default_rng(seed)
    mentions = rng.integers(0, 4, n)
    ground_truth = rng.integers(1, 4, n)
    return pd.DataFrame({"qid": [f"c{i}" for i in range(n)], "image": [f"i{i % 30}" for i in range(n)],
                         "n_mentions": mentions, "n_hallucinated": rng.integers(0, mentions + 1),
                         "n_recalled": rng.integers(0, ground_truth + 1), "n_gt": ground_truth,
                         "length": rng.integers(3, 30, n).astype(float), "erank_kept": rng.uniform(1, 9, n)})


def recomputed(make, metrics, frame, index, name):
    return metrics[name](make(frame.iloc[index].reset_index(drop=True)))


@pytest.mark.parametrize("mixed", [True, False])
@pytest.mark.parametrize("clustered", [True, False])
def test_scored_metrics_of_resamples_match_recomputation(mixed, clustered):
    frame = scored_rows(mixed=mixed)
    groups = frame["image"].to_numpy() if clustered else None
    names = list(METRICS)
    evaluate = ScoredResamples(_View(frame), SELECTIVE_COVERAGE)
    counts = np.concatenate(list(resample_counts(len(frame), 40, 5, groups, chunk=16)))
    values = evaluate.metrics(counts, names)
    for r, index in enumerate(resample_indices(len(frame), 40, 5, groups)):
        for name in names:
            expected = recomputed(_View, METRICS, frame, index, name)
            assert values[name][r] == pytest.approx(expected, abs=1e-12, nan_ok=True), (name, r)
    assert np.isnan(values["f1"]).all() == mixed  # POPE's F1 is defined on yes/no rows only


def test_all_ones_reproduce_the_point_estimates():
    frame = scored_rows(mixed=False)
    view = _View(frame)
    values = ScoredResamples(view, SELECTIVE_COVERAGE).metrics(np.ones((1, len(frame)), dtype=np.int64), list(METRICS))
    for name, fn in METRICS.items():
        assert values[name][0] == pytest.approx(fn(view), abs=1e-12), name


def test_caption_metrics_of_resamples_match_recomputation():
    frame = caption_rows()
    groups = frame["image"].to_numpy()
    names = [*CHAIR_METRICS, "mean_erank_kept"]
    metrics = CHAIR_METRICS | {"mean_erank_kept": lambda v: float(np.mean(v.erank))}
    counts = np.concatenate(list(resample_counts(len(frame), 30, 2, groups)))
    values = CaptionResamples(_ChairView(frame)).metrics(counts, names)
    for r, index in enumerate(resample_indices(len(frame), 30, 2, groups)):
        for name in names:
            assert values[name][r] == pytest.approx(recomputed(_ChairView, metrics, frame, index, name),
                                                    abs=1e-12, nan_ok=True), (name, r)


def test_undefined_ratios_are_nan_not_errors():
    frame = caption_rows(6).assign(n_mentions=0, n_hallucinated=0)
    values = CaptionResamples(_ChairView(frame)).metrics(np.ones((2, 6), dtype=np.int64), ["chair_i", "chair_s"])
    assert np.isnan(values["chair_i"]).all() and (values["chair_s"] == 0).all()
