"""One tf.data service server process of a pool: its argv, log, readiness and CPU samples, how it
ended; and the process helpers the pool uses (free ports, CPU sets, signals to its session).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.service.usage import read_events

LOG_TAIL_CHARS = 4000


@dataclass
class Server:
    """One started server process and what it said."""

    role: str  # "dispatcher" | "worker"
    index: int
    host: str
    port: int
    argv: list[str]
    log_path: Path
    cpus: tuple[int, ...] | None = None
    process: subprocess.Popen[bytes] | None = None
    stdin: IO[bytes] | None = None
    ready: dict[str, Any] | None = None
    samples: list[tuple[float, float]] = field(default_factory=list)  # (time, cpu seconds)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def name(self) -> str:
        return "dispatcher" if self.role == "dispatcher" else f"worker {self.index}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def read_log(self) -> None:
        """Take in the ready line and CPU samples the server printed so far."""
        self.ready, self.samples, _ = read_events(self.log_path)

    def log_tail(self) -> str:
        text = _read_text(self.log_path)
        return text[-LOG_TAIL_CHARS:]

    def ended_message(self) -> str:
        code = None if self.process is None else self.process.poll()
        how = f"exit code {code}" if code is None or code >= 0 else _signal_name(-code)
        return (
            f"tf.data service {self.name} ({self.address}) ended ({how}); "
            f"its log {self.log_path}:\n{self.log_tail()}"
        )


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on this host (held open together while chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def cpu_sets(workers: int, cores_each: int | None) -> list[tuple[int, ...]] | None:
    """Disjoint CPU sets of `cores_each` for local workers, wrapping when the host has
    fewer cores than asked for (they then share)."""
    if cores_each is None:
        return None
    available = sorted(os.sched_getaffinity(0))
    return [
        tuple(available[(index * cores_each + k) % len(available)] for k in range(cores_each))
        for index in range(workers)
    ]


def signal_server(server: Server, signum: int) -> None:
    assert server.process is not None
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(server.process.pid, signum)


def _signal_name(number: int) -> str:
    try:
        return f"killed by {signal.Signals(number).name}"
    except ValueError:
        return f"killed by signal {number}"


def quote_argument(item: str) -> str:
    import shlex

    return shlex.quote(item)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
