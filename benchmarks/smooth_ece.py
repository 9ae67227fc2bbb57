"""Benchmark: the image bootstrap of smooth ECE (relplot.smECE) on the expanded resamples vs
:class:`studylib.metrics.WeightedSmoothECE` on their multiplicities.

    PYTHONPATH=src .venv/bin/python benchmarks/smooth_ece.py [--questions 8970] [--per-image 14] [--resamples 1000]

relplot takes no sample weights, so the direct way is ``relplot.smECE`` on every resample with each
question repeated as often as it was drawn (timed on ``--direct`` resamples and scaled to all of them);
WeightedSmoothECE runs relplot's computation on all resamples at once.  Prints the seconds of each
and the largest difference between their values on the directly computed resamples (with the
binned and debiased ECE of the same resamples, for scale).  A script, not a test: timings depend on
the machine and its load.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import relplot

from studylib.analysis.resampled import ScoredResamples
from studylib.analysis.views import SELECTIVE_COVERAGE, _View
from studylib.metrics import WeightedSmoothECE, resample_counts

from bootstrap import synthetic_rows  # benchmarks/bootstrap.py (the script's folder is on sys.path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=8970)
    parser.add_argument("--per-image", type=int, default=14)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--direct", type=int, default=50, help="resamples computed the direct way")
    args = parser.parse_args()
    rows = synthetic_rows(args.questions, args.per_image)
    confidence, correct = rows["confidence"].to_numpy(float), rows["correct"].to_numpy(bool)
    groups = rows["image"].to_numpy()
    counts = np.concatenate(list(resample_counts(len(rows), args.resamples, 0, groups)))

    start = time.perf_counter()
    direct = [relplot.smECE(np.repeat(confidence, row), np.repeat(correct, row).astype(float))
              for row in counts[: args.direct]]
    per_resample = (time.perf_counter() - start) / args.direct

    start = time.perf_counter()
    weighted = np.concatenate([WeightedSmoothECE(confidence, correct).resampled(block)
                               for block in resample_counts(len(rows), args.resamples, 0, groups)])
    at_once = time.perf_counter() - start

    start = time.perf_counter()
    evaluate = ScoredResamples(_View(rows), SELECTIVE_COVERAGE)
    binned = np.concatenate([np.column_stack(list(evaluate.metrics(block, ["ece", "ece_debiased"]).values()))
                             for block in resample_counts(len(rows), args.resamples, 0, groups)])
    sums = time.perf_counter() - start

    print(f"{args.questions} questions, {args.resamples} image resamples")
    print(f"relplot.smECE on each expanded resample: {per_resample * 1e3:.1f} ms per resample, "
          f"{per_resample * args.resamples:.1f} s for all")
    print(f"WeightedSmoothECE on the multiplicities:  {at_once:.2f} s for all")
    print(f"binned and debiased ECE by weighted sums: {sums:.2f} s for all")
    print(f"largest difference on {args.direct} resamples: {np.max(np.abs(weighted[: args.direct] - direct)):.2e} "
          f"(smooth ECE {np.mean(direct):.4f}, ECE {binned[:, 0].mean():.4f}, debiased {binned[:, 1].mean():.4f})")


if __name__ == "__main__":
    main()
