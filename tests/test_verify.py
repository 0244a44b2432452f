"""The verifier: passes a good conversion, names the first bad shard and record otherwise."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import pytest

from converters import features
from converters.conversion import convert
from converters.manifest import ManifestError, load_manifest
from converters.options import ConversionOptions
from converters.records import TFRecordFileWriter, read_records, serialize_example
from converters.verify import main, verify


@pytest.fixture
def damaged(records_png: Path, tmp_path: Path) -> Path:
    """A private copy of the lossless conversion that a test may damage."""
    copy = tmp_path / "records"
    shutil.copytree(records_png, copy)
    return copy


def _record_containing(path: Path, position: int) -> int:
    """Index of the record whose framing holds byte `position` of an uncompressed shard."""
    data = path.read_bytes()
    offset = index = 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        end = offset + 16 + length
        if offset <= position < end:
            return index
        offset, index = end, index + 1
    raise AssertionError(f"byte {position} is past the end of {path}")


def _rewrite_manifest_entry(directory: Path, shard_file: str, **changes: object) -> None:
    path = directory / features.MANIFEST_NAME
    document = json.loads(path.read_text())
    for split in document["splits"].values():
        for shard in split["shards"]:
            if shard["file"] == shard_file:
                shard.update(changes)
        split["records"] = sum(shard["records"] for shard in split["shards"])
    path.write_text(json.dumps(document))


def test_good_conversions_pass(
    records_png: Path, synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = verify(records_png)
    manifest = load_manifest(records_png)
    total = sum(manifest.record_count(split) for split in manifest.splits)
    assert full.ok, full.lines()
    assert (full.records_read, full.images_decoded, full.shards_checked) == (total, total, 9)
    assert main([str(records_png), "--sample", "5"]) == 0
    assert capsys.readouterr().out.startswith(
        f"OK: {records_png}: 9 shard(s), {total} record(s) read, 5 image(s) decoded"
    )
    gzip_jpeg = convert(
        ConversionOptions(
            source=synth_root,
            out=tmp_path / "gz",
            splits=("test",),
            encoding="jpeg",
            resize=32,
            compression="gzip",
            limit=8,
            workers=1,
        )
    )
    report = verify(gzip_jpeg.directory)
    assert report.ok, report.lines()
    assert report.images_decoded == 8


def test_truncated_shard_is_caught(damaged: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shard = damaged / features.shard_name("test", 2, 3)
    data = shard.read_bytes()
    cut = len(data) - 100
    shard.write_bytes(data[:cut])
    expected_record = _record_containing(damaged / features.shard_name("test", 2, 3), cut - 1)
    (damaged / features.shard_name("test", 0, 1)).write_bytes(b"")  # a stray shard
    assert main([str(damaged), "--quiet"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"FAILED: {shard.name}: record {expected_record}: ")
    assert "truncated" in lines[0]
    assert f"  - {features.shard_name('test', 0, 1)}: shard file not in the manifest" in lines


def test_flipped_byte_is_caught_by_the_record_crc(
    damaged: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shard = damaged / features.shard_name("train", 1, 3)
    data = bytearray(shard.read_bytes())
    position = len(data) // 2
    data[position] ^= 0x10
    shard.write_bytes(bytes(data))
    expected_record = _record_containing(shard, position)
    assert main([str(damaged), "--quiet"]) == 1
    first = capsys.readouterr().err.splitlines()[0]
    assert f"FAILED: {shard.name}: record {expected_record}: " in first
    assert "sha256 differs" in first
    # With the manifest made to agree with the damaged file, only the CRC can catch it.
    _rewrite_manifest_entry(damaged, shard.name, sha256=hashlib.sha256(data).hexdigest())
    report = verify(damaged)
    assert [(p.shard, p.record) for p in report.problems] == [(shard.name, expected_record)]
    assert "DataLossError" in report.problems[0].message


def test_bad_records_are_named(damaged: Path) -> None:
    shard = damaged / features.shard_name("val", 0, 3)
    good = read_records(shard)[0]
    no_label = {
        features.IMAGE_ENCODED: b"x",
        features.IMAGE_FORMAT: b"png",
        features.IMAGE_HEIGHT: 4,
        features.IMAGE_WIDTH: 4,
        features.IMAGE_CHANNELS: 1,
        features.IMAGE_FILENAME: b"nolabel.png",
        features.PATIENT_ID: 1,
    }
    bad_png = {**no_label, features.IMAGE_FILENAME: b"badpng.png", features.LABEL: (0,) * 14}
    bad_label = {**bad_png, features.IMAGE_FILENAME: b"label.png", features.LABEL: (2,) * 14}
    with TFRecordFileWriter(shard) as writer:
        for record in (
            good,
            serialize_example(no_label),
            serialize_example(bad_png),
            serialize_example(bad_label),
            good,
        ):
            writer.write(record)
    _rewrite_manifest_entry(damaged, shard.name, sha256=writer.sha256, bytes=writer.size, records=5)
    report = verify(damaged)
    found = {(p.record, p.message.split(":")[0].split(" (")[0]) for p in report.problems}
    assert found == {
        (1, "does not parse"),
        (2, "image does not decode"),
        (3, "label is not a 14-entry multi-hot vector"),
        (4, f"image {read_filename(good)!r} also stored in {shard.name}"),
    }
    assert all(p.shard == shard.name for p in report.problems)


def read_filename(serialized: bytes) -> str:
    import tensorflow as tf

    return (
        tf.train.Example.FromString(serialized)
        .features.feature[features.IMAGE_FILENAME]
        .bytes_list.value[0]
        .decode()
    )


def test_not_a_conversion_or_a_newer_one_is_exit_2(
    damaged: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "empty")]) == 2
    assert "not a TFRecord conversion" in capsys.readouterr().err
    path = damaged / features.MANIFEST_NAME
    original = json.loads(path.read_text())
    path.write_text(json.dumps({**original, "format_version": features.FORMAT_VERSION + 1}))
    assert main([str(damaged)]) == 2
    assert "newer than this chexbench reads" in capsys.readouterr().err
    broken = json.loads(json.dumps(original))
    broken["splits"]["val"]["shards"][1]["sha256"] = "abc"
    path.write_text(json.dumps(broken))
    with pytest.raises(ManifestError, match=r"splits\.val\.shards\[1\]\.sha256"):
        load_manifest(damaged)
    no_stats = {key: value for key, value in original.items() if key != "stats"}
    path.write_text(json.dumps(no_stats))
    with pytest.raises(ManifestError, match="missing key 'stats'"):
        load_manifest(damaged)
    path.write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(damaged)
