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

Readers take no lock: a finished cell is one file written by ``os.replace``, complete or
absent, so a read-only store (a downloaded or shared result set) is read without write access.

``flock`` locks belong to an open file description: they are released when the process dies
(a SIGKILLed writer never leaves a cell locked: the next writer takes the lock over) and they
work across processes on one host and on NFSv4 / Lustre mounted with ``flock`` support.  A lock
file may be removed by the holder of the exclusive lock (consolidation, or a failed run,
removes the cell's lock file); :meth:`FileLock.acquire` therefore checks after locking that the
path still names the locked file, and retries if not.

**Who holds it.**  An exclusive holder writes ``{"pid", "host", "since"}`` (JSON) into the lock
file and empties it before letting go.  A blocking :meth:`FileLock.acquire` polls instead of
sleeping in ``flock``: it prints who holds the lock when it starts waiting and every
:data:`REPORT_EVERY_S` seconds, and gives up after ``timeout`` seconds (default: the environment
variable ``STUDYLIB_LOCK_TIMEOUT``, else :data:`DEFAULT_TIMEOUT_S`) with a
:class:`LockTimeoutError` naming the holder and what to do.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

#: seconds a blocking acquire waits before giving up, unless ``STUDYLIB_LOCK_TIMEOUT`` says otherwise
DEFAULT_TIMEOUT_S = 2 * 3600.0
TIMEOUT_ENV = "STUDYLIB_LOCK_TIMEOUT"
REPORT_EVERY_S = 60.0  #: seconds between two "still waiting" lines
POLL_S = (0.05, 1.0)  #: first and longest pause between two tries


class LockTimeoutError(TimeoutError):
    """A blocking acquire waited longer than its timeout; the message names the holder."""


def lock_timeout(timeout: float | None = None) -> float:
    """``timeout`` checked, or the one ``STUDYLIB_LOCK_TIMEOUT`` sets, or :data:`DEFAULT_TIMEOUT_S`."""
    source = "timeout"
    if timeout is None:
        text = os.environ.get(TIMEOUT_ENV)
        if text is None:
            return DEFAULT_TIMEOUT_S
        source = f"{TIMEOUT_ENV}={text!r}"
        try:
            timeout = float(text)
        except ValueError:
            timeout = float("nan")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 <= timeout < float("inf"):
        raise ValueError(f"lock wait {source} must be a non-negative number of seconds, got {timeout!r}; "
                         f"e.g. {TIMEOUT_ENV}=3600")
    return float(timeout)


def holder_text(path: Path) -> str:
    """Who holds the lock at ``path``, as the exclusive holder recorded it (or why it is unknown)."""
    try:
        holder = json.loads(Path(path).read_text() or "null")
    except (OSError, ValueError):
        holder = None
    if not isinstance(holder, dict) or "pid" not in holder:
        return "held shared (by the shards of a sharded run) or by a writer that records no holder"
    return f"held by pid {holder['pid']} on host {holder.get('host', '?')} since {holder.get('since', '?')}"


def _report(message: str) -> None:
    print(f"[studylib.sweep] {message}", file=sys.stderr, flush=True)


class FileLock:
    """An ``flock`` lock on ``path`` (created on demand); one instance per holder."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None
        self._shared = False

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _try(self, flags: int) -> bool | None:
        """One attempt: ``True`` (held), ``False`` (busy) or ``None`` (the file was replaced: retry)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, flags | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        try:
            same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)  # removed (or replaced) while we waited: lock the current file
            return None
        self._fd = fd
        return True

    def acquire(self, shared: bool = False, block: bool = True, timeout: float | None = None) -> bool:
        """Take the lock (shared or exclusive); ``False`` when ``block`` is off and it is busy.
        A blocking call reports who holds the lock while it waits and raises
        :class:`LockTimeoutError` after ``timeout`` seconds (module docstring)."""
        if self._fd is not None:
            raise RuntimeError(f"lock {self.path} is already held by this instance")
        flags = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        limit = lock_timeout(timeout) if block else 0.0
        start = time.monotonic()
        reported, pause = None, POLL_S[0]
        while True:
            got = self._try(flags)
            if got:
                self._shared = shared
                if not shared:
                    self._record_holder()
                return True
            if got is None:
                continue
            if not block:
                return False
            waited = time.monotonic() - start
            if waited >= limit:
                raise LockTimeoutError(
                    f"gave up after {waited:.0f} s waiting for the lock {self.path}, {holder_text(self.path)}; "
                    f"if that process is alive but stuck, stop it (kill <pid>) and rerun: a dead holder's lock "
                    f"is taken over at once; to wait longer set {TIMEOUT_ENV}=<seconds> (now {limit:.0f})")
            if reported is None or waited - reported >= REPORT_EVERY_S:
                _report(f"waiting for the lock {self.path.name}, {holder_text(self.path)} "
                        f"({waited:.0f} s so far; giving up after {limit:.0f} s)")
                reported = waited
            time.sleep(min(pause, max(limit - waited, 0.0)))
            pause = min(pause * 2, POLL_S[1])

    def _record_holder(self) -> None:
        since = datetime.now(timezone.utc).isoformat(timespec="seconds")
        text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}).encode()
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, text, 0)
        except OSError:
            pass  # the holder record is a courtesy to waiters; the lock itself is held

    def release(self, unlink: bool = False) -> None:
        """Let go; ``unlink`` (exclusive holders only) removes the lock file first."""
        if self._fd is None:
            return
        if unlink:
            self.path.unlink(missing_ok=True)
        elif not self._shared:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


__all__ = ["DEFAULT_TIMEOUT_S", "FileLock", "LockTimeoutError", "TIMEOUT_ENV", "holder_text", "lock_timeout"]
