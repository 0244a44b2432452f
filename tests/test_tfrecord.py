"""The TFRecord converter, end to end on real files, read back with TensorFlow's own parser."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from converters import features
from converters.chestxray import read_chestxray14
from converters.conversion import convert
from converters.imageio import load_image, to_grayscale
from converters.manifest import load_manifest
from converters.options import ConversionOptions
from converters.output_folder import OutputExistsError
from converters.records import TFRecordFileWriter, count_records, serialize_example
from converters.shard_plan import shard_count_for
from converters.shards import ShardItem
from converters.synth import generate
from converters.tfrecord import main


def read_examples(manifest: Any, split: str) -> list[dict[str, Any]]:
    """Every record of a split, parsed by plain tf.data + tf.io.parse_single_example."""
    import tensorflow as tf

    spec = features.tf_feature_spec(manifest.feature_spec)
    files = [str(path) for path in manifest.shard_paths(split)]
    dataset = tf.data.TFRecordDataset(files, compression_type=manifest.tf_compression)
    parsed = dataset.map(lambda record: tf.io.parse_single_example(record, spec))
    return [{key: value.numpy() for key, value in example.items()} for example in parsed]


def decode_pixels(example: dict[str, Any]) -> np.ndarray:
    """The stored image as uint8 [H, W], decoded by TensorFlow."""
    import tensorflow as tf

    data = example[features.IMAGE_ENCODED]
    height, width = int(example[features.IMAGE_HEIGHT]), int(example[features.IMAGE_WIDTH])
    fmt = example[features.IMAGE_FORMAT].decode()
    if fmt == "raw":
        return np.frombuffer(data, dtype=np.uint8).reshape(height, width)
    decoder = tf.io.decode_png if fmt == "png" else tf.io.decode_jpeg
    return decoder(data, channels=0).numpy()[..., 0]


def source_pixels(path: Path, resize: int | None = None) -> np.ndarray:
    with Image.open(path) as image:
        gray = to_grayscale(image)
        if resize is not None:
            gray = gray.resize((resize, resize), Image.Resampling.BILINEAR)
        return np.asarray(gray)


def by_filename(manifest: Any) -> dict[str, dict[str, Any]]:
    return {
        example[features.IMAGE_FILENAME].decode(): example
        for split in manifest.splits
        for example in read_examples(manifest, split)
    }


@pytest.fixture
def small_source(tmp_path: Path) -> Path:
    """A fresh 16-image, 32 px synthetic set that a test may damage."""
    return generate(tmp_path / "source", images=16, size=32, seed=3)


def test_png_round_trip_is_lossless_and_manifest_complete(
    records_png: Path, synth_root: Path
) -> None:
    manifest = load_manifest(records_png)
    dataset = read_chestxray14(synth_root)
    assert manifest.splits == ("train", "val", "test")
    assert (manifest.encoding, manifest.compression, manifest.image_size) == ("png", "none", None)
    assert manifest.feature_spec == features.FEATURE_SPEC
    assert list(manifest.labels) == list(manifest.data["labels"])
    csv_digest = hashlib.sha256(dataset.csv_path.read_bytes()).hexdigest()
    assert manifest.source["csv_sha256"] == csv_digest
    total_bytes = 0
    for split in manifest.splits:
        expected = dataset.split(split)
        shards = manifest.shards[split]
        assert [s.file for s in shards] == [features.shard_name(split, k, 3) for k in range(3)]
        assert manifest.record_count(split) == len(expected)
        for shard, path in zip(shards, manifest.shard_paths(split), strict=True):
            assert path.stat().st_size == shard.bytes
            assert hashlib.sha256(path.read_bytes()).hexdigest() == shard.sha256
            total_bytes += shard.bytes
        examples = read_examples(manifest, split)
        # CSV order, contiguous slices: reading the shards in order gives the split's order.
        assert [e[features.IMAGE_FILENAME].decode() for e in examples] == [
            r.filename for r in expected
        ]
        for example, record in zip(examples, expected, strict=True):
            assert tuple(example[features.LABEL].tolist()) == record.labels
            assert int(example[features.PATIENT_ID]) == record.patient_id
            assert int(example[features.IMAGE_CHANNELS]) == 1
            # Lossless copy path: the stored bytes are the source file's bytes.
            assert example[features.IMAGE_ENCODED] == record.path.read_bytes()
            np.testing.assert_array_equal(decode_pixels(example), source_pixels(record.path))
    stats = manifest.stats
    assert stats["images"] == sum(len(dataset.split(s)) for s in manifest.splits)
    assert stats["copied_unchanged"] == stats["images"]
    assert stats["bytes_out"] == total_bytes
    assert stats["images_per_sec"] > 0 and stats["wall_seconds"] > 0
    assert manifest.skipped == ()


def test_output_does_not_depend_on_worker_count(
    records_png: Path, synth_root: Path, tmp_path: Path
) -> None:
    parallel = convert(
        ConversionOptions(source=synth_root, out=tmp_path / "out", shard_count=3, workers=2)
    )
    serial = load_manifest(records_png)
    assert parallel.stats["workers"] == 2
    for split in serial.splits:
        assert [s.sha256 for s in parallel.shards[split]] == [
            s.sha256 for s in serial.shards[split]
        ]


def test_resized_jpeg_and_gzip_raw_round_trip(synth_root: Path, tmp_path: Path) -> None:
    jpeg = convert(
        ConversionOptions(
            source=synth_root,
            out=tmp_path / "jpeg",
            splits=("val",),
            encoding="jpeg",
            quality=90,
            resize=32,
            workers=1,
        )
    )
    raw = convert(
        ConversionOptions(
            source=synth_root,
            out=tmp_path / "raw",
            splits=("test",),
            encoding="raw",
            resize=24,
            compression="gzip",
            limit=10,
            workers=1,
        )
    )
    assert jpeg.image_size == 32 and raw.image_size == 24 and raw.tf_compression == "GZIP"
    assert raw.record_count("test") == 10
    assert raw.shard_paths("test")[0].read_bytes()[:2] == b"\x1f\x8b"  # really gzip
    dataset = read_chestxray14(synth_root)
    paths = {record.filename: record.path for record in dataset.records}
    for manifest, size, exact in ((jpeg, 32, False), (raw, 24, True)):
        examples = by_filename(manifest)
        assert examples
        for name, example in examples.items():
            stored = decode_pixels(example)
            assert stored.shape == (size, size)
            expected = source_pixels(paths[name], resize=size)
            if exact:
                np.testing.assert_array_equal(stored, expected)
            else:
                assert np.abs(stored.astype(int) - expected).mean() < 3.0


def _write_variants(root: Path) -> dict[str, np.ndarray]:
    """Rewrite four images as RGB, RGBA, 16-bit and palette PNGs; return the pixels expected."""
    records = [r for r in read_chestxray14(root).records if r.path is not None][:4]
    rng = np.random.default_rng(0)
    expected: dict[str, np.ndarray] = {}
    gray = [np.asarray(Image.open(r.path)) for r in records]
    rgb = np.stack([gray[0], 255 - gray[0], gray[0] // 2], axis=-1)
    Image.fromarray(rgb).save(records[0].path)
    r, g, b = (rgb[..., k].astype(np.int64) for k in range(3))
    expected[records[0].filename] = ((r * 299 + g * 587 + b * 114) / 1000).round().astype(np.uint8)
    alpha = rng.integers(0, 256, gray[1].shape, dtype=np.uint8)
    rgba = np.stack([gray[1], gray[1] // 3, 255 - gray[1], alpha], axis=-1)
    Image.fromarray(rgba).save(records[1].path)
    expected[records[1].filename] = np.asarray(Image.fromarray(rgba[..., :3]).convert("L"))
    sixteen = gray[2].astype(np.uint16) * 256 + rng.integers(0, 256, gray[2].shape, np.uint16)
    Image.fromarray(sixteen).save(records[2].path)
    expected[records[2].filename] = gray[2]  # value >> 8 is the high byte
    palette = Image.fromarray(rgb).quantize(colors=16)
    palette.save(records[3].path)
    expected[records[3].filename] = np.asarray(palette.convert("RGB").convert("L"))
    return expected


def test_rgb_rgba_16bit_and_palette_sources_convert_deterministically(
    small_source: Path, tmp_path: Path
) -> None:
    expected = _write_variants(small_source)
    modes = {name: Image.open(next(small_source.rglob(name))).mode for name in expected}
    assert sorted(modes.values()) == ["I;16", "P", "RGB", "RGBA"]
    manifest = convert(ConversionOptions(source=small_source, out=tmp_path / "out", workers=1))
    examples = by_filename(manifest)
    assert manifest.stats["copied_unchanged"] == manifest.stats["images"] - len(expected)
    for name, pixels in expected.items():
        stored = decode_pixels(examples[name])
        # RGB within 1 of ITU-R 601 (PIL's fixed-point rounding); all others exact.
        tolerance = 1 if modes[name] == "RGB" else 0
        assert np.abs(stored.astype(int) - pixels).max() <= tolerance, (name, modes[name])
    # The RGBA rule is "drop alpha": alpha 0 pixels keep their colour's gray value.
    rgba_name = next(name for name, mode in modes.items() if mode == "RGBA")
    direct = load_image(next(small_source.rglob(rgba_name)), encoding="raw")
    assert np.frombuffer(direct.data, np.uint8).reshape(32, 32).tolist() == (
        expected[rgba_name].tolist()
    )


def test_bad_images_are_skipped_and_listed_strict_fails(
    small_source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [r for r in read_chestxray14(small_source).records if r.path is not None]
    truncated, missing, garbage = records[1], records[5], records[9]
    data = truncated.path.read_bytes()
    truncated.path.write_bytes(data[: len(data) // 2])
    missing.path.unlink()
    garbage.path.write_bytes(b"not a png at all")
    out = tmp_path / "out"
    assert main([str(small_source), str(out), "--quiet", "--workers", "1", "--splits", "all"]) == 0
    captured = capsys.readouterr()
    assert "WARNING: 3 image(s) skipped" in captured.err
    manifest = load_manifest(out)
    skipped = {entry["filename"]: entry for entry in manifest.skipped}
    assert set(skipped) == {truncated.filename, missing.filename, garbage.filename}
    assert "missing on disk" in skipped[missing.filename]["reason"]
    assert "unreadable image" in skipped[truncated.filename]["reason"]
    assert skipped[garbage.filename]["row"] == garbage.row
    stored = set(by_filename(manifest))
    assert stored == {r.filename for r in records} - set(skipped)

    strict_out = tmp_path / "strict"
    assert main([str(small_source), str(strict_out), "--quiet", "--workers", "1", "--strict"]) == 1
    assert missing.filename in capsys.readouterr().err
    assert not (strict_out / features.MANIFEST_NAME).exists()
    missing.path.write_bytes(records[0].path.read_bytes())  # only the unreadable ones left
    assert (
        main(
            [
                str(small_source),
                str(strict_out),
                "--quiet",
                "--workers",
                "1",
                "--strict",
                "--overwrite",
            ]
        )
        == 1
    )
    assert "--strict" in capsys.readouterr().err
    assert not (strict_out / features.MANIFEST_NAME).exists()


def test_existing_output_is_refused_and_bad_input_is_exit_2(
    small_source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    options = ConversionOptions(source=small_source, out=out, workers=1, shard_count=2)
    first = convert(options)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        convert(options)
    assert main([str(small_source), str(out), "--quiet", "--workers", "1"]) == 2
    assert str(out) in capsys.readouterr().err
    assert load_manifest(out).shards == first.shards  # nothing was touched
    again = convert(
        ConversionOptions(source=small_source, out=out, workers=1, overwrite=True, encoding="raw")
    )
    assert again.encoding == "raw"
    assert sorted(p.name for p in out.glob("*.tfrecord")) == sorted(
        s.file for split in again.splits for s in again.shards[split]
    )

    (tmp_path / "a-file").write_text("")
    assert main([str(small_source), str(tmp_path / "a-file"), "--quiet", "--workers", "1"]) == 2
    assert "is not a folder" in capsys.readouterr().err

    csv_path = read_chestxray14(small_source).csv_path
    lines = csv_path.read_text().splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[1], "Flu", 1)
    csv_path.write_text("\n".join(lines) + "\n")
    assert main([str(small_source), str(tmp_path / "o2"), "--quiet", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert csv_path.name in err and "row 4" in err and "Flu" in err
    csv_path.unlink()
    assert main([str(small_source), str(tmp_path / "o3"), "--quiet", "--workers", "1"]) == 2
    assert str(small_source) in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main([str(small_source), str(tmp_path / "o4"), "--encoding", "webp"])
    assert usage.value.code == 2


def test_shard_count_from_size_target() -> None:
    items = [ShardItem(f"{k}.png", f"/x/{k}.png", (0,) * 14, k, k + 2, 400_000) for k in range(100)]
    base = ConversionOptions(source=Path("."), out=Path("."))
    cases = [
        (base, 1),  # 40 MB of PNG in one 150 MB shard
        (ConversionOptions(source=Path("."), out=Path("."), target_shard_mb=10), 4),
        (ConversionOptions(source=Path("."), out=Path("."), target_shard_mb=0.001), 100),
        (
            ConversionOptions(
                source=Path("."), out=Path("."), encoding="raw", resize=1000, target_shard_mb=25
            ),
            4,
        ),
        (ConversionOptions(source=Path("."), out=Path("."), shard_count=7), 7),
    ]
    for options, expected in cases:
        assert shard_count_for(items, options) == expected, options
    assert shard_count_for([], base) == 0


def test_records_are_tensorflow_examples() -> None:
    import tensorflow as tf

    values = {
        features.IMAGE_ENCODED: b"\x00\x01",
        features.LABEL: (1, 0) * 7,
        features.PATIENT_ID: 30805,
        "negative": -5,
    }
    mine = serialize_example(values)

    def feature(value: Any) -> Any:
        if isinstance(value, bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        ints = [value] if isinstance(value, int) else list(value)
        return tf.train.Feature(int64_list=tf.train.Int64List(value=ints))

    reference = tf.train.Example(
        features=tf.train.Features(feature={name: feature(value) for name, value in values.items()})
    )
    assert mine == reference.SerializeToString(deterministic=True)


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_count_records_counts_whole_records_only(tmp_path: Path, compression: str) -> None:
    path = tmp_path / "shard.tfrecord"
    with TFRecordFileWriter(path, compression=compression) as writer:
        for index in range(5):
            writer.write(bytes([index]) * (100 + index))
    assert count_records(path, compression=compression) == 5
    data = path.read_bytes()
    if compression == "gzip":
        path.write_bytes(data[: len(data) // 2])  # the stream ends early: no error
        assert 0 <= count_records(path, compression="gzip") < 5
        return
    path.write_bytes(data[:-3])  # inside the last record's CRC
    assert count_records(path) == 4
    path.write_bytes(data[: 12 + 100 + 4 + 5])  # inside the second header
    assert count_records(path) == 1
    path.write_bytes(b"")
    assert count_records(path) == 0


def test_resume_after_sigkill_is_byte_identical(
    synth_root: Path, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    out = tmp_path / "killed"
    # Upsizing to 384 px PNG makes each shard take long enough to kill the run mid-way.
    argv = [
        "--splits",
        "train",
        "--limit",
        "60",
        "--shard-count",
        "6",
        "--resize",
        "384",
        "--workers",
        "1",
        "--quiet",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "converters.tfrecord", str(synth_root), str(out), *argv],
        env=subprocess_env,
    )
    journal = out / ".journal"
    deadline = time.monotonic() + 120
    # A journal entry (not its temporary file) means a shard is complete.
    while not list(journal.glob("*.tfrecord.json")):
        assert process.poll() is None, "the conversion ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (out / features.MANIFEST_NAME).exists()
    complete_before = sorted(p.name for p in out.glob("*.tfrecord"))
    journaled = len(list(journal.glob("*.tfrecord.json")))
    assert 1 <= journaled <= len(complete_before) < 6

    resume = subprocess.run(
        [sys.executable, "-m", "converters.tfrecord", str(synth_root), str(out), *argv, "--resume"],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resume.returncode == 0, resume.stderr
    resumed = load_manifest(out)
    assert resumed.stats["reused_shards"] == journaled
    assert not list(out.glob(".*.partial"))

    reference = convert(
        ConversionOptions(
            source=synth_root,
            out=tmp_path / "reference",
            splits=("train",),
            limit=60,
            shard_count=6,
            resize=384,
            workers=2,
        )
    )
    assert resumed.shards == reference.shards
    for path, ref_path in zip(
        resumed.shard_paths("train"), reference.shard_paths("train"), strict=True
    ):
        assert path.read_bytes() == ref_path.read_bytes()


def test_benchmark_prints_every_row(
    synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from converters import benchmark

    argv = [
        "--source",
        str(synth_root),
        "--limit",
        "2",
        "--workers",
        "1",
        "--work",
        str(tmp_path),
        "--json",
        str(tmp_path / "rows.json"),
    ]
    assert benchmark.main(argv) == 0
    table = capsys.readouterr().out
    for name in ("read + decode PNG", "lossless png (copy)", "png 256", "jpeg 256 q95", "raw 256"):
        assert f"| {name} " in table
    (rows,) = json.loads((tmp_path / "rows.json").read_text())["rounds"]
    assert all(row["images"] == 6 and row["images_per_sec"] > 0 for row in rows)
