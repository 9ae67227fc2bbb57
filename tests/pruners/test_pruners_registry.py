"""Registry: names, typed parameters, spec strings that round-trip, one error type listing the choices."""

from __future__ import annotations

import pytest

from studylib.pruners import (
    PrunerConfigError,
    describe_pruners,
    get_pruner,
    list_pruners,
    parse_spec,
    pruner_info,
)

EXPECTED = {
    "full", "random", "saliency", "scope", "divprune", "fps", "visionzip", "vispruner", "cdpruner",
    "idselect", "agile", "agile_entropy", "agile_mix", "agile_count", "scope_adaptive", "hired", "fastv", "dart",
    "pdrop", "sparsevlm",
}
LLM = {"fastv", "dart", "pdrop", "sparsevlm"}


def test_names_and_stages():
    assert set(list_pruners()) == EXPECTED
    assert set(list_pruners("llm")) == LLM
    assert set(list_pruners("vision")) == EXPECTED - LLM
    assert all(get_pruner(n).stage == pruner_info(n).stage for n in EXPECTED)
    assert "scope" in describe_pruners() and "gap_power (p)" in describe_pruners("vision")
    with pytest.raises(PrunerConfigError, match="vision, llm"):
        list_pruners("gpu")


def test_issue_example():
    p = get_pruner("scope", alpha=0.0, gap_power=1.0)
    assert str(p) == "scope(alpha=0,p=1)"
    assert parse_spec("scope(alpha=0,p=1)") == p
    assert get_pruner("scope(alpha=0)", p=1) == p
    assert get_pruner(" scope ( alpha = 0.0 , gap_power = 1 ) ") == p
    assert p.params == {"alpha": 0.0, "gap_power": 1.0, "combine": "mul", "heads": 16}
    assert str(get_pruner("scope")) == "scope(alpha=1,p=1)"
    assert str(get_pruner("scope", combine="add", p=2.5)) == "scope(alpha=1,p=2.5,combine=add)"
    assert repr(p) == "Pruner('scope(alpha=0,p=1)')"
    assert hash(p) == hash(parse_spec(str(p)))
    assert p.replace(alpha=0.5) == get_pruner("scope", alpha=0.5)


def _other_value(param):
    if param.choices:
        return next(c for c in param.choices if c != param.default)
    if param.kind is bool:
        return not param.default
    if param.kind is int:
        return param.default + 3
    hi = param.high if param.high is not None else param.default + 10
    value = (param.default + hi) / 2 if param.high is not None else param.default * 1.5 + 0.125
    return value if value != param.default else (param.low or 0) + 0.0625


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_round_trip(name):
    info = pruner_info(name)
    pruner = get_pruner(name)
    assert parse_spec(str(pruner)) == pruner and str(parse_spec(str(pruner))) == str(pruner)
    for param in info.params:
        changed = get_pruner(name, **{param.name: _other_value(param)})
        assert changed != pruner
        assert parse_spec(str(changed)) == changed
        assert f"{param.spec_name}=" in str(changed)
        if param.alias:  # the alias is accepted as a keyword too
            assert get_pruner(name, **{param.alias: changed.params[param.name]}) == changed
    everything = get_pruner(name, **{p.name: _other_value(p) for p in info.params})
    assert parse_spec(str(everything)) == everything


def test_float_formatting_round_trips_exactly():
    for alpha in (0.1, 1 / 3, 1e-7, 9.87654321012345, 2.0):
        p = get_pruner("scope", alpha=alpha)
        assert parse_spec(str(p)).params["alpha"] == alpha


def test_name_aliases():
    assert get_pruner("fastervlm") == get_pruner("saliency")
    assert get_pruner("none") == get_pruner("full")
    assert str(get_pruner("FasterVLM")) == "saliency"


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: get_pruner("scopee"), r"unknown pruner 'scopee'; valid pruners: agile, .*scope"),
        (lambda: get_pruner("scope", beta=1), r"unknown parameter 'beta'; valid parameters: alpha.*gap_power \(p\)"),
        (lambda: parse_spec("scope(beta=1)"), r"unknown parameter 'beta'"),
        (lambda: get_pruner("scope", alpha=-1), r"invalid value -1 .*alpha: float = 1, in \[0, 10\]"),
        (lambda: get_pruner("scope", p=0), r"gap_power \(p\): float = 1, in \(0, 10\]"),
        (lambda: get_pruner("scope", combine="max"), r"one of \{mul, add\}"),
        (lambda: get_pruner("scope", alpha="abc"), r"invalid value 'abc'"),
        (lambda: get_pruner("scope", alpha=float("nan")), r"invalid value"),
        (lambda: get_pruner("fastv", layer=1.5), r"layer: int = 2"),
        (lambda: get_pruner("fastv", layer=True), r"layer: int = 2"),
        (lambda: get_pruner("fastv", layer=0), r"in \[1, inf\)"),
        (lambda: get_pruner("random", seed=-1), r"seed"),
        (lambda: get_pruner("cdpruner", negate="maybe"), r"negate: bool = true"),
        (lambda: get_pruner("vispruner", r=1.5), r"in \[0, 1\]"),
        (lambda: get_pruner("scope(alpha=0", ), r"malformed pruner spec"),
        (lambda: get_pruner("scope(alpha)"), r"malformed parameter"),
        (lambda: get_pruner("scope(alpha=1,alpha=2)"), r"given twice"),
        (lambda: get_pruner("scope(alpha=1)", alpha=2), r"given twice"),
        (lambda: get_pruner("scope", alpha=1, p=1, gap_power=1), r"given twice"),
        (lambda: get_pruner("idselect", imp="attention"), r"one of \{saliency, relevance, unified\}"),
        (lambda: get_pruner("hired", alpha=1.5), r"alpha: float = 0.5, in \[0, 1\]"),
        (lambda: get_pruner("pdrop", lam=0), r"ratio \(lam\): float = 0.5, in \(0, 1\]"),
        (lambda: get_pruner("pdrop", ratio=1.01), r"in \(0, 1\]"),
        (lambda: get_pruner("pdrop", stride=0), r"stride: int = 8, in \[1, inf\)"),
        (lambda: get_pruner("pdrop", layer=2), r"unknown parameter 'layer'; valid parameters: ratio"),
        (lambda: get_pruner("sparsevlm", schedule="100"), r"one of \{192, 128, 96, 64\}"),
        (lambda: get_pruner("sparsevlm", recycle="maybe"), r"recycle: bool = true"),
    ],
)
def test_errors_list_choices(call, match):
    with pytest.raises(PrunerConfigError, match=match):
        call()
    assert issubclass(PrunerConfigError, ValueError)


def test_spec_value_parsing():
    assert get_pruner("cdpruner(negate=false)").params["negate"] is False
    assert get_pruner("cdpruner", negate=0).params["negate"] is False
    assert get_pruner("fastv(layer=3)").params["layer"] == 3
    assert get_pruner("fastv", layer=3.0).params["layer"] == 3
    assert get_pruner("scope(alpha=1e-3)").params["alpha"] == 1e-3
    assert get_pruner("random()") == get_pruner("random")


def test_llm_pruners_expose_rule_and_layer():
    dart = get_pruner("dart(layer=3,pi=2,pt=6)")
    assert dart.layer == 3 and dart.rule.keywords == {"pivot_image": 2, "pivot_text": 6}
    assert get_pruner("scope").layer is None
    with pytest.raises(AttributeError):
        get_pruner("scope").rule
    # staged pruners: no layer, the rule gives the stages for a model depth and a budget
    pdrop = get_pruner("pdrop(lam=0.25,stride=4)")
    assert pdrop.layer is None and pdrop.rule.keywords == {"ratio": 0.25, "stride": 4}
    assert get_pruner("sparsevlm").rule.keywords == {"schedule": "192", "recycle": True}


@pytest.mark.parametrize("name", sorted(LLM))
def test_llm_pruners_refuse_visual_tokens(name):
    from _pruner_helpers import make_tokens

    tokens, _ = make_tokens(0)
    with pytest.raises(RuntimeError, match="runs inside the language model"):
        get_pruner(name)(tokens, 5)
