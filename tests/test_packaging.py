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


def _readme_commands() -> list[str]:
    """The commands of the README's "Two commands" block, comments stripped."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_commands_verbatim():
    readme_commands = _readme_commands()
    assert readme_commands == ["bash scripts/build_book.sh", "bash scripts/run_tests.sh"]
    ci = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()
          if line.strip() and not line.startswith(("#", "set ", "cd "))]
    # environment assignments in front of a command (VAR=value cmd) do not change the command; CI's own
    # preparation scripts (.ci/*.sh, e.g. installing Chromium for the optional browser test) are not user steps
    commands = [re.sub(r"^([A-Z_]+=\S*\s+)+", "", line) for line in ci if not line.startswith("bash .ci/")]
    assert all(command in readme_commands for command in commands), commands
    assert "bash scripts/run_tests.sh" in commands


def test_the_scheduled_job_builds_the_leaderboard_on_the_toy_book_and_runs_the_tests():
    """.ci/leaderboard: the README's build, every_pruner again under profile toy-leaderboard (on the toy
    build's store, which it reuses), then the README's test command on that book, in that order."""
    lines = [line.strip() for line in (ROOT / ".ci/leaderboard").read_text().splitlines()
             if line.strip() and not line.startswith(("#", "set ", "cd ", "bash .ci/"))]
    assert lines == ["bash scripts/build_book.sh",
                     "PROFILE=toy-leaderboard bash scripts/build_book.sh --only every_pruner",
                     "STUDY_REQUIRE_BOOK=1 bash scripts/run_tests.sh"], lines
    assert _readme_commands() == [re.sub(r"^([A-Z_]+=\S*\s+)+", "", lines[i]) for i in (0, 2)]
