"""The shape of an input-service pool (`ServiceConfig`: how many workers, where, how large) and
the errors a pool raises.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

LOCAL = "localhost"
DEFAULT_REMOTE_COMMAND = ("ssh", "-o", "BatchMode=yes")


class ServiceError(RuntimeError):
    """The pool could not start, or one of its servers stopped; the message has its log."""


class ServiceWorkerDied(ServiceError):
    """A worker (or the dispatcher) ended while the pool was in use."""


@dataclass(frozen=True, kw_only=True)
class ServiceConfig:
    """The shape of one pool: how many workers, where, how large."""

    workers: int
    log_dir: Path
    # Where the workers run, round robin; empty: this host. The dispatcher runs here.
    hosts: tuple[str, ...] = ()
    # Local workers only: pin each to this many cores of its own (None: no pinning).
    cores_each: int | None = None
    # The name other hosts reach this host by (the dispatcher's address for remote workers).
    dispatcher_host: str = LOCAL
    base_port: int | None = None  # None: free local ports; remote hosts need fixed ones
    start_timeout_s: float = 120.0
    stop_grace_s: float = 10.0
    sample_period_s: float = 0.25
    python: str = sys.executable
    remote_command: tuple[str, ...] = DEFAULT_REMOTE_COMMAND
    env: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.cores_each is not None and self.cores_each < 1:
            raise ValueError(f"cores_each must be at least 1, got {self.cores_each}")
        if self.hosts and self.base_port is None:
            raise ValueError("workers on other hosts need base_port (fixed ports to listen on)")
