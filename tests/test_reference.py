"""data/reference/reported.csv: schema, and values re-found in the seed papers' extracted text."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from studylib.reported import REPORTED_COLUMNS, REPORTED_CSV, reported
from studylib.pruners import parse_spec

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"
SEED_FILES = {"000": "000_2924f069589e93f3.txt", "002": "002_a0393bfd2a579113.txt"}
UNITS = {"%", "fraction", "nats", "T", "pp", "points", "dimensions", "words", "tokens"}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return reported()


def seed_text(paper: str) -> str:
    path = SEEDS / SEED_FILES[paper]
    if not path.exists():
        pytest.skip(f"seed text {path} not available (the shared seeds sit beside the repository)")
    return path.read_text()


def numbers(line: str) -> list[float]:
    """Numbers in a table line, '.041' and '83.6±0.2' included (the ± part is dropped)."""
    line = re.sub(r"±\s*[\d.]+", "", line)
    return [float(x) for x in re.findall(r"(?<![\w.])-?\d*\.?\d+", line)]


def table_line(text: str, pattern: str) -> str:
    hits = [line for line in text.splitlines() if re.search(pattern, line)]
    assert len(hits) >= 1, f"no line matching {pattern!r} in the seed text"
    return hits[0]


def test_schema(frame):
    assert list(pd.read_csv(REPORTED_CSV, nrows=0).columns) == list(REPORTED_COLUMNS)
    assert len(frame) > 300
    assert set(frame["paper"]) == {"000", "002"}
    assert frame["value"].map(lambda v: isinstance(v, float) and math.isfinite(v)).all()
    assert set(frame["unit"]) <= UNITS, set(frame["unit"]) - UNITS
    for column in ("table", "section", "benchmark", "method", "setting", "metric"):
        assert frame[column].notna().all() and (frame[column].astype(str).str.len() > 0).all(), column
    assert frame["page"].isna().all(), "the extracted seed texts have no page numbers; use section"
    assert (frame["k"].dropna() > 0).all()
    keys = ["paper", "table", "benchmark", "method", "setting", "metric"]
    duplicated = frame[frame.duplicated(keys, keep=False)]
    assert duplicated.empty, duplicated[keys]


def test_pruner_specs_are_canonical(frame):
    for spec in sorted(set(frame["pruner"]) - {"", "random"}):
        assert str(parse_spec(spec)) == spec, spec


def test_restored_symbols_are_marked(frame):
    restored = frame[(frame["paper"] == "000") & frame["table"].isin(["§4.6 text", "§4.7 text", "Table 2", "Table 5", "Table 6"])]
    assert restored["note"].str.contains("lost", case=False).all()


@pytest.mark.parametrize("k", [576, 192, 128, 64, 32])
def test_seed000_table1(frame, k):
    line = table_line(seed_text("000"), rf"^\| {k} \| \d")
    rows = reported("000", "Table 1", k=k).set_index("metric")["value"]
    expected = [rows[m] for m in ("accuracy", "ece", "brier", "nll", "aurc", "temperature")]
    assert numbers(line)[1:] == pytest.approx(expected)


@pytest.mark.parametrize("alpha", ["0", "0.5", "1"])
def test_seed000_table2(frame, alpha):
    line = table_line(seed_text("000"), rf"^\| {float(alpha):.1f} \| \d")
    rows = reported("000", "Table 2", pruner=f"scope(alpha={alpha},p=1)")
    cells = []
    for k in (64, 128, 192):
        part = rows[rows["k"] == k].set_index("metric")["value"]
        cells += [part["accuracy"], part["ece"]]
    assert numbers(line)[1:] == pytest.approx(cells)


@pytest.mark.parametrize("label, k, pruner", [
    ("SCOPE \\(pure coverage\\) \\| 87.1", 128, "scope(alpha=0,p=1)"),
    ("Saliency-only \\(CLS", 128, "saliency"),
    ("FastV, real", 128, "fastv(layer=2)"),
    ("\\| Saliency-only \\| 80", 64, "saliency"),
    ("\\| Random \\| 79", 64, "random"),
])
def test_seed000_table3(frame, label, k, pruner):
    line = table_line(seed_text("000"), label)
    part = reported("000", "Table 3", k=k, pruner=pruner).set_index("metric")["value"]
    values = numbers(line)
    values = [v for v in values if v not in (128.0, 64.0, 2.0)]  # K and "layer-2" in the label
    assert values[-4:] == pytest.approx([part["accuracy"], part["ece"], part["brier"], part["overconfidence"]])


def test_seed000_tables_4_5_6_and_text(frame):
    text = seed_text("000")
    t4 = reported("000", "Table 4", k=32).set_index("metric")["value"]
    assert numbers(table_line(text, r"^\| 32 \| 65\.1"))[1:] == pytest.approx(
        [t4["accuracy"], t4["ece"], t4["mean_confidence"], t4["overconfidence"]])
    t5 = reported("000", "Table 5", k=64).sort_values("setting")
    assert numbers(table_line(text, r"^\| 64 \| 1698"))[1:] == pytest.approx(
        [t5[t5["setting"].str.contains(f"column {c}")]["value"].iloc[0] for c in range(1, 6)])
    t6 = reported("000", "Table 6", benchmark="MME")
    line = numbers(table_line(text, r"^\| MME \| 1698"))
    assert sorted(t6["value"]) == sorted([line[0], line[1], line[3], line[4]])
    for value in (0.037, 0.018, 0.040, 0.021, 0.045, 0.031):  # §4.6
        assert f"{value:.3f}".lstrip("0") in text or f"{value:.3f}" in text
    assert "94.2%" in text and "92.8%" in text and "0.012 ECE versus 0.017" in text


def test_seed002_tables(frame):
    text = seed_text("002")
    t1 = reported("002", "Table 1").set_index("method")["value"]
    assert numbers(table_line(text, r"^Erank\t"))[:4] == pytest.approx(
        [t1["PruMerge+"], t1["VisionZip"], t1["VisPruner"], t1["DivPrune"]])
    t8 = reported("002", "Table 8", method="DivPrune")
    line = numbers(table_line(text, r"^DivPrune \(CVPR'25\)\t57\.4\t18\.0\t76\.4\t101\.1\t58"))
    for k, values in ((64, line[1:5]), (128, line[5:9])):
        part = t8[t8["k"] == k].set_index("metric")["value"]
        assert values == pytest.approx([part["chair_s"], part["chair_i"], part["recall"], part["length"]])
    t12 = reported("002", "Table 12", benchmark="POPE")
    line = numbers(table_line(text, r"^POPE\t14\.9"))
    erank = t12[t12["metric"] == "erank"]["value"].tolist()
    score = t12[t12["metric"] == "f1"]["value"].tolist()  # the POPE column: F1 (reported.csv note)
    assert line == pytest.approx([v for pair in zip(erank, score) for v in pair])
    t13 = reported("002", "Table 13", method="Ours (adaptive count)")
    assert numbers(table_line(text, r"^Our \(Adaptive count\)"))[:4] == pytest.approx(
        [85.5, 58.4, 68.2, 85.2])
    assert set(t13["value"]) == {85.5, 68.2, 85.2}


def test_settings_printed_differently_in_two_tables_are_found():
    from studylib.reported import conflicting_reports

    assert conflicting_reports("000", "scope(alpha=1,p=1)", 64, "accuracy", "POPE") == (
        "Table 1, Table 2, Table 3: 85.5 %; Table 6: 83.9 %")
    assert conflicting_reports("000", "scope(alpha=0,p=1)", 64, "accuracy", "POPE") == ""
