"""Writing shards in worker processes: the pool, its progress bar, and workers that end
with the converting process (an orphan never renames its shard into a folder a new run
may already be writing).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from converters.children import die_with_parent
from converters.shards import ShardResult, ShardTask, write_shard

_POLL_SECONDS = 0.2

_progress_queue: Any = None
_parent_pid: int | None = None


class ParentGoneError(RuntimeError):
    """The converting process died; an orphaned worker stops instead of finishing a shard."""


def _init_worker(progress_queue: Any, parent_pid: int | None) -> None:
    """`parent_pid` is the converting process when it is this worker's parent (fork, spawn);
    None under forkserver, where the parent is the server process."""
    global _progress_queue, _parent_pid
    _progress_queue = progress_queue
    _parent_pid = parent_pid
    if parent_pid is not None:
        die_with_parent(parent_pid)


def _pool_write_shard(task: ShardTask) -> ShardResult:
    def report(images: int, bytes_in: int, bytes_out: int) -> None:
        # Without this check a worker orphaned by a killed run would still rename its shard
        # into a folder that a new run may already be writing.
        if _parent_pid is not None and os.getppid() != _parent_pid:
            raise ParentGoneError(f"the conversion process {_parent_pid} is gone")
        _progress_queue.put((images, bytes_in, bytes_out))

    try:
        return write_shard(task, report)  # removes its partial file on any error
    except ParentGoneError:
        os._exit(1)  # nobody is left to take a result or to send the next task


class Progress:
    """tqdm on stderr: images, ETA, and source MB/s read."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=total,
            unit="img",
            disable=not enabled,
            file=sys.stderr,
            dynamic_ncols=True,
            desc="converting",
        )
        self.started = time.perf_counter()
        self.bytes_in = 0
        self.last_postfix = 0.0

    def update(self, images: int, bytes_in: int, _bytes_out: int = 0) -> None:
        self.bytes_in += bytes_in
        self.bar.update(images)
        now = time.perf_counter()
        if now - self.last_postfix > 0.5:
            rate = self.bytes_in / 1e6 / max(now - self.started, 1e-9)
            self.bar.set_postfix_str(f"{rate:.1f} MB/s in", refresh=False)
            self.last_postfix = now

    def close(self) -> None:
        self.bar.close()


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def pool_start_method() -> str:
    """fork (instant) unless TensorFlow is loaded here: its threads make forking unsafe, so
    then forkserver (workers fork from a clean server process), or spawn where neither exists.
    The workers never use TensorFlow themselves.
    """
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and "tensorflow" not in sys.modules:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def _run_in_pool(tasks: list[ShardTask], workers: int, progress: Progress) -> list[ShardResult]:
    """Write shards in a process pool. A worker that dies (OOM killer, a signal) raises
    BrokenProcessPool here instead of leaving the run waiting forever for its shard."""
    method = pool_start_method()
    context = multiprocessing.get_context(method)
    parent_pid = None if method == "forkserver" else os.getpid()
    progress_queue = context.Queue()
    results: list[ShardResult] = []
    with ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=_init_worker,
        initargs=(progress_queue, parent_pid),
    ) as pool:
        pending = {pool.submit(_pool_write_shard, task) for task in tasks}
        try:
            while pending:
                done, pending = wait(pending, timeout=_POLL_SECONDS, return_when=FIRST_COMPLETED)
                _drain(progress_queue, progress)
                results.extend(future.result() for future in done)  # re-raises a worker's error
        except BaseException:
            for future in pending:
                future.cancel()  # shards not started are dropped; running ones finish
            raise
    _drain(progress_queue, progress)
    return results


def _drain(progress_queue: Any, progress: Progress) -> None:
    while True:
        try:
            progress.update(*progress_queue.get_nowait())
        except queue.Empty:
            return


def run_tasks(tasks: list[ShardTask], *, workers: int, progress: Progress) -> list[ShardResult]:
    """Write every task's shard; one process when `workers` is 1, else a pool."""
    if workers <= 1 or len(tasks) <= 1:
        return [write_shard(task, progress.update) for task in tasks]
    return _run_in_pool(tasks, min(workers, len(tasks)), progress)
