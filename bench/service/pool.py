"""An input-service pool: a real tf.data service dispatcher and N workers, as processes.

    with ServicePool(ServiceConfig(workers=2, log_dir=Path("results/x/service"))) as pool:
        dataset = through_service(build_dataset(..., service_workers=2),   # service_job
                                  service=pool.target, job_name=job_name(run_id, rank=0))
        ...
        section = pool.describe(window=(measured_start, measured_end))

Each server is `python -m bench.service.server` (TensorFlow's `DispatchServer` /
`WorkerServer`) started from an argv list, in a session of its own, stdout and stderr to
its own log; on a listed host it is started through `remote_command` (ssh by default),
also an argv list. The pool waits until every server says it is ready and stops them all
on leaving the `with` block, whatever ended it (success, an exception, Ctrl-C): SIGTERM,
then SIGKILL after a grace period. A server also ends by itself when its standard input
closes (its owner died, even by SIGKILL) and, locally, on its parent's death.

Processing mode (bench.job.service reads through the pool): static sharding,
`ShardingPolicy.HINT`. Each training rank distributes its own share of the split (the
same rank sharding as in-process) as a job of its own, and inside it every service worker
takes a fixed, disjoint part (`shard(SHARD_HINT, SHARD_HINT)` at the source stage, filled
in by the service). So every rank sees the same examples as without the service, disjoint
from the other ranks' each epoch, and an evaluation pass delivers each example exactly
once; the bad-data guard runs whole on each worker, so bad data is still named.
`distributed_epoch` (dynamic splits) would give each example to whichever rank asks
first: unequal batch counts per rank and a guard cut between workers. Elements are not
compressed: decompressing would put CPU back on the training host, which is what the pool
is there to relieve. Job names must be fresh per run (a consumed job yields nothing).

A worker that dies is found by `check()` (the sweep polls it while the job runs), which
raises `ServiceWorkerDied` with the worker's log tail. Each worker reports its own CPU
seconds every sample period (so remote workers are measured the same way); the pool
writes `service.json` beside the logs, from which bench.service.usage derives CPU
seconds and cores used over a measured window, even in a job that does not own the pool.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.service.config import LOCAL, ServiceConfig, ServiceError, ServiceWorkerDied
from bench.service.server_process import Server, cpu_sets, free_ports, quote_argument, signal_server
from bench.service.usage import MANIFEST, describe_service
from converters.children import die_with_parent

SERVER_MODULE = "bench.service.server"
REPO = Path(__file__).resolve().parents[2]


class ServicePool:
    """A dispatcher and `config.workers` workers, started on entry and stopped on exit."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.dispatcher: Server | None = None
        self.workers: list[Server] = []
        self._stopping = threading.Event()

    # -- life cycle ----------------------------------------------------------------------
    def __enter__(self) -> ServicePool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the dispatcher, then the workers; wait until each is ready. On any
        failure every server started so far is stopped and ServiceError says why."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        config = self.config
        config.log_dir.mkdir(parents=True, exist_ok=True)
        ports = self._ports()
        hosts = [config.hosts[i % len(config.hosts)] if config.hosts else LOCAL
                 for i in range(config.workers)]  # fmt: skip
        cpus = cpu_sets(config.workers, config.cores_each) if not config.hosts else None
        self.workers = [
            Server(
                role="worker",
                index=index,
                host=hosts[index],
                port=ports[index + 1],
                argv=[],
                log_path=config.log_dir / f"worker-{index}.log",
                cpus=cpus[index] if cpus else None,
            )
            for index in range(config.workers)
        ]
        self.dispatcher = Server(
            role="dispatcher",
            index=0,
            host=config.dispatcher_host,
            port=ports[0],
            argv=[],
            log_path=config.log_dir / "dispatcher.log",
        )
        self.dispatcher.argv = self.server_argv(self.dispatcher)
        self._launch(self.dispatcher)
        self._wait_ready([self.dispatcher])
        for worker in self.workers:
            worker.argv = self.server_argv(worker)
            self._launch(worker)
        self._wait_ready(self.workers)
        self._write_manifest()

    def _write_manifest(self) -> None:
        """service.json beside the logs: what a job (or a report) needs to describe the
        pool without owning it."""
        assert self.dispatcher is not None
        document = {
            "target": self.target,
            "dispatcher": {
                "address": self.dispatcher.address,
                "log": str(self.dispatcher.log_path),
            },
            "where": "local" if not self.config.hosts else list(self.config.hosts),
            "cores_each": self.config.cores_each,
            "sample_period_s": self.config.sample_period_s,
            "workers": [
                {
                    "index": worker.index,
                    "host": worker.host if worker.host != LOCAL else socket.gethostname(),
                    "address": worker.address,
                    "cores": (worker.ready or {}).get("cores"),
                    "cpus": list(worker.cpus) if worker.cpus else None,
                    "log": str(worker.log_path),
                }
                for worker in self.workers
            ],
        }
        path = self.config.log_dir / MANIFEST
        path.write_text(json.dumps(document, indent=1) + "\n")

    def server_argv(self, server: Server) -> list[str]:
        """The argv that starts `server`: locally, or on its host through remote_command."""
        config = self.config
        argv = [config.python, "-m", SERVER_MODULE, server.role, "--port", str(server.port)]
        argv += ["--sample-period-s", f"{config.sample_period_s:g}"]
        if server.role == "dispatcher":
            for worker in self.workers:
                argv += ["--worker-address", worker.address]
        else:
            assert self.dispatcher is not None
            argv += ["--dispatcher-address", self.dispatcher.address]
            argv += ["--worker-address", server.address]
            if server.cpus:
                argv += ["--cpus", ",".join(str(cpu) for cpu in server.cpus)]
        if server.host == LOCAL or server.role == "dispatcher":
            return argv
        # On another host: the same argv, the repository importable there too (same path).
        remote = ["env", f"PYTHONPATH={REPO}", *argv]
        return [*config.remote_command, server.host, *(quote_argument(item) for item in remote)]

    def _launch(self, server: Server) -> None:
        log = server.log_path.open("ab")
        try:
            local = server.host == LOCAL or server.role == "dispatcher"
            server.process = subprocess.Popen(
                server.argv,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                start_new_session=True,
                preexec_fn=die_with_parent if local else None,
            )
        except OSError as error:
            raise ServiceError(
                f"cannot start the tf.data service {server.name}: {server.argv[0]!r}: {error}"
            ) from error
        finally:
            log.close()
        server.stdin = server.process.stdin

    def _env(self) -> dict[str, str]:
        env = dict(os.environ if self.config.env is None else self.config.env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
        return env

    def _wait_ready(self, servers: Sequence[Server]) -> None:
        deadline = time.monotonic() + self.config.start_timeout_s
        waiting = list(servers)
        while waiting:
            for server in list(waiting):
                server.read_log()
                if server.ready is not None:
                    waiting.remove(server)
                elif not server.alive():
                    raise ServiceError(f"could not start: {server.ended_message()}")
            if waiting and time.monotonic() > deadline:
                names = ", ".join(server.name for server in waiting)
                raise ServiceError(
                    f"tf.data service {names} not ready after "
                    f"{self.config.start_timeout_s:g} s; logs in {self.config.log_dir}"
                )
            if waiting:
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop every server: SIGTERM, then SIGKILL after the grace period. Idempotent."""
        self._stopping.set()
        servers = [server for server in [self.dispatcher, *self.workers] if server is not None]
        for server in servers:
            if server.stdin is not None:
                with contextlib.suppress(OSError):
                    server.stdin.close()
            if server.alive():
                signal_server(server, signal.SIGTERM)
        deadline = time.monotonic() + self.config.stop_grace_s
        while time.monotonic() < deadline and any(server.alive() for server in servers):
            time.sleep(0.05)
        for server in servers:
            if server.alive():
                signal_server(server, signal.SIGKILL)
            if server.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    server.process.wait(timeout=5)

    # -- use -------------------------------------------------------------------------------
    @property
    def target(self) -> str:
        """The address ranks read from: grpc://dispatcher-host:port."""
        if self.dispatcher is None:
            raise ServiceError("the pool is not started")
        return f"grpc://{self.dispatcher.address}"

    def check(self) -> None:
        """Raise ServiceWorkerDied, with its log, if any server of the pool has ended."""
        for server in [self.dispatcher, *self.workers]:
            if server is not None and server.process is not None and not server.alive():
                raise ServiceWorkerDied(server.ended_message())

    def watch(self, on_death: Callable[[str], None], *, period_s: float = 0.5) -> None:
        """If a server ends while the pool is in use, stop the pool and call
        `on_death(message)`, once, from a daemon thread (a job blocked on a dead worker
        never returns by itself)."""

        def loop() -> None:
            while not self._stopping.wait(period_s):
                try:
                    self.check()
                except ServiceWorkerDied as died:
                    if not self._stopping.is_set():
                        self.stop()  # the rest of the pool goes first: on_death may exit
                        on_death(str(died))
                    return

        threading.Thread(target=loop, name="chexbench-service-watch", daemon=True).start()

    def pids(self) -> list[int]:
        return [
            server.process.pid
            for server in [self.dispatcher, *self.workers]
            if server is not None and server.process is not None
        ]

    def describe(self, window: tuple[float, float] | None) -> dict[str, Any]:
        """The result's `input_service` section over `window` (bench.service.usage)."""
        return describe_service(self.config.log_dir, window)

    def _ports(self) -> list[int]:
        count = self.config.workers + 1
        if self.config.base_port is not None:
            return [self.config.base_port + offset for offset in range(count)]
        return free_ports(count)
