"""The host decoder's worker processes: the same batches as in-thread decoding, bad
examples still marked, a dead worker named, no TensorFlow in the workers, pools bounded."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bench.input import decode_pool
from bench.input.batch_arrays import TENSOR_ALIGNMENT, RecycledArrays
from bench.input.host_batch import BatchReader, BatchSource, _example_class
from bench.input.host_decode import batch_source
from bench.input.pipelines import (
    PipelineOptions,
    Source,
    build_dataset,
    decoder_name,
    tfrecord_source,
)
from bench.input.problems import PROBLEM_NONE, PROBLEM_UNREADABLE
from converters.records import read_records

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def encodings(val_records: Callable[..., Path]) -> dict[str, Path]:
    return {encoding: val_records(encoding) for encoding in ("jpeg", "raw", "png")}


def _spec(source: Source, size: int = 40) -> BatchSource:
    return batch_source(source, size)


def _batch(source: Source) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every record, then the guard's end sentinel and a record past a shard's end."""
    ids = np.repeat(np.arange(len(source.files)), source.record_counts)
    records = np.concatenate([np.arange(count) for count in source.record_counts])
    ids = np.concatenate([ids, [-1, 0]]).astype(np.int64)
    records = np.concatenate([records, [-1, source.record_counts[0] + 5]]).astype(np.int64)
    flips = (np.arange(len(ids)) % 3 == 0).astype(bool)
    return ids, records, flips


@pytest.mark.parametrize("encoding", ["jpeg", "raw", "png"])
def test_decode_processes_give_the_threads_pixels_labels_and_problems(
    encodings: dict[str, Path], encoding: str
) -> None:
    source = tfrecord_source(encodings[encoding], "val")
    spec = _spec(source)
    ids, records, flips = _batch(source)
    expected = BatchReader(spec)(ids, records, flips)
    pool = decode_pool.DecodePool(spec, processes=2, batch_size=len(ids))
    try:
        for _ in range(3):  # several calls: slots are reused
            got = pool(ids, records, flips)
            for name, want, have in zip(
                ("images", "labels", "problems"), expected, got, strict=True
            ):
                np.testing.assert_array_equal(have, want, err_msg=name)
    finally:
        pool.close()
    problems = expected[2]
    assert (problems[:-1] == PROBLEM_NONE).all() and problems[-1] == PROBLEM_UNREADABLE
    assert expected[0][:-2].any(axis=(1, 2, 3)).all()  # every real image has pixels
    assert not expected[0][-2:].any()  # sentinel and unreadable: zeros


def test_pipelines_in_processes_and_in_threads_agree(encodings: dict[str, Path]) -> None:
    source = tfrecord_source(encodings["raw"], "val")
    outputs = []
    for processes in (0, 2):
        options = PipelineOptions(
            kind="tuned", image_size=32, batch_size=8, training=False, decode_processes=processes
        )
        images = np.concatenate([batch.numpy() for batch, _ in build_dataset(source, options)])
        outputs.append(images)
        where = "in 2 decode processes" if processes else "in the pipeline's threads"
        assert where in decoder_name(source, options)
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert len(outputs[0]) == source.num_examples


def test_a_truncated_shard_is_named_in_threads_and_in_processes(
    records_png: Path, tmp_path: Path
) -> None:
    directory = tmp_path / "records"
    subprocess.run(["cp", "-r", str(records_png), str(directory)], check=True)
    source = tfrecord_source(directory, "val")
    shard = Path(source.files[0])
    framed = sum(len(record) + 16 for record in read_records(shard)[:1])
    shard.write_bytes(shard.read_bytes()[: framed + 30])
    for processes in (0, 1):
        options = PipelineOptions(
            kind="tuned", image_size=32, batch_size=4, training=False, decode_processes=processes
        )
        with pytest.raises(
            tf.errors.InvalidArgumentError, match=rf"{shard.name} \(record 1\): unreadable"
        ):
            list(build_dataset(source, options))


def test_a_dead_worker_fails_the_call_naming_it(encodings: dict[str, Path]) -> None:
    source = tfrecord_source(encodings["jpeg"], "val")
    ids, records, flips = _batch(source)
    pool = decode_pool.DecodePool(_spec(source), processes=1, batch_size=len(ids))
    try:
        pool(ids, records, flips)
        (pid,) = pool.pids
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(
            decode_pool.WorkerFailed, match=rf"decode worker 0 \(pid {pid}\) exited with code -9"
        ):
            pool(ids, records, flips)
    finally:
        pool.close()


def test_the_worker_imports_no_tensorflow() -> None:
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, bench.input.decode_worker; print('tensorflow' in sys.modules)",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == "False"


def test_the_example_class_parses_what_tensorflow_parses(records_png: Path) -> None:
    source = tfrecord_source(records_png, "val")
    record = read_records(Path(source.files[0]))[0]
    ours = _example_class().FromString(record).features.feature
    theirs = tf.train.Example.FromString(record).features.feature
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        kind = theirs[key].WhichOneof("kind")
        assert ours[key].WhichOneof("kind") == kind, key
        assert list(getattr(ours[key], kind).value) == list(getattr(theirs[key], kind).value)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has exited
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def test_pools_are_shared_and_idle_ones_ended_then_restarted(encodings: dict[str, Path]) -> None:
    specs = [_spec(tfrecord_source(encodings[name], "val")) for name in ("raw", "png", "jpeg")]
    one = np.array([0])
    pool = decode_pool.acquire(specs[0], processes=1, batch_size=4)
    assert decode_pool.acquire(specs[0], processes=1, batch_size=4) is pool
    pool(one, one * 0, one.astype(bool))
    (pid,) = pool.pids
    for spec in specs[1:]:  # newer pools start: the oldest idle one beyond the limit ends
        decode_pool.acquire(spec, processes=1, batch_size=4)(one, one * 0, one.astype(bool))
    assert decode_pool.MAX_LIVE_POOLS == 2
    assert _wait_gone(pid) and not pool.pids
    images, _, problems = pool(one, one * 0, one.astype(bool))  # restarted on use
    assert pool.pids and pool.pids[0] != pid and images.any() and problems[0] == PROBLEM_NONE


def test_discarded_pipelines_leave_no_workers_behind(encodings: dict[str, Path]) -> None:
    started = []
    for size in (24, 28, 32, 36):  # a different pool each (the image size is part of it)
        options = PipelineOptions(
            kind="tuned", image_size=size, batch_size=8, training=False, decode_processes=1
        )
        dataset = build_dataset(tfrecord_source(encodings["raw"], "val"), options)
        assert sum(len(images) for images, _ in dataset) > 0
        started += decode_pool.live_workers()
        del dataset
        gc.collect()
    live = [pid for pid in decode_pool.live_workers() if _alive(pid)]
    assert len(live) <= decode_pool.MAX_LIVE_POOLS * 2, live  # at most 2 per pool here
    ended = [pid for pid in set(started) if pid not in live]
    assert ended and all(_wait_gone(pid) for pid in ended)


EXIT_SCRIPT = """
import sys, time
from bench.input.pipelines import PipelineOptions, build_dataset, tfrecord_source

source = tfrecord_source(sys.argv[1], "val")
# Iterators kept alive to the end, as a script's globals are: one pipeline decoding in
# processes, one in its own threads, each with host decoder calls in flight.
alive = []
for processes in (1, 0):
    options = PipelineOptions(
        kind="tuned", image_size=224, batch_size=64, decode_processes=processes
    )
    alive.append(iter(build_dataset(source, options)))
# Pulled until the end: the pipelines are refilling their buffers as the process exits.
end = time.monotonic() + 2.0
while time.monotonic() < end:
    for iterator in alive:
        next(iterator)
print("exiting", flush=True)
"""


def test_a_process_exits_with_host_decoder_iterators_still_alive(
    encodings: dict[str, Path], tmp_path: Path
) -> None:
    """It hung at exit: the iterator's destructor held the GIL while it waited for the
    calls in flight, which needed the GIL to return."""
    script = tmp_path / "exit_with_iterators.py"
    script.write_text(EXIT_SCRIPT)
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        finished = subprocess.run(
            [sys.executable, str(script), str(encodings["jpeg"])],
            capture_output=True,
            text=True,
            timeout=120,
            env=environment,
        )
    except subprocess.TimeoutExpired as timeout:
        pytest.fail(f"the process did not exit: {timeout.stdout!r}")
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.strip() == "exiting"
    assert "Traceback" not in finished.stderr


def test_recycled_batch_arrays_are_reused_only_once_every_view_is_gone() -> None:
    arrays = RecycledArrays((8, 8, 1), np.uint8)
    first = arrays.take(3)
    assert first.shape == (3, 8, 8, 1) and first.ctypes.data % TENSOR_ALIGNMENT == 0
    first_at = first.ctypes.data
    first[...] = 7
    part = first[1:]  # as a tensor made from the array would hold it
    del first
    gc.collect()
    second = arrays.take(3)
    assert second.ctypes.data != first_at  # still in use through `part`
    second[...] = 9
    assert (part == 7).all()
    del part, second
    gc.collect()
    assert arrays.spare() == 2
    third = arrays.take(2)
    assert third.shape == (2, 8, 8, 1) and arrays.spare() == 1
    # A larger batch than the spare ones gets an array of its own.
    assert arrays.take(5).shape == (5, 8, 8, 1)


def test_batches_kept_past_the_leasable_slots_keep_their_pixels(
    encodings: dict[str, Path],
) -> None:
    """Images are lent straight from a worker's shared memory while a batch is alive; a
    consumer that keeps more batches than there are such slots gets copies after that,
    and no slot is reused under a batch still held."""
    source = tfrecord_source(encodings["raw"], "val")
    spec = _spec(source)
    expected = BatchReader(spec)(*_batch(source))
    pool = decode_pool.DecodePool(spec, processes=1, batch_size=len(expected[0]))
    try:
        kept = [pool(*_batch(source)) for _ in range(3 * decode_pool.LEASED_SLOTS_PER_PROCESS)]
        for images, labels, problems in kept:
            np.testing.assert_array_equal(images, expected[0])
            np.testing.assert_array_equal(labels, expected[1])
            np.testing.assert_array_equal(problems, expected[2])
        assert len({images.ctypes.data for images, _, _ in kept}) == len(kept)
        assert pool.leased == decode_pool.LEASED_SLOTS_PER_PROCESS
        del kept, images, labels, problems
        gc.collect()
        assert pool.leased == 0
        # Handed back: every slot serves again.
        for _ in range(decode_pool.SLOTS_PER_PROCESS + decode_pool.LEASED_SLOTS_PER_PROCESS + 2):
            np.testing.assert_array_equal(pool(*_batch(source))[0], expected[0])
    finally:
        pool.close()


@pytest.mark.parametrize("drop_remainder", [True, False])
def test_host_batches_number_every_example_once_per_epoch_across_epochs(
    encodings: dict[str, Path], drop_remainder: bool
) -> None:
    from bench.input.host_decode import host_batches
    from bench.input.sources import ReadPlan

    source = tfrecord_source(encodings["jpeg"], "val")
    count = source.num_examples
    plan = ReadPlan(
        training=True, parallel=True, worker_index=0, num_workers=1, repeat=True, shuffle_seed=5
    )
    batch_size = 4  # 19 examples: epochs end inside batches
    batches = host_batches(source, plan, batch_size, finite=False, drop_remainder=drop_remainder)
    seq, ids, records = [], [], []
    for numbers, elements in batches.take(3 * count // batch_size + 1):
        assert len(numbers) == batch_size  # rebatch joins epochs: every batch is full
        seq += numbers.numpy().tolist()
        ids += elements["source_id"].numpy().tolist()
        records += elements["record"].numpy().tolist()
    assert seq == list(range(len(seq)))  # one numbering, across epoch boundaries
    every = sorted(
        (shard, record) for shard, size in enumerate(source.record_counts) for record in range(size)
    )
    epochs = [list(zip(ids, records, strict=True))[e * count : (e + 1) * count] for e in range(3)]
    assert all(sorted(epoch) == every for epoch in epochs)  # each example once per epoch
    assert epochs[0] != epochs[1]  # shuffled afresh each epoch


def test_finite_host_batches_end_with_the_sentinel(encodings: dict[str, Path]) -> None:
    from bench.input.host_decode import host_batches
    from bench.input.sources import ReadPlan

    source = tfrecord_source(encodings["jpeg"], "val")
    plan = ReadPlan(
        training=False, parallel=True, worker_index=0, num_workers=1, repeat=False, shuffle_seed=0
    )
    batches = list(host_batches(source, plan, 8, finite=True, drop_remainder=False))
    seq = np.concatenate([numbers.numpy() for numbers, _ in batches])
    ids = np.concatenate([elements["source_id"].numpy() for _, elements in batches])
    assert seq.tolist() == list(range(source.num_examples + 1))
    assert ids[-1] == -1 and (ids[:-1] >= 0).all()  # in stored order, then the end sentinel


@pytest.mark.parametrize("training", [True, False])
def test_chunked_calls_give_the_batches_of_batch_sized_calls(
    encodings: dict[str, Path], training: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls of several batches (19 examples, batches of 4, calls of 12) are cut back into
    the same batches, flips and all; evaluation keeps its last partial batch."""
    source = tfrecord_source(encodings["jpeg"], "val")
    calls: list[int] = []
    call = decode_pool.DecodePool.__call__

    def counted(self, source_ids, records, flips):
        calls.append(len(source_ids))
        return call(self, source_ids, records, flips)

    monkeypatch.setattr(decode_pool.DecodePool, "__call__", counted)
    outputs = {}
    for chunk in (4, 12):
        options = PipelineOptions(
            kind="tuned",
            image_size=32,
            batch_size=4,
            training=training,
            decode_processes=1,
            decode_chunk=chunk,
        )
        dataset = build_dataset(source, options)
        batches = list(dataset.take(12) if training else dataset)
        outputs[chunk] = [(images.numpy(), labels.numpy()) for images, labels in batches]
        assert all(len(images) == 4 for images, _ in outputs[chunk][:-1])
        assert calls and max(calls) == chunk
        calls.clear()
    assert len(outputs[4]) == len(outputs[12]) == (12 if training else 5)  # 19 = 4 * 4 + 3
    for (images, labels), (want_images, want_labels) in zip(outputs[12], outputs[4], strict=True):
        np.testing.assert_array_equal(images, want_images)
        np.testing.assert_array_equal(labels, want_labels)
    if not training:
        assert len(outputs[12][-1][0]) == 3


def test_decode_processes_take_whole_batches_of_at_least_the_chunk() -> None:
    from bench.input.host_sizing import HOST_CHUNK_BATCHES, HOST_CHUNK_IMAGES, host_chunk

    source = Source(
        format="tfrecord",
        split="train",
        num_examples=1,
        files=("a",),
        description={},
        record_counts=(1,),
        encoding="jpeg",
        stored_size=256,
    )

    def chunk(**options: int) -> int:
        return host_chunk(source, PipelineOptions(kind="tuned", **options))

    assert chunk(batch_size=64, decode_processes=2) == HOST_CHUNK_IMAGES == 512
    assert chunk(batch_size=100, decode_processes=2) == 600  # whole batches
    assert chunk(batch_size=512, decode_processes=2) == 512
    assert chunk(batch_size=1024, decode_processes=2) == 1024
    assert chunk(batch_size=8, decode_processes=2) == 8 * 8 == HOST_CHUNK_BATCHES * 8  # bursts
    assert chunk(batch_size=64, decode_processes=2, decode_chunk=64) == 64
    assert chunk(batch_size=64, decode_processes=0) == 64  # in threads: a batch per call
