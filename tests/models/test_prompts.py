"""LLaVA-1.5's evaluation prompts, character for character (evaluation.md §1.6, §2.3)."""

from __future__ import annotations

import pytest

from studylib.data.records import Question
from studylib.models import prompts

SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
          "helpful, detailed, and polite answers to the user's questions.")


def test_yes_no_prompt_is_vicuna_v1_with_the_short_answer_line():
    q = Question("1", "img", "yesno", "Is there a dog in the image?", "yes")
    assert prompts.build_prompt(q) == (
        SYSTEM + " USER: <image>\nIs there a dog in the image?\n"
        "Answer the question using a single word or phrase. ASSISTANT:")


def test_multiple_choice_prompt_has_context_options_and_letter_line():
    q = Question("2", "img", "mc", "Which is a mammal?", "B", choices=("frog", "whale", "shark"), hint="Look.")
    assert prompts.build_prompt(q) == (
        SYSTEM + " USER: <image>\nContext: Look.\nWhich is a mammal?\nA. frog\nB. whale\nC. shark\n"
        "Answer with the option's letter from the given choices directly. ASSISTANT:")
    assert prompts.verbalizer(q) == {"A": ("A",), "B": ("B",), "C": ("C",)}


def test_caption_prompt_and_multi_turn_rendering():
    q = Question("3", "img", "caption", "Please describe this image in detail.")
    assert prompts.build_prompt(q) == SYSTEM + " USER: <image>\nPlease describe this image in detail. ASSISTANT:"
    two = prompts.conversation([("<image>\nQ1", "Yes"), ("Q2", "")])
    assert two == SYSTEM + " USER: <image>\nQ1 ASSISTANT: Yes</s>USER: Q2 ASSISTANT:"
    with pytest.raises(ValueError, match="only the last turn"):
        prompts.conversation([("Q1", ""), ("Q2", "")])
    with pytest.raises(ValueError, match="no verbalizer"):
        prompts.verbalizer(q)
