"""Build the study's Jupyter Book: run every notebook with a parameter profile, then render.

    python scripts/build_book.py --profile toy                      # the whole toy book
    python scripts/build_book.py --profile toy --only u_curve       # one notebook (+ the book)
    python scripts/build_book.py --profile toy --only alpha_sweep --set "alpha_sweep.alphas=[0, 0.25, 0.5, 1]"
    python scripts/build_book.py --profile llava-1.5-7b --results results/llava   # GPU run
    python scripts/build_book.py --profile toy --no-execute         # re-render stored notebooks
    python scripts/build_book.py --only u_curve --plugin l2norm.py --set u_curve.pruner=l2norm   # a pruner of yours
    python scripts/build_book.py --only u_curve --set limit=20 --no-book   # compute only; book/ untouched

Steps:

1. check the options (``--only`` names at least one notebook, ``--timeout`` is positive), load the
   plug-ins (``--plugin`` files and the profile's ``plugins``; they are passed to every kernel in
   ``$STUDYLIB_PLUGINS``), check the profile (every notebook it names exists, every default is a
   parameter of some notebook) and every ``--set`` against the notebooks' parameters, and the
   values that read no data (model, device, dtype, pruners, budgets and the parameters derived
   from them, seeds, counts, results_dir, bootstrap_seed, folds, datasets, their options and that
   their data paths exist): one line naming the problem and the valid choices, exit 2, before
   anything runs or any file is written;
2. register the kernel ``studylib`` (this interpreter) in its prefix, idempotently;
3. for each selected notebook (in :data:`studylib.experiments.ORDER`): execute it with papermill
   into a temporary folder, and only when it succeeds move it to ``book/experiments/<name>.ipynb``
   (parameter cells hidden, title labelled with the model); a failed run leaves the last good page;
4. give every experiment never executed in this copy a page that says so, write the intro's
   verdict table (``book/verdicts.md``: rows of pages run with ``--set`` or ``--plugin`` show no
   numbers, see :func:`studylib.build.verdicts_page`), the methods page's table of registered pruners
   (``book/pruners.md``), the timings (``book/_build_times.json``) and the status page (``book/status.md``);
5. ``jupyter-book build book -W -n --keep-going`` (the book's own execution is off).

``--no-book`` runs step 1 and executes the notebooks into ``results/notebooks/<profile>/`` (with
``--results R``: ``R/notebooks/``; the result store fills as usual) and writes nothing under ``book/``.

A notebook that fails does not stop the others, but then step 4 and 5 are skipped: the status,
timings and verdicts of the last good build stay as they were, and the script exits 1.  Bad
options exit 2 with one line naming the problem and the valid choices.  Results are cached in the result store
(``results_dir``), so re-running a profile re-renders from stored results.
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
import tempfile
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import nbformat  # noqa: E402
import papermill  # noqa: E402

from studylib import build, pages, plugins  # noqa: E402
from studylib.experiments import ORDER  # noqa: E402
from studylib.pruners import PrunerConfigError  # noqa: E402
from studylib.sweep import StudyParameterError  # noqa: E402
from studylib.sweep.validate import check_run_parameters  # noqa: E402

NOTEBOOKS = REPO / "notebooks"
BOOK = REPO / "book"
EXPERIMENTS = BOOK / "experiments"
NO_BOOK_DIR = REPO / "results" / "notebooks"  # where --no-book puts the executed notebooks
TIMES = BOOK / "_build_times.json"
PACKAGES = ("torch", "transformers", "numpy", "pandas", "scipy", "matplotlib", "seaborn", "papermill",
            "jupyter-book", "myst-nb", "sphinx")


class _QuietPapermill(logging.Filter):
    """Drop papermill's parameter-inspection warnings: its parser skips lines with two ``=``
    (``pruner = "scope(alpha=1)"``) and then calls those parameters unknown; the build checks
    parameters itself (:func:`studylib.build.notebook_parameters`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(("Unable to parse line", "Passed unknown parameter"))


def label_title(nb, model: str, profile: str) -> None:
    """Append `` — <model label>`` (``TOY model`` for the toy) to the notebook's H1 title and put
    the run banner (which model produced the page's numbers) right under it."""
    label = pages.model_label(model)
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("# "):
                if label not in line:
                    lines[i] = f"{line} — {label}"
                banner = pages.run_banner(model, profile)
                if banner not in cell.source:
                    lines[i + 1:i + 1] = ["", banner, ""]
                cell.source = "\n".join(lines)
                return
        return


def execute(name: str, params: dict, timeout: int | None, log_output: bool, scope: dict,
            out_dir: Path = EXPERIMENTS) -> tuple[float, str | None]:
    """Run ``notebooks/<name>.ipynb`` into a temporary file; on success move it to ``out_dir``
    (the book's pages), recording its :func:`studylib.build.page_scope` ``scope``."""
    source = NOTEBOOKS / f"{name}.ipynb"
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"{name}-") as scratch:
        target = Path(scratch) / f"{name}.ipynb"
        try:
            papermill.execute_notebook(str(source), str(target), parameters=params, kernel_name=build.KERNEL_NAME,
                                       log_output=log_output, progress_bar=False, cwd=str(REPO),
                                       execution_timeout=timeout, extra_arguments=build.KERNEL_ARGUMENTS)
        except Exception as exc:  # noqa: BLE001  (papermill raises PapermillExecutionError and others)
            lines = str(exc).strip().splitlines()
            return time.perf_counter() - start, f"{type(exc).__name__}: {lines[-1] if lines else exc}"
        seconds = time.perf_counter() - start
        nb = nbformat.read(str(target), as_version=4)
        build.hide_parameter_cells(nb)
        model = params.get("model", build.declared_parameters(source).get("model", ""))
        label_title(nb, str(model).strip("'\""), str(params.get("profile", "")))
        build.lead_with_findings(nb, name, pages.is_toy(str(model).strip("'\"")))
        nb.metadata.setdefault("studylib", {}).update({"profile": params.get("profile"), "seconds": round(seconds, 1),
                                                      "custom": scope})
        out_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(target))
        shutil.move(str(target), out_dir / f"{name}.ipynb")
    return seconds, None


def status_page(profile: dict, times: dict, book_seconds: float | None) -> str:
    def version(pkg: str) -> str:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "not installed"

    lines = [
        "# Build status", "",
        "This page is written by `scripts/build_book.py` at every build.", "",
        f"- profile: **{profile['name']}** — {profile.get('description', '')}",
        f"- built: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} on "
        f"{platform.machine()} with {os.cpu_count()} logical CPUs (`os.cpu_count()`)",
        f"- command: `{' '.join(['python', 'scripts/build_book.py'] + sys.argv[1:])}`", "",
        "## Wall time per notebook", "",
        "Measured by the build around each papermill run (kernel start, model loading, every sweep that was not "
        "already in the result store, analysis and figures). A notebook whose results were cached re-renders in "
        "seconds. The load average is the 1-minute system load (the larger of the values before and after the "
        "notebook): above the number of cores, other processes competed for the CPU and the wall time overstates "
        "the notebook's own cost. Notebooks not executed in this build keep their last entry.", "",
        "The last column says whether a notebook ran with the profile's own parameters or as a custom run "
        "(`--set` values, `--plugin` files): the intro's verdict table shows numbers only for the former.", "",
        "| notebook | wall time (s) | load average | status | parameters |", "|---|---:|---:|---|---|",
    ]
    total = sum(entry["seconds"] for entry in times.values())
    lines += [f"| {name} | {e['seconds']:.1f} | {e.get('load_average', '')} | {e['status']} | "
              f"{'custom: ' + build.scope_text(e['custom']) if e.get('custom') else 'profile'} |" for name, e in times.items()]
    lines.append(f"| **all notebooks** | **{total:.1f}** | | | |")
    if book_seconds is not None:
        lines.append(f"| jupyter-book build (previous build) | {book_seconds:.1f} | | | |")
    lines += ["", build.sizes_section(ORDER, EXPERIMENTS)]
    lines += ["", "## Environment", "", "| package | version |", "|---|---|", f"| python | {platform.python_version()} |"]
    lines += [f"| {pkg} | {version(pkg)} |" for pkg in PACKAGES]
    return "\n".join(lines) + "\n"


def build_html(keep_going: bool = True) -> int:
    exe = Path(sys.executable).parent / "jupyter-book"
    command = [str(exe) if exe.exists() else "jupyter-book", "build", str(BOOK), "-W", "-n"]
    if keep_going:
        command.append("--keep-going")
    print("$", " ".join(command), flush=True)
    return subprocess.run(command, cwd=str(REPO)).returncode


def use_plugins(files: list[str]) -> list[str]:
    """Load the plug-in files here (for the parameter check) and put them in ``$STUDYLIB_PLUGINS``,
    which every papermill kernel inherits; returns them resolved."""
    paths = [str(Path(f).expanduser().resolve()) for f in files]
    os.environ[plugins.ENV] = os.pathsep.join(dict.fromkeys([*map(str, plugins.plugin_paths()), *paths]))
    try:
        plugins.load_plugins()
    except plugins.PluginError as error:
        raise build.ProfileError(f"--plugin: {error}") from None
    return paths


def plan(args) -> tuple[dict, list[str], dict[str, dict], dict[str, dict]]:
    """The profile, the notebooks to execute, their parameters and each one's page scope, all
    checked before any work."""
    try:
        if args.timeout is not None and args.timeout <= 0:
            raise build.ProfileError(f"--timeout {args.timeout}: give a positive number of seconds per cell, or leave "
                                     f"it out for no limit")
        profile = build.load_profile(args.profile)
        own_plugins = use_plugins(args.plugins)
        use_plugins(profile["plugins"])
        declared = {n: build.declared_parameters(NOTEBOOKS / f"{n}.ipynb") for n in ORDER
                    if (NOTEBOOKS / f"{n}.ipynb").exists()}
        check_profile_keys(profile, declared)
        names = list(declared)
        if args.only is not None:
            wanted = [n.strip() for n in args.only.split(",") if n.strip()]
            unknown = [n for n in wanted if n not in names]
            if unknown or not wanted:
                problem = f"unknown notebook(s) {unknown}" if unknown else "names no notebook"
                raise build.ProfileError(f"--only {args.only!r}: {problem}; choose from {names} (comma-separated), "
                                         f"or leave --only out for all")
            names = [n for n in names if n in wanted]
        overrides = build.parse_overrides(args.overrides, names)
        declared_by = {name: declared[name] for name in names}
        common = overrides.get("*", {})
        unused = sorted(set(common) - set().union(*map(set, declared_by.values())))
        if unused:
            raise build.ProfileError(f"--set: no selected notebook has parameter(s) {unused}; parameters: "
                                     f"{sorted(set().union(*map(set, declared_by.values())))}")
        params_by, scopes = {}, {}
        for name, declared in declared_by.items():
            chosen = {**{k: v for k, v in common.items() if k in declared}, **overrides.get(name, {})}
            params = {**build.notebook_parameters(profile, name, declared, chosen), "profile": profile["name"]}
            if args.results:
                params["results_dir"] = args.results
            params_by[name] = params
            scopes[name] = build.page_scope(chosen, own_plugins)
        for name, params in params_by.items():
            check_parameters(name, {**declared_by[name], **params})
    except build.ProfileError as error:
        fail(str(error))
    return profile, names, params_by, scopes


def check_profile_keys(profile: dict, declared_by: dict[str, dict]) -> None:
    """Every notebook a profile names exists, and every default is a parameter of some notebook
    (a typo such as ``u_curv`` or ``batch_sise`` would otherwise be ignored)."""
    unknown = sorted(set(profile["notebooks"]) - set(declared_by))
    if unknown:
        raise build.ProfileError(f"profile {profile['path']}: notebooks: unknown notebook(s) {unknown}; the notebooks "
                                 f"are {sorted(declared_by)}")
    parameters = set().union(*map(set, declared_by.values()))
    unused = sorted(set(profile["defaults"]) - parameters)
    if unused:
        raise build.ProfileError(f"profile {profile['path']}: defaults: no notebook has parameter(s) {unused}; the "
                                 f"parameters are {sorted(parameters)}")


def check_parameters(name: str, params: dict) -> None:
    """The dataset-free checks of a notebook's parameters (model, device, dtype, pruners,
    budgets, counts: :func:`studylib.sweep.validate.check_run_parameters`), as a
    :class:`~studylib.build.ProfileError` naming the notebook."""
    try:
        check_run_parameters(params)
    except (StudyParameterError, PrunerConfigError) as error:
        raise build.ProfileError(f"{name}: {error}") from None


def fail(message: str) -> None:
    """Exit 2 with ONE line on stderr naming the problem (argparse's own usage errors aside)."""
    print(f"build_book.py: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(2)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="toy", help="profile name (profiles/<name>.yaml) or path")
    parser.add_argument("--only", default=None, help="comma-separated notebooks to execute (default: all)")
    parser.add_argument("--results", default=None, help="result store directory (overrides results_dir)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="[NOTEBOOK.]KEY=YAML",
                        help="override a parameter, e.g. --set limit=50 or --set 'alpha_sweep.alphas=[0,1]'")
    parser.add_argument("--no-execute", action="store_true", help="only render the notebooks already in book/experiments")
    parser.add_argument("--no-book", action="store_true",
                        help=f"execute the notebooks into {NO_BOOK_DIR.relative_to(REPO)}/<profile>/ (with --results R: "
                             f"R/notebooks/) and write nothing under book/ (the result store fills as usual)")
    parser.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="FILE.py",
                        help="a plug-in file that registers pruners or datasets; loaded by the parameter check and "
                             "by every notebook (repeatable; a profile's 'plugins' list adds more)")
    parser.add_argument("--timeout", type=int, default=None, help="per-cell execution timeout in seconds (positive)")
    parser.add_argument("--quiet", action="store_true", help="do not stream notebook output (--log-output off)")
    return parser


def execute_all(names: list[str], params_by: dict, scopes: dict, profile: dict, args,
                out_dir: Path) -> tuple[dict, list[str]]:
    """Execute ``names`` into ``out_dir``; their timings and the failures."""
    build.ensure_kernel(build.KERNEL_NAME)
    build.kernel_environment()
    for logger in ("papermill", "papermill.translators", "papermill.execute"):  # filters do not inherit
        logging.getLogger(logger).addFilter(_QuietPapermill())
    times, failures = {}, []
    for name in names:
        print(f"\n=== {name}: profile {profile['name']}, parameters {json.dumps(params_by[name], default=str)}",
              flush=True)
        load_before = os.getloadavg()[0]
        seconds, error = execute(name, params_by[name], args.timeout, not args.quiet, scopes[name], out_dir)
        load = round(max(load_before, os.getloadavg()[0]), 1)
        print(f"=== {name}: {seconds:.1f} s, {'ok' if error is None else 'FAILED (' + error + ')'} "
              f"(load average {load})", flush=True)
        if error is None:
            times[name] = {"seconds": round(seconds, 1), "status": "ok", "profile": profile["name"],
                           "load_average": load, "custom": scopes[name]}
        else:
            failures.append(f"{name}: {error}")
    return times, failures


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.no_book and args.no_execute:
        fail("--no-book with --no-execute would do nothing; drop one of them")
    profile, names, params_by, scopes = plan(args)

    if args.no_book:  # compute only: the executed notebooks go next to the result store, book/ stays as it is
        out_dir = Path(args.results) / "notebooks" if args.results else NO_BOOK_DIR / profile["name"]
        times, failures = execute_all(names, params_by, scopes, profile, args, out_dir)
        print(f"\nexecuted notebooks: {out_dir} (book/ untouched)")
        for name, entry in times.items():
            print(f"  {name:22s} {entry['seconds']:8.1f}  {entry['status']}")
        if failures:
            print("\nFAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1 if failures else 0

    previous = json.loads(TIMES.read_text()) if TIMES.exists() else {}
    same_profile = previous.get("profile") == profile["name"]
    times = dict(previous.get("notebooks", {})) if same_profile else {}
    failures: list[str] = []
    if not args.no_execute:
        new_times, failures = execute_all(names, params_by, scopes, profile, args, EXPERIMENTS)
        times.update(new_times)

    if failures:  # leave the last good book as it was: no status, timings, verdicts or HTML from this run
        print("\nFAILED (the last good pages, status and timings are kept):\n  " + "\n  ".join(failures),
              file=sys.stderr)
        return 1
    EXPERIMENTS.mkdir(parents=True, exist_ok=True)
    for name in ORDER:
        page = EXPERIMENTS / f"{name}.ipynb"
        if not page.exists() and (NOTEBOOKS / f"{name}.ipynb").exists():
            nbformat.write(build.not_run_notebook(name, build.notebook_title(NOTEBOOKS / f"{name}.ipynb")), str(page))
    (BOOK / "verdicts.md").write_text(build.verdicts_page(ORDER, EXPERIMENTS))
    build.write_answer(BOOK, ORDER, EXPERIMENTS)
    (BOOK / build.REPORTED_TABLE).write_text(build.reported_page_table())
    (BOOK / "pruners.md").write_text(build.pruners_page())
    book_seconds = previous.get("book_seconds") if same_profile else None
    (BOOK / "status.md").write_text(status_page(profile, times, book_seconds))
    start = time.perf_counter()
    code = build_html()
    book_seconds = round(time.perf_counter() - start, 1)
    if code != 0:
        failures.append(f"jupyter-book build exited with {code}")
    total = round(sum(v["seconds"] for v in times.values()), 1)
    build.write_json(TIMES, {"profile": profile["name"], "notebooks": times, "notebooks_total_seconds": total,
                             "book_seconds": book_seconds, "cpu_count": os.cpu_count(),
                             "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
    print("\nwall time per notebook (s):")
    for name, entry in times.items():
        print(f"  {name:22s} {entry['seconds']:8.1f}  {entry['status']}")
    print(f"  {'notebooks total':22s} {total:8.1f}")
    if code == 0:
        print(f"\nbook: {BOOK / '_build' / 'html' / 'index.html'}")
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
