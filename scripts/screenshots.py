"""Screenshots of the built book as a reader sees it (headless Chromium), for notes and reviews.

    python scripts/screenshots.py                                  # intro, u_curve, baselines at 1400 px
    python scripts/screenshots.py --pages intro experiments/every_pruner --width 900 --height 2400

Writes ``docs/screenshots/<page>-<width>.png`` (the top ``--height`` px of each page), palette-quantised
to keep the files small.  Needs the built book (``bash scripts/build_book.sh``) and Chromium.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
HTML = REPO / "book" / "_build" / "html"
OUT = REPO / "docs" / "screenshots"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def screenshot(browser: str, page: str, width: int, height: int, out: Path) -> Path:
    source = HTML / f"{page}.html"
    if not source.exists():
        sys.exit(f"screenshots.py: error: {source} is missing; build the book first (bash scripts/build_book.sh)")
    target = out / f"{page.replace('/', '_')}-{width}.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--hide-scrollbars", f"--window-size={width},{height}", "--virtual-time-budget=8000",
                        f"--user-data-dir={profile}", f"--screenshot={target}", source.as_uri()],
                       check=True, capture_output=True, timeout=120)
    Image.open(target).convert("RGB").quantize(colors=128).save(target, optimize=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", nargs="+", default=["intro", "experiments/u_curve", "experiments/baselines"])
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=2000)
    args = parser.parse_args(argv)
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    if browser is None:
        sys.exit(f"screenshots.py: error: no Chromium on PATH (looked for {', '.join(BROWSERS)})")
    OUT.mkdir(parents=True, exist_ok=True)
    for page in args.pages:
        print(screenshot(browser, page, args.width, args.height, OUT).relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
