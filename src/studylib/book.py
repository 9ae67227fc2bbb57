"""Helpers of the book build: parameter profiles, reported numbers, glued values, labels.

The build (``scripts/build_book.py``) runs every notebook in ``notebooks/`` through papermill
with the parameters of a named **profile** (``profiles/<name>.yaml``) and writes the executed
notebooks into ``book/experiments/``; Jupyter Book then renders them without re-executing.

A profile file has three keys::

    description: one line shown on the status page
    defaults:    parameters given to every notebook that declares them
    notebooks:   {<notebook name>: {parameter: value, ...}}  per-notebook overrides

Paper-reported numbers live in ``data/reference/reported.csv`` (one row per reported value, see
``data/reference/README.md``); :func:`reported` reads them and :func:`beside_reported` puts them
next to this run's numbers, converted to the paper's units.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[2]
PROFILES_DIR = REPO_ROOT / "profiles"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
REPORTED_CSV = REPO_ROOT / "data" / "reference" / "reported.csv"
REPORTED_COLUMNS = ("paper", "table", "page", "section", "benchmark", "method", "pruner", "k",
                    "setting", "metric", "value", "unit", "note")
PAPERS = {
    "000": "Does Visual Token Pruning Improve Calibration? (arXiv 2604.12035)",
    "002": "AgilePruner (arXiv 2603.01236)",
    "003": "ID-Selection (arXiv 2604.05601)",
}
#: models whose results are labelled as toy results everywhere
TOY_MODELS = ("toy", "tiny-random", "tiny-random-llava-next", "tiny-random-qwen2.5-vl")


# ----------------------------------------------------------------------------- profiles

class ProfileError(ValueError):
    """Unknown profile, malformed profile file, or a parameter the notebook does not declare."""


def list_profiles(directory: Path = PROFILES_DIR) -> list[str]:
    return sorted(p.stem for p in Path(directory).glob("*.yaml"))


def load_profile(name_or_path: str | Path, directory: Path = PROFILES_DIR) -> dict[str, Any]:
    """Read a profile by name (``toy``) or path; checks its three keys."""
    import yaml

    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = Path(directory) / f"{name_or_path}.yaml"
    if not path.exists():
        raise ProfileError(f"no profile {str(name_or_path)!r} (looked for {path}); "
                           f"available: {list_profiles(directory)}")
    profile = yaml.safe_load(path.read_text()) or {}
    unknown = set(profile) - {"description", "defaults", "notebooks"}
    if unknown:
        raise ProfileError(f"{path}: unknown top-level keys {sorted(unknown)}; "
                           f"expected description, defaults, notebooks")
    profile.setdefault("description", "")
    profile.setdefault("defaults", {})
    profile.setdefault("notebooks", {})
    if not isinstance(profile["defaults"], dict) or not isinstance(profile["notebooks"], dict):
        raise ProfileError(f"{path}: 'defaults' and 'notebooks' must be mappings")
    profile["name"] = path.stem
    profile["path"] = str(path)
    return profile


def notebook_parameters(profile: Mapping[str, Any], notebook: str, declared: Iterable[str],
                        overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Parameters for ``notebook``: profile defaults (those the notebook declares), then the
    profile's per-notebook values, then ``overrides``.  Per-notebook values and overrides must
    name declared parameters (a typo fails here, not silently in papermill)."""
    declared = set(declared)
    params = {k: v for k, v in profile.get("defaults", {}).items() if k in declared}
    for source, values in (("profile " + str(profile.get("name", "")), profile.get("notebooks", {}).get(notebook, {}) or {}),
                           ("--set", overrides or {})):
        unknown = sorted(set(values) - declared)
        if unknown:
            raise ProfileError(f"{source}: notebook {notebook!r} has no parameter(s) {unknown}; "
                               f"its parameters are {sorted(declared)}")
        params.update(values)
    return params


def parse_overrides(items: Iterable[str], notebooks: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``--set`` items ``key=value`` (every notebook that declares ``key``) or
    ``notebook.key=value``; values are YAML (``[16, 32]``, ``null``, ``0.5``, ``toy``).
    Returns ``{notebook or "*": {key: value}}``."""
    import yaml

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


def is_toy(model: str) -> bool:
    """Results of these models are toy results and are labelled so."""
    return str(model) in TOY_MODELS


def model_label(model: str) -> str:
    """``"TOY model"`` for the toy checkpoints, else the model id."""
    return "TOY model" if is_toy(model) else str(model)


def run_banner(model: str, profile: str = "") -> str:
    """Markdown admonition opening every experiment page: which model produced the numbers."""
    if is_toy(model):
        return ("```{warning}\n**TOY model results.** Every number and figure on this page comes from the tiny "
                f"LLaVA trained on the synthetic shapes world (model `{model}`, profile `{profile}`), "
                "not from LLaVA-1.5-7B. They show the pipeline and the real effects of pruning on a "
                "real (tiny) model; columns labelled *reported* are the papers' LLaVA-1.5-7B numbers.\n```")
    return (f"```{{note}}\nResults of `{model}` (profile `{profile}`); columns labelled *reported* are the "
            "papers' numbers.\n```")


# ----------------------------------------------------------------------------- notebook parameters

def _error(message: str) -> Exception:
    from studylib.sweep import StudyParameterError

    return StudyParameterError(message)


def require(condition: bool, message: str) -> None:
    """Raise the study's parameter error with ``message`` unless ``condition``."""
    if not condition:
        raise _error(message)


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> None:
    """Raise the study's parameter error unless ``value`` is one of ``allowed`` (e.g. the
    budget a claim is about must be in ``budgets``)."""
    allowed = list(allowed)
    if value not in allowed:
        raise _error(f"{name} = {value!r} is not one of {allowed}; pick one of them")


def budget_map(budgets: Iterable[int], reported_budgets: Iterable[int] | None) -> dict[int, int]:
    """Our budget -> the paper's budget at the same position (``reported_budgets``), checked."""
    budgets = list(budgets)
    if reported_budgets is None:
        return {int(k): int(k) for k in budgets}
    reported_budgets = list(reported_budgets)
    if len(reported_budgets) != len(budgets):
        raise _error(f"reported_budgets has {len(reported_budgets)} entries for {len(budgets)} budgets; give the "
                     f"paper's budget for each of budgets={budgets} (same order), or null to use the same values")
    return {int(k): int(r) for k, r in zip(budgets, reported_budgets)}


def runner_options(device: str = "cpu", dtype: str = "float32") -> dict[str, Any]:
    """Keyword arguments that put :func:`studylib.sweep.run_sweep`'s model on ``device`` in
    ``dtype``.  CPU/float32 is the runner's default (no arguments)."""
    import inspect

    from studylib.sweep import run_sweep

    if str(device) == "cpu" and str(dtype) in ("float32", "torch.float32"):
        return {}
    accepted = inspect.signature(run_sweep).parameters
    if "device" in accepted and "dtype" in accepted:
        return {"device": device, "dtype": dtype}
    raise _error(f"device={device!r}, dtype={dtype!r}: this version of studylib.sweep.run_sweep loads models on "
                 f"the CPU in float32 only; run with device='cpu', dtype='float32'")


# ----------------------------------------------------------------------------- reported numbers

def reported(paper: str | None = None, table: str | None = None, *, path: Path = REPORTED_CSV,
             **filters: Any) -> pd.DataFrame:
    """Rows of ``reported.csv`` (all columns), filtered by paper, table and any column value
    (a list means "one of")."""
    frame = pd.read_csv(path, dtype={"paper": str, "k": "Int64", "page": str})
    frame["pruner"] = frame["pruner"].fillna("")
    frame["note"] = frame["note"].fillna("")
    conditions = dict(filters)
    if paper is not None:
        conditions["paper"] = paper
    if table is not None:
        conditions["table"] = table
    for column, value in conditions.items():
        if column not in frame:
            raise KeyError(f"reported.csv has no column {column!r}; columns: {list(frame.columns)}")
        values = value if isinstance(value, (list, tuple, set)) else [value]
        frame = frame[frame[column].isin(values)]
    return frame.reset_index(drop=True)


def reported_label(paper: str, table: str, model: str = "LLaVA-1.5-7B") -> str:
    return f"reported ({model}, seed {paper} {table})"


def style_table(frame: pd.DataFrame, caption: str = "", digits: Mapping[str, int] | None = None,
                hide_index: bool = False):
    """A Styler for a (possibly two-level) table: percentages with 1 decimal, temperatures and
    erank with 2, everything else with 3; NaN shown as an empty cell; optional caption."""
    digits = dict(digits or {})

    def precision(column) -> int:
        metric = column[0] if isinstance(column, tuple) else column
        metric = str(metric)
        for base in (metric, metric.rsplit("_", 1)[0]):
            if base in digits:
                return digits[base]
            if base in PAPER_UNITS:
                return 1
        if metric.startswith(("temperature", "t_", "erank", "mean_erank", "entropy", "mean_entropy", "length",
                              "mean_length", "mean_tokens", "n_kept")):
            return 2
        return 3

    formats = {c: f"{{:.{precision(c)}f}}" for c in frame.columns if pd.api.types.is_float_dtype(frame[c])}
    styler = frame.style.format(formats, na_rep="")
    if caption:
        styler = styler.set_caption(caption)
    if hide_index:
        styler = styler.hide(axis="index")
    return styler


#: this run's metric -> (multiplier into the paper's unit, paper unit)
PAPER_UNITS = {
    "accuracy": (100.0, "%"),
    "sel_acc_80": (100.0, "%"),
    "accuracy_sd": (100.0, "%"),
    "selective_accuracy_80": (100.0, "%"),
    "mean_confidence": (100.0, "%"),
    "overconfidence": (100.0, "pp"),
    "chair_s": (100.0, "%"),
    "chair_i": (100.0, "%"),
    "recall": (100.0, "%"),
}


def to_paper_units(frame: pd.DataFrame, metrics: Iterable[str]) -> pd.DataFrame:
    """Scale fraction-valued metrics (accuracy, confidence, CHAIR, ...) to percent as the papers
    print them; other columns unchanged.  Columns ``<metric>_low/_high`` follow their metric."""
    out = frame.copy()
    for metric in metrics:
        factor = PAPER_UNITS.get(metric, (1.0, ""))[0]
        for column in (metric, f"{metric}_low", f"{metric}_high", f"{metric}_sd"):
            if column in out and factor != 1.0:
                out[column] = out[column] * factor
    return out


def beside_reported(ours: pd.DataFrame, metrics: Iterable[str], *, paper: str, table: str | Sequence[str],
                    label: str, k_map: Mapping[int, int] | None = None, keys: tuple[str, ...] = ("pruner", "k"),
                    benchmark: str | None = None, reported_pruner: Mapping[str, str] | None = None,
                    aliases: Mapping[str, str] | None = None, ci: bool = False,
                    full_k: int = 576) -> pd.DataFrame:
    """This run's metrics next to the paper's, one row per configuration.

    ``ours`` has one row per configuration with columns ``keys`` (``pruner`` spec and budget ``k``)
    and the metrics as fractions.  ``k_map`` maps our budget to the paper's (toy 144/48/32/16/8 ->
    576/192/128/64/32); ``reported_pruner`` maps our pruner spec to the spec in the CSV when they
    differ (e.g. seeds of random pruning).  Columns: a two-level index (metric, source) with
    source = ``label`` (this run) or ``"reported"``; values in the paper's units.  A reported
    cell is empty where the paper has no number for that configuration.  ``table`` may list
    several tables (first match wins); ``aliases`` maps our metric name to the CSV's
    (``sel_acc_80`` -> ``selective_accuracy_80``); ``ci=True`` adds a ``95% CI`` column for
    metrics with ``<metric>_low``/``_high`` columns.  The unpruned model (``pruner == "full"``)
    is matched with the paper's ``full_k`` (576 for LLaVA-1.5) whatever our N.
    """
    metrics = list(metrics)
    k_map = dict(k_map or {})
    reported_pruner = dict(reported_pruner or {})
    aliases = dict(aliases or {})
    ours = to_paper_units(ours, metrics)
    tables = [table] if isinstance(table, str) else list(table)
    ref = reported(paper, tables)
    ref = ref.assign(_order=ref["table"].map({t: i for i, t in enumerate(tables)})).sort_values("_order", kind="stable")
    ref = ref.iloc[::-1]  # so that the first table's value is written last and wins below
    if benchmark is not None:
        ref = ref[ref["benchmark"] == benchmark]
    lookup = {(r.pruner, int(r.k) if not pd.isna(r.k) else None, r.metric): r.value for r in ref.itertuples()}
    rows = []
    for _, row in ours.iterrows():
        pruner = reported_pruner.get(str(row["pruner"]), str(row["pruner"]))
        k = int(row["k"]) if "k" in row and not pd.isna(row["k"]) else None
        paper_k = full_k if pruner == "full" else k_map.get(k, k)
        out = {key: row[key] for key in keys}
        if k_map:
            out["paper K"] = paper_k
        for metric in metrics:
            out[(metric, label)] = row.get(metric, math.nan)
            if ci and f"{metric}_low" in row and not pd.isna(row[f"{metric}_low"]):
                out[(metric, "95% CI")] = f"[{row[f'{metric}_low']:.3g}, {row[f'{metric}_high']:.3g}]"
            out[(metric, "reported")] = lookup.get((pruner, paper_k, aliases.get(metric, metric)), math.nan)
        rows.append(out)
    frame = pd.DataFrame(rows)
    index_cols = [c for c in frame.columns if not isinstance(c, tuple)]
    frame = frame.set_index(index_cols)
    frame.columns = pd.MultiIndex.from_tuples(frame.columns, names=["metric", "source"])
    return frame


# ----------------------------------------------------------------------------- glued values

GLUE_PREFIX = "application/papermill.record/"


def read_glued(path: str | Path) -> dict[str, Any]:
    """Values glued with ``myst_nb.glue`` in an executed notebook, by name.

    Plain values come back as Python values (from their ``text/plain`` repr where it parses as
    a literal, else the string); figures and tables come back as their mime bundle.
    """
    import ast

    import nbformat

    nb = nbformat.read(str(path), as_version=4)
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


def glue_value(name: str, value: Any) -> None:
    """Glue a plain number or string (``display=False``): readable by :func:`read_glued` and
    pasted in the book with ``{glue:text}`name``` (floats rounded to 4 significant digits in
    the pasted text is left to the role's format spec)."""
    from myst_nb import glue

    if hasattr(value, "item"):
        value = value.item()
    glue(name, value, display=False)


# ----------------------------------------------------------------------------- notebook files

def declared_parameters(notebook: str | Path) -> dict[str, Any]:
    """Names and default values of the notebook's ``parameters`` cell, read with :mod:`ast`
    (papermill's own inspection skips lines with more than one ``=``, such as
    ``pruner = "scope(alpha=1)"``).  Values that are not literals come back as source text."""
    import ast

    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ProfileError(f"{notebook}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    params: dict[str, Any] = {}
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
    """In an executed notebook: remove the default ``parameters`` cell (papermill's injected
    cell supersedes it) and collapse the injected cell (``hide-input``), so the page shows the
    parameters of this run behind a toggle."""
    for cell in nb.cells:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags:
            for tag in ("hide-input",):
                if tag not in tags:
                    tags.append(tag)
        elif "parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")


KERNEL_NAME = "studylib"


def ensure_kernel(name: str = KERNEL_NAME) -> str:
    """Install the kernelspec ``name`` for *this* interpreter into its prefix (``--sys-prefix``,
    i.e. inside the venv) unless one already points here; returns the name for papermill."""
    import subprocess
    import sys

    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

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
    import os

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


__all__ = [
    "PAPERS", "ProfileError", "REPORTED_COLUMNS", "beside_reported", "budget_map", "check_choice",
    "declared_parameters", "ensure_kernel", "kernel_environment", "require", "runner_options", "style_table",
    "estimated_seconds", "glue_value", "hide_parameter_cells", "is_toy", "list_profiles",
    "load_profile", "model_label", "notebook_parameters", "parse_overrides", "prefill_flops",
    "read_glued", "reported", "reported_label", "run_banner", "to_paper_units", "write_json",
]
