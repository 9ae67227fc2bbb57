"""Snapshot of every pruner's selection on a fixed seeded random input (``snapshots.json``).

A refactor must not silently change any selection.  When a change is intended, regenerate the
file and review the diff::

    UPDATE_SNAPSHOTS=1 PYTHONPATH=src .venv/bin/pytest tests/pruners/test_pruners_snapshots.py

Inputs come from numpy's PCG64 (stable across versions); the vision pruners run on float32
inputs (the production path), the in-LLM rules on float64.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from _pruner_helpers import VISION_SPECS, make_tokens
from studylib.pruners import dart_rule, fastv_rule, get_pruner
from studylib.pruners.sparsevlm import recycle_dropped, select_raters

PATH = Path(__file__).with_name("snapshots.json")
BUDGETS = (5, 12)
UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"


def _vision_snapshot(spec: str) -> dict:
    tokens, query = make_tokens(2024, b=2, rows=6, cols=6, dv=16, dl=24, dh=8)
    out = {}
    pruner = get_pruner(spec)
    for k in BUDGETS if not spec.startswith("full") else (36,):
        sel = pruner(tokens, k, query)
        entry = {"indices": sel.indices.tolist()}
        if sel.merged is not None:
            entry["merged"] = [[[round(v, 5) for v in row] for row in img] for img in sel.merged.tolist()]
        out[f"k={k}"] = entry
    return out


def _llm_snapshot() -> dict:
    g = torch.Generator().manual_seed(2024)
    att = torch.softmax(torch.randn(2, 4, 36, generator=g, dtype=torch.float64), dim=-1)
    keys = torch.randn(2, 50, 16, generator=g, dtype=torch.float64)
    hidden = torch.randn(2, 50, 12, generator=g, dtype=torch.float64)
    snap = {
        "fastv(layer=2)": {f"k={k}": {"indices": fastv_rule(att, k).tolist()} for k in BUDGETS},
        "dart(layer=2)": {f"k={k}": {"indices": dart_rule(keys, hidden, 6, 36, k).tolist()} for k in BUDGETS},
    }
    # staged pruners: their schedules (drop layers, then kept counts) on a 32- and a 4-layer LLM,
    # SparseVLM's raters and recycled tokens on seeded inputs
    for spec in ("pdrop", "sparsevlm"):
        plans = [get_pruner(spec).rule(depth, k) for k in BUDGETS for depth in (32, 4)]
        snap[str(get_pruner(spec))] = {f"k={k}": {"indices": [list(p.layers) + list(p.keep) for p in plans[2 * i:2 * i + 2]]}
                                       for i, k in enumerate(BUDGETS)}
    valid = torch.arange(8).expand(2, 8) >= torch.tensor([[0], [3]])
    snap["sparsevlm raters, recycled"] = {f"k={k}": {
        "indices": select_raters(hidden[:, :k], hidden[:, 36:44], valid).long().tolist(),
        "merged": [[[round(v, 5) for v in row] for row in img] for img in recycle_dropped(hidden[:, :3 * k], att[:, 0, :3 * k]).tolist()],
    } for k in BUDGETS}
    return snap


def _current() -> dict:
    snap = {spec: _vision_snapshot(spec) for spec in VISION_SPECS}
    snap.update(_llm_snapshot())
    return snap


def test_snapshots():
    current = _current()
    if UPDATE or not PATH.exists():
        PATH.write_text(json.dumps(current, indent=None, separators=(",", ":")).replace('},"', '},\n"') + "\n")
        if not UPDATE:
            pytest.fail(f"{PATH.name} was missing and has been written; rerun the tests")
        return
    stored = json.loads(PATH.read_text())
    assert sorted(stored) == sorted(current), "pruner set changed: regenerate the snapshots (see module docstring)"
    for spec, budgets in current.items():
        for k, entry in budgets.items():
            old = stored[spec][k]
            assert entry["indices"] == old["indices"], f"{spec} {k}: selection changed"
            if "merged" in entry:
                torch.testing.assert_close(torch.tensor(entry["merged"]), torch.tensor(old["merged"]), atol=1e-4, rtol=1e-4)
