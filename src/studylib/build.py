"""Build-time helpers of the book, used by ``scripts/build_book.py`` and the tests only.

The build runs every notebook of ``notebooks/`` through papermill with the parameters of a named
**profile** (``profiles/<name>.yaml``), writes the executed notebooks into ``book/experiments/``
(only when they succeed: a failed run leaves the last good page untouched) and renders the book
with Jupyter Book, which never executes anything itself.  A profile file has these keys::

    description: one line shown on the status page
    defaults:    parameters given to every notebook that declares them
    notebooks:   {<notebook name>: {parameter: value, ...}}  per-notebook overrides
    plugins:     [path.py, ...]  plug-in files (pruners, datasets) every notebook loads (optional)

Parameters derived from ``budgets`` (``moderate_k``, ``aggressive_k``, ``reported_budgets``)
follow the budgets they were given with: when ``--set`` changes a notebook's budgets but not
one of them, the profile's value is dropped and the experiment derives it from the new budgets.
Every executed page records its scope (:func:`page_scope`): run with the profile's own
parameters, or a custom run (``--set``, plug-ins, another result store); the intro's verdict
table shows the numbers of the first kind only.

Notebooks not executed in a build keep their last executed page, or get a page that says they
were not run (:func:`not_run_notebook`); the intro's verdict table (:func:`verdicts_page`) is
written from the claims files and the glued values of the executed notebooks, so it says per
row which experiments did not run.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

import nbformat
import pandas as pd
import yaml
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

from studylib.claim_specs import CLAIMS_DIR, load_specs
from studylib.claims import ESTIMATOR_SENSITIVE, LEGEND, OUTCOMES
from studylib.experiments.common import RUN_SETTINGS
from studylib.plugins import load_plugin
from studylib.sweep.validate import DERIVED_FROM_BUDGETS

REPO_ROOT = Path(__file__).resolve().parents[2]
PROFILES_DIR = REPO_ROOT / "profiles"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
NOT_RUN = "not run in this build"
CUSTOM_RUN = "custom run"


# ----------------------------------------------------------------------------- profiles

class ProfileError(ValueError):
    """Unknown profile, malformed profile file, or a parameter the notebook does not declare."""


def list_profiles(directory: Path = PROFILES_DIR) -> list[str]:
    return sorted(p.stem for p in Path(directory).glob("*.yaml"))


def load_profile(name_or_path: str | Path, directory: Path = PROFILES_DIR) -> dict[str, Any]:
    """Read a profile by name (``toy``) or path; checks its three keys."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = Path(directory) / f"{name_or_path}.yaml"
    if not path.exists():
        raise ProfileError(f"no profile {str(name_or_path)!r} (looked for {path}); "
                           f"available: {list_profiles(directory)}")
    profile = yaml.safe_load(path.read_text()) or {}
    unknown = set(profile) - {"description", "defaults", "notebooks", "plugins"}
    if unknown:
        raise ProfileError(f"{path}: unknown top-level keys {sorted(unknown)}; "
                           f"expected description, defaults, notebooks, plugins")
    profile.setdefault("description", "")
    profile.setdefault("defaults", {})
    profile.setdefault("notebooks", {})
    if not isinstance(profile["defaults"], dict) or not isinstance(profile["notebooks"], dict):
        raise ProfileError(f"{path}: 'defaults' and 'notebooks' must be mappings")
    plugins = profile.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ProfileError(f"{path}: 'plugins' must be a list of plug-in file paths, got {plugins!r}")
    profile["plugins"] = [str(REPO_ROOT / Path(p).expanduser()) for p in plugins]  # relative to the repository root
    profile["name"] = path.stem
    profile["path"] = str(path)
    return profile


def notebook_parameters(profile: Mapping[str, Any], notebook: str, declared: Iterable[str],
                        overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Parameters for ``notebook``: profile defaults (those the notebook declares), then the
    profile's per-notebook values, then ``overrides``.  Per-notebook values and overrides must
    name declared parameters (a typo fails here, not silently in papermill)."""
    declared = set(declared)
    overrides = dict(overrides or {})
    params = {k: v for k, v in profile.get("defaults", {}).items() if k in declared}
    for source, values in (("profile " + str(profile.get("name", "")), profile.get("notebooks", {}).get(notebook, {}) or {}),
                           ("--set", overrides)):
        unknown = sorted(set(values) - declared)
        if unknown:
            raise ProfileError(f"{source}: notebook {notebook!r} has no parameter(s) {unknown}; "
                               f"its parameters are {sorted(declared)}")
        params.update(values)
    if "budgets" in overrides:  # the profile's derived values belong to the profile's budgets
        for name in DERIVED_FROM_BUDGETS:
            if name not in overrides:
                params.pop(name, None)
    return params


def parse_overrides(items: Iterable[str], notebooks: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``--set`` items ``key=value`` (every notebook that declares ``key``) or
    ``notebook.key=value``; values are YAML (``[16, 32]``, ``null``, ``0.5``, ``toy``).
    Returns ``{notebook or "*": {key: value}}``."""
    notebooks = set(notebooks)
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item:
            raise ProfileError(f"--set {item!r}: expected key=value or notebook.key=value")
        key, text = item.split("=", 1)
        target = "*"
        if "." in key:
            target, key = key.split(".", 1)
            if target not in notebooks:
                raise ProfileError(f"--set {item!r}: unknown notebook {target!r}; choose from {sorted(notebooks)}")
        out.setdefault(target, {})[key.strip()] = yaml.safe_load(text)
    return out


# ----------------------------------------------------------------------------- executed notebooks

GLUE_PREFIX = "application/papermill.record/"


def read_glued(path: str | Path) -> dict[str, Any]:
    """Values glued with ``myst_nb.glue`` in an executed notebook, by name (:func:`glued_values`)."""
    return glued_values(nbformat.read(str(path), as_version=4))


def glued_values(nb) -> dict[str, Any]:
    """Values glued with ``myst_nb.glue`` in an executed notebook (a ``NotebookNode``), by name.

    Plain values come back as Python values (from their ``text/plain`` repr where it parses as
    a literal, else the string); figures and tables come back as their mime bundle.
    """
    values: dict[str, Any] = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            meta = output.get("metadata", {}).get("scrapbook")
            if not meta:
                continue
            data = {k.replace(GLUE_PREFIX, ""): v for k, v in output.get("data", {}).items()}
            text = data.get("text/plain")
            if set(data) <= {"text/plain"} and isinstance(text, str):
                try:
                    values[meta["name"]] = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    values[meta["name"]] = text.strip("'\"")
            else:
                values[meta["name"]] = data
    return values


def glued_claims(nb_or_path, name: str) -> list | None:
    """The claims an executed notebook glued (``<name>_claims``, :func:`studylib.summary.claims_to_json`),
    ``None`` when it glued none (not executed, or executed before claims were glued)."""
    from studylib.summary import claims_from_json

    values = read_glued(nb_or_path) if isinstance(nb_or_path, (str, Path)) else glued_values(nb_or_path)
    text = values.get(f"{name}_claims")
    return claims_from_json(text) if isinstance(text, str) else None


def declared_parameters(notebook: str | Path) -> dict[str, Any]:
    """Names and default values of the parameters a notebook takes: the run settings every experiment
    accepts (:data:`studylib.experiments.RUN_SETTINGS`), then its ``parameters`` cell, read with
    :mod:`ast` (papermill's own inspection skips lines with more than one ``=``, such as
    ``pruner = "scope(alpha=1)"``).  Values that are not literals come back as source text."""
    nb = nbformat.read(str(notebook), as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ProfileError(f"{notebook}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    params: dict[str, Any] = dict(RUN_SETTINGS)
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    try:
                        params[target.id] = ast.literal_eval(node.value)
                    except (ValueError, SyntaxError):
                        params[target.id] = ast.unparse(node.value)
    return params


def hide_parameter_cells(nb) -> None:
    """In an executed notebook: remove the default ``parameters`` cell (papermill's injected cell
    supersedes it), show the injected cell's values in a collapsed "Parameters of this run" block
    instead of a code cell, and turn every other hidden input (``hide-input``) into a removed one
    (``remove-input``): a page shows outputs and prose, no "show code cell source" bars."""
    cells = []
    for cell in nb.cells:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags:
            if "remove-input" not in tags:
                tags[:] = [t for t in tags if t != "hide-input"] + ["remove-input"]
            cells += [cell, nbformat.v4.new_markdown_cell(parameters_block(cell.source),
                                                          metadata={"tags": ["run-parameters"]})]
            continue
        if "parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
        if "run-parameters" in tags:  # a block written by an earlier pass
            continue
        if "hide-input" in tags:
            tags[:] = [t if t != "hide-input" else "remove-input" for t in tags]
        cells.append(cell)
    nb.cells = cells


def parameters_block(source: str) -> str:
    """A collapsed MyST block that lists a run's parameters (the injected cell's assignments)."""
    lines = [line for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    code = "\n".join(lines)
    return (f"````{{dropdown}} Parameters of this run\nRerun with other values: `python scripts/build_book.py --only "
            f"<notebook> --set key=value` (see *Reproducing*).\n\n```python\n{code}\n```\n````")


def lead_with_findings(nb, name: str, toy: bool) -> None:
    """Put "What this run found" (:func:`studylib.summary.findings`, from the notebook's glued claims)
    right under the page's title and run banner; an earlier block is replaced, a notebook without
    claims is left as it is."""
    from studylib.summary import findings

    nb.cells = [c for c in nb.cells if "findings" not in c.get("metadata", {}).get("tags", [])]
    claims = glued_claims(nb, name)
    if not claims:
        return
    text = findings(claims, name, toy=toy)
    cell = nbformat.v4.new_markdown_cell(f"## What this run found\n\n{text}\n", metadata={"tags": ["findings"]})
    for index, existing in enumerate(nb.cells):
        if existing.cell_type == "markdown" and existing.source.lstrip().startswith("# "):
            head, rest = _split_after_banner(existing.source)
            existing.source = head
            nb.cells[index + 1:index + 1] = [cell] + ([nbformat.v4.new_markdown_cell(rest)] if rest.strip() else [])
            return


def _split_after_banner(source: str) -> tuple[str, str]:
    """``source`` cut after its title line and the admonition right under it (the run banner)."""
    lines = source.splitlines()
    end = 1
    while end < len(lines) and not lines[end].strip():
        end += 1
    if end < len(lines) and lines[end].startswith("```{"):
        end += 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        end += 1
    return "\n".join(lines[:end]), "\n".join(lines[end:])


KERNEL_NAME = "studylib"
#: arguments of every papermill kernel: warnings of the kernel application itself (e.g. "Kernel is running
#: over TCP without encryption", about a kernel that listens on the loopback interface only) stay out of the
#: build's output; errors still show
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]


def ensure_kernel(name: str = KERNEL_NAME) -> str:
    """Install the kernelspec ``name`` for *this* interpreter into its prefix (``--sys-prefix``,
    i.e. inside the venv) unless one already points here; returns the name for papermill."""
    def here(spec) -> bool:
        return bool(spec.argv) and Path(spec.argv[0]).resolve() == Path(sys.executable).resolve()

    try:
        if here(KernelSpecManager().get_kernel_spec(name)):
            return name
    except NoSuchKernel:
        pass
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", name,
                    "--display-name", "Python (studylib)"], check=True, stdout=subprocess.DEVNULL)
    spec = KernelSpecManager().get_kernel_spec(name)
    if not here(spec):
        raise RuntimeError(f"kernel {name!r} resolves to {spec.argv[0]}, not {sys.executable}; remove the other "
                           f"kernelspec (jupyter kernelspec list / remove {name}) and retry")
    return name


def kernel_environment() -> None:
    """Environment the papermill kernels inherit: ``studylib`` importable from ``src/`` even
    without an editable install, no progress bars or download chatter in the outputs."""
    paths = [str(REPO_ROOT / "src")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")


def write_json(path: str | Path, payload: Any) -> None:
    Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------- GPU run-time estimate

#: forward FLOPs per prefill token of a 7B decoder: 2 x 7e9 (matmul FLOPs, attention ignored)
FLOPS_PER_TOKEN_7B = 2 * 7e9


def prefill_flops(n_questions: int, budgets: Iterable[int], text_tokens: int = 60,
                  flops_per_token: float = FLOPS_PER_TOKEN_7B) -> float:
    """FLOPs of scoring ``n_questions`` once per budget: (K + text tokens) prefill tokens each."""
    return float(sum(n_questions * (k + text_tokens) * flops_per_token for k in budgets))


def estimated_seconds(flops: float, peak_flops: float = 989e12, utilisation: float = 0.35) -> float:
    """Wall time at ``utilisation`` of ``peak_flops`` (H100 SXM dense bf16: 989 TFLOP/s)."""
    return flops / (peak_flops * utilisation)


def experiment_parameters(profile: str, notebook: str, **overrides: Any) -> dict[str, Any]:
    """Every parameter of ``notebooks/<notebook>.ipynb`` as a build with ``profile`` would pass it
    (the notebook's defaults, then the profile's values, then ``overrides``): the keyword arguments of
    ``studylib.experiments.<notebook>.run`` for use outside the book.  The profile's plug-ins are
    loaded (as a build loads them)."""
    loaded = load_profile(profile)
    for path in loaded["plugins"]:
        load_plugin(path)
    declared = declared_parameters(NOTEBOOKS_DIR / f"{notebook}.ipynb")
    return {**declared, **notebook_parameters(loaded, notebook, declared, overrides), "profile": loaded["name"]}


# ----------------------------------------------------------------------------- pages the build writes

def not_run_notebook(name: str, title: str) -> nbformat.NotebookNode:
    """The page of an experiment that no build has executed yet: its title and how to run it."""
    text = (f"# {title}\n\n```{{note}}\n**{NOT_RUN.capitalize()}.** This experiment has not been executed in "
            f"this copy of the book. Run it with `bash scripts/build_book.sh --only {name}` (toy model) or with "
            f"a GPU profile (see *Reproducing on a GPU*); the page then shows its tables, figures and claims.\n```\n")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(text)]
    nb.metadata["studylib"] = {"not_run": True}
    return nb


def notebook_title(path: str | Path) -> str:
    """The H1 title of a notebook (its first ``# `` line)."""
    for cell in nbformat.read(str(path), as_version=4).cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return Path(path).stem


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def page_scope(overrides: Mapping[str, Any], plugins: Iterable[str]) -> dict[str, Any]:
    """What an executed page records about how far its numbers are the profile's: the ``--set``
    values it ran with and the ``--plugin`` files loaded; empty for a run of the profile as it is."""
    scope = {}
    if overrides:
        scope["set"] = dict(overrides)
    if plugins:
        scope["plugins"] = [Path(p).name for p in plugins]
    return scope


def custom_scope(path: str | Path) -> dict[str, Any]:
    """The :func:`page_scope` an executed page was written with (empty: the profile's own run)."""
    return dict(nbformat.read(str(path), as_version=4).metadata.get("studylib", {}).get("custom") or {})


def scope_text(scope: Mapping[str, Any]) -> str:
    """A :func:`page_scope` in words: ``budgets=[144, 72], plug-in l2norm.py``."""
    parts = [f"{k}={json.dumps(v)}" for k, v in scope.get("set", {}).items()]
    parts += [f"plug-in {name}" for name in scope.get("plugins", [])]
    return ", ".join(parts)


def executed_claims(experiments: Iterable[str], executed_dir: Path) -> dict[str, list]:
    """The claims glued by each executed notebook of ``experiments`` that ran with its profile's own
    parameters (a custom run, :func:`page_scope`, is left out: the intro shows no numbers of it), in order."""
    out = {}
    for name in experiments:
        path = Path(executed_dir) / f"{name}.ipynb"
        claims = glued_claims(path, name) if path.is_file() and not custom_scope(path) else None
        if claims:
            out[name] = claims
    return out


def verdicts_page(experiments: Iterable[str], executed_dir: Path) -> str:
    """Markdown of the headline claims (claims with an ``intro`` line in ``data/claims/<experiment>.yaml``):
    the verdict legend (:data:`studylib.claims.LEGEND`, the same as on every page), then one row per
    claim: this run's effect and CI (a composite's deciding part, :func:`studylib.summary.deciding_part`),
    the paper's numbers, the verdict (with what would decide an inconclusive one and the
    estimator-sensitive label) and the number of questions (saying so where it is fewer than the
    paper's benchmark), read from the executed notebooks' glued claims.  Rows of experiments that were
    not executed say so; rows of a page run with custom parameters or plug-ins show no numbers: they
    name the custom run, whose page has them."""
    from studylib import summary

    claims = executed_claims(experiments, executed_dir)
    lines = [LEGEND, "", "| claim (source) | this run [95 % CI] | paper (LLaVA-1.5-7B) | verdict | questions |",
             "|---|---|---|---|---:|"]
    for name in experiments:
        if not (CLAIMS_DIR / f"{name}.yaml").is_file():  # an experiment without claims (gallery, explore)
            continue
        path = Path(executed_dir) / f"{name}.ipynb"
        glued = read_glued(path) if path.is_file() else {}
        custom = custom_scope(path) if path.is_file() else {}
        by_id = {c.id: c for c in claims.get(name, [])}
        for spec in load_specs(name):
            if spec.intro is None:
                continue
            page = f"[{_cell(spec.source)}](experiments/{name}.ipynb)"
            claim = by_id.get(spec.id)
            if custom and f"{name}_{spec.id}_verdict" in glued:
                lines.append(f"| {_cell(spec.intro)} ({page}) | | | *{CUSTOM_RUN} ({_cell(scope_text(custom))}): "
                             "numbers on its page; rerun the profile to restore this row* | |")
                continue
            if claim is None:
                lines.append(f"| {_cell(spec.intro)} ({page}) | | | *{NOT_RUN}* | |")
                continue
            part = summary.deciding_part(claim)
            effect = summary.effect_text(part)
            if part is not claim:
                effect += f" (part {summary.readable_test(part.id)})"
            lines.append(f"| {_cell(spec.intro)} ({page}) | {_cell(effect)} | "
                         f"{_cell(summary.readable_test(claim.reported))} | {_cell(summary.verdict_cell(claim))} | "
                         f"{_questions(glued, name, claim)} |")
    return "\n".join(lines) + "\n"


def answer_page(experiments: Iterable[str], executed_dir: Path, figure: str | None = None) -> str:
    """The intro's opening (``book/answer.md``): the answer generated from the executed notebooks'
    claims (:func:`studylib.summary.answer`) and, when ``figure`` names the written forest plot, the
    figure with its caption."""
    from studylib import summary

    claims = executed_claims(experiments, executed_dir)
    text = summary.answer(claims, toy=_toy_build(executed_dir))
    rest = summary.departures(claims)
    if figure:
        text += (f"\n```{{figure}} {figure}\n:name: forest-plot\n:width: 100%\n\nEvery headline claim of the "
                 "book on this run: the effect the claim is about (a difference between two configurations, in the "
                 "metric's units) with its 95 % paired bootstrap CI, coloured by verdict; a composite claim by the "
                 "part its verdict turns on. The open diamond is the paper's reported effect, where the paper gives "
                 "both numbers on the probability scale (erank and MME scores depend on the model and are not "
                 "drawn).\n```\n")
    return text + ("\n" + rest if rest else "")


def sizes_section(experiments: Iterable[str], executed_dir: Path) -> str:
    """The status page's section "Sizes of this build": per executed experiment the questions it scored
    and the bootstrap resamples of its CIs (glued by each notebook), the one place the book states them."""
    lines = ["## Sizes of this build", "", "What each executed notebook scored and how many bootstrap resamples its "
             "95 % confidence intervals use (each page prints its own sizes under its first cell).", "",
             "| notebook | questions scored | bootstrap resamples |", "|---|---:|---:|"]
    for name in experiments:
        path = Path(executed_dir) / f"{name}.ipynb"
        values = read_glued(path) if path.is_file() else {}
        if f"{name}_n_questions" in values or f"{name}_n_bootstrap" in values:
            lines.append(f"| {name} | {_count(values.get(f'{name}_n_questions'))} | "
                         f"{_count(values.get(f'{name}_n_bootstrap'))} |")
    return "\n".join(lines) + "\n"


REPORTED_TABLE = "reported_table.html"


def reported_page_table() -> str:
    """Every number of ``data/reference/reported.csv`` as one interactive table (sortable, searchable,
    paged; the DataTables library inlined, so the static page works offline) for ``book/reported.md``:
    the value right after what it measures, then where it is printed, the study's pruner and the note."""
    from studylib.labels import pruner_label
    from studylib.pages import interactive_table
    from studylib.reported import PAPERS, reported

    frame = reported()
    table = pd.DataFrame({
        "paper": [f"seed {p}" for p in frame["paper"]], "table": frame["table"], "benchmark": frame["benchmark"],
        "method (paper's label)": frame["method"], "K": frame["k"].astype("string").fillna(""),
        "metric": frame["metric"], "value": frame["value"], "unit": frame["unit"], "section": frame["section"],
        "setting": frame["setting"].fillna(""),
        "study's pruner": [pruner_label(p) if p else "" for p in frame["pruner"]], "note": frame["note"]})
    caption = "; ".join(f"seed {key}: {title}" for key, title in PAPERS.items())
    return interactive_table(table, caption=f"The papers' numbers ({caption})", page_length=25, bundle=True).html


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "—"


ANSWER_PAGE = "answer.md"
FOREST_FIGURE = "answer_forest.png"


def write_answer(book: Path, experiments: Iterable[str], executed_dir: Path) -> None:
    """Write the intro's opening, ``book/answer.md`` (:func:`answer_page`), and its forest plot,
    ``book/answer_forest.png`` (removed when there is nothing to plot)."""
    experiments = list(experiments)
    figure = forest_plot(experiments, executed_dir)
    path = Path(book) / FOREST_FIGURE
    if figure is None:
        path.unlink(missing_ok=True)
    else:
        figure.savefig(path, dpi=FIGURE_DPI)
    (Path(book) / ANSWER_PAGE).write_text(answer_page(experiments, executed_dir, FOREST_FIGURE if figure else None))


#: resolution of the figures the build writes (the notebooks' figures: matplotlib's inline default, 100 dpi)
FIGURE_DPI = 100


def forest_plot(experiments: Iterable[str], executed_dir: Path):
    """The forest plot of every headline claim (:func:`studylib.summary.forest_figure`), ``None`` when no
    executed notebook glued claims."""
    from studylib import summary

    claims = executed_claims(experiments, executed_dir)
    if not claims:
        return None
    titles = {name: notebook_title(Path(executed_dir) / f"{name}.ipynb").split(" — ")[0] for name in claims}
    return summary.forest_figure(claims, titles, toy=_toy_build(executed_dir))


def _toy_build(executed_dir: Path) -> bool:
    """Whether the executed notebooks are toy results (their titles say "TOY model")."""
    titles = [notebook_title(p) for p in Path(executed_dir).glob("*.ipynb")]
    return any("TOY model" in t for t in titles)


def verdict_counts(experiments: Iterable[str], executed_dir: Path, headline_only: bool = False) -> dict[str, int]:
    """How many claims of the executed notebooks have each outcome (:data:`studylib.claims.OUTCOMES`)
    and how many are estimator-sensitive, from their glued values (every declared claim, or with
    ``headline_only`` those of the intro's table); experiments not executed are left out."""
    counts = dict.fromkeys([*OUTCOMES, ESTIMATOR_SENSITIVE], 0)
    for name in experiments:
        path = Path(executed_dir) / f"{name}.ipynb"
        if not path.is_file() or not (CLAIMS_DIR / f"{name}.yaml").is_file():
            continue
        glued = read_glued(path)
        for spec in load_specs(name):
            outcome = glued.get(f"{name}_{spec.id}_outcome")
            if outcome is None or (headline_only and spec.intro is None):
                continue
            counts[outcome] += 1
            counts[ESTIMATOR_SENSITIVE] += bool(glued.get(f"{name}_{spec.id}_estimator_sensitive"))
    return counts


def _questions(glued: Mapping[str, Any], name: str, claim=None) -> str:
    """What ``claim`` was tested on: ``8,970``, ``500 captions``, or ``1,400 (fewer than the paper's
    10,927)``; the page's own count where the claim records none.  The paper's count is the page's
    benchmark's, so it is compared only with a claim on the page's whole question set."""
    page, paper = glued.get(f"{name}_n_questions"), glued.get(f"{name}_paper_n_questions")
    n = claim.n_questions if claim is not None and claim.n_questions else page
    if not isinstance(n, int):
        return ""
    if claim is not None and claim.unit != "questions":
        return f"{n:,} {claim.unit}"
    return f"{n:,}" + (f" (fewer than the paper's {paper:,})" if isinstance(paper, int) and n == page and n < paper
                       else "")


def pruners_page() -> str:
    """Markdown table of every registered pruner (``studylib.pruners.pruner_table``): name, family,
    stage, method, parameters with defaults and ranges, source; written by the build as
    ``book/pruners.md`` and included in the methods page, so a newly registered pruner appears there."""
    from studylib.pruners import FAMILIES, pruner_table

    table = pruner_table()
    lines = ["| name | family | stage | method | parameters (default, range) | source |", "|---|---|---|---|---|---|"]
    lines += [f"| `{r.name}` | {r.family} | {r.stage} | {_cell(r.method)} | {_cell(r.parameters)} | {_cell(r.source)} |"
              for r in table.itertuples()]
    used = list(dict.fromkeys(table["family"]))
    lines += ["", "Families: " + "; ".join(f"**{f}** — {FAMILIES[f]}" for f in used) + "."]
    return "\n".join(lines) + "\n"

