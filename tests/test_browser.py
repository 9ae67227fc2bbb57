"""The rendered book in a real browser: no table is clipped, every image loads.

Headless Chromium opens each page at window widths 1400 and 800 px.  The page is a copy of the
built HTML (with a ``<base>`` pointing at the built folder, so styles and images resolve) plus a
small script that measures, once the page has loaded, every visible table and image and writes
the result as JSON into the DOM; ``chromium --dump-dom`` returns that DOM.  Only the standard
library and the ``chromium`` binary are needed (no WebDriver).

A table fails when it is wider than its container and the overflow does not scroll: walking up
from the table, the first element whose content is wider than its box (``scrollWidth >
clientWidth``) must have ``overflow-x: auto`` or ``scroll``.  An image fails when it finished
loading with ``naturalWidth == 0``.

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
PAGES = ["index.html", "intro.html", "experiments/u_curve.html", "experiments/erank_hallucination.html"]
WIDTHS = [1400, 800]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

MEASURE = r"""
<script>
window.addEventListener("load", () => setTimeout(() => {
  const out = {width: window.innerWidth, tables: [], clipped: [], images: [], broken: []};
  const label = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
      (el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\s+/).join(".") : "");
  const visible = (el) => el.getClientRects().length > 0;
  document.querySelectorAll("main table, article table").forEach((table) => {
    if (!visible(table)) return;
    const caption = (table.caption ? table.caption.textContent : "") ||
        (table.querySelector("th") ? table.querySelector("th").textContent : "");
    const entry = {table: label(table), caption: caption.trim().slice(0, 80), width: table.scrollWidth};
    out.tables.push(entry);
    for (let el = table; el && el !== document.body && el !== document.documentElement; el = el.parentElement) {
      if (el.scrollWidth <= el.clientWidth + 1) continue;
      const overflow = getComputedStyle(el).overflowX;
      if (overflow !== "auto" && overflow !== "scroll") {
        out.clipped.push(Object.assign({}, entry, {container: label(el), overflow: overflow,
                                                   scrollWidth: el.scrollWidth, clientWidth: el.clientWidth}));
      }
      break;
    }
  });
  document.querySelectorAll("img").forEach((img) => {
    const entry = {src: img.getAttribute("src"), complete: img.complete, naturalWidth: img.naturalWidth};
    out.images.push(entry);
    if (!img.complete || img.naturalWidth === 0) out.broken.push(entry);
  });
  const pre = document.createElement("pre");
  pre.id = "study-measure";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}, 100));
</script>
"""


def _browser() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


@pytest.fixture(scope="module")
def browser() -> str:
    path = _browser()
    if path is None:
        pytest.skip(f"no Chromium on PATH (looked for {', '.join(BROWSERS)}); CI installs it with apt "
                    "(`apt-get install chromium`)")
    return path


@pytest.fixture(scope="module")
def built() -> Path:
    if not (HTML / "intro.html").exists():
        if os.environ.get("STUDY_REQUIRE_BOOK"):
            pytest.fail(f"STUDY_REQUIRE_BOOK is set but the book is not built ({HTML / 'intro.html'} missing): the "
                        "book build (bash scripts/build_book.sh) must run before the tests")
        pytest.skip(f"the book is not built ({HTML} missing): run `python scripts/build_book.py --profile toy` "
                    "first (CI builds the book before the tests)")
    return HTML


def _target(page: Path) -> Path:
    """The page itself, or the page a redirect page (``index.html``) points to."""
    text = page.read_text(encoding="utf-8")
    match = re.search(r'<meta[^>]+http-equiv="refresh"[^>]+url=([^"\'>]+)', text, flags=re.I)
    return (page.parent / match.group(1).strip()).resolve() if match else page


def measure(browser: str, page: Path, width: int, tmp_path: Path) -> dict:
    """Load a copy of ``page`` (with the measuring script) at ``width`` px; the measurements as a dict."""
    html = page.read_text(encoding="utf-8").replace(' loading="lazy"', "")
    html = re.sub(r"<head>", f'<head><base href="{page.parent.as_uri()}/">', html, count=1)
    html = html.replace("</body>", MEASURE + "</body>", 1)
    copy = tmp_path / f"{page.stem}-{width}.html"
    copy.write_text(html, encoding="utf-8")
    command = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--hide-scrollbars", "--allow-file-access-from-files", f"--window-size={width},2000",
               "--virtual-time-budget=5000", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", copy.as_uri()]
    run = subprocess.run(command, capture_output=True, text=True, timeout=60)
    match = re.search(r'<pre id="study-measure"[^>]*>(.*?)</pre>', run.stdout, flags=re.S)
    assert match, f"{page.name} at {width} px: no measurements (rc {run.returncode}); stderr:\n{run.stderr[-2000:]}"
    return json.loads(match.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", PAGES)
def test_tables_scroll_and_images_load(browser, built, name, width, tmp_path):
    page = built / name
    if not page.exists():
        pytest.fail(f"{page} is missing from the built book")
    result = measure(browser, _target(page), width, tmp_path)
    assert abs(result["width"] - width) <= 20, f"window is {result['width']} px wide, asked for {width}"
    clipped = [f"{t['caption'] or t['table']}: {t['scrollWidth']} px of content in {t['clientWidth']} px "
               f"({t['container']}, overflow-x {t['overflow']})" for t in result["clipped"]]
    assert not clipped, f"{name} at {width} px: tables wider than their container that do not scroll:\n" + \
        "\n".join(clipped)
    broken = [f"{i['src']} (complete={i['complete']}, naturalWidth={i['naturalWidth']})" for i in result["broken"]]
    assert not broken, f"{name} at {width} px: images that did not load:\n" + "\n".join(broken)


def test_measure_flags_clipping_and_broken_images(browser, tmp_path):
    """The measuring script itself: a wide table in a box that hides or spills its overflow is flagged,
    one in a scrolling box is not; an image that fails to load is flagged."""
    wide = "<table><tr>" + "<td>0.024&nbsp;[0.018,&nbsp;0.030]</td>" * 40 + "</tr></table>"
    page = tmp_path / "synthetic.html"
    page.write_text(f"""<html><head></head><body><main>
      <div id="hidden" style="width: 300px; overflow-x: hidden">{wide}</div>
      <div id="spills" style="width: 300px">{wide}</div>
      <div id="scrolls" style="width: 300px; overflow-x: auto">{wide}</div>
      <img src="missing.png"></main></body></html>""", encoding="utf-8")
    result = measure(browser, page, 800, tmp_path)
    assert len(result["tables"]) == 3
    assert sorted(c["container"] for c in result["clipped"]) == ["div#hidden", "div#spills"]
    assert [i["src"] for i in result["broken"]] == ["missing.png"]
