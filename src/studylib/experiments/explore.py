"""Explore: one image, one pruner, one budget, one question — the kept patches and the answer.

:class:`Explorer` draws, for a selection, the kept patches over the image, the model's answer
probabilities with those tokens, and the erank and attention entropy of the kept set;
:meth:`Explorer.widgets` puts it behind ipywidgets controls in a running kernel.
"""

from __future__ import annotations

import ipywidgets as widgets
from IPython.display import display
from matplotlib.figure import Figure

from studylib import plots
from studylib.experiments.common import Setup
from studylib.models import prompts
from studylib.models.adapter import LlavaAdapter
from studylib.pruners import parse_spec
from studylib.sweep.scoring import SCORED_TASKS, kept_token_diagnostics, query_for
from studylib.sweep.validate import load_checked_dataset


class Explorer:
    """Figures of single selections on the first ``n_images`` images of a dataset."""

    def __init__(self, setup: Setup, adapter: LlavaAdapter, data, n_images: int, pruner: str, k: int,
                 pruner_choices: list[str]):
        self.setup, self.adapter, self.data = setup, adapter, data
        self.pruner, self.k, self.pruner_choices = pruner, k, list(pruner_choices)
        self.keys = data.image_keys()[:n_images]
        self.questions = {key: [q for q in data.questions if q.image_key == key and q.task in SCORED_TASKS]
                          for key in self.keys}

    def figure(self, image_index: int = 0, spec: str | None = None, budget: int | None = None,
               question_index: int = 0) -> Figure:
        """Kept patches, answer probabilities, erank and entropy of one selection."""
        key = self.keys[image_index]
        question = self.questions[key][question_index % len(self.questions[key])]
        chosen = parse_spec(spec or self.pruner)
        tokens = self.adapter.encode([self.data.load_image(key)], [key])
        budget = tokens.num_patches if chosen.name == "full" else min(budget or self.k, tokens.num_patches)
        text = prompts.build_prompt(question)
        query = query_for(self.adapter, chosen, [question], [text], tokens)
        scores = self.adapter.score_pruned([text], tokens, chosen, budget, [prompts.verbalizer(question)], query)
        rank, entropy = kept_token_diagnostics(tokens, scores.kept)
        fig = Figure(figsize=(plots.PAGE_WIDTH, 3.6), layout="constrained")
        left, right = fig.subplots(1, 2, width_ratios=(1, 1.2))
        plots.token_overlay(self.data.load_image(key), scores.kept[0].tolist(), tokens.grid, ax=left,
                            toy=self.setup.toy, title=f"{chosen} keeps {scores.kept.shape[1]}/{tokens.num_patches}")
        labels = list(scores.labels[0])
        right.barh(labels, scores.probs[0, : len(labels)],
                   color=["C2" if label == question.answer else "C0" for label in labels])
        right.set_xlim(0, 1)
        right.set_xlabel("first-token probability (renormalised over the answers)")
        right.set_title(f"{question.text}\nanswer: {question.answer} | erank {rank[0]:.1f}, entropy {entropy[0]:.2f}",
                        fontsize=9)
        return fig

    def widgets(self):
        """Sliders and a pruner box driving :meth:`figure` (needs a running Jupyter kernel)."""
        controls = dict(
            image_index=widgets.IntSlider(value=0, min=0, max=len(self.keys) - 1, description="image"),
            spec=widgets.Combobox(value=self.pruner, options=self.pruner_choices, description="pruner",
                                  ensure_option=False),
            budget=widgets.IntSlider(value=self.k, min=1, max=self.adapter.num_patches, description="K"),
            question_index=widgets.IntSlider(value=0, min=0, max=17, description="question"),
        )
        output = widgets.interactive_output(lambda **kw: display(self.figure(**kw)), controls)
        boxes = list(controls.values())
        return widgets.VBox([widgets.HBox(boxes[:2]), widgets.HBox(boxes[2:]), output])


def run(*, dataset, dataset_options, n_images, pruner, k, pruner_choices, **settings) -> Explorer:
    setup = Setup.create("explore", {**settings, "limit": n_images})
    setup.validate(dataset, dataset_options, [pruner, *pruner_choices], [k])
    adapter = setup.load_adapter()
    data = load_checked_dataset(dataset, dict(dataset_options or {}))
    return Explorer(setup, adapter, data, n_images, pruner, k, pruner_choices)
