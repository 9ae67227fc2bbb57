"""Seconds per caption cell under in-LLM pruning: every step re-running the whole sequence vs the
prompts run below the drop layer once, in the same run.

FastV and DART caption greedily with no KV cache, re-pruning at every step (FastV's in-place
variant, :meth:`~studylib.models.adapter.LlavaAdapter.generate`).  Below their drop layer nothing
is pruned, so the prompt's states there do not change from step to step: the adapter computes
them once per batch (:class:`~studylib.models.shared_in_llm.InLLMPrefixes`) and each step runs
only the prompt's last token and the generated ones below the drop.  ``adapter._share_prefixes =
False`` forces the old path (the whole sequence at every step), so both paths run in one process
on the same encoded images, alternating per configuration (old, new), ``--repeats`` times.

Per configuration it prints the median seconds per cell (``--images`` toy captions, batch
``--batch-size``, ``--max-new-tokens`` as the every_pruner page), captions per second, how many
captions are identical between the paths and the largest difference of the first step's logits.
This is a script, not a test: timings depend on the machine and its load (the load average is
printed before and after).  Usage:

    PYTHONPATH=src .venv/bin/python benchmarks/in_llm_captions.py [--images 100] [--repeats 1]
        [--threads 2] [--configs fastv@32 dart@32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from studylib.data.registry import dataset_loader
from studylib.models import prompts
from studylib.models.adapter import LlavaAdapter
from studylib.sweep.grid import Config

CONFIGS = ["fastv@32", "fastv@16", "dart@32", "dart@16"]


def caption_cell(adapter: LlavaAdapter, texts, tokens, config: str, batch_size: int, max_new_tokens: int):
    """(seconds, captions, first-step logits) of one configuration over all images, in batches."""
    config = Config.parse(config)
    pruner, k = config.build(), config.k
    captions, logits = [], []
    start = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        rows = slice(i, i + batch_size)
        keep, in_llm, in_llm_k = adapter._route(pruner, tokens[rows], k, None)
        out, first, _ = adapter._generate_without_cache(texts[rows], tokens[rows], keep, max_new_tokens,
                                                        in_llm, in_llm_k)
        captions += out
        logits.append(first)
    return time.perf_counter() - start, captions, torch.cat(logits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--configs", nargs="+", default=CONFIGS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average before: {os.getloadavg()[0]:.2f}; threads {args.threads}; {args.images} toy captions, "
          f"batch {args.batch_size}, {args.max_new_tokens} new tokens at most")
    adapter = LlavaAdapter.load("toy")
    dataset = dataset_loader("toy-captions")(n_images=args.images)
    questions = dataset.questions[: args.images]
    texts = [prompts.build_prompt(q) for q in questions]
    tokens = adapter.encode([dataset.load_image(q.image_key) for q in questions], [q.image_key for q in questions])
    print("| configuration | every step whole s | prompt below the drop once s | captions/s before → after "
          "| identical captions | max abs d first logits |")
    print("|---|---|---|---|---|---|")
    for config in args.configs:
        seconds = {True: [], False: []}
        results = {}
        for _ in range(args.repeats):
            for shared in (False, True):
                adapter._share_prefixes = shared
                took, captions, logits = caption_cell(adapter, texts, tokens, config, args.batch_size,
                                                      args.max_new_tokens)
                seconds[shared].append(took)
                results[shared] = (captions, logits)
        adapter._share_prefixes = True
        before, after = statistics.median(seconds[False]), statistics.median(seconds[True])
        same = sum(a == b for a, b in zip(results[False][0], results[True][0]))
        gap = (results[False][1] - results[True][1]).abs().max().item()
        print(f"| {config} | {before:.1f} | {after:.1f} | {len(texts) / before:.1f} → {len(texts) / after:.1f} "
              f"| {same}/{len(texts)} | {gap:.1e} |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
