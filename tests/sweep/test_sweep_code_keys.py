"""Store keys follow the code that ran: the scoring path, the dataset's loader and each cell's
pruner, read from the syntax tree (comments, docstrings and formatting do not count), and the
versions of torch and transformers."""

from __future__ import annotations

import ast
import inspect

import pytest
import torch

import studylib.pruners.scope as scope_module
from studylib.sweep import config_grid, digests, plan_sweep, run_sweep
from studylib.sweep.identity import key_fields

CONFIGS = config_grid(["full", "scope(alpha=0)", "random"], [8], n_tokens=144)
OPTIONS = {"n_images": 2}


def _sweep(results):
    rows = run_sweep("toy", "toy-pope", CONFIGS, dataset_options=OPTIONS, results_dir=results, progress=False,
                     device="cpu")
    return {c["config"]: (c["key"], c["status"]) for c in rows.attrs["cells"]}


def _with_scope_source(monkeypatch, source: str) -> None:
    """The code digest reads ``source`` as the text of studylib/pruners/scope.py (the real file
    stays as it is: other processes may read it)."""
    real = digests.module_source
    monkeypatch.setattr(digests, "module_source", lambda m: source if m is scope_module else real(m))


def docs_only_edit(source: str) -> str:
    """scope.py with every docstring reworded (its opening line), a comment added and a blank line
    more; no code edit."""
    lines = source.splitlines(keepends=True)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(node) is not None:
            i = node.body[0].lineno - 1
            lines[i] = lines[i].replace('"""', '"""Reworded. ', 1)
    edited = "".join(lines).replace("\nfrom __future__ import annotations\n",
                                    "\nfrom __future__ import annotations  # a comment\n\n\n# another comment\n")
    assert edited.count("Reworded.") >= 3 and "# another comment" in edited
    return edited


def test_a_docstring_only_change_to_scope_reuses_every_stored_cell(tmp_path, monkeypatch):
    results = tmp_path / "results"
    first = _sweep(results)
    assert {status for _, status in first.values()} == {"computed"}

    source = inspect.getsource(scope_module)
    _with_scope_source(monkeypatch, docs_only_edit(source))
    again = _sweep(results)
    assert {c: k for c, (k, _) in again.items()} == {c: k for c, (k, _) in first.items()}
    assert {status for _, status in again.values()} == {"cached"}

    _with_scope_source(monkeypatch, source + "\n_UNUSED_BUT_NEW_CODE = 1\n")  # a code change
    changed = _sweep(results)
    scope = str(CONFIGS[1])
    assert scope.startswith("scope") and changed[scope][0] != first[scope][0] and changed[scope][1] == "computed"
    assert all(changed[c] == (first[c][0], "cached") for c in changed if c != scope)  # full, random: unchanged


def test_the_scoring_code_digest_covers_what_scoring_imports():
    from studylib.sweep import scoring

    names = {m.__name__ for m in digests.code_modules(scoring)}
    assert {"studylib.sweep.scoring", "studylib.models.adapter", "studylib.models.prompts", "studylib.tokens",
            "studylib.pruners.registry", "studylib.metrics.representation"} <= names
    assert "studylib.pruners.scope" not in names  # a pruner's code keys only its own cells


@pytest.mark.parametrize("library", ["torch", "transformers"])
def test_the_key_holds_the_torch_and_transformers_versions(library, tmp_path, monkeypatch):
    import transformers

    module = {"torch": torch, "transformers": transformers}[library]
    before = plan_sweep("toy", "toy-pope", CONFIGS[:1], dataset_options=OPTIONS, results_dir=tmp_path).cells[0]
    assert before.fields["libraries"][library] == module.__version__
    monkeypatch.setattr(module, "__version__", module.__version__ + ".post1")
    after = plan_sweep("toy", "toy-pope", CONFIGS[:1], dataset_options=OPTIONS, results_dir=tmp_path).cells[0]
    assert after.key != before.key


def test_key_fields_live_beside_the_identity_code():
    assert key_fields.__module__ == "studylib.sweep.identity"
