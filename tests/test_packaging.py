"""pyproject.toml is the single source of truth; environment.yml mirrors it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_lists_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {r for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    mirrored = {r for r in pip if not r.startswith("-e")}
    assert {_name(r) for r in mirrored} == {_name(r) for r in declared}
    pins = {_name(r): r for r in declared}
    for requirement in mirrored:
        if _name(requirement) != "torch":  # environment.yml pins the CPU wheel version exactly
            assert requirement == pins[_name(requirement)], requirement


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = [line for line in (ROOT / ".ci/run").read_text().splitlines()
          if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert ci and all(line.strip() in readme for line in ci)
