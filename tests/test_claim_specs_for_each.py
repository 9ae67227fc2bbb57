"""``for_each`` over a list of mappings binds each mapping's keys (studylib.claim_specs)."""

import pandas as pd

from studylib.claim_specs import evaluate_claims

SPEC = """
- id: X
  source: test
  statement: every benchmark's chosen p helps
  test: all_of
  note: "{n} choices"
  parts:
    - id: "X.{benchmark}"
      statement: "{benchmark}: p={p:g} helps"
      for_each: {choice: chosen}
      exclude: [{benchmark: B}]
      test: point
      a: "gain_{benchmark}"
      b: 0
      direction: greater
"""


def test_for_each_over_mappings_binds_keys_and_excludes(tmp_path):
    (tmp_path / "x.yaml").write_text(SPEC)
    chosen = [{"benchmark": "A", "p": 2.0}, {"benchmark": "B", "p": 3.0}, {"benchmark": "C"}]
    [claim] = evaluate_claims("x", {"rows": pd.DataFrame()}, {"n_tokens": 8, "chosen": chosen, "n": 3},
                              {"gain_A": 0.5, "gain_C": 0.1}, directory=tmp_path)
    assert [p.id for p in claim.parts] == ["X.A", "X.C"]
    assert claim.parts[0].statement == "A: p=2 helps" and claim.parts[0].holds
    assert claim.parts[1].verdict == "not applicable: needs the parameter p"
    assert claim.note == "3 choices"
