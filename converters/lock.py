"""An exclusive lock on a folder being prepared: a conversion's OUT, a sweep's data cache.

`exclusive(path)` holds an advisory `flock` on `path` (created when absent) for the length
of a `with` block. The file names its holder (host, pid, start time) so that a second
preparer can say whom it waits for; the kernel drops the lock when the holder dies, so a
killed run never leaves a stale lock behind. The file itself is never deleted: deleting a
lock file while another process waits on it would let a third take a different lock.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

LOCK_NAME = ".lock"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def holder_text() -> str:
    """Who holds a lock taken now: host, pid, UTC start time."""
    started = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"host {socket.gethostname()} pid {os.getpid()} since {started}"


def read_holder(path: Path) -> str:
    """The holder line written in a lock file, or a placeholder when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    return text or "another process (not named yet)"


@contextmanager
def exclusive(path: Path, *, what: str, notify: Callable[[str], None] = _stderr) -> Iterator[None]:
    """Hold `path` exclusively; when another process holds it, say so once and wait."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            notify(f"waiting for {what}: {path} is held by {read_holder(path)}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        os.ftruncate(handle, 0)
        os.pwrite(handle, (holder_text() + "\n").encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(handle, 0)  # released: nobody to name
    finally:
        os.close(handle)  # closing drops the flock
