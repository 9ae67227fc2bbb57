"""Metrics of the study: calibration, selective prediction, task scores, diversity, CHAIR.

Pure numpy/scipy.  Definitions and conventions follow ``../shared/reference/evaluation.md``
§1, §3–§6; each function's docstring gives its formula.  Input conventions:

* ``probs`` — (N, C) per-choice probabilities, rows summing to 1; ``labels`` — ints in [0, C);
* ``confidence`` — top-label confidence c_i in [0, 1]; ``correct`` — bool (or 0/1);
  :func:`top_label` turns ``(probs, labels)`` into these;
* ``logits`` — (N, C) restricted-answer logits, for temperature scaling and NLL.

Invalid input raises :class:`MetricInputError` (a ``ValueError``) naming the problem.
"""

from studylib.metrics.bootstrap import BootstrapInterval, bootstrap_ci, paired_bootstrap_ci, resample_indices
from studylib.metrics.calibration import (
    DEFAULT_EDGES,
    DEFAULT_N_BINS,
    ReliabilityBins,
    TopLabel,
    bin_boundaries,
    bin_index,
    brier_binary,
    brier_multiclass,
    brier_top_label,
    binned_calibration_error,
    calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
    mean_confidence,
    negative_log_likelihood,
    overconfidence,
    reliability_bins,
    top_label,
)
from studylib.metrics.classification import (
    COGNITION_SUBTASKS,
    MME_SUBTASKS,
    PERCEPTION_SUBTASKS,
    MmeScore,
    PopeMetrics,
    accuracy,
    mme_scores,
    mme_table,
    mme_total,
    pope_metrics,
    pope_metrics_by_split,
    score_mme,
)
from studylib.metrics.hallucination import (
    chair_vocabulary,
    CaptionChair,
    ChairResult,
    ChairVocabulary,
    ObjectMention,
    caption_counts,
    caption_objects,
    chair,
    chair_from_counts,
    coco_vocabulary,
    singularize,
    tokenize,
    toy_vocabulary,
)
from studylib.metrics.representation import attention_entropy, effective_rank
from studylib.metrics.selective import (
    RiskCoverage,
    aurc,
    excess_aurc,
    optimal_aurc,
    risk_coverage_curve,
    selective_accuracy,
    selective_metrics,
)
from studylib.metrics.temperature import (
    CrossValidatedTemperature,
    cross_validated_temperature_scaling,
    fit_temperature,
    fold_assignment,
    nll_from_logits,
    scaled_probabilities,
)
from studylib.metrics.validation import MetricInputError

__all__ = [
    "chair_vocabulary",
    "DEFAULT_EDGES",
    "DEFAULT_N_BINS",
    "COGNITION_SUBTASKS",
    "MME_SUBTASKS",
    "PERCEPTION_SUBTASKS",
    "BootstrapInterval",
    "CaptionChair",
    "ChairResult",
    "ChairVocabulary",
    "CrossValidatedTemperature",
    "MetricInputError",
    "MmeScore",
    "ObjectMention",
    "PopeMetrics",
    "ReliabilityBins",
    "RiskCoverage",
    "TopLabel",
    "accuracy",
    "attention_entropy",
    "aurc",
    "bin_boundaries",
    "bin_index",
    "bootstrap_ci",
    "brier_binary",
    "brier_multiclass",
    "brier_top_label",
    "binned_calibration_error",
    "calibration_error",
    "caption_counts",
    "caption_objects",
    "chair",
    "chair_from_counts",
    "coco_vocabulary",
    "cross_validated_temperature_scaling",
    "effective_rank",
    "excess_aurc",
    "expected_calibration_error",
    "fit_temperature",
    "fold_assignment",
    "maximum_calibration_error",
    "mean_confidence",
    "mme_scores",
    "mme_table",
    "mme_total",
    "negative_log_likelihood",
    "nll_from_logits",
    "optimal_aurc",
    "overconfidence",
    "paired_bootstrap_ci",
    "pope_metrics",
    "pope_metrics_by_split",
    "reliability_bins",
    "resample_indices",
    "risk_coverage_curve",
    "scaled_probabilities",
    "score_mme",
    "selective_accuracy",
    "selective_metrics",
    "singularize",
    "tokenize",
    "top_label",
    "toy_vocabulary",
]
