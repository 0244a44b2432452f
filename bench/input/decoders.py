"""TensorFlow's decoders for the source stage's encoded elements (bench.input.sources):
`loader`, one element at a time, and `batch_loader`, a whole batch of raw uint8 records.
The tuned pipeline's host decoder (bench.input.host_decode) is the other way to decode.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from bench.input.preprocess import decode_image
from bench.input.sources import PROBLEM_NONE, PROBLEM_UNDECODABLE, Element, Source
from converters import features


def loader(source: Source) -> Callable[[Element], tuple[tf.Tensor, tf.Tensor]]:
    """The function that decodes one encoded element to (uint8 [H, W, 1], float32 [14])."""
    if source.format == "raw":
        return functools.partial(_load_raw, encoding=source.encoding)
    return functools.partial(_load_record, encoding=source.encoding)


def _load_raw(element: Element, *, encoding: str | None) -> tuple[tf.Tensor, tf.Tensor]:
    path = element["payload"]
    if encoding is None:  # mixed: by each file's name
        is_jpeg = tf.strings.regex_full_match(tf.strings.lower(path), r".*\.jpe?g")
        image_format = tf.where(is_jpeg, "jpeg", "png")
    else:
        image_format = tf.constant(encoding)
    zero = tf.constant(0, tf.int64)
    image = decode_image(
        tf.io.read_file(path), image_format, zero, zero, zero + 1, expected=encoding
    )
    return image, element["label"]


# (batched elements, flips bool [B]) -> (uint8 images [B, S, S, 1], float32 labels [B, 14],
# int32 problem codes [B]); images come back flipped where `flips` says, if the decoder flips.
BatchDecoder = Callable[[Element, tf.Tensor], tuple[tf.Tensor, tf.Tensor, tf.Tensor]]


def batch_loader(source: Source) -> BatchDecoder | None:
    """The function that decodes a whole batch of encoded elements at once, for sources
    that need no per-image decoder: raw uint8 records of one stored size, one channel.

    It returns (uint8 images [B, S, S, 1], float32 labels [B, 14], problem codes [B]); an
    element that is not such an image (or a padding "" for an unreadable record) gets
    PROBLEM_UNDECODABLE and zero pixels instead of an error; it does not flip. A record
    that is not a tf.train.Example at all fails the whole batch. None for every other source.
    """
    if not (
        source.format == "tfrecord"
        and source.encoding == "raw"
        and source.stored_size is not None
        and source.channels == 1
    ):
        return None
    return functools.partial(_load_raw_records, size=source.stored_size)


def _load_raw_records(
    elements: Element, flips: tf.Tensor, *, size: int
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    del flips  # flipped later, per batch (bench.input.preprocess.flip_batch)
    parsed = tf.io.parse_example(elements["payload"], _feature_spec(defaults=True))
    pixels = parsed[features.IMAGE_ENCODED]
    decoded = tf.reduce_all(
        tf.stack(
            [
                tf.equal(parsed[features.IMAGE_FORMAT], "raw"),
                tf.equal(parsed[features.IMAGE_HEIGHT], size),
                tf.equal(parsed[features.IMAGE_WIDTH], size),
                tf.equal(parsed[features.IMAGE_CHANNELS], 1),
                tf.equal(tf.strings.length(pixels), size * size),
            ]
        ),
        axis=0,
    )
    # fixed_length: every payload becomes size * size bytes (a bad one padded or cut,
    # and marked by `decoded`), so the batch decodes as one [B, size * size] array.
    images = tf.io.decode_raw(pixels, tf.uint8, fixed_length=size * size)
    labels = tf.cast(parsed[features.LABEL], tf.float32)
    problems = tf.where(decoded, PROBLEM_NONE, PROBLEM_UNDECODABLE)
    return tf.reshape(images, [-1, size, size, 1]), labels, problems


_DECODED_FEATURES = (
    features.IMAGE_ENCODED,
    features.IMAGE_FORMAT,
    features.IMAGE_HEIGHT,
    features.IMAGE_WIDTH,
    features.IMAGE_CHANNELS,
    features.LABEL,
)


@functools.cache
def _feature_spec(*, defaults: bool = False) -> dict[str, Any]:
    """Only the features a pipeline uses: parsing the others costs time per record.

    With `defaults`, a missing feature parses as empty (""/0/zeros) instead of failing,
    for the batch decoder, which checks each record's values itself.
    """
    spec = features.tf_feature_spec(
        {name: features.FEATURE_SPEC[name] for name in _DECODED_FEATURES}
    )
    if not defaults:
        return spec
    return {
        name: tf.io.FixedLenFeature(
            item.shape,
            item.dtype,
            default_value=(
                "" if item.dtype == tf.string else np.zeros(item.shape, item.dtype.as_numpy_dtype)
            ),
        )
        for name, item in spec.items()
    }


def _load_record(element: Element, *, encoding: str | None) -> tuple[tf.Tensor, tf.Tensor]:
    parsed = tf.io.parse_single_example(element["payload"], _feature_spec())
    image = decode_image(
        parsed[features.IMAGE_ENCODED],
        parsed[features.IMAGE_FORMAT],
        parsed[features.IMAGE_HEIGHT],
        parsed[features.IMAGE_WIDTH],
        parsed[features.IMAGE_CHANNELS],
        expected=encoding,
    )
    return image, tf.cast(parsed[features.LABEL], tf.float32)
