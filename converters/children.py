"""Child processes that end with their parent: the converter's workers, a sweep's jobs."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:
    """In the child (Linux): the kernel sends SIGTERM when the parent dies, even by SIGKILL.

    With `parent_pid`, a child whose parent already died before this took effect exits.
    Elsewhere it does nothing: no other system offers it.
    """
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)
