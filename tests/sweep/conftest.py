"""Sweep tests keep the file-digest cache in a temporary folder (not ~/.cache); subprocesses
the tests start inherit it through the environment."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

import studylib.sweep.run as sweep_run
from studylib.sweep.digests import CACHE_ENV

os.environ[CACHE_ENV] = str(Path(tempfile.mkdtemp(prefix="studylib-digests-")) / "file-digests.json")


@pytest.fixture(autouse=True)
def one_part_per_batch(monkeypatch):
    """The store tests kill and resume runs between batches: write a part after every batch
    (a real run writes one every PART_SECONDS of scoring; test_parts_group_batches checks that)."""
    monkeypatch.setattr(sweep_run, "PART_SECONDS", 0.0)
