"""Config specs and grids: canonical round-trip, expansion over seeds, `full` once at K = N,
and clear errors for bad pruners, budgets and empty grids."""

from __future__ import annotations

import pytest

from studylib.pruners import PrunerConfigError
from studylib.sweep import Config, StudyParameterError, config_grid


def test_config_parse_round_trip():
    config = Config.parse("scope(alpha=0)@64")
    assert config == Config("scope(alpha=0,p=1)", 64) == Config("scope(alpha=0)", 64)
    assert str(config) == "scope(alpha=0,p=1)@64"
    assert Config.parse(str(config)) == config
    assert config.method == "scope" and config.seed is None
    assert Config.parse("random(seed=2)@8").seed == 2
    assert str(Config.parse("none@576")) == "full@576"
    assert len({Config.parse("scope(alpha=0)@64"), Config.parse("scope(alpha=0,p=1)@64")}) == 1


@pytest.mark.parametrize("text", ["scope(alpha=0)", "scope@x", "scope@0", 64])
def test_config_parse_errors(text):
    with pytest.raises(ValueError, match="config|budget"):
        Config.parse(text)


def test_config_parse_unknown_pruner():
    with pytest.raises(PrunerConfigError, match="unknown pruner 'nope'"):
        Config.parse("nope@8")


def test_grid_cross_product_full_once_and_seeds():
    grid = config_grid(["scope(alpha=0)", "random", "full", "scope(alpha=0,p=1)"], [16, 64], seeds=[0, 1],
                       n_tokens=144)
    assert [str(c) for c in grid] == [
        "scope(alpha=0,p=1)@16", "scope(alpha=0,p=1)@64",
        "random(seed=0)@16", "random(seed=1)@16", "random(seed=0)@64", "random(seed=1)@64",
        "full@144",
    ]
    assert [str(c) for c in config_grid(["random(seed=5)"], [8], n_tokens=144)] == ["random(seed=5)@8"]
    assert [str(c) for c in config_grid(["full"], [], n_tokens=144)] == ["full@144"]


@pytest.mark.parametrize("pruners, budgets, seeds, match", [
    (["scope"], [200], None, "200 exceeds the model's N = 144"),
    (["scope"], [0], None, "below 1"),
    (["scope"], [8.5], None, "not an integer"),
    ([], [8], None, "pruners is empty"),
    (["scope"], [], None, "budgets is empty"),
    (["random"], [8], [-1], "seeds"),
])
def test_grid_errors(pruners, budgets, seeds, match):
    with pytest.raises(StudyParameterError, match=match):
        config_grid(pruners, budgets, seeds, n_tokens=144)


def test_grid_unknown_pruner_and_bad_parameter_are_registry_errors():
    with pytest.raises(PrunerConfigError, match="unknown pruner 'scoop'"):
        config_grid(["scoop"], [8], n_tokens=144)
    with pytest.raises(PrunerConfigError, match="alpha"):
        config_grid(["scope(alpha=-1)"], [8], n_tokens=144)


def test_full_needs_n_tokens():
    with pytest.raises(StudyParameterError, match="n_tokens"):
        config_grid(["full"], [8])
