"""LLaVA-1.5's own evaluation prompts (``conv_vicuna_v1``), not the HF chat template.

The rendered prompt is::

    {SYSTEM} USER: <image>\\n{question}\\n{instruction} ASSISTANT:

with the answer instruction of LLaVA-1.5's evaluation scripts: the short-answer line for
yes/no questions (POPE, MME), ScienceQA's letter line after "A. ..." option lines (and an
optional "Context: ..." line first), and the bare request for captions (CHAIR).
Multi-turn conversations separate turns by ``"</s>"`` after each answer, as vicuna_v1 does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # prompts import nothing of studylib at run time, so loaders may import them
    from studylib.data.records import Question

IMAGE_PLACEHOLDER = "<image>"
SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the user's questions.")
SHORT_ANSWER = "Answer the question using a single word or phrase."
LETTER_ANSWER = "Answer with the option's letter from the given choices directly."
TURN_END = "</s>"

#: First-token verbalizer of each answer label: the surface words whose first-token
#: probabilities are summed into that label.
YES_NO_VERBALIZER: dict[str, tuple[str, ...]] = {"yes": ("Yes", "yes"), "no": ("No", "no")}


def user_message(question: Question, with_image: bool = True) -> str:
    """The user turn for one question, following LLaVA-1.5's eval scripts."""
    if question.task == "yesno":
        body = f"{question.text}\n{SHORT_ANSWER}"
    elif question.task == "mc":
        context = f"Context: {question.hint}\n" if question.hint else ""
        options = "\n".join(f"{letter}. {c}" for letter, c in zip(question.choice_labels, question.choices))
        body = f"{context}{question.text}\n{options}\n{LETTER_ANSWER}"
    elif question.task == "caption":
        body = question.text
    else:
        raise ValueError(f"unknown task {question.task!r}; expected 'yesno', 'mc' or 'caption'")
    return f"{IMAGE_PLACEHOLDER}\n{body}" if with_image else body


def conversation(turns: list[tuple[str, str]]) -> str:
    """vicuna_v1 rendering of (user message, assistant answer) turns; an empty final answer
    leaves the prompt open at ``ASSISTANT:`` for the model to continue."""
    text = SYSTEM + " "
    for i, (message, answer) in enumerate(turns):
        text += f"USER: {message} ASSISTANT:"
        if answer:
            text += f" {answer}{TURN_END}"
        elif i != len(turns) - 1:
            raise ValueError("only the last turn may be left unanswered")
    return text


def build_prompt(question: Question) -> str:
    """The single-turn evaluation prompt for ``question``."""
    return conversation([(user_message(question), "")])


def reference_answer(question: Question) -> str:
    """The answer as LLaVA-1.5 is trained to give it ("Yes"/"No", a letter, or a caption)."""
    if question.task == "yesno":
        return question.answer.capitalize()
    return question.answer


def verbalizer(question: Question) -> dict[str, tuple[str, ...]]:
    """Answer labels and the surface words that count for each (first-token scoring)."""
    if question.task == "yesno":
        return dict(YES_NO_VERBALIZER)
    if question.task == "mc":
        return {letter: (letter,) for letter in question.choice_labels}
    raise ValueError("captions have no verbalizer; use generate() for free text")
