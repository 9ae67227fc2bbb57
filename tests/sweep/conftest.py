"""Sweep tests keep the file-digest cache in a temporary folder (not ~/.cache); subprocesses
the tests start inherit it through the environment."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from studylib.sweep.digests import CACHE_ENV

os.environ[CACHE_ENV] = str(Path(tempfile.mkdtemp(prefix="studylib-digests-")) / "file-digests.json")
