"""Shared fixtures: the shipped toy model, a tiny random LLaVA with LLaVA-1.5's geometry,
and small deterministic toy datasets."""

from __future__ import annotations

import pytest
import torch

from studylib.toy.world import eval_world
from studylib.models.adapter import LlavaAdapter
from studylib.models.loading import TOY_MODEL_DIR

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def toy_adapter() -> LlavaAdapter:
    if not (TOY_MODEL_DIR / "model.safetensors").exists():
        pytest.fail(f"toy checkpoint missing at {TOY_MODEL_DIR}; run scripts/train_toy.py")
    return LlavaAdapter.load("toy")


@pytest.fixture(scope="session")
def tiny_adapter() -> LlavaAdapter:
    return LlavaAdapter.load("tiny-random")


@pytest.fixture(scope="session")
def small_world():
    return eval_world(12)
