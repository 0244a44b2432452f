"""One sweep per results folder: a lock file that records the host and pid of its holder.

A lock left by a sweep that died on this host is taken over; a lock held by a live sweep,
or by a sweep on another host (a shared file system, where this host cannot tell whether
that process lives), is respected: the message names the holder and the file to remove.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = ".sweep.lock"


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int

    def describe(self, lock: Path) -> str:
        here = self.host == socket.gethostname()
        where = f"pid {self.pid}" if here else f"pid {self.pid} on host {self.host}"
        return f"another sweep ({where}) holds {lock}; if it is gone, remove that file"


class LockHeld(RuntimeError):
    """The folder's lock belongs to another sweep."""

    def __init__(self, holder: Holder, lock: Path) -> None:
        super().__init__(holder.describe(lock))
        self.holder = holder


@contextlib.contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[Path]:
    """Hold the folder's lock for the block; raises LockHeld when another sweep has it."""
    lock = sweep_dir / LOCK_NAME
    take(lock)
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)


def take(lock: Path) -> None:
    """Create the lock file exclusively; a stale lock of a dead local sweep is replaced."""
    for _ in range(3):
        try:
            with lock.open("x", encoding="utf-8") as stream:
                json.dump({"host": socket.gethostname(), "pid": os.getpid()}, stream)
            return
        except FileExistsError:
            holder = read_holder(lock)
            if holder is None:
                # Being written right now, or unreadable: not ours to remove blindly.
                continue
            if holder.host != socket.gethostname() or _alive(holder.pid):
                raise LockHeld(holder, lock) from None
            lock.unlink(missing_ok=True)  # left by a sweep of this host that was killed
    holder = read_holder(lock) or Holder(host="unknown", pid=-1)
    raise LockHeld(holder, lock)


def read_holder(lock: Path) -> Holder | None:
    try:
        document = json.loads(lock.read_text(encoding="utf-8"))
        return Holder(host=str(document["host"]), pid=int(document["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True
