"""The official answer parsers reproduce each benchmark's own rule, quirks included."""

from __future__ import annotations

import pytest

from studylib.metrics.parsing import (FAILED, lmms_pope_answer, lmms_scienceqa_letter, mme_answer, pope_answer,
                                   scienceqa_letter)


@pytest.mark.parametrize("text, expected", [
    ("Yes", "yes"), ("No", "no"), ("no", "no"), ("Yes.", "yes"), ("No, there is no dog.", "no"),
    ("There is not a dog.", "no"), ("Yes, there is a dog. No other animals.", "yes"),  # first sentence only
    ("No.", "no"), ("NO", "yes"), ("Nope", "yes"), ("There isn't a dog.", "yes"), ("", "yes"),
    ("no,", "no"),  # commas are deleted before splitting
    ("No\nthere is none", "yes"),  # split on single spaces only: "No\nthere" is one token
    ("Yes  no", "no"),
])
def test_pope_rule(text, expected):
    assert pope_answer(text) == expected


def test_lmms_pope_is_exact_match_after_lowercase():
    assert lmms_pope_answer("  Yes ") == "yes"
    assert lmms_pope_answer("Yes.") == "yes."


@pytest.mark.parametrize("text, expected", [
    ("A", "A"), ("E", "E"), (" B ", "B"), ("C. the cat", "C"), ("The answer is D.", "D"),
    ("The answer is B. The answer is C.", FAILED),  # the pattern must match exactly once
    ("b", FAILED), ("F", FAILED), ("", FAILED), ("A.", FAILED),  # "A." is < 3 characters
    ("AB", FAILED), ("I think B", FAILED),
])
def test_scienceqa_rule(text, expected):
    assert scienceqa_letter(text) == expected


def test_scienceqa_letter_beyond_the_options_fails():
    assert scienceqa_letter("C", n_choices=2) == FAILED
    assert scienceqa_letter("B", n_choices=2) == "B"
    assert scienceqa_letter("The answer is E.", n_choices=5) == "E"


def test_lmms_scienceqa_rule():
    assert lmms_scienceqa_letter("b", "B")
    assert lmms_scienceqa_letter("B. dog", "B")
    assert not lmms_scienceqa_letter("b. dog", "B")  # needs an upper-case letter then "."
    assert not lmms_scienceqa_letter("The answer is B", "B")


@pytest.mark.parametrize("text, expected", [
    ("yes", "yes"), ("No", "no"), ("Yes, it is.", "yes"), ("No.", "no"), ("Not really", "no"),
    ("Maybe yes", "other"), ("I think no", "other"), ("nope", "no"), ("", "other"),
    ("Y", "other"), ("eyes", "yes"),  # "yes" inside the first four characters counts
])
def test_mme_rule(text, expected):
    assert mme_answer(text) == expected
