r"""Metrics of many bootstrap resamples at once, from resample multiplicities.

A resample is a multiset of the N questions: question i enters it :math:`w_i` times
(:func:`studylib.metrics.resample_counts`; with image clusters all questions of an image share
their image's count).  Every metric of :data:`studylib.analysis.views.METRICS` and
:data:`~studylib.analysis.views.CHAIR_METRICS` depends on the multiset only, so it is a function
of weighted sums over the original questions, and a block of R resamples is an R × N matrix
:math:`W` times per-question vectors.  With :math:`n = \sum_i w_i`:

* means (accuracy, Brier, NLL, mean confidence) are :math:`W x / n`;
* the 15 reliability bins are fixed by each question's confidence, so the bin counts, confidence
  sums and correct sums are :math:`W` times the bin one-hot matrix; ECE, MCE and Kumar et al.'s
  debiased ECE (:func:`studylib.metrics.debiased_ece_from_bins`) follow per row;
* smooth ECE is not a function of a few sums, but relplot's computation is linear in the sample up to
  its kernel: :class:`studylib.metrics.WeightedSmoothECE` evaluates it on the weighted resamples;
* the risk–coverage curve ranks by confidence and averages over the orders of tied
  confidences (:mod:`studylib.metrics.selective`).  Tie blocks of a resample are the blocks of
  the original ranking with weighted sizes :math:`m_b` and weighted correct counts :math:`e_b`;
  with :math:`P_b, A_b` the sizes and correct counts of the blocks before b, the expected
  number correct at rank :math:`P_b + j` is :math:`A_b + j e_b / m_b`, so the block's share of
  :math:`\sum_k A_k / k` is :math:`(A_b - P_b e_b/m_b)(H_{P_b+m_b} - H_{P_b}) + e_b`
  (:math:`H` the harmonic numbers) and AURC :math:`= 1 - \frac1n\sum_b(\dots)`.

The values equal the metric recomputed on the resampled rows up to floating-point rounding
(``tests/analysis/test_resampled.py``); the point estimates stay with ``METRICS``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from studylib.metrics import DEFAULT_N_BINS, WeightedSmoothECE, bin_index, debiased_ece_from_bins

SELECTIVE = ("aurc", "e_aurc", "sel_acc_80")


class _Harmonic:
    """H_k = 1 + 1/2 + … + 1/k for k = 0 … as far as asked (grown on demand)."""

    def __init__(self):
        self.table = np.zeros(1)

    def __call__(self, k: np.ndarray) -> np.ndarray:
        top = int(k.max()) if k.size else 0
        if top >= len(self.table):
            self.table = np.r_[0.0, np.cumsum(1.0 / np.arange(1, 2 * top + 2))]
        return self.table[k]


_harmonic = _Harmonic()


class _Terms:
    """Named per-question columns, summed under the weights of a block of resamples in one matrix
    product.  A drawn +inf (the NLL of a label given probability 0) keeps the sum +inf; an undrawn
    one adds nothing (0 · inf would be NaN)."""

    def __init__(self, columns: dict[str, np.ndarray]):
        self.names = list(columns)
        matrix = np.column_stack(list(columns.values())).astype(np.float64)
        self.infinite = np.isposinf(matrix)
        self.matrix = np.where(self.infinite, 0.0, matrix)
        self.with_inf = np.flatnonzero(self.infinite.any(axis=0))

    def sums(self, w: np.ndarray) -> dict[str, np.ndarray]:
        total = w @ self.matrix
        if len(self.with_inf):
            hits = w @ self.infinite[:, self.with_inf]
            total[:, self.with_inf] = np.where(hits > 0, np.inf, total[:, self.with_inf])
        return dict(zip(self.names, total.T))


class ScoredResamples:
    """Every metric of ``METRICS`` on blocks of resamples of one :class:`~studylib.analysis.views._View`."""

    def __init__(self, view, coverage: float):
        self.coverage = coverage
        confidence, correct = view.confidence, view.correct.astype(np.float64)
        bins = bin_index(confidence)
        in_bin = [bins == m for m in range(DEFAULT_N_BINS)]
        self.terms = _Terms({
            "questions": np.ones(len(confidence)), "correct": correct, "confidence": confidence,
            "brier": view.brier, "nll": view.nll, "not_yesno": ~view.yesno, "yesno": view.yesno,
            "true_yes": view.says_yes & view.is_yes, "wrong_yesno": view.says_yes != view.is_yes,
            "yesno_said_yes": view.yesno & (view.prediction == "yes"),
            **{f"bin_count{m}": inside for m, inside in enumerate(in_bin)},
            **{f"bin_confidence{m}": inside * confidence for m, inside in enumerate(in_bin)},
            **{f"bin_correct{m}": inside * correct for m, inside in enumerate(in_bin)},
        })
        self.order = np.argsort(-confidence, kind="stable")
        ranked = confidence[self.order]
        # the last rank of each block of tied confidences
        self.block_ends = np.r_[np.flatnonzero(ranked[1:] != ranked[:-1]), len(ranked) - 1]
        self.ranked_correct = correct[self.order]
        self.confidence, self.correct = confidence, correct
        self._smooth: WeightedSmoothECE | None = None

    def metrics(self, counts: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        """``{name: values of the R resamples}`` for the R × N multiplicities ``counts``."""
        w = counts.astype(np.float64)
        sums = self.terms.sums(w)
        size = sums["questions"]
        mean = {name: sums[name] / size for name in ("correct", "confidence", "brier", "nll")}
        out = {"accuracy": mean["correct"], "brier": mean["brier"], "nll": mean["nll"],
               "mean_confidence": mean["confidence"], "overconfidence": mean["confidence"] - mean["correct"],
               "f1": _f1(sums), "yes_ratio": _ratio(sums["yesno_said_yes"], sums["yesno"])}
        if {"ece", "mce", "ece_debiased"} & set(names):
            out["ece"], out["mce"], out["ece_debiased"] = _binned(sums, size)
        if "smece" in names:
            if self._smooth is None:
                self._smooth = WeightedSmoothECE(self.confidence, self.correct)
            out["smece"] = self._smooth.resampled(w)
        if set(SELECTIVE) & set(names):
            out |= self._selective(w, size)
        return {name: out[name] for name in names}

    def _selective(self, w: np.ndarray, size: np.ndarray) -> dict[str, np.ndarray]:
        ranked = w[:, self.order]
        at_end = np.cumsum(ranked, axis=1)[:, self.block_ends]  # P_b + m_b: ranks up to each block's end
        correct_at_end = np.cumsum(ranked * self.ranked_correct, axis=1)[:, self.block_ends]  # A_b + e_b
        before, correct_before = _shifted(at_end), _shifted(correct_at_end)  # P_b, A_b
        m, e = at_end - before, correct_at_end - correct_before
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(m > 0, e / m, 0.0)
        p, pm = np.rint(before).astype(np.int64), np.rint(at_end).astype(np.int64)
        area_terms = (correct_before - before * rate) * (_harmonic(pm) - _harmonic(p)) + e
        aurc = 1.0 - area_terms.sum(axis=1) / size
        n, n_correct = np.rint(size).astype(np.int64), np.rint(correct_at_end[:, -1]).astype(np.int64)
        optimal = ((n - n_correct) - n_correct * (_harmonic(n) - _harmonic(n_correct))) / size
        k = np.maximum(1, np.ceil(np.round(self.coverage * size, 9)))
        block = np.sum(pm < k[:, None], axis=1)  # the block holding rank k
        rows = np.arange(len(w))
        expected = correct_before[rows, block] + (k - before[rows, block]) * rate[rows, block]
        return {"aurc": aurc, "e_aurc": aurc - optimal, "sel_acc_80": expected / k}


def _shifted(cumulative: np.ndarray) -> np.ndarray:
    """The running total before each block from the running total at each block's end."""
    return np.hstack([np.zeros((len(cumulative), 1)), cumulative[:, :-1]])


def _binned(sums: dict[str, np.ndarray], size: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ECE, MCE and debiased ECE of the 15 reliability bins from their weighted counts and sums."""
    def stacked(name):
        return np.column_stack([sums[f"{name}{m}"] for m in range(DEFAULT_N_BINS)])

    count, confidence_sum, correct_sum = stacked("bin_count"), stacked("bin_confidence"), stacked("bin_correct")
    filled = count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.where(filled, np.abs(correct_sum / count - confidence_sum / count), 0.0)
    ece = np.sum(count / size[:, None] * gap, axis=1)
    mce = np.max(np.where(filled, gap, -np.inf), axis=1)
    return ece, mce, debiased_ece_from_bins(count, confidence_sum, correct_sum)


class CaptionResamples:
    """Every metric of ``CHAIR_METRICS`` (and the mean erank of the kept tokens) on blocks of
    resamples of one :class:`~studylib.analysis.views._ChairView`: ratios of weighted sums."""

    def __init__(self, view):
        self.terms = _Terms({"captions": np.ones(len(view.mentions)), "hallucinating": view.hallucinated > 0,
                             "hallucinated": view.hallucinated, "mentions": view.mentions,
                             "recalled": view.recalled, "ground_truth": view.ground_truth,
                             "length": view.length, "erank": view.erank})

    def metrics(self, counts: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        sums = self.terms.sums(counts.astype(np.float64))
        out = {"chair_s": _ratio(sums["hallucinating"], sums["captions"]),
               "chair_i": _ratio(sums["hallucinated"], sums["mentions"]),
               "recall": _ratio(sums["recalled"], sums["ground_truth"]),
               "mean_length": sums["length"] / sums["captions"],
               "mean_erank_kept": sums["erank"] / sums["captions"]}
        return {name: out[name] for name in names}


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def _f1(sums: dict[str, np.ndarray]) -> np.ndarray:
    """POPE's F1 2TP / (2TP + FP + FN); NaN for a resample holding a question that is not yes/no."""
    f1 = _ratio(2 * sums["true_yes"], 2 * sums["true_yes"] + sums["wrong_yesno"])
    return np.where(sums["not_yesno"] > 0, np.nan, f1)


__all__ = ["CaptionResamples", "ScoredResamples"]
