"""The claims table shows configurations with their long reference values shortened."""

from __future__ import annotations

import numpy as np

from studylib.claims import claims_table, interval_claim, readable
from studylib.metrics import BootstrapInterval


def test_long_decimals_are_shortened_for_display_only():
    spec = "agile(erank_avg=20.211923587046698,tau_max=0.25)@16"
    assert readable(spec) == "agile(erank_avg=20.21,tau_max=0.25)@16"
    assert readable("scope_adaptive(erank_avg=1e-06,entropy_avg=4.5141250125142545)") == \
        "scope_adaptive(erank_avg=1e-06,entropy_avg=4.514)"
    assert readable("K=32, p=0.5, alpha 0.25, version 1.2.34567") == "K=32, p=0.5, alpha 0.25, version 1.2.34567"


def test_the_claims_table_reads_the_short_form_and_the_claim_keeps_its_digits():
    spec = "agile(erank_avg=20.211923587046698,tau_max=0.25)@16"
    interval = BootstrapInterval(-0.02, -0.03, -0.01, 0.95, np.linspace(-0.03, -0.01, 50))
    claim = interval_claim(interval, id=f"X.{spec}", source="seed 000", statement="lower ECE", metric="ece",
                           comparison=f"ece[{spec}] − ece[full]", direction="less")
    row = claims_table([claim]).iloc[0]
    assert row["id"] == "X.agile(erank_avg=20.21,tau_max=0.25)@16"
    assert row["test on this run"].startswith("ece[agile(erank_avg=20.21,tau_max=0.25)@16] − ece[full]: claimed below")
    assert "20.211923587046698" in claim.comparison
