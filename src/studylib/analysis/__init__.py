"""Tables of the study from result rows (:func:`studylib.sweep.run_sweep`): calibration per
config with cluster-bootstrap CIs, cross-validated temperature scaling, paired differences,
reliability and risk-coverage curves, CHAIR.

Conventions (``../shared/reference/evaluation.md`` §5, functions of :mod:`studylib.metrics`):

* top-label confidence ``c_i`` = the row's ``confidence`` (max of ``probs``), correctness the
  row's ``correct``;
* **ECE / MCE**: 15 equal-width bins, right-closed ``(lo, hi]`` (the library default);
* **Brier**: the *multiclass* score ``(1/N) sum_i sum_k (p_ik - 1[y_i = k])^2`` over the
  row's answer choices, range [0, 2]; for yes/no it is twice the binary (P(yes)) Brier;
* **NLL**: ``-(1/N) sum_i log p_{i,y_i}`` computed from the stored class ``logits``
  (log-softmax over the same answer set as ``probs``, so no clipping is needed);
* **AURC / E-AURC**: rectangle rule, ties averaged over orders, E-AURC against the exact
  discrete oracle; selective accuracy at 80 % coverage keeps the ceil(0.8 N) most confident;
* **CIs**: percentile bootstrap, B = ``n_bootstrap`` (1,000), 95 %, seeded; by default whole
  images are resampled (``cluster="image"``) because questions about one image are
  correlated (POPE asks up to six).  All metrics of a group use the same resamples.

Rows of several question types may be mixed in one group (yes/no with 2 choices, multiple
choice with 4): probabilities are zero-padded, which changes neither Brier nor NLL.

Modules: :mod:`~studylib.analysis.views` (per-question views and metrics),
:mod:`~studylib.analysis.summaries` (per-configuration tables, paired differences, curves, CHAIR),
:mod:`~studylib.analysis.temperature` (cross-validated scaling, held-out scaled rows, |T* − 1|),
:mod:`~studylib.analysis.families` (paired draws of several configurations, family means, rank correlations).
"""

from studylib.analysis.summaries import (calibration_summary, chair_summary, paired_delta, pruner_params, reliability,
                                         risk_coverage, smooth_reliability)
from studylib.analysis.families import config_draws, family_mean_delta, rank_correlation
from studylib.analysis.temperature import held_out_scaled, temperature_delta, temperature_summary
from studylib.analysis.views import CI_METRICS, ESTIMATOR_METRICS, METRICS

__all__ = ["CI_METRICS", "ESTIMATOR_METRICS", "METRICS", "calibration_summary", "chair_summary", "config_draws",
           "family_mean_delta", "held_out_scaled", "paired_delta", "pruner_params", "rank_correlation", "reliability",
           "risk_coverage", "smooth_reliability", "temperature_delta", "temperature_summary"]
