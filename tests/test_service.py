"""The tf.data service pool: real dispatcher and worker processes, real pipelines.

What the ranks read through it (exactly once, disjoint, bad data named) and that no
server outlives the pool, whatever ends it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
import tensorflow as tf

import bench  # noqa: F401  (before TensorFlow)
from bench.input.pipelines import (
    PipelineOptions,
    Source,
    build_dataset,
    raw_source,
    tfrecord_source,
)
from bench.job.service import job_name, through_service
from bench.service.config import ServiceConfig, ServiceError, ServiceWorkerDied
from bench.service.pool import ServicePool
from bench.service.server_process import Server
from bench.service.usage import MANIFEST, cpu_seconds

WORKERS = 2
RANKS = 2


def _options(**changes: object) -> PipelineOptions:
    values: dict = {"kind": "tuned", "image_size": 32, "batch_size": 8, "training": False}
    values.update(changes)
    return PipelineOptions(**values)


def _digest(image: np.ndarray) -> str:
    """The same for an image and its mirror image: training flips do not matter."""
    return min(
        hashlib.sha1(np.ascontiguousarray(item).tobytes()).hexdigest()
        for item in (image, image[:, ::-1])
    )


def _digests(batches: object, limit: int | None = None) -> list[str]:
    found = []
    for count, (images, _) in enumerate(batches):  # type: ignore[misc]
        if limit is not None and count >= limit:
            break
        found += [_digest(image) for image in images.numpy()]
    return found


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def _wait_gone(pids: list[int], seconds: float = 20.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return _alive(pids)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServicePool]:
    config = ServiceConfig(workers=WORKERS, log_dir=tmp_path_factory.mktemp("service"))
    with ServicePool(config) as started:
        yield started
    assert not _alive(started.pids())


def _through(pool: ServicePool, source: Source, options: PipelineOptions, rank: int, part: str):
    dataset = build_dataset(
        source, options, worker_index=rank, num_workers=RANKS, service_workers=WORKERS
    )
    return through_service(dataset, service=pool.target, job_name=job_name(part, rank=rank))


@pytest.mark.parametrize("data_format", ["raw", "tfrecord"])
def test_evaluation_through_the_service_delivers_each_example_once_per_rank_share(
    pool: ServicePool, synth_root: Path, records_png: Path, data_format: str
) -> None:
    if data_format == "raw":
        source = raw_source(synth_root, "val")
    else:
        source = tfrecord_source(records_png, "val")
    for rank in range(RANKS):
        alone = build_dataset(source, _options(), worker_index=rank, num_workers=RANKS)
        served = _through(pool, source, _options(), rank, f"eval-{data_format}")
        # The same examples as the rank reads without the service, each exactly once.
        assert sorted(_digests(served)) == sorted(_digests(alone))
    whole = _digests(build_dataset(source, _options()))
    assert len(set(whole)) == len(whole) == source.num_examples


@pytest.mark.parametrize("data_format", ["raw", "tfrecord"])
def test_training_ranks_read_disjoint_shares_and_each_whole(
    pool: ServicePool, synth_root: Path, records_png: Path, data_format: str
) -> None:
    """tfrecord train has 3 shards for 2 ranks x 2 workers: the workers split records."""
    if data_format == "raw":
        source = raw_source(synth_root, "val")
    else:
        source = tfrecord_source(records_png, "train")
    options = _options(training=True, batch_size=4, shuffle_buffer=8)
    seen = []
    for rank in range(RANKS):
        share = set(
            _digests(build_dataset(source, _options(), worker_index=rank, num_workers=RANKS))
        )
        if data_format == "tfrecord":  # whole shards per rank in training
            share = set(
                _digests(
                    build_dataset(
                        source,
                        _options(training=True, batch_size=1, shuffle_buffer=1, cycle_length=1),
                        worker_index=rank,
                        num_workers=RANKS,
                    ),
                    limit=sum(source.record_counts[rank::RANKS]),
                )
            )
        served = _through(pool, source, options, rank, f"train-{data_format}")
        # Every example of the share arrives and nothing from outside it ever does. A
        # rank learns of a second worker's task on its next refresh (about a second), so
        # a fast reader may see one worker's part alone at first: read for long enough.
        got: set[str] = set()
        deadline = time.monotonic() + 60
        for images, _ in served:
            got.update(_digest(image) for image in images.numpy())
            assert got <= share
            if got == share or time.monotonic() > deadline:
                break
        assert got == share
        seen.append(got)
    assert not seen[0] & seen[1]


def test_a_fresh_job_name_is_needed_per_run(pool: ServicePool, synth_root: Path) -> None:
    source = raw_source(synth_root, "val")
    first = _digests(_through(pool, source, _options(), 0, "reused"))
    again = _digests(_through(pool, source, _options(), 0, "reused"))
    assert first and not again  # the job's epoch is consumed: job_name must be new per run
    assert job_name("run-a", rank=0) != job_name("run-b", rank=0) != job_name("run-a", rank=1)


def test_bad_data_on_a_worker_is_still_named(
    pool: ServicePool, synth_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "tree"
    shutil.copytree(synth_root, root)
    source = raw_source(root, "val")
    bad = Path(source.files[3])
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"bad data.*{bad.name}"):
        _digests(_through(pool, source, _options(), 0, "bad-eval"))
        _digests(_through(pool, source, _options(), 1, "bad-eval"))


def test_worker_cpu_is_measured_over_a_window(pool: ServicePool, synth_root: Path) -> None:
    source = raw_source(synth_root, "train")
    start = time.time()
    count = len(_digests(_through(pool, source, _options(), 0, "cpu")))
    end = time.time()
    section = pool.describe((start, end))
    manifest = json.loads((pool.config.log_dir / MANIFEST).read_text())
    assert manifest["target"] == pool.target and len(manifest["workers"]) == WORKERS
    assert count > 0
    assert section["workers"] == WORKERS and section["where"] == "local"
    for worker in section["per_worker"]:
        assert worker["cores"] == len(os.sched_getaffinity(0))
        assert worker["cpu_s"] is not None and worker["cpu_s"] > 0
        assert 0 < worker["cores_used"] <= worker["cores"] + 0.5
    assert section["worker_cpu_s"] == pytest.approx(
        sum(item["cpu_s"] for item in section["per_worker"])
    )
    # A window before the pool existed is not covered: missing, never zero.
    assert pool.describe((start - 3600, start - 3500))["per_worker"][0]["cpu_s"] is None


def test_cpu_seconds_interpolate_between_samples() -> None:
    samples = [(10.0, 1.0), (11.0, 1.5), (13.0, 3.5)]
    assert cpu_seconds(samples, (10.0, 13.0)) == pytest.approx(2.5)
    assert cpu_seconds(samples, (10.5, 12.0)) == pytest.approx(2.5 - 1.25)  # 1.25 -> 2.5
    assert cpu_seconds(samples, (9.0, 12.0)) is None
    assert cpu_seconds(samples, (11.0, 14.0)) is None
    assert cpu_seconds(samples[:1], (10.0, 10.0)) is None


def test_servers_stop_after_failure_and_interrupt(tmp_path: Path) -> None:
    """After success too: the module's `pool` fixture asserts that when its block ends."""
    config = ServiceConfig(workers=1, log_dir=tmp_path, stop_grace_s=5)
    for error in (RuntimeError("the job failed"), KeyboardInterrupt()):
        failing = dataclasses.replace(config, log_dir=tmp_path / type(error).__name__)
        with pytest.raises(type(error)), ServicePool(failing) as pool:
            pids = pool.pids()
            assert len(_alive(pids)) == 2  # the dispatcher and one worker
            raise error
        assert not _alive(pids), type(error).__name__


def test_servers_end_when_their_owner_is_killed(tmp_path: Path, subprocess_env: dict) -> None:
    """A timed-out job is killed (SIGKILL at worst): its pool must not outlive it."""
    script = (
        "import json, sys, time\n"
        "from pathlib import Path\n"
        "from bench.service.config import ServiceConfig\n"
        "from bench.service.pool import ServicePool\n"
        f"pool = ServicePool(ServiceConfig(workers=1, log_dir=Path({str(tmp_path)!r})))\n"
        "pool.start()\n"
        "print(json.dumps(pool.pids()), flush=True)\n"
        "time.sleep(600)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, env=subprocess_env, text=True
    )
    try:
        assert owner.stdout is not None
        pids = json.loads(owner.stdout.readline())
        assert len(_alive(pids)) == 2
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
        assert not _wait_gone(pids)
    finally:
        owner.kill()


def test_a_worker_that_dies_fails_with_its_log(tmp_path: Path) -> None:
    reported: list[str] = []
    with ServicePool(ServiceConfig(workers=1, log_dir=tmp_path)) as pool:
        pool.check()  # all up
        pool.watch(reported.append, period_s=0.1)
        worker = pool.workers[0]
        assert worker.process is not None
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait(timeout=10)
        with pytest.raises(ServiceWorkerDied) as died:
            pool.check()
        deadline = time.monotonic() + 10
        while not reported and time.monotonic() < deadline:
            time.sleep(0.1)
    message = str(died.value)
    assert reported == [message]  # the watcher told once
    assert "worker 0" in message and "killed by SIGKILL" in message
    assert str(worker.log_path) in message and '"event": "ready"' in message


def test_a_server_that_cannot_start_fails_with_its_log_and_leaves_nothing(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("", 0))
    taken.listen()
    port = taken.getsockname()[1]
    config = ServiceConfig(workers=1, log_dir=tmp_path, hosts=(), base_port=port)
    pool = ServicePool(config)
    try:
        with pytest.raises(ServiceError, match="dispatcher.*log"):
            pool.start()
    finally:
        taken.close()
    assert not _alive(pool.pids())


def test_workers_on_listed_hosts_start_through_the_remote_command(tmp_path: Path) -> None:
    config = ServiceConfig(
        workers=3,
        log_dir=tmp_path,
        hosts=("cpu-a", "cpu-b"),
        base_port=6000,
        dispatcher_host="train-0",
    )
    pool = ServicePool(config)  # not started: only its argv lists are looked at
    pool.workers = [
        Server(role="worker", index=i, host=h, port=6001 + i, argv=[], log_path=tmp_path / "w")
        for i, h in enumerate(["cpu-a", "cpu-b", "cpu-a"])
    ]
    pool.dispatcher = Server(
        role="dispatcher", index=0, host="train-0", port=6000, argv=[], log_path=tmp_path / "d"
    )
    dispatcher = pool.server_argv(pool.dispatcher)
    assert dispatcher[:4] == [sys.executable, "-m", "bench.service.server", "dispatcher"]
    assert dispatcher.count("--worker-address") == 3 and "cpu-b:6002" in dispatcher
    remote = pool.server_argv(pool.workers[1])
    assert remote[:4] == ["ssh", "-o", "BatchMode=yes", "cpu-b"]
    assert "--dispatcher-address" in remote and "train-0:6000" in remote
    assert all(isinstance(item, str) for item in remote)
