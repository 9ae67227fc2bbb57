"""Claim specs: templated metrics, subsets of mean_delta tests, citations of several benchmarks or no budget."""

from __future__ import annotations

import numpy as np
import pandas as pd
import yaml

from studylib.claim_specs import evaluate_claims

PAIR = ["divprune@1", "saliency@1"]
SPECS = [
    {"id": "M", "source": "t", "statement": "s", "test": "all_of", "reported": "parts", "parts": [
        {"id": "M.{task[name]}", "for_each": {"task": "tasks"}, "statement": "{task[name]}", "test": "mean_delta",
         "rows": "tau", "subset": {"benchmark": "{task[name]}"}, "column": "{column}", "a": PAIR[0], "b": PAIR[1],
         "direction": "greater",
         "reported": {"paper": "002", "table": "Table 12", "metric": "erank", "benchmark": "{task[name]}", "k": None,
                      "a": "agile(erank_avg=1e-06,tau_max=0.5)@1", "b": "agile(erank_avg=1e-06,tau_max=0)@1"}}]},
    {"id": "D", "source": "t", "statement": "s", "test": "delta", "metric": "{metric}", "a": "saliency@16",
     "b": "divprune@16", "direction": "greater",
     "reported": {"paper": "002", "table": "Table 4", "metric": "score", "benchmark": ["MME-OCR", "ScienceQA"]}},
]


def _rows(configs, benchmark: str, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame([{"config": config, "image": f"i{i}", "qid": f"{benchmark}{i}", "benchmark": benchmark,
                          "erank_kept": 10.0 + shift * (config == PAIR[0]) + rng.random(), "correct": True,
                          "probs": [0.9, 0.1], "confidence": 0.9, "label": "yes", "prediction": "yes",
                          "choices": ["yes", "no"], "logits": [0.0, -2.0]}
                         for config in configs for i in range(30)])


def test_templated_metric_subset_and_citations(tmp_path):
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(SPECS, allow_unicode=True))
    tau = pd.concat([_rows(PAIR, "POPE", 1.0), _rows(PAIR, "ScienceQA", -1.0)], ignore_index=True)
    rows = _rows(["saliency@16", "divprune@16"], "POPE", 0.0)
    context = {"n_tokens": 144, "k_map": {16: 64}, "column": "erank_kept", "metric": "accuracy",
               "tasks": [{"name": "POPE"}, {"name": "ScienceQA"}]}
    mean, delta = evaluate_claims("x", {"tau": tau, "rows": rows}, context, n_bootstrap=50, directory=tmp_path)
    pope, sqa = mean.parts
    assert (pope.id, sqa.id) == ("M.POPE", "M.ScienceQA")
    assert pope.verdict == "holds" and sqa.verdict == "reversed"  # each part reads its benchmark's rows only
    assert (pope.reported, sqa.reported) == ("34.2 vs 14.9", "35.2 vs 15.5")  # Table 12 states no budget
    # no difference at all: a zero-width CI decides nothing; the cited "score" is not this claim's metric, so δ
    # is accuracy's 1 pp default
    assert delta.metric == "accuracy" and delta.verdict.startswith("inconclusive (zero-width CI")
    assert delta.comparison.endswith("smallest effect of interest +0.01 (1 pp, no reported effect)")
    assert delta.reported == "MME-OCR: 140 vs 130, ScienceQA: 69.51 % vs 67.53 %"
