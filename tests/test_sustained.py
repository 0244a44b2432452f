"""The reader alone on every core (bench.measure.sustained): its figures add up, its
processes end, and a reader that fails or reads bad data says so instead of a rate."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from bench.input.pipelines import tfrecord_source
from bench.measure.sustained import reader_alone

BATCH = 4


def _children() -> set[int]:
    """This process's live child processes (other tests' decode workers among them)."""
    return {child.pid for child in psutil.Process().children(recursive=True)}


def test_the_reader_alone_reads_in_every_process_at_once_and_its_figures_add_up(
    val_records: Callable[..., Path],
) -> None:
    source = tfrecord_source(val_records("jpeg", resize=48), "val")
    before = _children()
    figures = reader_alone(source, image_size=32, batch_size=BATCH, seconds=0.3, processes=2)
    reports = figures["processes"]
    assert len(reports) == 2
    for report in reports:
        assert report["images"] > 0 and report["images"] % BATCH == 0
        assert report["wall_s"] >= 0.3 and report["cpu_s"] > 0
        assert report["bad_examples"] == 0
    assert figures["images_per_sec"] == pytest.approx(
        sum(report["images"] / report["wall_s"] for report in reports)
    )
    images = sum(report["images"] for report in reports)
    assert figures["cpu_s_per_image"] == pytest.approx(
        sum(report["cpu_s"] for report in reports) / images
    )
    assert _children() <= before  # every reader has ended


@pytest.fixture
def own_records(tmp_path: Path, val_records: Callable[..., Path]) -> Path:
    """A copy of the 48 px JPEG records that a test may break."""
    records = tmp_path / "records"
    shutil.copytree(val_records("jpeg", resize=48), records)
    return records


def test_a_reader_that_cannot_start_names_itself_and_the_cause(own_records: Path) -> None:
    source = tfrecord_source(own_records, "val")
    missing = Path(source.files[0])
    missing.unlink()  # after the source was built: the reader finds it gone
    before = _children()
    with pytest.raises(RuntimeError, match="reader process 0 exited with 1") as raised:
        reader_alone(source, image_size=32, batch_size=BATCH, seconds=0.2, processes=1)
    assert missing.name in str(raised.value) and "FileNotFoundError" in str(raised.value)
    assert _children() <= before


def _break_records(shard: str, *, keep: int = 0) -> None:
    """Flip a byte of the payload of every record of `shard` after its first `keep`: their
    data CRCs fail."""
    data = bytearray(Path(shard).read_bytes())
    position = index = 0
    while position + 16 <= len(data):
        length = int.from_bytes(data[position : position + 8], "little")
        if index >= keep:
            data[position + 12 + length // 2] ^= 0xFF
        position += 16 + length
        index += 1
    Path(shard).write_bytes(bytes(data))


def test_bad_records_fail_the_figure_rather_than_timing_zeros(own_records: Path) -> None:
    source = tfrecord_source(own_records, "val")
    for shard in source.files:
        _break_records(shard)
    with pytest.raises(RuntimeError, match="could not be read or decoded") as raised:
        reader_alone(source, image_size=32, batch_size=BATCH, seconds=0.2, processes=1)
    assert str(own_records) in str(raised.value)


def test_a_sample_reads_only_the_first_examples_in_stored_order(own_records: Path) -> None:
    source = tfrecord_source(own_records, "val")
    for index, shard in enumerate(source.files):  # all bad but the first shard's first 3
        _break_records(shard, keep=3 if index == 0 else 0)
    settings = {"image_size": 32, "batch_size": BATCH, "seconds": 0.2, "processes": 2}
    figures = reader_alone(source, sample=3, **settings)  # the 3 good ones, repeated
    assert all(report["images"] > 0 for report in figures["processes"])
    with pytest.raises(RuntimeError, match="could not be read or decoded"):
        reader_alone(source, sample=4, **settings)
    with pytest.raises(ValueError, match="sample must be at least 1"):
        reader_alone(source, sample=0, **settings)


def test_a_reader_process_never_imports_tensorflow() -> None:
    """It starts in a fraction of a second and holds no TensorFlow threads beside it."""
    import subprocess
    import sys

    code = "import sys, bench.measure.sustained; print('tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
