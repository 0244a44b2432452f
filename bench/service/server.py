"""One tf.data service server process: `python -m bench.service.server ROLE ...`.

    python -m bench.service.server dispatcher --port 5050 \
        --worker-address host-a:5051 --worker-address host-b:5051
    python -m bench.service.server worker --port 5051 \
        --dispatcher-address host0:5050 --worker-address host-a:5051 [--cpus 0,1]

Runs TensorFlow's own `DispatchServer` or `WorkerServer` until SIGTERM or SIGINT, or until
its standard input closes (the process that started it is gone: locally or over a remote
shell, a server never outlives its owner). bench.service.pool starts and stops these.

It speaks on stdout in lines `chexbench-service {json}`: one `ready` line once the server
is up (its address and the cores it may use), then a `cpu` line every --sample-period-s
with this process's CPU seconds so far (user + system, every thread), so that an owner on
another host can still derive the CPU a worker spent over a measured window. TensorFlow's
own log lines go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

MARKER = "chexbench-service "
ROLES = ("dispatcher", "worker")


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="python -m bench.service.server",
        description="Run one tf.data service dispatcher or worker until told to stop.",
    )
    result.add_argument("role", choices=ROLES)
    result.add_argument("--port", type=int, required=True)
    result.add_argument(
        "--worker-address",
        action="append",
        default=[],
        help="dispatcher: every worker's host:port (static sharding needs the full list); "
        "worker: its own host:port as the dispatcher lists it",
    )
    result.add_argument("--dispatcher-address", help="worker: the dispatcher's host:port")
    result.add_argument("--cpus", help="worker: pin to these CPU ids (comma-separated)")
    result.add_argument("--sample-period-s", type=float, default=0.25)
    result.add_argument("--heartbeat-ms", type=int, default=1000)
    return result


def emit(event: str, **fields: object) -> None:
    print(MARKER + json.dumps({"event": event, **fields}), flush=True)


def _pin(cpus: str | None) -> int:
    """Pin this process (before TensorFlow sizes its thread pools); the cores it may use."""
    if cpus:
        os.sched_setaffinity(0, {int(item) for item in cpus.split(",")})
    return len(os.sched_getaffinity(0))


def _start(arguments: argparse.Namespace) -> object:
    import tensorflow as tf

    service = tf.data.experimental.service
    if arguments.role == "dispatcher":
        return service.DispatchServer(
            service.DispatcherConfig(
                port=arguments.port,
                worker_addresses=arguments.worker_address or None,
                fault_tolerant_mode=False,
            )
        )
    if not arguments.dispatcher_address or len(arguments.worker_address) != 1:
        raise SystemExit("a worker needs --dispatcher-address and one --worker-address")
    return service.WorkerServer(
        service.WorkerConfig(
            dispatcher_address=arguments.dispatcher_address,
            worker_address=arguments.worker_address[0],
            port=arguments.port,
            heartbeat_interval_ms=arguments.heartbeat_ms,
        )
    )


def _watch_stdin(stop: threading.Event) -> None:
    """Stdin closes when the owner dies (or its remote shell ends): stop then."""
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except (OSError, ValueError):
        pass
    stop.set()


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    cores = _pin(arguments.cpus)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    threading.Thread(target=_watch_stdin, args=(stop,), daemon=True).start()
    import psutil

    process = psutil.Process()
    server = _start(arguments)
    emit(
        "ready",
        role=arguments.role,
        port=arguments.port,
        pid=os.getpid(),
        cores=cores,
        host=os.uname().nodename,
    )
    while not stop.is_set():
        times = process.cpu_times()
        emit("cpu", time=time.time(), cpu_s=times.user + times.system)
        stop.wait(arguments.sample_period_s)
    times = process.cpu_times()
    emit("stopped", time=time.time(), cpu_s=times.user + times.system)
    del server
    # TensorFlow's server teardown can block on in-flight RPCs: the process just ends.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
