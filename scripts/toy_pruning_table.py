"""How much keeping fewer visual tokens changes the toy model (TOY results, not LLaVA's).

Scores the held-out toy POPE splits and the toy four-option questions with all 144 visual
tokens and with random (mean of 3 seeds), saliency ([CLS] top-K) and diversity (DivPrune)
selection at 1/2, 1/4, 1/8 and 1/16 of the tokens; prints accuracy / ECE / mean confidence.
    python scripts/toy_pruning_table.py [--images 500] [--model toy]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import torch

from studylib.toy.world import eval_world
from studylib.sweep import score_dataset
from studylib.metrics import expected_calibration_error
from studylib.models.adapter import LlavaAdapter
from studylib.pruners import get_pruner

FRACTIONS = (2, 4, 8, 16)


def summary(frame: pd.DataFrame) -> np.ndarray:
    """(accuracy, ECE, mean confidence) of one run."""
    ece = expected_calibration_error(frame.confidence.to_numpy(), frame.correct.to_numpy())
    return np.array([frame.correct.mean(), ece, frame.confidence.mean()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--model", default="toy", help="'toy' (the shipped checkpoint) or a checkpoint folder")
    args = parser.parse_args()
    torch.set_num_threads(2)
    adapter = LlavaAdapter.load(args.model)
    world = eval_world(args.images)
    datasets = {f"POPE {s}": world.pope(s) for s in ("random", "popular", "adversarial")}
    datasets["4-option MC"] = world.scienceqa()
    n = adapter.num_patches
    configs = [("full", n, ["full"])]
    for f in FRACTIONS:
        k = n // f
        configs += [("random", k, [f"random(seed={s})" for s in range(3)]),
                    ("saliency", k, ["saliency"]), ("diversity", k, ["divprune"])]
    print(f"TOY model, {args.images} held-out toy images; cells: accuracy / ECE (15 bins) / mean confidence")
    print("| rule | K | " + " | ".join(f"{name} (n={len(d.questions)})" for name, d in datasets.items()) + " |")
    print("|---|---|" + "---|" * len(datasets))
    for rule, k, specs in configs:
        cells = []
        for dataset in datasets.values():
            runs = [summary(score_dataset(adapter, dataset, get_pruner(s), k, progress=False)) for s in specs]
            cells.append(" / ".join(f"{v:.3f}" for v in np.mean(runs, axis=0)))  # mean over seeds
        print(f"| {rule} | {k} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
