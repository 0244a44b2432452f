"""The TFRecord feature contract (tf.train.Example), in one place for writer and reader.

Names follow TensorFlow's model garden. `image/encoded` holds PNG or JPEG bytes, or, for
`raw`, the uint8 pixels in row-major height x width x channels order.
"""

from __future__ import annotations

from typing import Any

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
ENCODINGS: tuple[str, ...] = ("png", "jpeg", "raw")
COMPRESSIONS: tuple[str, ...] = ("none", "gzip")

IMAGE_ENCODED = "image/encoded"
IMAGE_FORMAT = "image/format"
IMAGE_HEIGHT = "image/height"
IMAGE_WIDTH = "image/width"
IMAGE_CHANNELS = "image/channels"
IMAGE_FILENAME = "image/filename"
LABEL = "image/class/label"
PATIENT_ID = "patient/id"

# The spec as plain data, for manifest.json and for readers in other languages:
# feature name -> (kind, dtype, shape).
FEATURE_SPEC: dict[str, dict[str, Any]] = {
    IMAGE_ENCODED: {"kind": "fixed", "dtype": "string", "shape": []},
    IMAGE_FORMAT: {"kind": "fixed", "dtype": "string", "shape": []},
    IMAGE_HEIGHT: {"kind": "fixed", "dtype": "int64", "shape": []},
    IMAGE_WIDTH: {"kind": "fixed", "dtype": "int64", "shape": []},
    IMAGE_CHANNELS: {"kind": "fixed", "dtype": "int64", "shape": []},
    IMAGE_FILENAME: {"kind": "fixed", "dtype": "string", "shape": []},
    LABEL: {"kind": "fixed", "dtype": "int64", "shape": [14]},
    PATIENT_ID: {"kind": "fixed", "dtype": "int64", "shape": []},
}


def shard_name(split: str, index: int, count: int) -> str:
    """`<split>-00000-of-00004.tfrecord`, as TensorFlow's own tooling names shards."""
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def tf_feature_spec(spec: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The spec as `tf.io.FixedLenFeature`s for `tf.io.parse_single_example`.

    TensorFlow is imported here, not at module level, so that reading the contract costs
    nothing for tools that never parse records.
    """
    import tensorflow as tf

    dtypes = {"string": tf.string, "int64": tf.int64, "float32": tf.float32}
    return {
        name: tf.io.FixedLenFeature(entry["shape"], dtypes[entry["dtype"]])
        for name, entry in (spec or FEATURE_SPEC).items()
    }
