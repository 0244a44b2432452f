"""The input pipelines on real files: raw PNGs and TFRecords, naive and tuned."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bench.input.guard import BadDataGuard
from bench.input.pipelines import (
    PipelineOptions,
    Source,
    build_dataset,
    raw_source,
    skipped_count,
    tfrecord_source,
)
from bench.input.sources import PROBLEM_NONE, PROBLEM_UNDECODABLE
from converters import features
from converters.records import TFRecordFileWriter, read_records

SIZE = 64  # the fixtures' image size: no resampling unless a test asks for it


def _options(kind: str = "tuned", **changes: object) -> PipelineOptions:
    values: dict = {"kind": kind, "image_size": 32, "batch_size": 8, "training": False}
    values.update(changes)
    return PipelineOptions(**values)


def _assert_resampled_alike(actual: np.ndarray, expected: np.ndarray, name: str) -> None:
    """The host decoder resizes with OpenCV's fixed-point bilinear: within one gray level
    of TensorFlow's, about one pixel in eight off by one."""
    difference = np.abs(actual.astype(int) - expected.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.2, name


def _arrays(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for batch_images, batch_labels in dataset:
        images.append(batch_images.numpy())
        labels.append(batch_labels.numpy())
    return np.concatenate(images), np.concatenate(labels)


def _record_names(source: Source) -> list[str]:
    """The `image/filename` of every record, shard by shard, in file order."""
    spec = {features.IMAGE_FILENAME: tf.io.FixedLenFeature([], tf.string)}
    compression = "GZIP" if source.compression == "gzip" else ""
    records = tf.data.TFRecordDataset(list(source.files), compression_type=compression)
    return [
        tf.io.parse_single_example(record, spec)[features.IMAGE_FILENAME].numpy().decode()
        for record in records
    ]


def _by_name(source: Source, options: PipelineOptions) -> dict[str, tuple[np.ndarray, ...]]:
    """Evaluation output keyed by file name (sequential reading gives file order)."""
    images, labels = _arrays(build_dataset(source, options))
    if source.format == "raw":
        names = [Path(path).name for path in source.files]
    else:
        names = _record_names(source)
    assert len(names) == len(images) == source.num_examples
    return {name: (image, label) for name, image, label in zip(names, images, labels, strict=True)}


def _digest(image: np.ndarray) -> str:
    """The same for an image and its mirror image, so that training flips do not matter."""
    mirrored = image[:, ::-1]
    return min(
        hashlib.sha1(np.ascontiguousarray(item).tobytes()).hexdigest() for item in (image, mirrored)
    )


def _digests(dataset: tf.data.Dataset, batches: int | None = None) -> list[str]:
    taken = dataset if batches is None else dataset.take(batches)
    return [_digest(image) for batch, _ in taken for image in batch.numpy()]


def test_raw_and_lossless_records_give_the_same_pixels_and_labels(
    synth_root: Path, records_png: Path
) -> None:
    raw = raw_source(synth_root, "val")
    records = tfrecord_source(records_png, "val")
    assert raw.num_examples == records.num_examples
    for image_size, decoder in [(SIZE, "host"), (48, "tensorflow"), (48, "host")]:
        # the stored size, and through the resize
        from_files = _by_name(raw, _options("naive", image_size=image_size))
        tuned = _options("tuned", image_size=image_size, cycle_length=1, decoder=decoder)
        from_records = _by_name(records, tuned)
        assert from_files.keys() == from_records.keys()
        for name, (image, label) in from_files.items():
            if decoder == "host" and image_size != SIZE:
                _assert_resampled_alike(from_records[name][0], image, name)
            else:
                np.testing.assert_array_equal(image, from_records[name][0], err_msg=name)
            np.testing.assert_array_equal(label, from_records[name][1], err_msg=name)
    image, label = next(iter(from_files.values()))
    # Gray uint8: the model's first layer widens and normalises (tests/test_model.py).
    assert image.shape == (48, 48, 1) and image.dtype == np.uint8 and label.shape == (14,)
    assert set(np.unique(label)) <= {0.0, 1.0}


def test_naive_and_tuned_agree(synth_root: Path) -> None:
    raw = raw_source(synth_root, "val")
    naive_images, naive_labels = _arrays(build_dataset(raw, _options("naive")))
    tuned_images, tuned_labels = _arrays(build_dataset(raw, _options("tuned")))
    np.testing.assert_array_equal(naive_images, tuned_images)  # evaluation order is stable
    np.testing.assert_array_equal(naive_labels, tuned_labels)
    assert naive_images.dtype == np.uint8 and naive_labels.dtype == np.float32


def test_evaluation_shards_cover_the_split_exactly_once(
    synth_root: Path, records_png: Path, records_raw_48: Path
) -> None:
    sources = [
        (2, raw_source(synth_root, "val")),
        (3, tfrecord_source(records_png, "val")),
        (3, tfrecord_source(records_raw_48, "val")),  # decoded per batch
    ]
    for workers, source in sources:
        whole = sorted(_digests(build_dataset(source, _options())))
        parts = [
            _digests(build_dataset(source, _options(), worker_index=index, num_workers=workers))
            for index in range(workers)
        ]
        assert sorted(digest for part in parts for digest in part) == whole, source.format
        sizes = [len(part) for part in parts]
        assert max(sizes) - min(sizes) <= 1, sizes  # element sharding balances


@pytest.mark.parametrize(("records", "workers"), [("png", 2), ("png", 4), ("raw-48", 3)])
def test_training_shards_are_disjoint_and_cover_an_epoch(
    records_png: Path, records_raw_48: Path, records: str, workers: int
) -> None:
    """png, 3 shards: 2 workers split whole files, 4 workers fall back to elements;
    raw 48 px, 2 shards, decoded per batch: 3 workers fall back to elements."""
    split = "train" if records == "png" else "val"
    source = tfrecord_source(records_png if records == "png" else records_raw_48, split)
    everything = sorted(_digests(build_dataset(source, _options())))
    per_worker = []
    for index in range(workers):
        if workers <= len(source.files):
            epoch = sum(source.record_counts[index::workers])
        else:
            epoch = len(range(index, source.num_examples, workers))
        # One shard at a time and no record buffer: the first `epoch` elements are exactly
        # one epoch (the default interleave overlaps the end of one epoch with the next).
        options = _options(training=True, batch_size=1, shuffle_buffer=1, cycle_length=1)
        dataset = build_dataset(source, options, worker_index=index, num_workers=workers)
        per_worker.append(_digests(dataset, epoch))
        if workers <= len(source.files):  # whole files: the default reads only those too
            default = build_dataset(
                source,
                _options(training=True, batch_size=1),
                worker_index=index,
                num_workers=workers,
            )
            assert set(_digests(default, 2 * epoch)) <= set(per_worker[-1])
    assert sorted(digest for part in per_worker for digest in part) == everything


def test_training_order_changes_with_epoch_and_seed_and_is_reproducible(
    synth_root: Path, records_png: Path
) -> None:
    for source in (raw_source(synth_root, "val"), tfrecord_source(records_png, "val")):
        count = source.num_examples
        options = _options("naive", training=True, batch_size=1, shuffle_buffer=8)
        two_epochs = _digests(build_dataset(source, options), 2 * count)
        first, second = two_epochs[:count], two_epochs[count:]
        assert first != second
        if source.format == "raw":  # files are shuffled whole: each window is one epoch
            assert sorted(first) == sorted(second)
        assert _digests(build_dataset(source, options), count) == first  # same seed
        other_seed = dataclasses.replace(options, seed=1)
        assert _digests(build_dataset(source, other_seed), count) != first
        later_epoch = _digests(build_dataset(source, options, epoch=1), count)
        assert later_epoch != first
        stable = _digests(build_dataset(source, _options()))
        assert stable == _digests(build_dataset(source, _options())) != first


def test_training_batches_are_full_flipped_and_repeat(synth_root: Path) -> None:
    source = raw_source(synth_root, "val")  # 19 images: 2 full batches of 8 per epoch
    batches = list(build_dataset(source, _options(training=True)).take(6))
    assert all(images.shape == (8, 32, 32, 1) for images, _ in batches)
    unflipped = {
        hashlib.sha1(image.tobytes()).hexdigest()
        for image in _arrays(build_dataset(source, _options()))[0]
    }
    seen = [
        hashlib.sha1(image.tobytes()).hexdigest()
        for images, _ in batches
        for image in images.numpy()
    ]
    assert 0 < sum(digest not in unflipped for digest in seen) < len(seen)
    last = list(build_dataset(source, _options(batch_size=8)))[-1][0]
    assert last.shape[0] == 3  # evaluation keeps the last partial batch
    cached = _arrays(build_dataset(source, _options(cache=True)))[0]
    assert {hashlib.sha1(image.tobytes()).hexdigest() for image in cached} == unflipped
    cached_training = build_dataset(source, _options(training=True, cache=True, batch_size=1))
    epochs = _digests(cached_training, 3 * source.num_examples)
    assert sorted(set(epochs)) == sorted({_digest(image) for image in cached})


@pytest.fixture(scope="module")
def small_conversions(val_records: Callable[..., Path]) -> dict:
    """The validation split in each encoding (and gzip), two shards each."""
    return {
        "jpeg": val_records("jpeg"),
        "raw": val_records("raw"),
        "png-gzip": val_records("png", compression="gzip"),
    }


def test_every_encoding_and_gzip_decode_to_the_source_pixels(
    synth_root: Path, small_conversions: dict
) -> None:
    expected = _by_name(raw_source(synth_root, "val"), _options("naive"))
    for name, directory in small_conversions.items():
        source = tfrecord_source(directory, "val")
        assert source.description["encoding"] == name.split("-")[0]
        got = _by_name(source, _options("naive"))
        assert got.keys() == expected.keys(), name
        for key, (image, label) in got.items():
            np.testing.assert_array_equal(label, expected[key][1])
            if name == "jpeg":  # lossy: within a few gray levels on average
                difference = image.astype(int) - expected[key][0].astype(int)
                assert np.abs(difference).mean() < 5, key
            else:
                np.testing.assert_array_equal(image, expected[key][0], err_msg=f"{name} {key}")
    gzip_source = tfrecord_source(small_conversions["png-gzip"], "val")
    assert gzip_source.compression == "gzip"
    tuned = _digests(build_dataset(gzip_source, _options("tuned")))
    assert sorted(tuned) == sorted(_digests(build_dataset(gzip_source, _options("naive"))))


@pytest.fixture(scope="module")
def records_raw_48(val_records: Callable[..., Path]) -> Path:
    """The validation split as raw uint8 records resized to 48 px, two shards."""
    return val_records("raw", resize=48)


def test_records_of_one_stored_size_are_resized_per_batch_to_the_same_pixels(
    records_raw_48: Path,
) -> None:
    from bench.input.preprocess import resize

    out = records_raw_48
    source = tfrecord_source(out, "val")
    assert source.stored_size == 48
    spec = {
        features.IMAGE_ENCODED: tf.io.FixedLenFeature([], tf.string),
        features.IMAGE_FILENAME: tf.io.FixedLenFeature([], tf.string),
    }
    expected = {}
    for record in tf.data.TFRecordDataset(list(source.files)):
        parsed = tf.io.parse_single_example(record, spec)
        pixels = tf.reshape(tf.io.decode_raw(parsed[features.IMAGE_ENCODED], tf.uint8), [48, 48, 1])
        expected[parsed[features.IMAGE_FILENAME].numpy().decode()] = resize(pixels, 32).numpy()
    for kind, decoder in [("naive", "auto"), ("tuned", "tensorflow"), ("tuned", "host")]:
        got = _by_name(source, _options(kind, image_size=32, decoder=decoder))
        assert got.keys() == expected.keys()
        for name, (image, _) in got.items():
            if decoder == "host":
                _assert_resampled_alike(image, expected[name], f"{kind} {name}")
            else:
                np.testing.assert_array_equal(image, expected[name], err_msg=f"{kind} {name}")
    stored = _by_name(source, _options(image_size=48))  # no resize at all
    assert next(iter(stored.values()))[0].shape == (48, 48, 1)
    # 48 -> 42 is 8:7, like 256 -> 224: the block-matrix path, within a gray level.
    blocks = _by_name(source, _options("tuned", image_size=42, decoder="tensorflow"))
    for name, (image, _) in blocks.items():
        pixels = tf.constant(stored[name][0])
        difference = np.abs(image.astype(int) - resize(pixels, 42).numpy().astype(int))
        assert difference.max() <= 1 and (difference > 0).mean() < 0.03, name


def _bilinear_reference(image: np.ndarray, size: int) -> np.ndarray:
    """Textbook bilinear interpolation at pixel centres (no antialiasing), in float64."""

    def taps(length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        centres = (np.arange(size) + 0.5) * length / size - 0.5
        first = np.clip(np.floor(centres).astype(int), 0, length - 1)
        following = np.minimum(first + 1, length - 1)
        return first, following, np.clip(centres - first, 0.0, 1.0)

    top, bottom, down = taps(image.shape[0])
    left, right, across = taps(image.shape[1])
    pixels = image.astype(np.float64)
    rows = pixels[top] * (1 - down)[:, None] + pixels[bottom] * down[:, None]
    return rows[:, left] * (1 - across) + rows[:, right] * across


@pytest.mark.parametrize(
    ("stored", "size"),
    [(256, 224), (48, 42), (512, 224), (40, 32), (48, 32), (1024, 224), (32, 48)],
)
def test_batch_resize_is_bilinear_to_within_a_gray_level(stored: int, size: int) -> None:
    """Whichever way a batch is resized (block matrices for small shrink ratios such as
    8:7, TensorFlow's kernel otherwise), each image is the bilinear image, rounded."""
    from bench.input.preprocess import resize_batch

    generator = np.random.default_rng(stored * 1000 + size)
    # Smooth gradients plus noise: both flat regions and sharp edges.
    ramp = np.add.outer(np.arange(stored), np.arange(stored)) * (255 / (2 * stored))
    noise = generator.integers(0, 256, (3, stored, stored))
    images = np.where(noise > 200, noise, ramp[None]).astype(np.uint8)
    resized = resize_batch(tf.constant(images[..., None]), size).numpy()
    assert resized.shape == (3, size, size, 1) and resized.dtype == np.uint8
    for image, result in zip(images, resized, strict=True):
        expected = np.floor(_bilinear_reference(image, size) + 0.5)
        difference = np.abs(result[..., 0].astype(int) - expected.astype(int))
        assert difference.max() <= 1 and (difference > 0).mean() < 0.03


def _copy(tree: Path, tmp_path: Path) -> Path:
    copy = tmp_path / tree.name
    shutil.copytree(tree, copy)
    return copy


@pytest.mark.parametrize("kind", ["naive", "tuned"])
def test_a_corrupt_png_fails_the_run_naming_the_file(
    synth_root: Path, tmp_path: Path, kind: str
) -> None:
    root = _copy(synth_root, tmp_path)
    source = raw_source(root, "val")
    bad = Path(source.files[5])
    bad.write_bytes(bad.read_bytes()[:200])  # truncated mid-image
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"bad data.*{bad.name}"):
        _arrays(build_dataset(source, _options(kind)))
    with pytest.raises(tf.errors.InvalidArgumentError, match=bad.name):
        list(build_dataset(source, _options(kind, training=True)).take(10))
    last = Path(source.files[-1])  # the very last element, seen only by the end sentinel
    last.write_bytes(b"not an image")
    skipping = build_dataset(source, _options(kind, skip_bad=True))
    images, _ = _arrays(skipping)
    assert len(images) == source.num_examples - 2
    assert skipped_count(skipping) == 2
    assert skipped_count(build_dataset(source, _options(kind))) is None  # fails, never skips
    training = build_dataset(source, _options(kind, training=True, skip_bad=True))
    batches = list(training.take(6))  # 19 files, 2 bad: several epochs of full batches
    assert all(images.shape == (8, 32, 32, 1) for images, _ in batches)
    assert skipped_count(training) >= 4


@pytest.mark.parametrize("decoder", ["tensorflow", "host"])
@pytest.mark.parametrize("skip_bad", [False, True])
def test_a_data_set_where_nothing_decodes_fails_instead_of_spinning(
    synth_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, skip_bad: bool, decoder: str
) -> None:
    """An endless training stream of bad files never fills a batch of good ones: the
    guard's stall limit (lowered here to keep the test short) ends it with the files
    named. (Without skip_bad the host decoder's first marked batch fails already.)"""
    monkeypatch.setattr("bench.input.guard.stall_limit", lambda batch_size: 40)
    root = _copy(synth_root, tmp_path)
    source = raw_source(root, "val")
    for path in source.files:
        Path(path).write_bytes(b"not an image")
    options = _options("tuned", training=True, skip_bad=skip_bad, decoder=decoder)
    stall = "bad data" if decoder == "host" and not skip_bad else "not one batch of usable"
    with pytest.raises(tf.errors.InvalidArgumentError, match=stall) as error:
        next(iter(build_dataset(source, options)))
    message = str(error.value)
    assert "bad data" in message
    assert any(f"{path}: could not be read or decoded" in message for path in source.files)


def test_a_truncated_shard_fails_naming_shard_and_record(records_png: Path, tmp_path: Path) -> None:
    directory = _copy(records_png, tmp_path)
    source = tfrecord_source(directory, "val")
    shard = Path(source.files[1])
    kept = 2  # cut inside the third record
    framed = sum(len(record) + 16 for record in read_records(shard)[:kept])
    shard.write_bytes(shard.read_bytes()[: framed + 40])
    lost = source.record_counts[1] - kept
    for kind, decoder in [("naive", "auto"), ("tuned", "tensorflow"), ("tuned", "host")]:
        with pytest.raises(
            tf.errors.InvalidArgumentError,
            match=rf"bad data.*{shard.name} \(record {kept}\): unreadable",
        ):
            _arrays(build_dataset(source, _options(kind, decoder=decoder)))
        skipping = build_dataset(source, _options(kind, skip_bad=True, decoder=decoder))
        assert len(_arrays(skipping)[0]) == source.num_examples - lost
        assert skipped_count(skipping) == lost


def test_a_shard_with_more_records_than_its_manifest_is_refused(
    records_png: Path, tmp_path: Path
) -> None:
    directory = _copy(records_png, tmp_path)
    source = tfrecord_source(directory, "val")
    shard = Path(source.files[0])
    records = read_records(shard)
    longer = tf.train.Example.FromString(records[0])
    longer.features.feature[features.IMAGE_FILENAME].bytes_list.value[0] += b"-renamed"
    with TFRecordFileWriter(shard) as writer:  # same count, more bytes: still readable
        for record in [longer.SerializeToString(), *records[1:]]:
            writer.write(record)
    assert tfrecord_source(directory, "val").num_examples == source.num_examples
    with TFRecordFileWriter(shard) as writer:  # one record too many
        for record in [*records, records[0]]:
            writer.write(record)
    with pytest.raises(
        ValueError,
        match=rf"{shard.name}: holds {len(records) + 1} records where its manifest lists "
        rf"{len(records)}.*converters.verify",
    ):
        tfrecord_source(directory, "val")


def test_a_corrupt_image_inside_a_valid_record_is_named(records_png: Path, tmp_path: Path) -> None:
    directory = _copy(records_png, tmp_path)
    source = tfrecord_source(directory, "val")
    shard = Path(source.files[0])
    records = read_records(shard)
    example = tf.train.Example.FromString(records[3])
    example.features.feature[features.IMAGE_ENCODED].bytes_list.value[0] = b"\x89PNG garbage"
    records[3] = example.SerializeToString()
    with TFRecordFileWriter(shard) as writer:
        for record in records:
            writer.write(record)
    for decoder in ("tensorflow", "host"):
        with pytest.raises(
            tf.errors.InvalidArgumentError,
            match=rf"{shard.name} \(record 3\): could not be read or decoded",
        ):
            list(build_dataset(source, _options("tuned", training=True, decoder=decoder)).take(20))
        skipping = build_dataset(source, _options("tuned", skip_bad=True, decoder=decoder))
        assert len(_arrays(skipping)[0]) == source.num_examples - 1
        assert skipped_count(skipping) == 1


def _replace_record(shard: Path, index: int, record: bytes) -> None:
    records = read_records(shard)
    records[index] = record
    with TFRecordFileWriter(shard) as writer:
        for item in records:
            writer.write(item)


def test_raw_records_are_decoded_per_batch_and_bad_ones_still_named(
    records_raw_48: Path, tmp_path: Path
) -> None:
    """The tuned pipeline decodes raw uint8 records a batch at a time: the same pixels as
    the per-image road, and a bad record is still named with its shard and index."""
    from bench.input.decoders import batch_loader

    directory = _copy(records_raw_48, tmp_path)
    source = tfrecord_source(directory, "val")
    assert batch_loader(source) is not None and source.channels == 1
    per_image = _by_name(source, _options("naive", image_size=42))
    per_batch = _by_name(source, _options("tuned", image_size=42, decoder="tensorflow"))
    on_host = _by_name(source, _options("tuned", image_size=42, decoder="host"))
    for name, (image, label) in per_image.items():
        np.testing.assert_array_equal(per_batch[name][0], image, err_msg=name)
        np.testing.assert_array_equal(per_batch[name][1], label, err_msg=name)
        _assert_resampled_alike(on_host[name][0], image, name)
        np.testing.assert_array_equal(on_host[name][1], label, err_msg=name)

    shard = Path(source.files[0])
    example = tf.train.Example.FromString(read_records(shard)[3])
    example.features.feature[features.IMAGE_ENCODED].bytes_list.value[0] = b"\x00" * 100
    _replace_record(shard, 3, example.SerializeToString())
    for kind, decoder in [("naive", "auto"), ("tuned", "tensorflow"), ("tuned", "host")]:
        with pytest.raises(
            tf.errors.InvalidArgumentError,
            match=rf"bad data.*{shard.name} \(record 3\): could not be read or decoded",
        ):
            _arrays(build_dataset(source, _options(kind, decoder=decoder)))
        training = _options(kind, training=True, decoder=decoder)
        with pytest.raises(tf.errors.InvalidArgumentError, match=rf"{shard.name} \(record 3\)"):
            list(build_dataset(source, training).take(20))
        skipping = build_dataset(source, _options(kind, skip_bad=True, decoder=decoder))
        assert len(_arrays(skipping)[0]) == source.num_examples - 1
        assert skipped_count(skipping) == 1


def test_a_record_that_is_no_example_fails_its_batch_by_name_even_the_last(
    records_raw_48: Path, tmp_path: Path
) -> None:
    """TensorFlow's batch decoding cannot isolate a record that does not parse at all: its
    batch is lost as a whole, and named as such, also when it is the very last batch. The
    host decoder parses record by record: it names that one record."""
    directory = _copy(records_raw_48, tmp_path)
    source = tfrecord_source(directory, "val")
    shard = Path(source.files[-1])
    last = source.record_counts[-1] - 1
    _replace_record(shard, last, b"\xff\xff not a tf.train.Example")
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=rf"{shard.name} \(record {last}\): in a batch of records that failed to parse",
    ):
        _arrays(build_dataset(source, _options("tuned", decoder="tensorflow")))
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=rf"\[[^;]*{shard.name} \(record {last}\): could not be read or decoded as an image\]",
    ):
        _arrays(build_dataset(source, _options("tuned", decoder="host")))
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=rf"{shard.name} \(record {last}\): could not be read or decoded",
    ):
        _arrays(build_dataset(source, _options("naive")))
    for decoder in ("tensorflow", "host"):  # per image (TensorFlow) or per record: exact
        skipping = build_dataset(source, _options("tuned", skip_bad=True, decoder=decoder))
        assert len(_arrays(skipping)[0]) == source.num_examples - 1
        assert skipped_count(skipping) == 1


def test_raw_records_where_nothing_parses_fail_instead_of_spinning(
    records_raw_48: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bench.input.guard.stall_limit", lambda batch_size: 40)
    directory = _copy(records_raw_48, tmp_path)
    source = tfrecord_source(directory, "val")
    for shard, count in zip(source.files, source.record_counts, strict=True):
        for index in range(count):
            _replace_record(Path(shard), index, b"\xff\xff not a tf.train.Example")
    tuned = _options("tuned", training=True, decoder="tensorflow")
    with pytest.raises(tf.errors.InvalidArgumentError, match="not one batch of usable"):
        next(iter(build_dataset(source, tuned)))
    skipping = _options("tuned", training=True, skip_bad=True, decoder="host")
    with pytest.raises(tf.errors.InvalidArgumentError, match="not one batch of usable"):
        next(iter(build_dataset(source, skipping)))


@pytest.mark.parametrize("skip_bad", [False, True])
def test_marked_batches_name_their_bad_elements_from_their_own_files_and_records(
    skip_bad: bool,
) -> None:
    """A decoder that marks bad elements instead of losing them (the host decoder): the
    guard names each from the batch's own file and record indexes, with no table, and
    with skip_bad drops exactly those (and the end sentinel) and counts them."""
    files = ("shard-a.tfrecord", "shard-b.tfrecord")
    guard = BadDataGuard(files, skip_bad=skip_bad, batch_size=4)

    def decoder(elements: dict, flips: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        count = tf.shape(flips)[0]
        bad = tf.logical_and(elements["source_id"] == 1, elements["record"] == 5)
        problems = tf.where(bad, PROBLEM_UNDECODABLE, PROBLEM_NONE)
        images = tf.fill([count, 2, 2, 1], tf.cast(elements["record"][0], tf.uint8))
        return images, tf.zeros([count, 14]), problems

    elements = {
        "source_id": tf.constant([0, 0, 0, 0, 1, 1, 1, -1], tf.int64),  # -1: the end sentinel
        "record": tf.constant([0, 1, 2, 3, 4, 5, 6, 0], tf.int64),
    }
    batches = tf.data.Dataset.from_tensor_slices((tf.range(8, dtype=tf.int64), elements))
    batches = batches.batch(4).map(guard.marking_batch(decoder))
    checked = guard.check(batches, drop_marked=True, marked=True)
    if not skip_bad:
        with pytest.raises(
            tf.errors.InvalidArgumentError,
            match=r"bad data:.*shard-b.tfrecord \(record 5\): could not be read or decoded",
        ):
            list(checked)
        return
    seen = [batch["seq"].numpy().tolist() for batch in checked]
    assert seen == [[0, 1, 2, 3], [4, 6]]
    assert guard.skipped_count() == 1


def test_options_are_validated(synth_root: Path) -> None:
    with pytest.raises(ValueError, match="kind"):
        PipelineOptions(kind="fast")
    with pytest.raises(ValueError, match="batch_size"):
        PipelineOptions(kind="tuned", batch_size=0)
    with pytest.raises(ValueError, match="parallel_calls"):
        PipelineOptions(kind="tuned", parallel_calls=0)
    with pytest.raises(ValueError, match="worker_index"):
        build_dataset(raw_source(synth_root, "val"), _options(), worker_index=2, num_workers=2)
    description = raw_source(synth_root, "test").description
    assert description["source"] == "raw" and description["images"] > 0
