"""No rendered verdict contradicts its own printed test: every claims table of the built book (each
experiment page and the intro's verdict table) is read as a reader reads it — the test column's bounds
in words, the printed estimate and 95 % CI, the verdict — and the verdict must be the one the rule of
the Methods page gives for those printed numbers (restated here independently of ``studylib.claims``).

Printed numbers are rounded (CI to 3 decimals), so a verdict is accepted when some CI within half a
unit of the printed bounds gives it.  Allowed departures, which the verdict itself names: a family
correction (``... after Holm ...``) may turn a decided part inconclusive, or a reversal into "no effect
of the reported size".  Rows without a CI (composites, point estimates, not applicable) are skipped.

Skipped when the book is not built; with ``STUDY_REQUIRE_BOOK=1`` (CI) a missing book fails instead, as
in ``tests/test_browser.py``.  The checker itself is tested on synthetic rows, the issue's B2.K32 among them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

REPO = Path(__file__).resolve().parents[1]
HTML = REPO / "book" / "_build" / "html"
ROUNDING = 0.0005  # half a unit of the printed CI's last decimal

HOLDS, SMALLER, NO_EFFECT = "holds", "holds, smaller than reported", "no effect of the reported size"
REVERSED, INCONCLUSIVE, NOT_APPLICABLE = "reversed", "inconclusive", "not applicable"
NUMBER = r"[+\-−]?\d+(?:\.\d+)?(?:e[+\-]?\d+)?"
CI = re.compile(rf"^\s*({NUMBER})\s*\[\s*({NUMBER})\s*,\s*({NUMBER})\s*\]")
CLAIMED = re.compile(rf"claimed (below|above|within ±)\s*({NUMBER})")
EFFECT = re.compile(rf"(?:reported effect|smallest effect of interest) ({NUMBER})")
OTHER = re.compile(rf"([^:;]+): ({NUMBER}) \[({NUMBER}), ({NUMBER})\] ([a-z ,]+?)(?=;|$)")


#: the outcomes, longest first (so "holds, smaller than reported" is not read as "holds")
OUTCOME_WORDS = sorted([HOLDS, SMALLER, NO_EFFECT, REVERSED, INCONCLUSIVE, NOT_APPLICABLE], key=len, reverse=True)


def _number(text: str) -> float:
    return float(text.replace("−", "-"))


def _base(verdict: str) -> str:
    return verdict.split(" (")[0].split(":")[0].strip()


def outcome(low: float, high: float, test: str) -> str | None:
    """The Methods page's rule for a printed test and CI; None when the test states no bounds."""
    claimed = CLAIMED.search(test)
    if not claimed:
        return None
    side, bound = claimed.group(1), _number(claimed.group(2))
    if low == high:  # a zero-width CI decides nothing, whatever the claim
        return INCONCLUSIVE
    if side.startswith("within"):
        if -bound < low and high < bound:
            return HOLDS
        return REVERSED if low > bound or high < -bound else INCONCLUSIVE
    sign = -1.0 if side == "below" else 1.0
    effect = EFFECT.search(test)
    if bound and sign * bound > 0:  # a claim of size: it must clear its threshold
        origin, delta, bar = 0.0, abs(bound), abs(bound)
    elif bound:  # non-inferiority: judged at the threshold
        origin, delta, bar = bound, 0.0, 0.0
    else:
        origin, delta, bar = 0.0, abs(_number(effect.group(1))) if effect else 0.0, 0.0
    l, h = sorted((sign * (low - origin), sign * (high - origin)))
    if h < 0:
        return REVERSED
    if l > bar and h >= delta:
        return HOLDS
    if l > 0 and h < delta:
        return SMALLER
    return NO_EFFECT if h < delta else INCONCLUSIVE


def allowed(low: float, high: float, test: str) -> set[str]:
    """Every outcome of a CI within rounding of the printed one."""
    return {outcome(lo, hi, test) for lo in (low - ROUNDING, low, low + ROUNDING)
            for hi in (high - ROUNDING, high, high + ROUNDING) if lo <= hi}


def contradiction(test: str, estimate: str, verdict: str) -> str | None:
    """Why a row's verdict is not the one its printed test and CI give (None when it is, or when the
    row has no CI or no bounds)."""
    match = CI.match(estimate or "")
    base = _base(verdict)
    if not match or base == NOT_APPLICABLE or "(point estimate)" in verdict or not CLAIMED.search(test or ""):
        return None
    scale = 0.01 if estimate.rstrip().endswith("pp") else 1.0  # the catalogue prints accuracy differences in pp
    low, high = _number(match.group(2)) * scale, _number(match.group(3)) * scale
    possible = allowed(low, high, test)
    if base in possible:
        return None
    if "Holm" in verdict and (base == INCONCLUSIVE or (base == NO_EFFECT and REVERSED in possible)):
        return None
    return f"verdict {verdict!r} but CI [{low:+.3f}, {high:+.3f}] under {test!r} gives {sorted(possible)}"


def _toggle(cell, name: str) -> str:
    """The text after ``name:`` in a claim cell's toggle (``<div><i>test on this run:</i> ...</div>``)."""
    for div in cell.find_all("div"):
        label = div.find("i")
        if label is not None and label.get_text(strip=True).rstrip(":") == name:
            return div.get_text(" ", strip=True)[len(label.get_text(strip=True)):].strip()
    return ""


def claim_rows_of(html: str):
    """``(test, estimate, verdict, other estimators)`` of every row of the pages' claims tables
    (``studylib.pages.claims_html``: the test and the other estimators behind the claim's toggle)."""
    soup = BeautifulSoup(html, "html.parser")
    for tr in soup.select("table.claims tr"):
        cells = tr.find_all("td", recursive=False)
        if len(cells) != 4:
            continue
        verdict = cells[3].get_text(" ", strip=True).lstrip("● ")
        base, _, detail = verdict.partition(" ")
        if detail and verdict.startswith(tuple(OUTCOME_WORDS)):  # "inconclusive not significant ..." -> with parentheses
            word = next(w for w in OUTCOME_WORDS if verdict.startswith(w))
            verdict = f"{word} ({verdict[len(word):].strip()})" if verdict[len(word):].strip() else word
        yield (_toggle(cells[0], "test on this run"), cells[1].get_text(" ", strip=True), verdict,
               _toggle(cells[0], "other estimators"))


def rows_of(html: str):
    """``(test, estimate, verdict, other estimators)`` of every claims table: the pages' (:func:`claim_rows_of`)
    and every other table with a test, an estimate and a verdict column."""
    yield from claim_rows_of(html)
    soup = BeautifulSoup(html, "html.parser")
    for table in soup.find_all("table"):
        if "claims" in (table.get("class") or []):
            continue
        header = table.find("thead") or table
        names = [th.get_text(" ", strip=True).lower() for th in header.find_all("th")]
        column = {key: next((i for i, name in enumerate(names) if name.startswith(key)), None)
                  for key in ("test", "verdict", "other estimators")}
        column["estimate"] = next((i for i, name in enumerate(names) if "estimate" in name), None)
        if None in (column["test"], column["verdict"], column["estimate"]):
            continue
        body = table.find("tbody") or table
        for tr in body.find_all("tr"):
            cells = [cell.get_text(" ", strip=True) for cell in tr.find_all(["td", "th"])]
            if len(cells) != len(names):
                continue
            yield (cells[column["test"]], cells[column["estimate"]], cells[column["verdict"]].strip("* "),
                   cells[column["other estimators"]] if column["other estimators"] is not None else "")


def contradictions(html: str) -> list[str]:
    found = []
    for test, estimate, verdict, others in rows_of(html):
        problem = contradiction(test, estimate, verdict)
        if problem:
            found.append(problem)
        for name, value, low, high, other_verdict in OTHER.findall(others):
            problem = contradiction(test, f"{value} [{low}, {high}]", other_verdict.strip())
            if problem:
                found.append(f"{name.strip()}: {problem}")
    return found


def _table(*rows: tuple[str, str, str]) -> str:
    cells = "".join(f"<tr><td>{t}</td><td>{e}</td><td><strong>{v}</strong></td></tr>" for t, e, v in rows)
    return ("<table><thead><tr><th>test on this run</th><th>estimate [95% CI]</th><th>verdict</th></tr></thead>"
            f"<tbody>{cells}</tbody></table>")


B2 = "ECE[scope(alpha=0,p=1)@32] − ECE[saliency@32]: claimed below 0; reported effect -0.035"


@pytest.mark.parametrize("test, estimate, verdict, wrong", [
    (B2, "-0.006 [-0.012, -0.000]", "holds", True),  # issue 24: 'holds' while meeting its failure condition
    (B2, "-0.006 [-0.012, -0.000]", NO_EFFECT, False),  # -0.000 may be a rounded -0.0004: smaller is possible
    (B2, "-0.006 [-0.012, -0.002]", SMALLER, False),
    (B2, "-0.006 [-0.012, -0.002]", "holds", True),
    (B2, "-0.020 [-0.040, +0.004]", "inconclusive (CI includes 0 and -0.035; would need ≈ 9,000 questions)", False),
    (B2, "+0.010 [+0.004, +0.016]", "reversed", False),
    (B2, "+0.010 [+0.004, +0.016]", NO_EFFECT, True),
    (B2, "+0.010 [+0.004, +0.016]", "no effect of the reported size (the reversal is not significant after Holm "
                                    "over 8 tests)", False),
    (B2, "-0.050 [-0.060, -0.040]", "inconclusive (not significant after Holm over 8 tests)", False),
    ("accuracy[p=1.5] − accuracy[p=1]: claimed above 0; smallest effect of interest +0.01 (1 pp, no reported effect)",
     "+0.000 [+0.000, +0.000]", "holds", True),  # issue 24's ties
    ("accuracy[fastv@32] − accuracy[full@144]: claimed below -0.1", "-0.08 [-0.12, -0.05]", "holds", True),
    ("accuracy[a] − accuracy[b]: claimed within ±0.01", "+0.002 [-0.004, +0.008]", "holds", False),
    ("accuracy[a] − accuracy[b]: claimed within ±0.01", "+0.002 [-0.004, +0.018]", "holds", True),
    ("3/5 parts hold", "—", "holds", False),  # a composite: no CI of its own
])
def test_the_checker_flags_exactly_the_contradictions(test, estimate, verdict, wrong):
    assert bool(contradictions(_table((test, estimate, verdict)))) == wrong


def test_the_checker_reads_the_pages_claims_tables():
    from studylib import claims, pages

    debiased = claims.Claim("B2", "s", "x", "ece_debiased", B2, -0.006, -0.012, -0.002, claims.HOLDS)
    claim = claims.Claim("B2", "s", "x", "ece", B2, -0.05, -0.06, -0.04, claims.HOLDS, estimators=(debiased,))
    html = pages.claims_html([claim])
    (test, estimate, verdict, others), = claim_rows_of(html)
    assert test.endswith("claimed below 0; reported effect −0.035") and "SCOPE α=0, K=32" in test
    assert (estimate, verdict, others) == ("−0.050 [−0.060, −0.040]", "holds",
                                           "debiased ECE: −0.006 [−0.012, −0.002] holds")
    assert contradictions(html) == [f"debiased ECE: verdict 'holds' but CI [-0.012, -0.002] under {test!r} gives "
                                    f"['{SMALLER}']"]
    # the verdict's detail (a family correction) counts, and a CI in percentage points is read as such
    part = claims.Claim("A3.K16", "s", "x", "accuracy", "accuracy[a@16] − accuracy[b@16]: claimed within ±0.01",
                        0.002, -0.012, 0.004, claims.INCONCLUSIVE)
    (test, estimate, verdict, _), = claim_rows_of(pages.claims_html([part]))
    assert estimate.endswith("pp") and not contradictions(pages.claims_html([part]))
    holm = claims.Claim("A1.K16", "s", "x", "ece", B2, -0.001, -0.005, 0.008,
                        f"{claims.INCONCLUSIVE} (not significant after Holm over 3 tests)")
    assert not contradictions(pages.claims_html([holm]))


def test_the_checker_reads_the_other_estimators_column():
    html = ("<table><thead><tr><th>test on this run</th><th>estimate [95% CI]</th><th>other estimators</th>"
            "<th>verdict</th></tr></thead><tbody><tr><td>" + B2 + "</td><td>-0.050 [-0.060, -0.040]</td>"
            "<td>debiased ECE: -0.006 [-0.012, -0.002] holds; smooth ECE: -0.050 [-0.060, -0.040] holds</td>"
            "<td>holds (estimator-sensitive; debiased ECE: holds)</td></tr></tbody></table>")
    assert contradictions(html) == ["debiased ECE: verdict 'holds' but CI [-0.012, -0.002] under "
                                    f"{B2!r} gives ['{SMALLER}']"]


def _pages() -> list[Path]:
    if not (HTML / "intro.html").exists():
        if os.environ.get("STUDY_REQUIRE_BOOK"):
            pytest.fail(f"STUDY_REQUIRE_BOOK is set but the book is not built ({HTML / 'intro.html'} missing): the "
                        "book build (bash scripts/build_book.sh) must run before the tests")
        pytest.skip(f"the book is not built ({HTML} missing): run `python scripts/build_book.py --profile toy` first")
    return [HTML / "intro.html", *sorted((HTML / "experiments").glob("*.html"))]


def test_no_rendered_verdict_contradicts_its_printed_test():
    checked, problems = 0, []
    for page in _pages():
        html = page.read_text(encoding="utf-8")
        checked += sum(1 for row in rows_of(html) if CI.match(row[1]) and CLAIMED.search(row[0]))
        problems += [f"{page.relative_to(HTML)}: {problem}" for problem in contradictions(html)]
    assert checked, "no claims table with a test, an estimate and a verdict column was found in the built book"
    assert not problems, "\n".join(problems)
