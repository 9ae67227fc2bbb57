"""The rendered book in a real browser, as a reader sees it at 1400 and 900 px.

Headless Chromium opens every page of the built book at window widths 1400 and 900 px.  The page is a
copy of the built HTML (with a ``<base>`` pointing at the built folder, so styles, images and scripts
resolve) plus a small script that, once the page has loaded, measures it and writes the result as JSON
into the DOM; ``chromium --dump-dom`` returns that DOM.  Only the standard library and the ``chromium``
binary are needed (no WebDriver).  A page fails when

* a table (not an interactive one) is wider than the box it sits in (the first block above it): a table
  that needs a sideways scroll, spills over the text column, or is cut off;
* in an interactive table (``itables``/DataTables, which scrolls sideways inside its box) a column
  whose header names an estimate, a CI or a verdict is not wholly visible without scrolling, or lies
  under another element;
* an interactive table did not start (the page carries its own DataTables library: no network);
* its text (tables and prose; code blocks excepted) shows a Python repr (a dict, a list of quoted
  strings, ``True``/``False``/``None``/``nan`` as a table cell), a number with more than six
  significant digits, or a negative zero ("−0.000");
* it still has a "Show code cell source" toggle, or an image that did not load;
* (the intro) the generated answer and the forest plot do not both start within its first 1000 px.

Skipped (with the reason) when Chromium is not installed or the book is not built; with
``STUDY_REQUIRE_BOOK=1`` (CI) a missing book fails instead, as in ``tests/test_notebooks.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HTML = REPO / "book" / "_build" / "html"
WIDTHS = [1400, 900]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: pages of the built book that are not the study's (Sphinx's index and search pages)
NOT_PAGES = {"genindex.html", "search.html", "index.html"}
#: the intro's answer and forest plot start within this many px of the top of the page
FIRST_SCREEN = 1000

MEASURE = r"""
<script>
window.addEventListener("load", () => setTimeout(() => {
  const KEY = /95\s*%\s*CI|\[95|\bCI\b|estimate|verdict|this run|^\s*value\s*$/i;
  const W = window.innerWidth;
  const out = {width: W, clipped: [], hidden_keys: [], broken: [], texts: [], cells: [], toggles: 0,
               interactive: document.querySelectorAll(".dt-container").length, answer: null, forest: null};
  const label = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
      (el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\s+/).join(".") : "");
  const visible = (el) => el.getClientRects().length > 0;
  const caption = (t) => ((t.caption ? t.caption.textContent : "") ||
      (t.querySelector("th") ? t.querySelector("th").textContent : "")).trim().slice(0, 80);
  const top = (el) => el.getBoundingClientRect().top + window.scrollY;
  document.querySelectorAll("article table").forEach((table) => {
    if (!visible(table)) return;
    const dt = table.closest(".dt-container");
    if (!dt) {
      const width = table.getBoundingClientRect().width;
      for (let el = table.parentElement; el && el !== document.body; el = el.parentElement) {
        if (el.clientWidth === 0 || getComputedStyle(el).display === "inline") continue;
        if (el.clientWidth + 1 >= width) break;
        out.clipped.push({table: caption(table), container: label(el), scrollWidth: Math.round(width),
                          clientWidth: el.clientWidth});
        break;
      }
      return;
    }
    table.querySelectorAll("thead th").forEach((th) => {
      const r = th.getBoundingClientRect();
      if (!visible(th) || r.height < 1 || !KEY.test(th.textContent)) return;  // (DataTables' sizing row: 0 px)
      let box = {left: 0, right: W};
      for (let el = th.parentElement; el && el !== document.body; el = el.parentElement) {
        if (getComputedStyle(el).overflowX === "visible") continue;
        const b = el.getBoundingClientRect();
        box = {left: Math.max(box.left, b.left), right: Math.min(box.right, b.right)};
      }
      let covered = false;
      window.scrollTo(0, top(th) - 100);
      const q = th.getBoundingClientRect();
      const hit = document.elementFromPoint(Math.min(Math.max(q.left + q.width / 2, 0), W - 1), q.top + q.height / 2);
      covered = hit !== null && hit !== th && !th.contains(hit);
      if (r.left < box.left - 1 || r.right > box.right + 1 || covered) {
        out.hidden_keys.push({table: caption(table), header: th.textContent.trim(), left: r.left, right: r.right,
                              box: box, covered: covered});
      }
    });
  });
  window.scrollTo(0, 0);
  const article = document.querySelector("article") || document.body;
  const copy = article.cloneNode(true);
  copy.querySelectorAll("pre, code, script, style, .highlight, svg").forEach((el) => el.remove());
  out.texts = copy.textContent.replace(/\s+/g, " ");
  article.querySelectorAll("td, th").forEach((cell) => {
    if (!cell.closest("pre")) out.cells.push(cell.textContent.trim());
  });
  document.querySelectorAll("summary, button, .toggle-button, details").forEach((el) => {
    if (/show code cell source/i.test(el.textContent) && el.textContent.length < 200) out.toggles += 1;
  });
  document.querySelectorAll("img").forEach((img) => {
    if (!img.complete || img.naturalWidth === 0) out.broken.push(img.getAttribute("src"));
  });
  const answer = document.querySelector(".study-answer");
  if (answer) out.answer = {top: top(answer), text: answer.textContent.trim().length};
  const forest = document.querySelector("#forest-plot img, figure#forest-plot img, img[src*='answer_forest']");
  if (forest) out.forest = {top: top(forest), loaded: forest.complete && forest.naturalWidth > 0};
  const pre = document.createElement("pre");
  pre.id = "study-measure";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}, 300));
</script>
"""

#: Python reprs in page text: a dict literal, a list of quoted strings, numpy's repr
REPR = [re.compile(p) for p in (r"\{\s*(?:'[^']*'|\"[^\"]*\"|\d+)\s*:\s*[^{}]{0,80}\}",
                                r"\[\s*'[^']*'\s*(?:,\s*'[^']*'\s*)*\]", r"\barray\(", r"\bdtype\b")]
#: a table cell that is a Python literal rather than words
REPR_CELL = re.compile(r"^(True|False|None|nan|NaN|\[\]|\{\})$")
#: identifiers that look like decimals (arXiv numbers)
IDENTIFIERS = re.compile(r"arXiv[\s:]*\d{4}\.\d{4,5}(?:v\d+)?", flags=re.I)
NUMBER = re.compile(r"(?<![\w.])[−-]?\d+\.\d+(?![\w.])")
NEGATIVE_ZERO = re.compile(r"[−-]0\.0+(?![\d])")


def significant_digits(number: str) -> int:
    """``"0.0240"`` -> 3, ``"19.939622218863605"`` -> 17."""
    return len(number.lstrip("−-").replace(".", "").lstrip("0"))


def text_problems(text: str, cells: list[str]) -> list[str]:
    """Python reprs, long floats and negative zeros in a page's text and table cells."""
    text = IDENTIFIERS.sub("", text)
    problems = [f"Python repr {m.group(0)[:60]!r}" for pattern in REPR for m in pattern.finditer(text)]
    problems += [f"a table cell reads {cell!r}" for cell in cells if REPR_CELL.match(cell)]
    problems += [f"{m.group(0)!r} has more than 6 significant digits" for m in NUMBER.finditer(text)
                 if significant_digits(m.group(0)) > 6]
    problems += [f"negative zero {m.group(0)!r}" for m in NEGATIVE_ZERO.finditer(text)]
    return problems


def _browser() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


@pytest.fixture(scope="module")
def browser() -> str:
    path = _browser()
    if path is None:
        pytest.skip(f"no Chromium on PATH (looked for {', '.join(BROWSERS)}); CI installs it with apt "
                    "(`apt-get install chromium`)")
    return path


def _built() -> bool:
    return (HTML / "intro.html").exists()


@pytest.fixture(scope="module")
def built() -> Path:
    if not _built():
        if os.environ.get("STUDY_REQUIRE_BOOK"):
            pytest.fail(f"STUDY_REQUIRE_BOOK is set but the book is not built ({HTML / 'intro.html'} missing): the "
                        "book build (bash scripts/build_book.sh) must run before the tests")
        pytest.skip(f"the book is not built ({HTML} missing): run `python scripts/build_book.py --profile toy` "
                    "first (CI builds the book before the tests)")
    return HTML


def _pages() -> list[str]:
    """Every page of the built book (relative paths), or the intro alone before a build (for the ids)."""
    if not _built():
        return ["intro.html"]
    paths = sorted(HTML.glob("*.html")) + sorted(HTML.glob("experiments/*.html"))
    pages = [p.relative_to(HTML).as_posix() for p in paths]
    return [p for p in pages if p not in NOT_PAGES]


def measure(browser: str, page: Path, width: int, tmp_path: Path) -> dict:
    """Load a copy of ``page`` (with the measuring script) at ``width`` px; the measurements as a dict."""
    html = page.read_text(encoding="utf-8").replace(' loading="lazy"', "")
    html = re.sub(r"<head>", f'<head><base href="{page.parent.as_uri()}/">', html, count=1)
    html = html.replace("</body>", MEASURE + "</body>", 1)
    copy = tmp_path / f"{page.stem}-{width}.html"
    copy.write_text(html, encoding="utf-8")
    command = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--hide-scrollbars", "--allow-file-access-from-files",
               f"--window-size={width},2000", "--virtual-time-budget=8000", f"--user-data-dir={tmp_path / 'profile'}",
               "--dump-dom", copy.as_uri()]
    run = subprocess.run(command, capture_output=True, text=True, timeout=90)
    match = re.search(r'<pre id="study-measure"[^>]*>(.*?)</pre>', run.stdout, flags=re.S)
    assert match, f"{page.name} at {width} px: no measurements (rc {run.returncode}); stderr:\n{run.stderr[-2000:]}"
    return json.loads(match.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", _pages())
def test_page_reads_well(browser, built, name, width, tmp_path):
    page = built / name
    result = measure(browser, page, width, tmp_path)
    assert abs(result["width"] - width) <= 20, f"window is {result['width']} px wide, asked for {width}"
    clipped = [f"{t['table'] or '(no caption)'}: {t['scrollWidth']} px of content in {t['clientWidth']} px "
               f"({t['container']})" for t in result["clipped"]]
    assert not clipped, f"{name} at {width} px: tables wider than the text column:\n" + "\n".join(clipped)
    hidden = [f"{k['table']}: column {k['header']!r} at {k['left']:.0f}–{k['right']:.0f} px, visible box "
              f"{k['box']['left']:.0f}–{k['box']['right']:.0f}" + (" (covered)" if k["covered"] else "")
              for k in result["hidden_keys"]]
    assert not hidden, f"{name} at {width} px: estimate / CI / verdict columns out of view:\n" + "\n".join(hidden)
    expected = len(re.findall(r'<table id="itables_', page.read_text(encoding="utf-8")))
    assert result["interactive"] == expected, (f"{name}: {expected} interactive tables in the HTML, "
                                               f"{result['interactive']} started (offline DataTables)")
    problems = text_problems(result["texts"], result["cells"])
    assert not problems, f"{name} at {width} px:\n" + "\n".join(dict.fromkeys(problems))
    assert result["toggles"] == 0, f"{name}: {result['toggles']} 'Show code cell source' toggles"
    assert not result["broken"], f"{name} at {width} px: images that did not load: {result['broken']}"
    if name == "intro.html":
        answer, forest = result["answer"], result["forest"]
        assert answer and answer["text"] > 100 and answer["top"] < FIRST_SCREEN, \
            f"intro at {width} px: the generated answer does not start in the first {FIRST_SCREEN} px: {answer}"
        assert forest and forest["loaded"] and forest["top"] < FIRST_SCREEN, \
            f"intro at {width} px: the forest plot does not start in the first {FIRST_SCREEN} px: {forest}"


def test_text_checks_find_reprs_long_floats_and_negative_zeros():
    assert text_problems("ECE 0.024 [0.018, 0.030], SCOPE α=0, K=32, 8,970 questions, −0.017, arXiv 2604.12035",
                         ["holds", "86.9"]) == []
    found = text_problems("agile(erank_avg=19.939622218863605) {4: 2017} ['random', 'popular'] −0.000",
                          ["False", "0.5"])
    assert len(found) == 5, found


def test_measure_flags_clipping_and_broken_images(browser, tmp_path):
    """The measuring script itself: a wide table in a box that hides, spills or scrolls its overflow is flagged;
    a table that fits is not; an image that fails to load is flagged."""
    wide = "<table><tr>" + "<td>0.024&nbsp;[0.018,&nbsp;0.030]</td>" * 40 + "</tr></table>"
    narrow = "<table><tr><td>0.024</td></tr></table>"
    page = tmp_path / "synthetic.html"
    page.write_text(f"""<html><head></head><body><article>
      <div id="hidden" style="width: 300px; overflow-x: hidden">{wide}</div>
      <div id="spills" style="width: 300px">{wide}</div>
      <div id="scrolls" style="width: 300px; overflow-x: auto">{wide}</div>
      <div id="fits" style="width: 300px">{narrow}</div>
      <img src="missing.png"></article></body></html>""", encoding="utf-8")
    result = measure(browser, page, 900, tmp_path)
    assert sorted(c["container"] for c in result["clipped"]) == ["div#hidden", "div#scrolls", "div#spills"]
    assert result["broken"] == ["missing.png"]
