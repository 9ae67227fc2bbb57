"""Smoke check of the whole path on the toy: encode, score every toy POPE question with all
visual tokens, print accuracy and ECE per split (toy results, not LLaVA's)."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from studylib.data.toy_world import POPE_SPLITS, eval_world
from studylib.metrics import expected_calibration_error
from studylib.models import prompts
from studylib.models.adapter import LlavaAdapter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="toy")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    adapter = LlavaAdapter.load(args.model)
    world = eval_world(args.images)
    start = time.perf_counter()
    print(f"TOY model {args.model!r}, all {adapter.num_patches} visual tokens, {args.images} toy images")
    for split in POPE_SPLITS:
        questions = world.pope(split).questions
        correct, confidence = [], []
        for i in tqdm(range(0, len(questions), args.batch_size), desc=split, leave=False):
            batch = questions[i:i + args.batch_size]
            keys = [q.image_key for q in batch]
            tokens = adapter.encode([world.load_image(k) for k in keys], keys)
            scores = adapter.score([prompts.build_prompt(q) for q in batch], tokens, None,
                                   prompts.YES_NO_VERBALIZER)
            correct += [p == q.answer for p, q in zip(scores.prediction, batch)]
            confidence += scores.confidence.tolist()
        ece = expected_calibration_error(np.array(confidence), np.array(correct))
        print(f"  toy POPE {split:12s} n={len(questions):5d}  accuracy {np.mean(correct):.3f}  ECE {ece:.3f}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
