"""Shared by the sweep tests and the subprocess they SIGKILL: a tiny random LLaVA with the toy
world's geometry (96 px, patch 8 -> 12 x 12 = 144 tokens), fast enough for CPU tests."""

from __future__ import annotations

import time

import torch

from studylib.models.adapter import LlavaAdapter
from studylib.models.loading import tiny_random_llava, tiny_random_processor

IMAGE_SIZE, PATCH = 96, 8
N_TOKENS = (IMAGE_SIZE // PATCH) ** 2


def small_adapter(seed: int = 0) -> LlavaAdapter:
    torch.set_num_threads(2)
    processor = tiny_random_processor(image_size=IMAGE_SIZE, patch_size=PATCH)
    model = tiny_random_llava(processor.tokenizer, seed=seed, image_size=IMAGE_SIZE, patch_size=PATCH,
                              vision_layers=2, text_layers=2)
    return LlavaAdapter(model, processor)


def slow_small_adapter(delay: float) -> LlavaAdapter:
    """:func:`small_adapter` whose scoring sleeps ``delay`` seconds per batch, so that a test
    can kill a sweep mid-run or make two sweeps overlap."""
    adapter = small_adapter()
    score = adapter.score_pruned

    def slow_score(*args, **kwargs):
        time.sleep(delay)
        return score(*args, **kwargs)

    adapter.score_pruned = slow_score
    return adapter


class ForwardCounter:
    """Counts the adapter's scoring batches (one per batch, however many language-model
    forwards it takes: shared-prefix scoring runs two) and its vision-tower forwards."""

    def __init__(self, adapter: LlavaAdapter):
        self.calls = 0
        self._adapter = adapter
        score_batch = adapter._last_logits

        def counted(*args, **kwargs):
            self.calls += 1
            return score_batch(*args, **kwargs)

        adapter._last_logits = counted
        self._handle = adapter.model.model.vision_tower.register_forward_pre_hook(self._count)

    def _count(self, *args):
        self.calls += 1

    def remove(self):
        del self._adapter._last_logits
        self._handle.remove()
