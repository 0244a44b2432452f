"""Decoding and the preprocessing shared by every source and every pipeline structure.

Both sources hand this module the same thing: encoded bytes plus the stored format and
shape. What happens after is identical for raw files and TFRecords, so that a comparison
measures only reading and decoding. It is split between the host and the device:

    host (tf.data, per image):  decode -> uint8 [H, W, 1] -> resize to image_size
                                (bilinear, rounded back to uint8; skipped when equal)
    host (tf.data, per batch):  the same resize, when every stored image has one known
                                size (records converted with --resize): cheaper per batch
                                -> random horizontal flip (training only, seeded per image)
    device (the model's first layer, `to_model_input`):
                                3 channels -> ImageNet mean/std -> the run's dtype

The device part is where modern input pipelines put it (DALI, MLPerf references): the
host ships one byte per pixel instead of twelve (float32 RGB), and spends no CPU on
arithmetic the GPU does for free; bench.pipeline_benchmark measures the difference.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DTYPES = ("float32", "float16", "bfloat16")


def decode_image(
    encoded: tf.Tensor,
    image_format: tf.Tensor,
    height: tf.Tensor,
    width: tf.Tensor,
    channels: tf.Tensor,
    *,
    expected: str | None = None,
) -> tf.Tensor:
    """Decode one stored image to uint8 grayscale [H, W, 1] according to its format.

    `expected`, when the whole source has one format (a conversion's manifest says which),
    decodes with that decoder alone and checks the image's own format against it: one
    decoder op instead of a three-way branch per image. An unknown or unexpected format,
    or a raw payload of the wrong size, raises InvalidArgumentError; the pipeline's
    bad-data guard turns that into an error naming the file.
    """

    def raw() -> tf.Tensor:
        pixels = tf.io.decode_raw(encoded, tf.uint8)
        image = tf.reshape(pixels, tf.stack([height, width, channels]))
        return tf.cond(
            tf.equal(channels, 1),
            lambda: image,
            lambda: tf.image.rgb_to_grayscale(image[..., :3]),
        )

    decoders = {
        "png": lambda: tf.io.decode_png(encoded, channels=1),
        "jpeg": lambda: tf.io.decode_jpeg(encoded, channels=1),
        "raw": raw,
    }
    if expected is not None:
        check = tf.debugging.Assert(
            tf.equal(image_format, expected),
            ["image/format is", image_format, "where the source's format is", expected],
        )
        with tf.control_dependencies([check]):
            return tf.ensure_shape(decoders[expected](), [None, None, 1])

    def unknown() -> tf.Tensor:
        check = tf.debugging.Assert(False, ["unknown image format", image_format])
        with tf.control_dependencies([check]):
            return tf.zeros([1, 1, 1], tf.uint8)

    image = tf.case(
        [(tf.equal(image_format, name), decoder) for name, decoder in decoders.items()],
        default=unknown,
        exclusive=False,
    )
    return tf.ensure_shape(image, [None, None, 1])


def resize(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """uint8 [H, W, 1] -> uint8 [S, S, 1]: bilinear, rounded; no resampling when equal.

    Resizing the single gray channel before widening to three is the same arithmetic at a
    third of the cost; rounding back to uint8 is what OpenCV and PIL (bench.measure.bound) do too.
    """
    shape = tf.shape(image)
    same = tf.logical_and(tf.equal(shape[0], image_size), tf.equal(shape[1], image_size))

    def resampled() -> tf.Tensor:
        pixels = tf.image.resize(image, [image_size, image_size], method="bilinear")
        return _to_uint8(pixels)

    resized = tf.cond(same, lambda: image, resampled)
    return tf.ensure_shape(resized, [image_size, image_size, 1])


def resize_batch(images: tf.Tensor, image_size: int) -> tf.Tensor:
    """uint8 [B, H, W, 1] -> uint8 [B, S, S, 1]: what `resize` does to each image, to
    within one gray level (float rounding at exact halves).

    When H and W are known and shrink to S in a small ratio p:q (256 -> 224 is 8:7), the
    bilinear weights are block diagonal: each run of p input pixels makes q output pixels
    on its own. Two small matrix products (width, then height) then do the whole batch at
    half the CPU of TensorFlow's resize, which needs the batch transposed to B channels
    and back. Other shapes take that path: one image of B channels, since TensorFlow's
    bilinear kernel loops over channels innermost.
    """
    height, width = images.shape[1], images.shape[2]
    rows = _bilinear_blocks(height, image_size) if height else None
    columns = _bilinear_blocks(width, image_size) if width else None
    if rows is None or columns is None:
        planes = tf.transpose(images[..., 0], [1, 2, 0])[None]  # [1, H, W, B]
        pixels = tf.image.resize(planes, [image_size, image_size], method="bilinear")
        resized = _to_uint8(pixels)[0]
        return tf.transpose(resized, [2, 0, 1])[..., None]
    count = tf.shape(images)[0]
    pixels = tf.cast(images[..., 0], tf.float32)
    # Width: every run of p pixels of every row, times the p x q block.
    pixels = tf.reshape(tf.reshape(pixels, [-1, columns.shape[0]]) @ columns, [count, height, -1])
    # Height: every run of p rows, times the block, transposed.
    pixels = tf.linalg.matmul(
        rows, tf.reshape(pixels, [-1, rows.shape[0], image_size]), transpose_a=True
    )
    pixels = tf.reshape(pixels, [count, image_size, image_size, 1])
    return _to_uint8(pixels)


def _to_uint8(pixels: tf.Tensor) -> tf.Tensor:
    """Round interpolated gray levels to uint8. Bilinear weights are convex, so
    0 <= pixels <= 255 and +0.5 with truncation rounds (tf.round is a slow scalar loop;
    this costs a third of it)."""
    return tf.cast(pixels + 0.5, tf.uint8)


def _bilinear_blocks(size: int, target: int) -> tf.Tensor | None:
    """The p x q block of bilinear weights (half-pixel centres, no antialiasing) that
    shrinks `size` to `target` in runs, p:q being size:target in lowest terms; None when
    blocks would not be cheaper than TensorFlow's resize (a large or tiny block)."""
    common = math.gcd(size, target)
    p, q = size // common, target // common
    if not (4 <= q <= 16 and q < p <= 3 * q):
        return None
    weights = np.zeros((p, q), np.float32)
    for output in range(q):
        # Where output pixel `output`'s centre falls among the p inputs; a shrink keeps
        # both neighbours inside the run.
        centre = (output + 0.5) * p / q - 0.5
        first = math.floor(centre)
        fraction = centre - first
        weights[first, output] += 1.0 - fraction
        if fraction > 0:
            weights[first + 1, output] += fraction
    return tf.constant(weights)


def flip_bits(keys: tf.Tensor, seed: int) -> tf.Tensor:
    """bool [B]: which images of a batch to mirror, a hash of (seed, each image's key)."""
    text = tf.strings.join([str(seed), tf.strings.as_string(keys)], separator=":")
    return tf.equal(tf.strings.to_hash_bucket_fast(text, 2), 1)


def flip_batch(images: tf.Tensor, keys: tf.Tensor, seed: int) -> tf.Tensor:
    """Mirror each gray image of a batch [B, S, S, 1] left-right with probability 1/2.

    The coin of an image is a hash of (seed, its key), the key being the image's running
    number in the stream: a flip differs between images and epochs and never depends on
    threads or on how images happen to be grouped into batches.
    """
    flip = tf.cast(flip_bits(keys, seed), tf.int64)
    # Reversing [B, S, S] along its last axis is 4x faster than [B, S, S, 1] along its
    # third (a trailing axis of size 1 defeats Eigen's vectorisation); picking each image
    # from [originals; mirrors] by index beats a broadcast tf.where over the pixels.
    mirrored = tf.reverse(images[..., 0], axis=[2])[..., None]
    both = tf.concat([images, mirrored], axis=0)
    count = tf.shape(images, out_type=tf.int64)[0]
    return tf.gather(both, tf.range(count) + flip * count)


def to_model_input(images: tf.Tensor, dtype: str) -> tf.Tensor:
    """uint8 [B, S, S, 1] (0..255) -> the model input [B, S, S, 3] in `dtype`.

    Widening to three channels happens inside the normalisation's multiply-add,
    ((v / 255) - mean) / std = v * scale + offset, computed in float32: the same values
    as grayscale_to_rgb followed by the textbook formula, in one pass instead of five.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    scale = tf.constant([1.0 / (255.0 * std) for std in IMAGENET_STD])
    offset = tf.constant(
        [-mean / std for mean, std in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    )
    return tf.cast(tf.cast(images, tf.float32) * scale + offset, dtype)
