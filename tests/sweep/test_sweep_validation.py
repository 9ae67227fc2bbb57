"""The notebooks' first-cell check: every bad parameter stops with one clear ValueError that
names the parameter and the fix; good parameters pass silently."""

from __future__ import annotations

import pytest

from studylib.sweep import StudyParameterError, validate_parameters

GOOD = dict(model="tiny-random", dataset="toy-pope", dataset_options={"n_images": 8},
            pruners=["scope(alpha=0)", "random", "full"], budgets=[16, 64], seeds=[0, 1])


def _check(**changes):
    validate_parameters(**{**GOOD, **changes})


def test_good_parameters_pass():
    assert _check() is None


@pytest.mark.parametrize("changes, match", [
    ({"pruners": ["scoop"]}, r"pruners: unknown pruner 'scoop'; valid pruners: .*scope"),
    ({"pruners": ["scope(alpha=-1)"]}, r"pruners: .*alpha"),
    ({"budgets": [16, 1000]}, r"budgets: 1000 exceeds the model's N = 576 visual tokens; use budgets between 1 and 576"),
    ({"budgets": [0]}, r"budgets: 0 is below 1"),
    ({"pruners": []}, r"pruners is empty"),
    ({"pruners": ["scope"], "budgets": []}, r"budgets is empty"),
    ({"seeds": ["a"]}, r"seeds"),
    ({"dataset": "toy-popes"}, r"dataset: unknown dataset 'toy-popes'; choose one of \[.*'toy-pope'"),
    ({"dataset_options": {"n_imgs": 8}}, r"dataset_options for 'toy-pope': .*n_imgs.*accepted options: split, n_images, seed"),
    ({"dataset_options": {"split": "hard"}}, r"dataset_options for 'toy-pope': unknown POPE split 'hard'"),
    ({"dataset": "pope", "dataset_options": {"questions": "/nonexistent/pope", "images": "/nonexistent/val2014"}},
     r"dataset_options for 'pope': data not found: .*/nonexistent"),
    ({"model": "/nonexistent/llava-ckpt"}, r"model: no LLaVA checkpoint at /nonexistent/llava-ckpt"),
])
def test_each_bad_parameter_gives_one_clear_error(changes, match):
    with pytest.raises(StudyParameterError, match=match) as info:
        _check(**changes)
    assert "\n" not in str(info.value)  # one problem -> one line
    assert info.value.__cause__ is None and info.value.__suppress_context__ or info.value.__context__ is None


def test_several_problems_are_listed_in_one_error():
    with pytest.raises(StudyParameterError) as info:
        _check(pruners=["scoop"], dataset="nope", budgets=[9999])
    text = str(info.value)
    assert text.startswith("3 problems with the parameters:")
    assert "unknown pruner 'scoop'" in text and "unknown dataset 'nope'" in text and "9999" in text


def test_missing_model_does_not_hide_other_checks():
    with pytest.raises(StudyParameterError, match="2 problems") as info:
        _check(model="/nonexistent/ckpt", pruners=["scoop"])
    assert "no LLaVA checkpoint" in str(info.value)


def test_limit_is_checked():
    with pytest.raises(StudyParameterError, match="limit must be a positive integer"):
        validate_parameters(**GOOD, limit=0)


def test_is_a_value_error():
    assert issubclass(StudyParameterError, ValueError)
