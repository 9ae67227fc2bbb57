"""Plug-ins: a pruner from outside the package, by entry point and by file, in a notebook and in
the store's keys (edit its logic: recomputed; edit its docstring: reused).

The plug-in is the README's ten-line example, read from the README itself, so the documented
code is the tested code.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from studylib import build, plugins
from studylib.pruners import get_pruner, list_pruners, unregister
from studylib.sweep import config_grid, plan_sweep, run_sweep
from studylib.tokens import VisualTokens

REPO = Path(__file__).resolve().parents[1]


def readme_plugin() -> str:
    """The example plug-in of the README (the code block that registers ``l2norm``)."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    found = [b for b in blocks if '@register("l2norm"' in b]
    assert len(found) == 1, "the README must show one plug-in example registering l2norm"
    return found[0]


def test_the_methods_page_shows_the_tested_example():
    methods = (REPO / "book" / "methods.md").read_text()
    assert readme_plugin() in methods and "--plugin l2norm.py --set u_curve.pruner=l2norm" in methods


def smallest_norm(source: str) -> str:
    """The same plug-in with its logic changed: keep the tokens of smallest norm."""
    changed = source.replace(".topk(k, dim=-1)", ".topk(k, dim=-1, largest=False)")
    assert changed != source
    return changed


def new_docstrings(source: str) -> str:
    """The same plug-in with other docstrings and comments only."""
    changed = re.sub(r'"""[^"]*"""', '"""Reworded: what the rule does, in other words."""', source)
    changed = changed.replace("# (B, N)", "# one norm per patch token")
    assert changed != source
    return changed


def forget(name: str = "l2norm") -> None:
    """Unregister the plug-in's pruner and unload its file (so a test can load an edited copy)."""
    if name in list_pruners():
        unregister(name)
    for module, path in plugins.plugin_files().items():
        if path.stem == name:
            plugins._files.pop(module)
            sys.modules.pop(module, None)
    plugins._state["env"] = ""  # the next lookup reads $STUDYLIB_PLUGINS again


@pytest.fixture
def plugin_file(tmp_path, monkeypatch):
    """The README's plug-in written to a file and named in $STUDYLIB_PLUGINS (as --plugin does)."""
    path = tmp_path / "l2norm.py"
    path.write_text(readme_plugin())
    monkeypatch.setenv(plugins.ENV, str(path))
    yield path
    forget()


def _tokens(batch: int = 2, n: int = 16, width: int = 8) -> VisualTokens:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(batch, n, width, generator=generator)
    return VisualTokens(features=features, embeddings=features, cls_attention=torch.full((batch, n), 1.0 / n),
                        cls_feature=features.mean(1), keys=features, grid=(4, 4))


def test_a_file_plugin_is_found_by_every_lookup(plugin_file):
    assert "l2norm" in list_pruners()
    tokens = _tokens()
    kept = get_pruner("l2norm")(tokens, 4).indices
    expected = tokens.features.norm(dim=-1).topk(4, dim=-1).indices.sort(dim=-1).values
    assert torch.equal(kept, expected)
    assert str(get_pruner("l2norm")) == "l2norm"


def test_a_broken_plugin_is_named_with_the_fix(tmp_path, monkeypatch):
    bad = tmp_path / "broken.py"
    bad.write_text("import no_such_module_anywhere\n")
    monkeypatch.setenv(plugins.ENV, str(bad))
    with pytest.raises(plugins.PluginError, match="broken.py failed to import: ModuleNotFoundError"):
        plugins.load_plugins()
    monkeypatch.setenv(plugins.ENV, str(tmp_path / "absent.py"))
    with pytest.raises(plugins.PluginError, match="absent.py: no such Python file"):
        plugins.load_plugins()


def _keys_and_status(results: Path) -> tuple[list[str], list[str], list[float]]:
    rows = run_sweep("toy", "toy-pope", config_grid(["l2norm", "random"], [8], n_tokens=144),
                     dataset_options={"n_images": 2}, results_dir=results, progress=False, device="cpu")
    cells = rows.attrs["cells"]
    l2 = rows[rows["method"] == "l2norm"]["probs"]
    return [c["key"] for c in cells], [c["status"] for c in cells], [float(p[0]) for p in l2]


def test_editing_a_plugin_recomputes_and_editing_its_docstring_reuses(plugin_file, tmp_path):
    results = tmp_path / "results"
    keys, status, probs = _keys_and_status(results)
    assert status == ["computed", "computed"]

    forget()
    plugin_file.write_text(new_docstrings(readme_plugin()))
    same_keys, status, same_probs = _keys_and_status(results)
    assert same_keys == keys and status == ["cached", "cached"] and same_probs == probs

    forget()
    plugin_file.write_text(smallest_norm(readme_plugin()))
    new_keys, status, new_probs = _keys_and_status(results)
    assert new_keys[0] != keys[0] and status[0] == "computed"  # the plug-in's cell: recomputed
    assert new_keys[1] == keys[1] and status[1] == "cached"  # random's cell does not depend on it
    assert new_probs != probs


def _write_distribution(root: Path, source: str) -> None:
    """A minimal installed distribution on ``root`` (a package and its .dist-info, as pip would
    write them) declaring the plug-in in the entry-point group ``studylib.pruners``."""
    (root / "l2norm_plugin").mkdir(parents=True)
    (root / "l2norm_plugin" / "__init__.py").write_text(source)
    info = root / "l2norm_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: l2norm-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[studylib.pruners]\nl2norm = l2norm_plugin\n")


def test_an_entry_point_plugin_runs_in_a_notebook_and_leaves_the_book_alone(tmp_path):
    """A distribution on the path declares the pruner; `build_book.py --no-book --set
    u_curve.pruner=l2norm` checks it up front, every kernel loads it, the page is written
    beside the store and nothing under book/ changes."""
    site = tmp_path / "site"
    _write_distribution(site, readme_plugin())
    book_before = {p: p.stat().st_mtime_ns for p in (REPO / "book").rglob("*") if p.is_file()}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    env.pop(plugins.ENV, None)
    results = tmp_path / "results"
    command = [sys.executable, "scripts/build_book.py", "--profile", "toy", "--only", "u_curve", "--no-book", "--quiet",
               "--results", str(results), "--set", "limit=6", "--set", "n_bootstrap=10", "--set", "u_curve.n_folds=2",
               "--set", "u_curve.dataset_options={split: all, n_images: 6}", "--set", "u_curve.budgets=[144, 16, 8]",
               "--set", "u_curve.pruner=l2norm"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    page = results / "notebooks" / "u_curve.ipynb"
    values = build.read_glued(page)
    assert values["u_curve_n_questions"] > 0 and 0.0 <= values["u_curve_moderate_ece"] <= 1.0
    assert build.custom_scope(page)["set"]["pruner"] == "l2norm"
    assert {p: p.stat().st_mtime_ns for p in (REPO / "book").rglob("*") if p.is_file()} == book_before


def test_the_parameter_check_sees_entry_point_plugins(tmp_path, monkeypatch):
    site = tmp_path / "site"
    _write_distribution(site, readme_plugin())
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setitem(plugins._state, "loaded", False)  # discover again, now with the new distribution
    try:
        assert "l2norm" in list_pruners()
        plan = plan_sweep("toy", "toy-pope", ["l2norm@8"], dataset_options={"n_images": 2},
                          results_dir=tmp_path / "results")
        assert plan.cells[0].fields["pruner_code"]
    finally:
        forget()
        sys.modules.pop("l2norm_plugin", None)
