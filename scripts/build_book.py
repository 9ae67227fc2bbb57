"""Build the study's Jupyter Book: run every notebook with a parameter profile, then render.

    python scripts/build_book.py --profile toy                      # the whole toy book
    python scripts/build_book.py --profile toy --only u_curve       # one notebook (+ the book)
    python scripts/build_book.py --profile toy --only alpha_sweep --set "alphas=[0, 0.25, 0.5, 1]"
    python scripts/build_book.py --profile llava-1.5-7b --results results/llava   # GPU run
    python scripts/build_book.py --profile toy --no-execute         # re-render stored notebooks

Steps:

1. register the kernel ``studylib`` (this interpreter) in its prefix, idempotently;
2. for each notebook of ``notebooks/`` (in :data:`ORDER`): merge the profile's parameters
   (``profiles/<profile>.yaml``: defaults, then per-notebook values, then ``--set``), execute it
   with papermill into ``book/experiments/<name>.ipynb``, hide the parameter cells, label the
   title with the model (``TOY model``), and time it;
3. write ``book/_build_times.json`` and the status page ``book/status.md``;
4. ``jupyter-book build book -W --keep-going`` (the book's own execution is off).

A notebook that fails does not stop the others; the script exits non-zero at the end if any
notebook or the book build failed.  Results are cached in the result store (``results_dir``), so
re-running a profile re-renders from stored results without recomputing them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from studylib import book  # noqa: E402

KERNEL = book.KERNEL_NAME
NOTEBOOKS = REPO / "notebooks"
BOOK = REPO / "book"
EXPERIMENTS = BOOK / "experiments"
#: execution order (the book's table of contents is book/_toc.yml)
ORDER = ["u_curve", "alpha_sweep", "baselines", "scienceqa", "per_split", "temperature_scaling",
         "gap_power", "erank_hallucination", "gallery", "explore"]


class _QuietPapermill(logging.Filter):
    """Drop papermill's parameter-inspection warnings: its parser skips lines with two ``=``
    (``pruner = "scope(alpha=1)"``) and then calls those parameters unknown; the build checks
    parameters itself (:func:`studylib.book.notebook_parameters`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not message.startswith(("Unable to parse line", "Passed unknown parameter"))


def label_title(nb, model: str, profile: str) -> None:
    """Append `` — <model label>`` (``TOY model`` for the toy) to the notebook's H1 title and put
    the run banner (which model produced the page's numbers) right under it."""
    label = book.model_label(model)
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("# "):
                if label not in line:
                    lines[i] = f"{line} — {label}"
                banner = book.run_banner(model, profile)
                if banner not in cell.source:
                    lines[i + 1:i + 1] = ["", banner, ""]
                cell.source = "\n".join(lines)
                return
        return


def execute(name: str, params: dict, timeout: int | None, log_output: bool) -> tuple[float, str | None]:
    import nbformat
    import papermill

    source = NOTEBOOKS / f"{name}.ipynb"
    target = EXPERIMENTS / f"{name}.ipynb"
    start = time.perf_counter()
    error = None
    try:
        papermill.execute_notebook(str(source), str(target), parameters=params, kernel_name=KERNEL,
                                   log_output=log_output, progress_bar=False, cwd=str(REPO),
                                   execution_timeout=timeout)
    except Exception as exc:  # noqa: BLE001  (papermill raises PapermillExecutionError and others)
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}"
    seconds = time.perf_counter() - start
    if target.exists():
        nb = nbformat.read(str(target), as_version=4)
        book.hide_parameter_cells(nb)
        model = params.get("model", book.declared_parameters(source).get("model", ""))
        label_title(nb, str(model).strip("'\""), str(params.get("profile", "")))
        nb.metadata.setdefault("studylib", {}).update({"profile": params.get("profile"), "seconds": round(seconds, 1)})
        nbformat.write(nb, str(target))
    return seconds, error


def status_page(profile: dict, times: dict, book_seconds: float | None) -> str:
    import importlib.metadata as md

    def version(pkg: str) -> str:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return "not installed"

    lines = [
        "# Build status",
        "",
        "This page is written by `scripts/build_book.py` at every build.",
        "",
        f"- profile: **{profile['name']}** — {profile.get('description', '')}",
        f"- built: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} on "
        f"{platform.machine()} with {os.cpu_count()} logical CPUs (`os.cpu_count()`)",
        f"- command: `{' '.join(['python', 'scripts/build_book.py'] + sys.argv[1:])}`",
        "",
        "## Wall time per notebook",
        "",
        "Measured by the build around each papermill run (kernel start, model loading, every sweep "
        "that was not already in the result store, analysis and figures). A notebook whose results were "
        "cached re-renders in seconds. The load average is the 1-minute system load (the larger of the "
        "values before and after the notebook): above the number of cores, other processes competed "
        "for the CPU and the wall time overstates the notebook's own cost.",
        "",
        "| notebook | wall time (s) | load average | status |",
        "|---|---:|---:|---|",
    ]
    total = 0.0
    for name, entry in times.items():
        total += entry["seconds"]
        lines.append(f"| {name} | {entry['seconds']:.1f} | {entry.get('load_average', '')} | {entry['status']} |")
    lines.append(f"| **all notebooks** | **{total:.1f}** | | |")
    if book_seconds is not None:
        lines.append(f"| jupyter-book build (previous build) | {book_seconds:.1f} | |")
    lines += ["", "## Environment", "", "| package | version |", "|---|---|",
              f"| python | {platform.python_version()} |"]
    for pkg in ("torch", "transformers", "numpy", "pandas", "scipy", "matplotlib", "seaborn", "papermill",
                "jupyter-book", "myst-nb", "sphinx"):
        lines.append(f"| {pkg} | {version(pkg)} |")
    return "\n".join(lines) + "\n"


def build_book(keep_going: bool = True) -> int:
    exe = Path(sys.executable).parent / "jupyter-book"
    command = [str(exe) if exe.exists() else "jupyter-book", "build", str(BOOK), "-W", "-n"]
    if keep_going:
        command.append("--keep-going")
    print("$", " ".join(command), flush=True)
    return subprocess.run(command, cwd=str(REPO)).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="toy", help="profile name (profiles/<name>.yaml) or path")
    parser.add_argument("--only", default="", help="comma-separated notebooks to execute (default: all)")
    parser.add_argument("--results", default=None, help="result store directory (overrides results_dir)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="[NOTEBOOK.]KEY=YAML",
                        help="override a parameter, e.g. --set limit=50 or --set 'alpha_sweep.alphas=[0,1]'")
    parser.add_argument("--no-execute", action="store_true", help="only render the notebooks already in book/experiments")
    parser.add_argument("--no-book", action="store_true", help="execute notebooks but do not build the HTML")
    parser.add_argument("--timeout", type=int, default=None, help="per-cell execution timeout in seconds")
    parser.add_argument("--quiet", action="store_true", help="do not stream notebook output (--log-output off)")
    args = parser.parse_args(argv)

    profile = book.load_profile(args.profile)
    names = [n for n in ORDER if (NOTEBOOKS / f"{n}.ipynb").exists()]
    extra = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb") if p.stem not in ORDER)
    names += extra
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            parser.error(f"--only: unknown notebook(s) {unknown}; choose from {names}")
        names = [n for n in names if n in wanted]
    overrides = book.parse_overrides(args.overrides, names)
    EXPERIMENTS.mkdir(parents=True, exist_ok=True)
    times_path = BOOK / "_build_times.json"
    previous = json.loads(times_path.read_text()) if times_path.exists() else {}
    # keep earlier timings of the same profile (an --only build re-times just its notebooks)
    times = dict(previous.get("notebooks", {})) if previous.get("profile") == profile["name"] else {}
    if previous.get("profile") != profile["name"]:
        previous = {}
    failures: list[str] = []

    if not args.no_execute:
        book.ensure_kernel(KERNEL)
        book.kernel_environment()
        logging.getLogger("papermill").addFilter(_QuietPapermill())
        declared_by = {name: book.declared_parameters(NOTEBOOKS / f"{name}.ipynb") for name in names}
        common = overrides.get("*", {})
        unused = sorted(set(common) - set().union(*map(set, declared_by.values())))
        if unused:
            parser.error(f"--set: no selected notebook has parameter(s) {unused}")
        for name in names:
            declared = declared_by[name]
            chosen = {**{k: v for k, v in common.items() if k in declared}, **overrides.get(name, {})}
            params = book.notebook_parameters(profile, name, declared, chosen)
            if "profile" in declared:
                params["profile"] = profile["name"]
            if args.results and "results_dir" in declared:
                params["results_dir"] = args.results
            print(f"\n=== {name}: profile {profile['name']}, parameters {json.dumps(params, default=str)}", flush=True)
            load_before = os.getloadavg()[0]
            seconds, error = execute(name, params, args.timeout, log_output=not args.quiet)
            load = round(max(load_before, os.getloadavg()[0]), 1)
            status = "ok" if error is None else f"FAILED ({error})"
            print(f"=== {name}: {seconds:.1f} s, {status} (load average {load})", flush=True)
            times[name] = {"seconds": round(seconds, 1), "status": status, "profile": profile["name"],
                           "load_average": load}
            if error is not None:
                failures.append(f"{name}: {error}")

    total = round(sum(v["seconds"] for k, v in times.items() if k in names or not args.only), 1)
    book_seconds = previous.get("book_seconds")
    (BOOK / "status.md").write_text(status_page(profile, times, book_seconds))
    code = 0
    if not args.no_book:
        start = time.perf_counter()
        code = build_book()
        book_seconds = round(time.perf_counter() - start, 1)
        if code != 0:
            failures.append(f"jupyter-book build exited with {code}")
    book.write_json(times_path, {"profile": profile["name"], "notebooks": times, "notebooks_total_seconds": total,
                                 "book_seconds": book_seconds, "cpu_count": os.cpu_count(),
                                 "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
    print("\nwall time per notebook (s):")
    for name, entry in times.items():
        print(f"  {name:22s} {entry['seconds']:8.1f}  {entry['status']}")
    print(f"  {'notebooks total':22s} {total:8.1f}")
    if book_seconds is not None:
        print(f"  {'jupyter-book build':22s} {book_seconds:8.1f}")
    if not args.no_book and code == 0:
        print(f"\nbook: {BOOK / '_build' / 'html' / 'index.html'}")
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
