"""Official answer parsers: generated text → the answer a benchmark's own scorer would read.

First-token scoring (:meth:`LlavaAdapter.score`) never needs them; they score free-form
generations the way the published numbers were scored (``../shared/reference/evaluation.md``):

* :func:`pope_answer` — POPE ``evaluate.py`` = LLaVA ``eval_pope.py`` (§1.4);
* :func:`lmms_pope_answer` — lmms-eval's POPE exact match (§2.1);
* :func:`scienceqa_letter` — LLaVA ``eval_science_qa.py`` (§2.3);
* :func:`lmms_scienceqa_letter` — lmms-eval ``sqa_process_results`` (§2.2);
* :func:`mme_answer` — MME ``eval_tool/calculation.py`` (§4).
"""

from __future__ import annotations

import re

FAILED = "FAILED"
SCIENCEQA_OPTIONS = "ABCDE"
_THE_ANSWER_IS = re.compile(r"The answer is ([A-Z]).")


def pope_answer(text: str) -> str:
    """"yes" or "no" by the POPE / LLaVA rule.

    Keep the text before the first "." (if any), delete commas, split on single spaces; any
    token exactly ``No``, ``not`` or ``no`` gives "no", everything else (including empty
    text, "NO", "Nope", "isn't") gives "yes".
    """
    first = text.split(".")[0]
    words = first.replace(",", "").split(" ")
    return "no" if {"No", "not", "no"} & set(words) else "yes"


def lmms_pope_answer(text: str) -> str:
    """lmms-eval's POPE prediction: the lower-cased stripped text; correct iff it equals the label."""
    return text.lower().strip()


def scienceqa_letter(text: str, n_choices: int = len(SCIENCEQA_OPTIONS)) -> str:
    """Option letter by LLaVA's rule, or ``"FAILED"`` (counted wrong).

    On the stripped text (LLaVA's answer files hold stripped outputs): exactly one of A–E →
    it; else at least 3 characters starting with a letter A–E followed by ". " → that letter;
    else the pattern "The answer is X." matching exactly once → X; else FAILED.  A letter
    beyond the question's ``n_choices`` options is FAILED, as LLaVA scores it wrong.
    """
    text = text.strip()
    if text in SCIENCEQA_OPTIONS and len(text) == 1:
        letter = text
    elif len(text) >= 3 and text[0] in SCIENCEQA_OPTIONS and text[1:3] == ". ":
        letter = text[0]
    else:
        found = _THE_ANSWER_IS.findall(text)
        letter = found[0] if len(found) == 1 else FAILED
    return letter if letter in SCIENCEQA_OPTIONS[:n_choices] else FAILED


def lmms_scienceqa_letter(text: str, target: str) -> bool:
    """lmms-eval's ScienceQA correctness: the stripped text equals ``target`` (any case), or it
    has >= 2 characters, starts with an upper-case letter followed by "." and that letter equals
    ``target`` (any case)."""
    text = text.strip()
    if text.lower() == target.lower():
        return True
    return len(text) >= 2 and text[0].isupper() and text[1] == "." and text[0].lower() == target.lower()


def mme_answer(text: str) -> str:
    """"yes", "no" or "other" by MME's rule: lower-case; exactly "yes"/"no" → it; else "yes"
    inside the first 4 characters → "yes"; else "no" there → "no"; else "other" (always wrong)."""
    text = text.lower()
    if text in ("yes", "no"):
        return text
    prefix = text[:4]
    if "yes" in prefix:
        return "yes"
    if "no" in prefix:
        return "no"
    return "other"
