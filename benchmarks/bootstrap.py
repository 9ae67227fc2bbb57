"""Benchmark: the image bootstrap of one configuration's calibration metrics, per resample and by blocks.

    PYTHONPATH=src .venv/bin/python benchmarks/bootstrap.py [--questions 8970] [--per-image 14] [--resamples 1000]

Synthetic POPE-like rows: ``--questions`` yes/no questions, ``--per-image`` per image, confidences
with ties (a fifth rounded to two decimals), answers right with probability near the confidence.
Two ways to get the resampled values of every CI metric (accuracy, F1, ECE, MCE, Brier, NLL, AURC,
E-AURC, selective accuracy at 80 %):

* **per resample**: the metrics of :data:`studylib.analysis.views.METRICS` recomputed on the
  resampled per-question vectors of each resample (:func:`studylib.metrics.resample_indices`), the
  way the study did it before;
* **by blocks**: :func:`studylib.analysis.views.resampled_metrics`, weighted sums over blocks of
  resamples (:mod:`studylib.analysis.resampled`), the way it does it now.

Prints the seconds of each (best of ``--repeats``) and the largest difference between their
values.  This is a script, not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import pandas as pd
import torch

from studylib.analysis.views import CI_METRICS, METRICS, _View, resampled_metrics
from studylib.metrics import resample_indices


def synthetic_rows(n_questions: int, per_image: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p_yes = rng.beta(0.6, 0.6, n_questions)
    p_yes = np.where(rng.random(n_questions) < 0.2, np.round(p_yes, 2), p_yes).clip(1e-4, 1 - 1e-4)
    labels = np.where(rng.random(n_questions) < p_yes, "yes", "no")
    prediction = np.where(p_yes >= 0.5, "yes", "no")
    return pd.DataFrame({
        "qid": [f"q{i}" for i in range(n_questions)], "image": np.arange(n_questions) // per_image,
        "task": "yesno", "choices": [["yes", "no"]] * n_questions,
        "probs": [[p, 1 - p] for p in p_yes], "label": labels, "prediction": prediction,
        "confidence": np.maximum(p_yes, 1 - p_yes), "correct": prediction == labels})


#: the per-question vectors METRICS read
VECTORS = ("confidence", "correct", "prediction", "yesno", "says_yes", "is_yes", "brier", "nll")


def per_resample(view: _View, n_resamples: int, groups) -> dict[str, np.ndarray]:
    """The old loop: a shallow copy of the view holding each resample's vectors, every metric
    recomputed on it (re-binned, re-ranked)."""
    values = {m: [] for m in CI_METRICS}
    for index in resample_indices(len(view.confidence), n_resamples, 0, groups):
        sample = copy.copy(view)
        for name in VECTORS:
            setattr(sample, name, getattr(view, name)[index])
        sample._bins = sample._selective = None
        for m in CI_METRICS:
            values[m].append(METRICS[m](sample))
    return {m: np.asarray(v) for m, v in values.items()}


def best_of(repeats: int, fn):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=8970)
    parser.add_argument("--per-image", type=int, default=14)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--old-resamples", type=int, default=200,
                        help="resamples timed per resample (the old loop is slow; scaled to --resamples)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)

    frame = synthetic_rows(args.questions, args.per_image)
    view, groups = _View(frame), frame["image"].to_numpy()
    old_seconds, old = best_of(1, lambda: per_resample(view, args.old_resamples, groups))
    new_seconds, new = best_of(args.repeats, lambda: resampled_metrics([view], CI_METRICS, len(frame),
                                                                       args.resamples, 0, groups)[0])
    difference = max(float(np.nanmax(np.abs(new[m][: args.old_resamples] - old[m]))) for m in CI_METRICS)
    scale = args.resamples / args.old_resamples
    print(f"{args.questions} questions, {args.questions // args.per_image} images, {len(CI_METRICS)} metrics, "
          f"{args.resamples} image resamples")
    print(f"  per resample (METRICS on each resample):    {old_seconds * scale:8.2f} s "
          f"(timed on {args.old_resamples}, scaled)")
    print(f"  by blocks (resample counts, weighted sums): {new_seconds:8.2f} s")
    print(f"  speed-up {old_seconds * scale / new_seconds:.0f}x; largest difference on the common resamples "
          f"{difference:.1e}")


if __name__ == "__main__":
    main()
