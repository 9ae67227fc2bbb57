"""Declared claims (data/claims/<experiment>.yaml, studylib.claim_specs): templating, expansion,
references, citations of reported.csv, and "not applicable" for grids that lack a configuration."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from studylib.claim_specs import Citation, ClaimEvaluator, ClaimSpecError, evaluate_claims, load_specs
from studylib.experiments import ORDER

REPO = Path(__file__).resolve().parents[1]


def _rows(p_correct: dict[str, float], n_images: int = 40) -> pd.DataFrame:
    """Yes/no rows: config c is right with probability p_c, always at confidence 0.9."""
    records = []
    for config, p in p_correct.items():
        draws = np.random.default_rng(0).random((n_images, 2)) < p
        for i in range(n_images):
            for j in range(2):
                label = "yes" if j else "no"
                prediction = label if draws[i, j] else ("no" if j else "yes")
                p_yes = 0.9 if prediction == "yes" else 0.1
                records.append({"config": config, "qid": f"{i}-{j}", "image": f"im{i}", "task": "yesno",
                                "split": "s", "label": label, "choices": ["yes", "no"], "probs": [p_yes, 1 - p_yes],
                                "logits": [math.log(p_yes), math.log(1 - p_yes)], "prediction": prediction,
                                "confidence": 0.9, "correct": bool(draws[i, j])})
    return pd.DataFrame(records)


ROWS = _rows({"full@144": 0.9, "scope(alpha=0,p=1)@16": 0.9, "scope(alpha=1,p=1)@16": 0.5,
              "scope(alpha=0,p=1)@32": 0.9, "scope(alpha=1,p=1)@32": 0.5})
CONTEXT = {"n_tokens": 144, "budgets": [16, 32], "k_map": {16: 64, 32: 128}}


def _write(tmp_path, specs) -> Path:
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(specs, sort_keys=False))
    return tmp_path


def test_for_each_expands_and_missing_configurations_are_not_applicable(tmp_path):
    specs = [{"id": "A", "source": "seed 000", "statement": "alpha 0 beats alpha {hi}", "test": "all_of",
              "parts": [{"id": "A.K{k}", "statement": "K={k}", "test": "delta", "metric": "ece",
                         "a": "scope(alpha=0)@{k}", "b": "scope(alpha={hi})@{k}", "direction": "less",
                         "for_each": {"k": "budgets"}}]}]
    holds = evaluate_claims("x", {"rows": ROWS}, {**CONTEXT, "hi": 1}, directory=_write(tmp_path, specs),
                            n_bootstrap=100)
    assert holds[0].verdict == "holds" and [p.id for p in holds[0].parts] == ["A.K16", "A.K32"]
    missing = evaluate_claims("x", {"rows": ROWS}, {**CONTEXT, "hi": 0.5}, directory=tmp_path, n_bootstrap=100)
    assert missing[0].verdict == "not applicable: needs scope(alpha=0.5,p=1)@16, scope(alpha=0.5,p=1)@32"
    assert missing[0].parts[0].verdict == "not applicable: needs scope(alpha=0.5,p=1)@16"


def test_exclude_ref_and_point_values(tmp_path):
    specs = [{"id": "P", "source": "s", "statement": "T closer to 1 at K={k}", "test": "point", "metric": "|T-1|",
              "a": "dev[scope(alpha=1)@{k}]", "b": "dev[full]", "direction": "less"},
             {"id": "R", "source": "s", "statement": "every K but 16", "test": "all_of",
              "parts": [{"ref": "P"}, {"id": "R.{k}", "statement": "K={k}", "test": "point", "a": "{k}", "b": 0,
                                       "direction": "greater", "for_each": {"k": [16, 32]}, "exclude": [{"k": 16}]}]}]
    values = {"dev[scope(alpha=1,p=1)@16]": 0.1, "dev[full@144]": 0.3}
    out = evaluate_claims("x", {"rows": ROWS}, {**CONTEXT, "k": 16}, values, directory=_write(tmp_path, specs))
    by_id = {c.id: c for c in out}
    assert by_id["P"].verdict == "holds (point estimate)" and by_id["P"].estimate == pytest.approx(-0.2)
    assert [p.id for p in by_id["R"].parts] == ["P", "R.32"]
    assert by_id["R"].verdict == "holds (point estimate)"


def test_reported_numbers_are_cited_from_the_csv(tmp_path):
    specs = [{"id": "C", "source": "seed 000 Table 2", "statement": "s", "test": "delta", "metric": "ece",
              "a": "scope(alpha=0)@32", "b": "scope(alpha=1)@32", "direction": "less",
              "reported": {"table": "Table 2"}}]
    claim = evaluate_claims("x", {"rows": ROWS}, CONTEXT, directory=_write(tmp_path, specs), n_bootstrap=50)[0]
    assert claim.reported == "0.016 vs 0.023"  # seed 000 Table 2, K = 128 (our 32)


DELTA = {"id": "X", "source": "s", "statement": "s", "test": "delta", "metric": "ece", "a": "a@1", "b": "b@1",
         "direction": "less"}


@pytest.mark.parametrize("bad, field, match", [
    ({**DELTA, "typo": 1}, "typo", "unknown for a delta test"),
    ({**DELTA, "margin": 0.01}, "margin", "unknown for a delta test"),  # a field another test takes
    ({k: v for k, v in DELTA.items() if k != "b"}, "b", "missing"),
    ({**{k: v for k, v in DELTA.items() if k != "direction"}, "test": "equivalence"}, "margin", "missing"),
    ({k: v for k, v in DELTA.items() if k != "statement"}, "statement", "missing"),
    ({"id": "X", "source": "s", "statement": "s", "test": "ttest"}, "test", "must be one of"),
    ({"id": "X", "source": "s", "statement": "s", "test": "all_of", "parts": []}, "parts", "non-empty list"),
    ({**DELTA, "direction": "sideways"}, "direction", "must be 'less' or 'greater'"),
    ({**DELTA, "reported": {"table": "Table 1", "tabel": "x"}}, "reported.tabel", "unknown"),
    ({"id": "X", "source": "s", "statement": "s", "test": "all_of", "parts": [{**DELTA, "id": "X.1", "per": "image"}]},
     "per", "unknown for a delta test"),
])
def test_malformed_specs_are_refused_naming_the_file_the_claim_and_the_field(tmp_path, bad, field, match):
    with pytest.raises(ClaimSpecError, match=match) as caught:
        load_specs("x", _write(tmp_path, [bad]))
    message = str(caught.value)
    assert "x.yaml" in message and "claim X" in message and f"field {field!r}" in message


def test_a_part_inherits_its_source_and_loads_typed(tmp_path):
    composite = {"id": "A", "source": "seed 000", "statement": "s", "test": "any_of", "intro": "line",
                 "parts": [{**DELTA, "id": "A.1"}, {"ref": "A"}], "correction": None}
    (spec,) = load_specs("x", _write(tmp_path, [DELTA | {"id": "A0"}, composite][1:]))
    assert spec.intro == "line" and spec.correction is None and spec.parts[0].metric == "ece"
    assert spec.parts[0].source == "s" and spec.parts[1].ref == "A"


@pytest.mark.parametrize("field, template, name", [
    ("statement", "K={moderate_kk}", "moderate_kk"),
    ("a", "scope(alpha=0)@{kk}", "kk"),
    ("note", "{nothing[0]}", "nothing"),
    ("reported", {"table": "Table {tabel}"}, "tabel"),
])
def test_a_template_key_that_does_not_exist_is_an_error_before_anything_runs(tmp_path, field, template, name):
    spec = {"id": "T", "source": "s", "statement": "s", "test": "all_of", "parts": [
        {**DELTA, "id": "T.K{k}", "for_each": {"k": "budgets"}, field: template}]}
    with pytest.raises(ClaimSpecError, match=r"template key \{" + name + r"\} does not exist") as caught:
        evaluate_claims("x", {"rows": ROWS}, CONTEXT, directory=_write(tmp_path, [spec]), n_bootstrap=10)
    message = str(caught.value)
    assert "x.yaml" in message and "claim T.K{k}" in message and f"field {field!r}" in message
    assert "budgets" in message and "'k'" in message  # what is available


def test_a_for_each_over_a_list_the_experiment_lacks_is_an_error(tmp_path):
    spec = {**DELTA, "id": "T.{k}", "for_each": {"k": "budgetz"}}
    with pytest.raises(ClaimSpecError, match="for_each.k.*'budgetz'"):
        evaluate_claims("x", {"rows": ROWS}, CONTEXT, directory=_write(tmp_path, [spec]))


def test_every_experiment_claims_file_loads_and_cites_known_tables():
    from studylib.reported import reported

    tables = set(map(tuple, reported()[["paper", "table"]].drop_duplicates().to_numpy()))
    for name in ORDER:
        path = REPO / "data" / "claims" / f"{name}.yaml"
        if not path.exists():
            continue
        for spec in load_specs(name):
            for part in [spec, *spec.parts]:
                cite = getattr(part, "reported", None)
                if isinstance(cite, Citation):
                    assert (cite.paper, cite.table) in tables, (name, part.id, cite)


def test_evaluator_needs_n_tokens():
    with pytest.raises(ValueError, match="n_tokens"):
        evaluate_claims("u_curve", {"rows": ROWS}, {})
    assert ClaimEvaluator({"rows": ROWS}, CONTEXT).evaluate([]) == []
