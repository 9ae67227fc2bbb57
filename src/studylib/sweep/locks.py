"""Advisory file locks of the result store (``fcntl.flock``).

Every writer of a cell holds a lock on ``<results>/<key>.lock`` while it writes:

* a process that computes a **whole** cell holds it exclusively (``LOCK_EX``) from reading the
  cell's parts to consolidating them, so a second process on the same cell waits for it or
  skips it (:func:`studylib.sweep.run_sweep` skips it, computes the other cells, then waits);
* a shard that computes a **slice** of a cell (``torchrun`` rank, SLURM array task) holds it
  shared (``LOCK_SH``) plus an exclusive lock on ``<key>.slice-<a>-<b>-b<B>.lock`` (batches
  ``a..b-1`` of batch size ``B``), so shards of one run write side by side while a whole-cell
  writer (or a second run with the same slices) is kept out;
* consolidation takes the cell lock exclusively, i.e. after every shard has let go.

``flock`` locks belong to an open file description: they are released when the process dies
(a SIGKILLed writer never leaves a cell locked) and they work across processes on one host
and on NFSv4 / Lustre mounted with ``flock`` support.  A lock file may be removed by the holder
of the exclusive lock (consolidation removes the cell's lock files); :meth:`FileLock.acquire`
therefore checks after locking that the path still names the locked file, and retries if not.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class FileLock:
    """An ``flock`` lock on ``path`` (created on demand); one instance per holder."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, shared: bool = False, block: bool = True) -> bool:
        """Take the lock (shared or exclusive); ``False`` when ``block`` is off and it is busy."""
        if self._fd is not None:
            raise RuntimeError(f"lock {self.path} is already held by this instance")
        flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if block else fcntl.LOCK_NB)
        while True:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, flags)
            except BlockingIOError:
                os.close(fd)
                return False
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return True
            os.close(fd)  # removed (or replaced) while we waited: lock the current file

    def release(self, unlink: bool = False) -> None:
        """Let go; ``unlink`` (exclusive holders only) removes the lock file first."""
        if self._fd is None:
            return
        if unlink:
            self.path.unlink(missing_ok=True)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


__all__ = ["FileLock"]
