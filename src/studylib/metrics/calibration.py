r"""Calibration metrics: ECE, MCE, RMS calibration error, reliability bins, Brier, NLL.

Notation (``../shared/reference/evaluation.md`` §5): N samples, predicted distribution
:math:`p_i` over C answer choices (a row of ``probs``, rows sum to 1), label :math:`y_i`,
prediction :math:`\hat y_i = \arg\max_k p_{ik}` (first index on ties, as ``np.argmax``),
**top-label confidence** :math:`c_i = \max_k p_{ik}`, correctness :math:`a_i = 1[\hat y_i = y_i]`.

Two input conventions:

* metrics that only need the top label take ``(confidence, correct)``: 1-D confidences in
  [0, 1] and booleans (or 0/1).  Get them from probabilities with :func:`top_label`.
* metrics that need the whole distribution (multi-class Brier, NLL) take ``(probs, labels)``:
  an (N, C) array of per-choice probabilities and integer labels in ``[0, C)``.

Binning
-------
M equal-width bins with boundaries ``np.linspace(0, 1, M + 1)`` (the same array netcal
builds).  ``edges`` says which side of a bin is closed:

``"right"`` (default)
    :math:`B_m = (b_{m-1}, b_m]`; a confidence of exactly 0 joins the first bin.  This is
    Guo et al.'s reference code (``gpleiss/temperature_scaling``), the code most calibration
    papers copy, and torchmetrics <= 0.11.  Chosen as default because it is what "ECE with
    15 bins" means in the temperature-scaling literature the study compares with, and because
    saturated confidences of exactly 1.0 (frequent with fp16 logits) stay in the top bin.
    (gpleiss silently drops c = 0 while keeping it in N; torchmetrics <= 0.11 crashes on it;
    top-label confidences are >= 1/C > 0, so this never arises for top-label ECE.)
``"left"``
    :math:`B_m = [b_{m-1}, b_m)` with the last bin closed, :math:`[b_{M-1}, 1]`: netcal's
    convention (``np.histogramdd``).  torchmetrics >= 1.0 also uses left-closed bins but puts
    c = 1 into an extra (M+1)-th bucket of its own; it agrees with ``"left"`` whenever no
    confidence equals 1 exactly.

The two conventions differ only for confidences that sit exactly on an inner boundary.

Estimators of the calibration error
-----------------------------------
Binned ECE is biased upward, by roughly sqrt(M / N) for a calibrated model, and the bias moves when
pruning moves the confidence distribution.  Two other estimators go beside it:

* :func:`debiased_ece` — Kumar, Liang & Ma (2019, "Verified uncertainty calibration"), the bias
  correction their package ``uncertainty-calibration`` applies to the 15-bin ECE
  (``calibration.get_ece(..., debias=True)``): 2·ECE minus the mean ECE of label means redrawn from
  their normal sampling distribution.  The package draws 1,000 normal samples; this module uses the
  closed form of that mean (:func:`debiased_ece_from_bins`), which is what the draws estimate, and
  keeps bins with fewer than two questions (the package refuses them).  Written from bin sums so the
  bootstrap evaluates it on weighted bins (:mod:`studylib.analysis.resampled`).
* :func:`smooth_ece` — Błasiok & Nakkiran's smooth ECE, ``relplot.smECE`` (kernel-smoothed residuals,
  bandwidth chosen as the fixed point σ = smECE_σ).  relplot takes no sample weights, so
  :class:`WeightedSmoothECE` evaluates the same computation on many resamples at once from their
  multiplicities (tests check it against ``relplot.smECE`` on the expanded samples).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import relplot
from scipy import fft, sparse
from scipy.special import erf

from studylib.metrics.validation import (
    Edges,
    as_binary,
    as_confidences,
    as_labels,
    as_probabilities,
    check_choice,
    check_edges,
    check_n_bins,
    check_same_length,
)

DEFAULT_N_BINS = 15
DEFAULT_EDGES: Edges = "right"
NORMS = ("l1", "l2", "max")
NLL_CLIP = 1e-12


@dataclass(frozen=True)
class TopLabel:
    """Top-label view of a probability table: ``confidence`` c_i, ``prediction`` ŷ_i, ``correct`` a_i."""

    confidence: np.ndarray
    prediction: np.ndarray
    correct: np.ndarray


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin statistics of a reliability diagram.

    ``boundaries`` has M + 1 entries; ``count``, ``mean_confidence``, ``accuracy`` and ``gap``
    (accuracy − mean confidence; negative = over-confident) have M.  Empty bins have count 0
    and NaN statistics.  ``edges`` records the convention used.
    """

    boundaries: np.ndarray
    count: np.ndarray
    mean_confidence: np.ndarray
    accuracy: np.ndarray
    edges: str

    @property
    def n_bins(self) -> int:
        return len(self.count)

    @property
    def gap(self) -> np.ndarray:
        return self.accuracy - self.mean_confidence

    @property
    def weight(self) -> np.ndarray:
        """Fraction of all samples in each bin, |B_m| / N."""
        return self.count / self.count.sum()

    @property
    def nonempty(self) -> np.ndarray:
        return self.count > 0


def top_label(probs, labels) -> TopLabel:
    r"""Top-label confidence :math:`c_i = \max_k p_{ik}`, prediction and correctness.

    ``probs`` is (N, C) with rows summing to 1; ``labels`` are integers in ``[0, C)``.  Ties
    in the maximum resolve to the lowest class index (``np.argmax``).
    """
    probs = as_probabilities(probs)
    labels = as_labels(labels, probs.shape[1])
    check_same_length(probs=probs, labels=labels)
    prediction = probs.argmax(axis=1)
    confidence = probs[np.arange(len(probs)), prediction]
    return TopLabel(confidence=confidence, prediction=prediction, correct=prediction == labels)


def _confidence_and_correct(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    confidence = as_confidences(confidence)
    correct = as_binary(correct, "correct")
    check_same_length(confidence=confidence, correct=correct)
    return confidence, correct


def bin_boundaries(n_bins: int = DEFAULT_N_BINS) -> np.ndarray:
    """The M + 1 equal-width bin boundaries on [0, 1] (``np.linspace(0, 1, M + 1)``)."""
    return np.linspace(0.0, 1.0, check_n_bins(n_bins) + 1)


def bin_index(confidence, n_bins: int = DEFAULT_N_BINS, edges: Edges = DEFAULT_EDGES) -> np.ndarray:
    """Bin number (0 … M−1) of each confidence under the ``edges`` convention (module docstring)."""
    confidence = as_confidences(confidence)
    boundaries = bin_boundaries(n_bins)
    if check_edges(edges) == "right":
        return np.clip(np.searchsorted(boundaries, confidence, side="left") - 1, 0, n_bins - 1)
    return np.minimum(np.searchsorted(boundaries, confidence, side="right") - 1, n_bins - 1)


def reliability_bins(confidence, correct, n_bins: int = DEFAULT_N_BINS, edges: Edges = DEFAULT_EDGES) -> ReliabilityBins:
    r"""Count, mean confidence and accuracy of each of M equal-width confidence bins.

    :math:`\mathrm{conf}(B_m) = \frac{1}{|B_m|}\sum_{i\in B_m} c_i`,
    :math:`\mathrm{acc}(B_m) = \frac{1}{|B_m|}\sum_{i\in B_m} a_i` (NaN when :math:`B_m` is empty).
    Use the same ``n_bins`` and ``edges`` as the ECE you report.
    """
    confidence, correct = _confidence_and_correct(confidence, correct)
    index = bin_index(confidence, n_bins, edges)
    count = np.bincount(index, minlength=n_bins).astype(np.float64)
    confidence_sum = np.bincount(index, weights=confidence, minlength=n_bins)
    correct_sum = np.bincount(index, weights=correct.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.where(count > 0, confidence_sum / count, np.nan)
        accuracy = np.where(count > 0, correct_sum / count, np.nan)
    return ReliabilityBins(bin_boundaries(n_bins), count.astype(np.int64), mean_confidence, accuracy, edges)


def calibration_error(
    confidence, correct, n_bins: int = DEFAULT_N_BINS, edges: Edges = DEFAULT_EDGES, norm: str = "l1"
) -> float:
    r"""Binned calibration error of top-label confidences, in the chosen norm.

    With :math:`w_m = |B_m|/N` and :math:`g_m = \mathrm{acc}(B_m) - \mathrm{conf}(B_m)` over
    non-empty bins:

    * ``"l1"``  — ECE  :math:`= \sum_m w_m |g_m|`
    * ``"l2"``  — RMS-CE :math:`= \sqrt{\sum_m w_m g_m^2}` (torchmetrics ``norm="l2"``, no debiasing)
    * ``"max"`` — MCE  :math:`= \max_m |g_m|`

    ``confidence`` is c_i (1-D, in [0, 1]); ``correct`` is a_i (bool or 0/1).  Passing
    positive-class probabilities and 0/1 targets instead gives *positive-class* calibration
    error, a different number.  Bins: see the module docstring for ``edges``.
    """
    return binned_calibration_error(reliability_bins(confidence, correct, n_bins, edges), norm)


def binned_calibration_error(bins: ReliabilityBins, norm: str = "l1") -> float:
    """:func:`calibration_error` of already computed bins (ECE and MCE of one sample share them)."""
    norm = check_choice(norm, "norm", NORMS)
    gap = np.abs(bins.gap[bins.nonempty])
    weight = bins.weight[bins.nonempty]
    if norm == "l1":
        return float(np.sum(weight * gap))
    if norm == "l2":
        return float(np.sqrt(np.sum(weight * gap**2)))
    return float(np.max(gap))


def expected_calibration_error(confidence, correct, n_bins: int = DEFAULT_N_BINS, edges: Edges = DEFAULT_EDGES) -> float:
    r"""ECE :math:`= \sum_{m=1}^{M} \frac{|B_m|}{N}\,|\mathrm{acc}(B_m) - \mathrm{conf}(B_m)|`.

    Top-label, M = ``n_bins`` (default 15, Guo et al. 2017) equal-width bins, empty bins
    contribute 0, ``edges="right"`` = (lo, hi] by default (module docstring explains both
    conventions and the choice).
    """
    return calibration_error(confidence, correct, n_bins, edges, "l1")


def maximum_calibration_error(confidence, correct, n_bins: int = DEFAULT_N_BINS, edges: Edges = DEFAULT_EDGES) -> float:
    r"""MCE :math:`= \max_{m:\,|B_m|>0} |\mathrm{acc}(B_m) - \mathrm{conf}(B_m)|` (Guo et al. 2017).

    Sensitive to sparsely filled bins: report it with :func:`reliability_bins` counts.
    """
    return calibration_error(confidence, correct, n_bins, edges, "max")


def mean_confidence(confidence) -> float:
    r"""Mean top-label confidence :math:`\bar c = \frac1N \sum_i c_i`."""
    return float(np.mean(as_confidences(confidence)))


def overconfidence(confidence, correct) -> float:
    r"""Over-confidence :math:`\bar c - \bar a` (mean confidence minus accuracy); < 0 is under-confidence."""
    confidence, correct = _confidence_and_correct(confidence, correct)
    return float(np.mean(confidence) - np.mean(correct))


def brier_multiclass(probs, labels) -> float:
    r"""Multi-class Brier score :math:`\frac1N\sum_i\sum_{k=1}^{C}(p_{ik} - 1[y_i = k])^2`, range [0, 2].

    Brier (1950); the convention of most calibration code.  For C = 2 it is twice
    :func:`brier_binary` of the positive-class probability.
    """
    probs = as_probabilities(probs)
    labels = as_labels(labels, probs.shape[1])
    check_same_length(probs=probs, labels=labels)
    one_hot = np.zeros_like(probs)
    one_hot[np.arange(len(labels)), labels] = 1.0
    return float(np.mean(np.sum((probs - one_hot) ** 2, axis=1)))


def brier_binary(prob_positive, target) -> float:
    r"""Binary Brier score :math:`\frac1N\sum_i (p_i - y_i)^2` with :math:`p_i = P(y_i = 1)`, range [0, 1].

    scikit-learn's ``brier_score_loss`` convention; ``target`` is bool or 0/1 (e.g. "yes").
    """
    prob_positive = as_confidences(prob_positive, "prob_positive")
    target = as_binary(target, "target")
    check_same_length(prob_positive=prob_positive, target=target)
    return float(np.mean((prob_positive - target) ** 2))


def brier_top_label(confidence, correct) -> float:
    r"""Top-label Brier score :math:`\frac1N\sum_i (c_i - a_i)^2`, range [0, 1]; differs from both other conventions."""
    confidence, correct = _confidence_and_correct(confidence, correct)
    return float(np.mean((confidence - correct) ** 2))


def negative_log_likelihood(probs, labels, clip: float = NLL_CLIP) -> float:
    r"""Mean NLL :math:`-\frac1N\sum_i \ln \max(p_{i,y_i}, \epsilon)` from probabilities, :math:`\epsilon` = ``clip``.

    The clip (default 1e-12) keeps a zero probability on the true answer finite
    (:math:`-\ln 10^{-12} \approx 27.6`).  Prefer :func:`studylib.metrics.nll_from_logits`
    when logits are available.
    """
    probs = as_probabilities(probs)
    labels = as_labels(labels, probs.shape[1])
    check_same_length(probs=probs, labels=labels)
    true_prob = probs[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.maximum(true_prob, clip))))


def debiased_ece_from_bins(count, confidence_sum, correct_sum) -> np.ndarray:
    r"""Kumar et al.'s debiased ECE from per-bin weighted counts and sums (last axis: the M bins;
    leading axes: e.g. resamples).

    With :math:`n_b` questions in bin b, mean label (accuracy) :math:`\bar y_b`, mean confidence
    :math:`\bar c_b`, :math:`w_b = n_b / N`, the plug-in ECE is :math:`\sum_b w_b |\bar y_b - \bar c_b|`
    and the bias correction is the mean of the same sum with :math:`\bar y_b` redrawn from
    :math:`\mathcal N(\bar y_b, s_b^2)`, :math:`s_b^2 = \bar y_b (1 - \bar y_b) / n_b`:
    :math:`\mathrm{dECE} = 2\,\mathrm{ECE} - \sum_b w_b\, E|X_b - \bar c_b|`, where for
    :math:`d = \bar y_b - \bar c_b`, :math:`E|X_b - \bar c_b| = s_b\sqrt{2/\pi}\,e^{-d^2/2s_b^2}
    + d\,\mathrm{erf}(d / \sqrt 2 s_b)` (= |d| when :math:`s_b = 0`).  Empty bins add nothing."""
    count = np.asarray(count, dtype=np.float64)
    filled = count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(filled, np.asarray(correct_sum, dtype=np.float64) / count, 0.0)
        confidence = np.where(filled, np.asarray(confidence_sum, dtype=np.float64) / count, 0.0)
        sd = np.sqrt(np.where(filled, accuracy * (1.0 - accuracy) / count, 0.0))
        d = accuracy - confidence
        spread = sd * math.sqrt(2.0 / math.pi) * np.exp(-0.5 * (d / sd) ** 2) + d * erf(d / (math.sqrt(2.0) * sd))
    expected = np.where(sd > 0, spread, np.abs(d))
    weight = count / count.sum(axis=-1, keepdims=True)
    return np.sum(weight * (2.0 * np.abs(d) - expected), axis=-1)


def debiased_ece(confidence, correct, n_bins: int = DEFAULT_N_BINS, edges: Edges = DEFAULT_EDGES) -> float:
    """Kumar et al.'s debiased ECE on the same M equal-width bins as :func:`expected_calibration_error`
    (:func:`debiased_ece_from_bins` gives the formula)."""
    confidence, correct = _confidence_and_correct(confidence, correct)
    index = bin_index(confidence, n_bins, edges)
    sums = [np.bincount(index, weights=w, minlength=n_bins)
            for w in (np.ones(len(confidence)), confidence, correct.astype(np.float64))]
    return float(debiased_ece_from_bins(*sums))


def smooth_ece(confidence, correct) -> float:
    """Smooth ECE of top-label confidences (Błasiok & Nakkiran 2023): ``relplot.smECE``."""
    confidence, correct = _confidence_and_correct(confidence, correct)
    return float(relplot.smECE(confidence, correct.astype(np.float64)))


class WeightedSmoothECE:
    """``relplot.smECE`` of many weighted copies of one sample at once: row r of ``weights`` says how
    often each question enters resample r (:func:`studylib.metrics.resample_counts`).

    relplot evaluates, at bandwidth σ, :math:`\mathrm{smECE}_σ = \sum_t |K_σ * r|(t) / \sum_t (K_σ *
    1)(t)` on a mesh t, where ``* r`` smooths the residuals :math:`c_i - a_i` rounded linearly onto a
    grid of G points (``relplot.kernels.smooth_round_to_grid``) with a Gaussian kernel reflected at 0
    and 1, and picks σ by ten bisection steps towards σ = smECE_σ.  Everything before the kernel is
    linear in the sample, so a weighted sample is its weights times a fixed N × G rounding matrix;
    the reflected convolution is diagonal in the type-I DCT (whole-sample symmetric extension), so
    every resample is smoothed by one inverse DCT per bandwidth, and the bisection runs for all
    resamples together (rows that try the same σ share its kernel)."""

    EPS = 0.001  # relplot.smECE's smallest bandwidth
    STEPS = 10  # relplot.metrics.search_param's refinement steps

    def __init__(self, confidence, correct):
        confidence, correct = _confidence_and_correct(confidence, correct)
        self.f = confidence
        self.residual = confidence - correct.astype(np.float64)
        self._rounding: dict[int, tuple] = {}
        self._kernels: dict[float, np.ndarray] = {}

    @staticmethod
    def _grid(sigma: float) -> int:
        """relplot's grid size for bandwidth σ (``GaussianKernel.apply``)."""
        return max(2000, round(20 / sigma)) // 2 + 1

    def _rounding_matrices(self, g: int):
        """The N × G matrices rounding the residuals and the ones onto a grid of g points."""
        if g not in self._rounding:
            n = len(self.f)
            low = (self.f * (g - 1)).astype(int).clip(0, g - 2)
            frac = self.f * (g - 1) - low
            rows, cols = np.r_[np.arange(n), np.arange(n)], np.r_[low, low + 1]
            spread = np.r_[1 - frac, frac]
            self._rounding[g] = tuple(sparse.csc_matrix((spread * values, (rows, cols)), shape=(n, g))
                                      for values in (np.r_[self.residual, self.residual], np.ones(2 * n)))
        return self._rounding[g]

    def _kernel_spectrum(self, sigma: float, g: int) -> np.ndarray:
        """DCT-I eigenvalues of relplot's reflected Gaussian kernel (``ReflectedGaussianKernel``)."""
        if sigma not in self._kernels:
            kernel = relplot.kernels.ReflectedGaussianKernel(sigma).kernel_ev(g)
            half = np.zeros(g)
            half[: g // 2 + 1] = kernel[g // 2:]
            self._kernels[sigma] = fft.dct(half, type=1)
        return self._kernels[sigma]

    def _smooth_ece_at(self, smoothed: np.ndarray, sigma: float) -> np.ndarray:
        """smECE_σ (relplot.metrics.smooth_ece) from the smoothed residual and density grids of some
        resamples (stacked: residuals, then densities)."""
        g, half = smoothed.shape[1], len(smoothed) // 2
        mesh = np.linspace(0, 1, max(round(10 / sigma), 200))
        cell = (mesh * (g - 1)).astype(int).clip(0, g - 2)  # relplot.kernels.interpolate
        fraction = (mesh - cell * (1 / (g - 1))) / (1 / (g - 1))
        values = smoothed[:, cell] * (1 - fraction) + smoothed[:, cell + 1] * fraction
        residual, density = values[:half], values[half:] + 0.0001
        return np.sum(np.abs(residual / density) * density, axis=1) / np.sum(density, axis=1)

    def resampled(self, weights) -> np.ndarray:
        """smECE of each row of ``weights`` (R × N multiplicities), as ``relplot.smECE`` of the
        sample with question i repeated ``weights[r, i]`` times."""
        w = np.asarray(weights, dtype=np.float64)
        spectra: dict[int, np.ndarray] = {}

        def at(sigmas: np.ndarray, rows: np.ndarray) -> np.ndarray:
            """smECE at each row's own bandwidth: one inverse DCT per grid size, then per bandwidth."""
            out = np.empty(len(rows))
            grids = np.array([self._grid(float(s)) for s in sigmas])
            for g in np.unique(grids):
                if g not in spectra:
                    residual, ones = self._rounding_matrices(int(g))
                    grid = np.vstack([(residual.T @ w.T).T, (ones.T @ w.T).T])
                    spectra[g] = fft.dct(grid, type=1, axis=1)
                chosen = np.flatnonzero(grids == g)
                picked = np.r_[rows[chosen], rows[chosen] + len(w)]
                distinct, which = np.unique(sigmas[chosen], return_inverse=True)
                kernels = np.vstack([self._kernel_spectrum(float(s), int(g)) for s in distinct])[which]
                smoothed = fft.idct(spectra[g][picked] * np.vstack([kernels, kernels]), type=1, axis=1)
                for i, sigma in enumerate(distinct):
                    mine = np.flatnonzero(which == i)
                    out[chosen[mine]] = self._smooth_ece_at(smoothed[np.r_[mine, mine + len(chosen)]], float(sigma))
            return out

        everyone = np.arange(len(w))
        value = at(np.ones(len(w)), everyone)
        settled = value > 1.0  # relplot: bandwidth 1 is kept when 1 < smECE_1
        start, end = np.ones(len(w)), np.zeros(len(w))
        for _ in range(self.STEPS):
            middle = (start + end) / 2
            too_narrow = ~settled & (middle < self.EPS)  # relplot's predicate: σ < eps or σ < smECE_σ
            at_middle = np.full(len(w), np.nan)
            rows = np.flatnonzero(~settled & (middle >= self.EPS))
            if len(rows):
                at_middle[rows] = at(middle[rows], rows)
                too_narrow[rows] = middle[rows] < at_middle[rows]
            moving = ~settled
            end = np.where(moving & too_narrow, middle, end)
            widen = moving & ~too_narrow
            start = np.where(widen, middle, start)
            value = np.where(widen, at_middle, value)  # relplot returns smECE at the final start
        return value
