"""Pruner tests run single-threaded: the inputs are tiny, and intra-op threads only add overhead
(and contention on shared CI machines).  Restored after each test."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
