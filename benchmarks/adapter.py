"""Questions per second on the toy model: the naive path vs the adapter.

(a) naive: for every question and every pruning config, encode the image again and call
    ``generate`` (batch 1, one new token, ``output_scores``), as a per-example script would;
(b) adapter: encode each image once for the whole sweep, select, one batched prefill forward.

Both paths must give the same probabilities (printed as a check).  Usage:
    python benchmarks/adapter.py [--questions 500] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from studylib.data.toy_world import eval_world
from studylib.models import prompts
from studylib.models.adapter import LlavaAdapter
from studylib.pruners import get_pruner

CONFIGS = [("full", 144), ("saliency", 36), ("random", 36), ("scope", 36)]


def naive(adapter: LlavaAdapter, world, questions) -> np.ndarray:
    ids = adapter.verbalizer_ids(prompts.YES_NO_VERBALIZER)
    out = []
    for spec, k in CONFIGS:
        pruner = get_pruner(spec)
        for q in questions:
            adapter.clear_cache()
            tokens = adapter.encode([world.load_image(q.image_key)], [q.image_key])
            _, logits = adapter.generate([prompts.build_prompt(q)], tokens, pruner(tokens, k),
                                         max_new_tokens=1, output_scores=True)
            log_probs = logits[0].log_softmax(-1)
            out.append(torch.stack([log_probs[row].logsumexp(0) for row in ids]).softmax(0).numpy())
    return np.array(out)


def batched(adapter: LlavaAdapter, world, questions, batch_size: int) -> np.ndarray:
    adapter.clear_cache()
    unique = list(dict.fromkeys(q.image_key for q in questions))
    encoded = adapter.encode([world.load_image(k) for k in unique], unique)
    row = {k: i for i, k in enumerate(unique)}
    out = []
    for spec, k in CONFIGS:
        pruner = get_pruner(spec)
        for start in range(0, len(questions), batch_size):
            chunk = questions[start:start + batch_size]
            tokens = encoded[[row[q.image_key] for q in chunk]]
            scores = adapter.score([prompts.build_prompt(q) for q in chunk], tokens, pruner(tokens, k),
                                   prompts.YES_NO_VERBALIZER)
            out.append(scores.probs)
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    adapter = LlavaAdapter.load("toy")
    world = eval_world(500)
    questions = world.pope_all().questions[: args.questions]
    n = len(questions) * len(CONFIGS)
    print(f"toy model, {len(questions)} POPE-style questions x {len(CONFIGS)} configs "
          f"({', '.join(f'{s}@{k}' for s, k in CONFIGS)}), {torch.get_num_threads()} threads")
    t0 = time.perf_counter()
    slow = naive(adapter, world, questions)
    t_naive = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast = batched(adapter, world, questions, args.batch_size)
    t_fast = time.perf_counter() - t0
    print(f"(a) naive   : {t_naive:7.1f} s  {n / t_naive:8.1f} questions/s")
    print(f"(b) adapter : {t_fast:7.1f} s  {n / t_fast:8.1f} questions/s")
    print(f"speed-up (b)/(a): {t_naive / t_fast:.1f}x")
    print(f"max |p_naive - p_adapter| = {np.abs(slow - fast).max():.2e}")


if __name__ == "__main__":
    main()
