"""Questions per second on the toy model: the naive path vs the adapter.

(a) naive: for every question and every pruning config, encode the image again and call
    ``generate`` (batch 1, one new token, ``output_scores``), as a per-example script would;
(b) adapter, single forward: encode each image once for the whole sweep, select, one batched
    prefill forward over the whole prompts;
(c) adapter, shared prefix: the same, but the questions of one image (same kept tokens) share
    the prefill of ``[system text][visual tokens]``: one forward over the unique prefixes, one
    over the question suffixes on the gathered KV cache (the adapter's default).

Batches are consecutive questions; the toy POPE questions come grouped by image (checked and
printed), so a batch holds runs of 4-6 questions per image.  All paths must give the same
probabilities (printed as a check).  Usage:
    python benchmarks/adapter.py [--questions 500] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from studylib.toy.world import eval_world
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


def image_runs(questions) -> tuple[int, int]:
    """(distinct images, runs of consecutive questions on one image); prefix sharing needs long
    runs (equal counts: every image's questions are adjacent)."""
    keys = [q.image_key for q in questions]
    runs = 1 + sum(a != b for a, b in zip(keys, keys[1:]))
    return len(set(keys)), runs


def batched(adapter: LlavaAdapter, world, questions, batch_size: int, share_prefixes: bool) -> np.ndarray:
    adapter.clear_cache()
    adapter._share_prefixes = share_prefixes
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


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


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
    images, runs = image_runs(questions)
    print(f"toy model, {len(questions)} POPE-style questions x {len(CONFIGS)} configs "
          f"({', '.join(f'{s}@{k}' for s, k in CONFIGS)}), {torch.get_num_threads()} threads, "
          f"batch size {args.batch_size}")
    print(f"{images} images, {runs} runs of adjacent questions on one image "
          f"({len(questions) / runs:.1f} questions per run{', each image in one run' if runs == images else ''})")
    slow, t_naive = timed(naive, adapter, world, questions)
    single, t_single = timed(batched, adapter, world, questions, args.batch_size, False)
    shared, t_shared = timed(batched, adapter, world, questions, args.batch_size, True)
    print(f"(a) naive                   : {t_naive:7.1f} s  {n / t_naive:8.1f} questions/s")
    print(f"(b) adapter, single forward : {t_single:7.1f} s  {n / t_single:8.1f} questions/s")
    print(f"(c) adapter, shared prefix  : {t_shared:7.1f} s  {n / t_shared:8.1f} questions/s")
    print(f"speed-up (b)/(a): {t_naive / t_single:.1f}x   (c)/(a): {t_naive / t_shared:.1f}x   "
          f"(c)/(b): {t_single / t_shared:.1f}x")
    print(f"max |p_naive - p_single| = {np.abs(slow - single).max():.2e}   "
          f"max |p_naive - p_shared| = {np.abs(slow - shared).max():.2e}   "
          f"max |p_single - p_shared| = {np.abs(single - shared).max():.2e}")


if __name__ == "__main__":
    main()
