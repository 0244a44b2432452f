"""The sweep folder's lock: held locks are respected, stale local ones replaced."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench.sweep.lock import LOCK_NAME, LockHeld, read_holder, sweep_lock, take


def _write_lock(folder: Path, host: str, pid: int) -> Path:
    lock = folder / LOCK_NAME
    lock.write_text(json.dumps({"host": host, "pid": pid}), encoding="utf-8")
    return lock


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_lock_records_host_and_pid_and_is_released(tmp_path: Path) -> None:
    with sweep_lock(tmp_path) as lock:
        holder = read_holder(lock)
        assert holder is not None
        assert (holder.host, holder.pid) == (socket.gethostname(), os.getpid())
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_live_local_holder_is_respected(tmp_path: Path) -> None:
    lock = _write_lock(tmp_path, socket.gethostname(), os.getpid())
    with pytest.raises(LockHeld, match=f"pid {os.getpid()}"):
        take(lock)
    assert read_holder(lock).pid == os.getpid()  # untouched


def test_a_lock_of_another_host_is_held_even_if_its_pid_is_dead_here(tmp_path: Path) -> None:
    lock = _write_lock(tmp_path, "node-far-away", _dead_pid())
    with pytest.raises(LockHeld, match="on host node-far-away"):
        take(lock)
    assert read_holder(lock).host == "node-far-away"


def test_a_stale_local_lock_is_taken_over(tmp_path: Path) -> None:
    lock = _write_lock(tmp_path, socket.gethostname(), _dead_pid())
    take(lock)
    assert read_holder(lock).pid == os.getpid()


def test_an_unreadable_lock_is_never_taken_silently(tmp_path: Path) -> None:
    """Losing every race (a file that stays half-written) must not look like holding it."""
    lock = tmp_path / LOCK_NAME
    lock.write_text("", encoding="utf-8")
    with pytest.raises(LockHeld, match="remove that file"):
        take(lock)
    assert lock.read_text(encoding="utf-8") == ""
