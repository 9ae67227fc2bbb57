"""Analysis tables on synthetic rows with known values, and once on real toy-model rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from studylib import analysis, claims
from studylib.metrics import (
    aurc,
    bootstrap_ci,
    brier_multiclass,
    excess_aurc,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
    paired_bootstrap_ci,
    reliability_bins,
    risk_coverage_curve,
    selective_accuracy,
)
from studylib.metrics import BootstrapInterval


def yesno_rows(p_yes, labels, images, config="a@1", split="random"):
    """Yes/no result rows as run_sweep writes them, from P(yes) and labels."""
    rows = []
    for i, (p, label, image) in enumerate(zip(p_yes, labels, images)):
        probs = [float(p), float(1 - p)]
        prediction = "yes" if p >= 0.5 else "no"
        rows.append({"config": config, "pruner": config.split("@")[0], "k": int(config.split("@")[1]),
                     "qid": f"q{i}", "image": image, "task": "yesno", "split": split, "label": label,
                     "choices": ["yes", "no"], "probs": probs, "logits": np.log(probs).tolist(),
                     "prediction": prediction, "confidence": max(probs), "correct": prediction == label,
                     "erank_kept": 1.0, "entropy_kept": 0.5})
    return pd.DataFrame(rows)


def random_rows(n=300, seed=0, config="a@1", sharpen=1.0, n_images=60):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, n)
    labels = np.where(rng.random(n) < 1 / (1 + np.exp(-z)), "yes", "no")
    p_yes = 1 / (1 + np.exp(-sharpen * z))
    images = [f"img{i % n_images}" for i in range(n)]
    return yesno_rows(p_yes, labels, images, config)


def test_known_values():
    rows = yesno_rows([0.9, 0.9, 0.6, 0.6], ["yes", "no", "yes", "yes"], ["i0", "i0", "i1", "i1"])
    s = analysis.calibration_summary(rows, n_bootstrap=0).iloc[0]
    assert s["n"] == 4 and s["n_clusters"] == 2
    assert s["accuracy"] == pytest.approx(0.75)
    assert s["ece"] == pytest.approx(0.4)  # bins (0.867, 0.933]: acc .5 vs .9; (0.533, 0.6]: acc 1 vs .6
    assert s["mce"] == pytest.approx(0.4)
    assert s["brier"] == pytest.approx((0.02 + 1.62 + 0.32 + 0.32) / 4)  # multiclass convention
    assert s["nll"] == pytest.approx(-np.mean(np.log([0.9, 0.1, 0.6, 0.6])))
    assert s["mean_confidence"] == pytest.approx(0.75) and s["overconfidence"] == pytest.approx(0.0)
    assert s["sel_acc_80"] == pytest.approx(0.75) and s["yes_ratio"] == 1.0
    assert np.isnan(s["ece_low"]) and s["k"] == 1 and s["pruner"] == "a"


def test_metrics_agree_with_the_metric_library():
    rows = random_rows()
    s = analysis.calibration_summary(rows, n_bootstrap=0).iloc[0]
    probs, labels = np.array(rows["probs"].tolist()), (rows["label"] == "no").to_numpy().astype(int)
    conf, correct = rows["confidence"].to_numpy(), rows["correct"].to_numpy()
    assert s["ece"] == pytest.approx(expected_calibration_error(conf, correct), abs=1e-12)
    assert s["mce"] == pytest.approx(maximum_calibration_error(conf, correct), abs=1e-12)
    assert s["brier"] == pytest.approx(brier_multiclass(probs, labels), abs=1e-12)
    assert s["nll"] == pytest.approx(negative_log_likelihood(probs, labels), abs=1e-9)
    assert s["aurc"] == pytest.approx(aurc(conf, correct), abs=1e-12)
    assert s["e_aurc"] == pytest.approx(excess_aurc(conf, correct), abs=1e-12)
    assert s["sel_acc_80"] == pytest.approx(selective_accuracy(conf, correct, 0.8), abs=1e-12)
    assert s["yes_ratio"] == pytest.approx(np.mean(rows["prediction"] == "yes"))


def test_cluster_bootstrap_matches_bootstrap_ci():
    rows = random_rows()
    s = analysis.calibration_summary(rows, n_bootstrap=200, seed=3).iloc[0]
    conf, correct, images = rows["confidence"].to_numpy(), rows["correct"].to_numpy(), rows["image"].to_numpy()
    ece = bootstrap_ci(expected_calibration_error, conf, correct, n_resamples=200, seed=3, groups=images)
    acc = bootstrap_ci(lambda c: float(np.mean(c)), correct, n_resamples=200, seed=3, groups=images)
    assert (s["ece_low"], s["ece_high"]) == pytest.approx((ece.low, ece.high), abs=1e-12)
    assert (s["accuracy_low"], s["accuracy_high"]) == pytest.approx((acc.low, acc.high), abs=1e-12)
    assert s["accuracy_low"] <= s["accuracy"] <= s["accuracy_high"]
    plain = analysis.calibration_summary(rows, n_bootstrap=200, seed=3, cluster=None).iloc[0]
    assert (plain["ece_low"], plain["ece_high"]) != (s["ece_low"], s["ece_high"])
    for metric in analysis.CI_METRICS:
        assert s[f"{metric}_low"] <= s[f"{metric}_high"]


def test_groups_keep_order_and_carry_constant_columns():
    rows = pd.concat([random_rows(120, seed=1, config="b@8"), random_rows(120, seed=2, config="a@4")])
    rows.loc[rows.index % 2 == 0, "split"] = "popular"
    s = analysis.calibration_summary(rows, n_bootstrap=0)
    assert list(s["config"]) == ["b@8", "a@4"] and list(s["k"]) == [8, 4] and "split" not in s
    per_split = analysis.calibration_summary(rows, by=("config", "split"), n_bootstrap=0)
    assert len(per_split) == 4 and set(per_split["n"]) == {60}


def test_mixed_question_types_in_one_group():
    yesno = yesno_rows([0.8], ["yes"], ["i0"])
    mc = yesno.copy()
    mc.loc[0, ["task", "label", "prediction", "qid"]] = ["mc", "B", "B", "m0"]
    mc.at[0, "choices"] = ["A", "B", "C", "D"]
    mc.at[0, "probs"] = [0.1, 0.6, 0.2, 0.1]
    mc.at[0, "logits"] = np.log([0.1, 0.6, 0.2, 0.1]).tolist()
    mc.loc[0, ["confidence", "correct"]] = [0.6, True]
    s = analysis.calibration_summary(pd.concat([yesno, mc], ignore_index=True), n_bootstrap=0).iloc[0]
    assert s["brier"] == pytest.approx((2 * 0.2**2 + (0.01 + 0.16 + 0.04 + 0.01)) / 2)
    assert s["nll"] == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)
    assert s["yes_ratio"] == 1.0


def test_temperature_summary_recovers_the_overconfidence():
    a = random_rows(600, seed=4, config="sharp@1", sharpen=3.0, n_images=120)
    b = a.assign(config="copy@1")
    t = analysis.temperature_summary(pd.concat([a, b]), n_folds=5, seed=0)
    first, second = t.iloc[0], t.iloc[1]
    assert first["t_mean"] == pytest.approx(3.0, rel=0.25) and len(first["t_folds"]) == 5
    assert first["ece_after"] < first["ece_before"] and first["nll_after"] < first["nll_before"]
    assert first["brier_after"] < first["brier_before"]
    assert first["t_folds"] == second["t_folds"]  # same rows, same folds -> same temperatures
    assert first["accuracy"] == pytest.approx(a["correct"].mean())


def test_temperature_folds_are_the_same_for_every_config():
    a = random_rows(300, seed=5, config="a@1")
    b = random_rows(300, seed=6, config="b@1")
    b["image"] = a["image"]
    both = analysis.temperature_summary(pd.concat([a, b]), seed=0)
    alone = analysis.temperature_summary(a, seed=0)
    assert both.iloc[0]["t_folds"] == alone.iloc[0]["t_folds"]


def test_paired_delta():
    a = random_rows(300, seed=7, config="a@1")
    b = random_rows(300, seed=8, config="b@1", sharpen=2.0)
    b["image"], b["label"] = a["image"], a["label"]
    b["correct"] = b["prediction"] == b["label"]
    rows = pd.concat([a, b.sample(frac=1.0, random_state=0)])  # b shuffled: aligned by qid
    delta = analysis.paired_delta(rows, "a@1", "b@1", "ece", n_bootstrap=200, seed=1)
    conf = lambda f: (f["confidence"].to_numpy(), f["correct"].to_numpy())
    expected = paired_bootstrap_ci(expected_calibration_error, conf(b), conf(a), n_resamples=200, seed=1,
                                   groups=a["image"].to_numpy())
    assert isinstance(delta, BootstrapInterval)
    assert delta.estimate == pytest.approx(expected_calibration_error(*conf(b)) - expected_calibration_error(*conf(a)))
    assert (delta.low, delta.high) == pytest.approx((expected.low, expected.high), abs=1e-12)
    with pytest.raises(ValueError, match="cover different questions"):
        analysis.paired_delta(pd.concat([a, b.iloc[:-1]]), "a@1", "b@1")
    with pytest.raises(ValueError, match="unknown metric"):
        analysis.paired_delta(rows, "a@1", "b@1", "eces")
    with pytest.raises(ValueError, match="no rows for config 'c@1'"):
        analysis.paired_delta(rows, "a@1", "c@1")


def test_reliability_and_risk_coverage():
    rows = random_rows()
    bins = analysis.reliability(rows, "a@1")
    expected = reliability_bins(rows["confidence"], rows["correct"])
    np.testing.assert_array_equal(bins.count, expected.count)
    curve = analysis.risk_coverage(rows, "a@1")
    np.testing.assert_allclose(curve.risk, risk_coverage_curve(rows["confidence"], rows["correct"]).risk)


@pytest.mark.parametrize("interval, direction, expected", [
    ((0.01, 0.05), ">", "holds"), ((0.01, 0.05), "<", "reversed"),
    ((-0.05, -0.01), "<", "holds"), ((-0.05, -0.01), ">", "reversed"),
    ((-0.01, 0.05), ">", "inconclusive (CI includes 0)"), ((0.0, 0.05), ">", "inconclusive (CI includes 0)"),
])
def test_verdict(interval, direction, expected):
    assert claims.verdict(interval, direction) == expected
    assert claims.verdict(BootstrapInterval(0.0, *interval, 0.95, np.zeros(1)), direction) == expected


def test_verdict_threshold_and_errors():
    assert claims.verdict((0.02, 0.05), ">", threshold=0.01) == "holds"  # a claim of size: above 0.01
    assert claims.verdict((0.0, 0.05), ">", threshold=0.01) == "inconclusive (CI includes +0.01)"
    assert claims.verdict((0.002, 0.008), ">", threshold=0.01) == "holds, smaller than reported"
    with pytest.raises(ValueError, match="direction"):
        claims.verdict((0, 1), ">=")


def caption_rows(config="c@4"):
    return pd.DataFrame({
        "config": config, "task": "caption", "qid": ["c0", "c1", "c2"], "image": ["i0", "i1", "i2"],
        "n_mentions": [2, 1, 0], "n_hallucinated": [1, 0, 0], "hallucinated": [True, False, False],
        "n_recalled": [1, 1, 0], "n_gt": [2, 1, 1], "length": [10, 6, 2], "erank_kept": [2.0, 3.0, 4.0],
        "entropy_kept": [0.5, 0.5, 0.5],
    })


def test_chair_summary_known_values():
    s = analysis.chair_summary(caption_rows(), n_bootstrap=100).iloc[0]
    assert s["chair_s"] == pytest.approx(1 / 3) and s["chair_i"] == pytest.approx(1 / 3)
    assert s["recall"] == pytest.approx(0.5) and s["mean_length"] == pytest.approx(6.0)
    assert s["mean_erank_kept"] == pytest.approx(3.0) and s["n"] == 3
    assert 0 <= s["chair_s_low"] <= s["chair_s_high"] <= 1
    other = caption_rows("d@4").assign(n_hallucinated=[2, 1, 0], hallucinated=[True, True, False])
    delta = analysis.paired_delta(pd.concat([caption_rows(), other]), "c@4", "d@4", "chair_i", n_bootstrap=50)
    assert delta.estimate == pytest.approx(1.0 - 1 / 3)


def test_toy_rows(toy_adapter, tmp_path):
    """The whole path on rows of the trained toy model."""
    from studylib.sweep import run_sweep

    rows = run_sweep(toy_adapter, "toy-pope", ["full@144", "scope(alpha=0)@8"], dataset_options={"n_images": 12},
                     limit=6, batch_size=32, results_dir=tmp_path, progress=False)
    s = analysis.calibration_summary(rows, n_bootstrap=100)
    full = rows[rows["config"] == "full@144"]
    assert list(s["config"]) == ["full@144", "scope(alpha=0,p=1)@8"] and list(s["k"]) == [144, 8]
    assert s.iloc[0]["ece"] == pytest.approx(expected_calibration_error(full["confidence"], full["correct"]))
    assert s.iloc[0]["accuracy"] == pytest.approx(full["correct"].mean()) and (s["n"] == len(full)).all()
    assert (s["ece_low"] <= s["ece_high"]).all() and (s["n_clusters"] == 6).all()
    t = analysis.temperature_summary(rows, n_folds=3)
    assert (t["t_mean"] > 0).all() and np.isfinite(t[["ece_after", "nll_after", "brier_after"]].to_numpy()).all()
    delta = analysis.paired_delta(rows, "full@144", "scope(alpha=0,p=1)@8", "accuracy", n_bootstrap=100)
    assert delta.low <= delta.estimate <= delta.high
    assert claims.verdict_base(claims.verdict(delta, "<")) in claims.OUTCOMES


@pytest.mark.parametrize("damage", ["nan probability", "unnormalised", "nan logit"])
def test_damaged_rows_are_refused_not_padded(damage):
    rows = random_rows(20)
    if damage == "nan probability":
        rows.at[3, "probs"] = [float("nan"), 0.5]
    elif damage == "unnormalised":
        rows.at[3, "probs"] = [0.9, 0.3]
    else:
        rows.at[3, "logits"] = [float("nan"), -1.0]
    for summarise in (analysis.calibration_summary, analysis.temperature_summary):
        with pytest.raises(ValueError, match="'q3'.*not a finite, normalised distribution"):
            summarise(rows)
