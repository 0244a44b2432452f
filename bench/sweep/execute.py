"""Run jobs: one process group each, a timeout, a log, and a result file whatever happens.

The runner does not care what a job's command is: a Horovod launch of `bench.run`, or a
tiny script in a test. For each job it

- starts the argv in a new session (its own process group), stdin closed, stdout and
  stderr appended to `run-<repeat>.log` in the cell's folder;
- on timeout stops the whole group: SIGTERM, then SIGKILL after a grace period;
- on Ctrl-C (KeyboardInterrupt) stops the whole group the same way and re-raises, writing
  nothing: an interrupted run is not a failure;
- with an input-service pool (cells with `input_workers`), starts it first, passes its
  address on, fails the job with the server's log if one dies, and stops it after, whatever
  happened (bench.service.pool);
- when the job wrote no result file for its repeat (crash, timeout, launcher failure),
  writes one with `bench.contract.results.failure_result` (status failed or timeout, exit code,
  log tail), so that every attempted repeat leaves exactly one record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import psutil

from bench.contract import results
from bench.service.config import ServiceConfig, ServiceError, ServiceWorkerDied
from bench.service.pool import ServicePool
from converters.children import die_with_parent

LOG_TAIL_CHARS = 4000
WATCH_PERIOD_S = 0.5  # how often a job's input-service pool is checked
EARLIER_ERROR_LINES = 8
_LOG_SCAN_BYTES = 8 << 20  # error lines are looked for in the log's last 8 MB
_LINE_CHARS = 400


@dataclass(frozen=True, kw_only=True)
class Job:
    """One repeat of one cell, ready to start."""

    cell_id: str
    slug: str
    repeat: int
    directory: Path
    argv: tuple[str, ...]
    timeout_s: float
    kill_grace_s: float = 10.0
    env: Mapping[str, str] | None = None
    # What a failure result records: the planned cell, the sweep's name, the RunConfig.
    cell: Mapping[str, Any] = field(default_factory=dict)
    sweep: str | None = None
    config: Mapping[str, Any] | None = None
    # An input-service pool to start before the job and stop after it, whatever happened.
    service: ServiceConfig | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / f"run-{self.repeat}.log"


@dataclass(frozen=True)
class Outcome:
    """How a job ended: its status, exit code, wall time and the result file it left."""

    job: Job
    status: str
    exit_code: int | None
    wall_s: float
    result_path: Path | None
    message: str


def run_job(job: Job) -> Outcome:
    """Start the job, wait (bounded by its timeout), stop what is left, record the result."""
    job.directory.mkdir(parents=True, exist_ok=True)
    before = set(results.find_results(job.directory))
    started = time.monotonic()
    with job.log_path.open("ab") as log:
        log.write(f"# chexbench runner {results.utc_now()}: {shlex.join(job.argv)}\n".encode())
        log.flush()
        exit_code, timed_out, launch_error = _execute_served(job, log)
    wall_s = time.monotonic() - started
    written = _results_for(job, set(results.find_results(job.directory)) - before)
    if written:
        return _from_worker_result(job, written[-1], exit_code, wall_s, timed_out)
    status = "timeout" if timed_out else "failed"
    message = _failure_message(job, exit_code, timed_out, launch_error)
    path = write_failure(
        job, status=status, message=message, exit_code=exit_code, log_tail=log_tail(job.log_path)
    )
    return Outcome(job, status, exit_code, wall_s, path, message)


def _execute_served(job: Job, log: Any) -> tuple[int | None, bool, str | None]:
    """`_execute`, with the job's input-service pool up around it (if it has one): the job
    learns its address from two flags appended to its argv (bench.run's come last), and a
    server that dies fails the job with that server's log."""
    if job.service is None:
        return _execute(job, log)
    pool = ServicePool(job.service)
    try:
        try:
            pool.start()
        except ServiceError as error:
            log.write(f"# chexbench runner: {error}\n".encode())
            return None, False, f"the input service did not start: {error}"
        argv = (*job.argv, "--input-service", pool.target)
        argv += ("--input-service-dir", str(job.service.log_dir))
        log.write(f"# chexbench runner: input service {pool.target}: {shlex.join(argv)}\n".encode())
        log.flush()
        return _execute(dataclasses.replace(job, argv=argv), log, watch=lambda: _ended(pool))
    finally:
        pool.stop()


def _ended(pool: ServicePool) -> str | None:
    try:
        pool.check()
    except ServiceWorkerDied as died:
        return str(died)
    return None


def _execute(
    job: Job, log: Any, *, watch: Callable[[], str | None] | None = None
) -> tuple[int | None, bool, str | None]:
    """Exit code, whether it timed out, and why it could not start or was stopped (None
    if it ran its course). `watch` is polled while the job runs: a message stops it."""
    try:
        process = subprocess.Popen(
            list(job.argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(job.env) if job.env is not None else None,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    except OSError as error:
        log.write(f"# chexbench runner: cannot start {job.argv[0]}: {error}\n".encode())
        return None, False, f"cannot start {job.argv[0]!r}: {error.strerror or error}"
    deadline = time.monotonic() + job.timeout_s
    try:
        while True:
            left = deadline - time.monotonic()
            try:
                exit_code = process.wait(
                    timeout=max(0.0, min(left, WATCH_PERIOD_S if watch else left))
                )
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    raise
                stopped = watch() if watch is not None else None
                if stopped is not None:
                    stop_group(process, job.kill_grace_s)
                    log.write(f"# chexbench runner: job stopped: {stopped}\n".encode())
                    return process.returncode, False, stopped
    except subprocess.TimeoutExpired:
        stop_group(process, job.kill_grace_s)
        log.write(
            f"# chexbench runner: timed out after {job.timeout_s:g} s; "
            "process group stopped\n".encode()
        )
        return process.returncode, True, None
    except BaseException:
        # Ctrl-C or SIGTERM of the sweep: no job outlives it.
        stop_group(process, job.kill_grace_s)
        raise
    _stop_stragglers(process.pid)
    return exit_code, False, None


def stop_group(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the job's process group and every descendant, SIGKILL what is left after
    `grace_s`. Descendants too: horovodrun starts each rank in a process group of its own."""
    family = _descendants(process.pid)
    _signal_group(process.pid, signal.SIGTERM)
    _signal_each(family, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and (
        process.poll() is None or _group_alive(process.pid) or _any_alive(family)
    ):
        time.sleep(0.1)
    _signal_group(process.pid, signal.SIGKILL)
    _signal_each(family, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _signal_each(processes: list[psutil.Process], signum: int) -> None:
    for member in processes:
        with contextlib.suppress(psutil.Error):
            member.send_signal(signum)


def _any_alive(processes: list[psutil.Process]) -> bool:
    alive = []
    for member in processes:
        with contextlib.suppress(psutil.Error):
            alive.append(member.is_running() and member.status() != psutil.STATUS_ZOMBIE)
    return any(alive)


def _stop_stragglers(group: int) -> None:
    """A rank left behind by a launcher that already exited would hold the cores."""
    if _group_alive(group):
        _signal_group(group, signal.SIGTERM)
        time.sleep(1.0)
        _signal_group(group, signal.SIGKILL)


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _results_for(job: Job, paths: set[Path]) -> list[Path]:
    """New result files of this job's repeat, oldest first."""
    found = []
    for path in sorted(paths):
        try:
            document = results.load_result(path)
        except (results.ResultSchemaError, OSError):
            continue
        if document.get("repeat") == job.repeat:
            found.append((document.get("finished_at") or "", path))
    return [path for _, path in sorted(found)]


def _from_worker_result(
    job: Job, path: Path, exit_code: int | None, wall_s: float, timed_out: bool
) -> Outcome:
    status = results.load_result(path)["status"]
    notes = []
    if timed_out:
        notes.append(f"timed out after {job.timeout_s:g} s, after writing its result")
    if exit_code not in (0, None) and status == "ok":
        notes.append(f"exit code {exit_code} after an ok result")
    message = "; ".join(notes) or ("ok" if status == "ok" else "the worker reported failure")
    return Outcome(job, status, exit_code, wall_s, path, message)


def _failure_message(
    job: Job, exit_code: int | None, timed_out: bool, launch_error: str | None
) -> str:
    if launch_error:
        return launch_error
    if timed_out:
        return f"timed out after {job.timeout_s:g} s (process group stopped)"
    if exit_code == 0:
        return "exited 0 without writing a result file"
    if exit_code is not None and exit_code < 0:
        return f"killed by signal {signal.Signals(-exit_code).name}"
    return f"exited with code {exit_code} without writing a result file"


def write_failure(
    job: Job, *, status: str, message: str, exit_code: int | None = None, log_tail: str = ""
) -> Path:
    """The result of a repeat that left none of its own."""
    document = results.failure_result(
        status=status,
        message=message,
        cell=dict(job.cell),
        exit_code=exit_code,
        log_tail=log_tail,
        sweep=job.sweep,
        cell_id=job.cell_id,
        repeat=job.repeat,
        config=dict(job.config) if job.config is not None else None,
    )
    return results.write_result(job.directory, document)


def log_tail(path: Path, limit: int = LOG_TAIL_CHARS) -> str:
    """The log's last `limit` bytes; where the log is longer, the error lines from before
    them first (up to EARLIER_ERROR_LINES, then "..."): a rank's own error line must not be
    cut off by the launcher's traceback that follows it."""
    try:
        with path.open("rb") as stream:
            stream.seek(max(0, path.stat().st_size - _LOG_SCAN_BYTES))
            data = stream.read()
    except OSError:
        return ""
    tail = data[-limit:].decode("utf-8", errors="replace")
    if len(data) <= limit:
        return tail
    earlier: list[str] = []
    for line in data[:-limit].decode("utf-8", errors="replace").splitlines():
        explains = results.ERROR_LINE.search(line) and not results.TRACEBACK_FRAME.match(line)
        if explains and line not in earlier:
            earlier.append(line[:_LINE_CHARS])
    if not earlier:
        return tail
    return "\n".join([*earlier[-EARLIER_ERROR_LINES:], "..."]) + "\n" + tail


def repeat_statuses(directory: Path) -> dict[int, tuple[str, Path]]:
    """The newest result of each repeat in a cell folder: repeat → (status, path)."""
    newest: dict[int, tuple[str, str, Path]] = {}
    for path in results.find_results(directory):
        try:
            document = results.load_result(path)
        except (results.ResultSchemaError, OSError):
            continue  # unreadable: the repeat counts as not done
        repeat = int(document["repeat"])
        stamp = document.get("finished_at") or document.get("started_at") or ""
        if repeat not in newest or stamp >= newest[repeat][0]:
            newest[repeat] = (stamp, document["status"], path)
    return {repeat: (status, path) for repeat, (_, status, path) in newest.items()}


def skip(job: Job, reason: str) -> Outcome:
    """Record a repeat that could not start because its data could not be prepared."""
    message = f"not run: {reason}"
    path = write_failure(job, status="failed", message=message)
    return Outcome(job, "failed", None, 0.0, path, message)


class Progress:
    """`[i/N] slug (repeat r/R)` lines on stderr with elapsed time and an ETA."""

    def __init__(self, *, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.done = 0
        self.started = time.monotonic()
        self.durations: list[float] = []

    def start(self, job: Job) -> None:
        print(
            f"[{self.done + 1}/{self.total}] {job.slug} repeat {job.repeat}: started "
            f"(log {job.log_path})",
            file=self.stream,
            flush=True,
        )

    def finish(self, outcome: Outcome) -> None:
        self.done += 1
        self.durations.append(outcome.wall_s)
        elapsed = time.monotonic() - self.started
        left = (self.total - self.done) * (sum(self.durations) / len(self.durations))
        detail = "" if outcome.status == "ok" else f" ({outcome.message})"
        print(
            f"[{self.done}/{self.total}] {outcome.job.slug} repeat {outcome.job.repeat}: "
            f"{outcome.status}{detail} in {outcome.wall_s:.1f} s; elapsed "
            f"{_clock(elapsed)}, ETA {_clock(left)}",
            file=self.stream,
            flush=True,
        )


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
