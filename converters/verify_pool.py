"""Shards checked in parallel processes (one TensorFlow thread each), results in shard order,
progress reported from the workers through a queue.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import Any

from converters.verify_shards import ProgressCallback, ShardCheck, ShardToCheck, check_shard

# Below this many records one process checks everything: starting TensorFlow in each worker
# (seconds per process) would cost more than the parallel decoding saves.
POOL_MIN_RECORDS = 1000


_worker_queue: Any = None


def _import_tensorflow() -> Any:
    # converters/ never imports bench/; the same settings bench/__init__.py makes.
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def _init_worker(progress_queue: Any) -> None:
    global _worker_queue
    _worker_queue = progress_queue
    # One decode thread per process: the processes are the parallelism.
    tf = _import_tensorflow()
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.threading.set_intra_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised


def _pool_check_shard(task: ShardToCheck) -> ShardCheck:
    return check_shard(_import_tensorflow(), task, _worker_queue.put)


def run_checks(
    tasks: list[ShardToCheck], *, workers: int, progress: ProgressCallback
) -> Iterator[ShardCheck]:
    """Check every shard, in `workers` processes when more than one; yields in task order."""
    if workers <= 1 or len(tasks) <= 1:
        tf = _import_tensorflow()
        for task in tasks:
            yield check_shard(tf, task, progress)
        return
    from converters.pool import pool_start_method

    context = multiprocessing.get_context(pool_start_method())
    progress_queue = context.Queue()
    with ProcessPoolExecutor(
        min(workers, len(tasks)),
        mp_context=context,
        initializer=_init_worker,
        initargs=(progress_queue,),
    ) as pool:
        futures = [pool.submit(_pool_check_shard, task) for task in tasks]
        try:
            for future in futures:
                while True:
                    try:
                        result = future.result(timeout=0.2)
                        break
                    except FuturesTimeout:
                        _drain(progress_queue, progress)
                _drain(progress_queue, progress)
                yield result
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    _drain(progress_queue, progress)


def _drain(progress_queue: Any, progress: ProgressCallback) -> None:
    while True:
        try:
            progress(progress_queue.get_nowait())
        except queue.Empty:
            return
