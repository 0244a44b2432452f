"""Decoding and the preprocessing shared by every source and every pipeline structure.

Both sources hand this module the same thing: encoded bytes plus the stored format and
shape. What happens after, identical for raw files and TFRecords so that a comparison
measures only reading and decoding:

    decode -> uint8 [H, W, 1]  ->  resize to image_size (bilinear; skipped when equal)
           -> 3 channels -> ImageNet mean/std on the [0, 1] scale
           -> random horizontal flip (training only, stateless, seeded per element)
           -> cast to the run's dtype
"""

from __future__ import annotations

import tensorflow as tf

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DTYPES = ("float32", "float16", "bfloat16")
# Formats a stored image can have; `raw` is uint8 pixels, row-major H x W x C.
FORMATS = ("png", "jpeg", "raw")


def decode_image(
    encoded: tf.Tensor,
    image_format: tf.Tensor,
    height: tf.Tensor,
    width: tf.Tensor,
    channels: tf.Tensor,
) -> tf.Tensor:
    """Decode one stored image to uint8 grayscale [H, W, 1] according to its format.

    An unknown format or a raw payload of the wrong size raises InvalidArgumentError; the
    pipeline's bad-data guard turns that into an error naming the file.
    """

    def raw() -> tf.Tensor:
        pixels = tf.io.decode_raw(encoded, tf.uint8)
        image = tf.reshape(pixels, tf.stack([height, width, channels]))
        return tf.cond(
            tf.equal(channels, 1),
            lambda: image,
            lambda: tf.image.rgb_to_grayscale(image[..., :3]),
        )

    def unknown() -> tf.Tensor:
        check = tf.debugging.Assert(False, ["unknown image format", image_format])
        with tf.control_dependencies([check]):
            return tf.zeros([1, 1, 1], tf.uint8)

    image = tf.case(
        [
            (tf.equal(image_format, "png"), lambda: tf.io.decode_png(encoded, channels=1)),
            (tf.equal(image_format, "jpeg"), lambda: tf.io.decode_jpeg(encoded, channels=1)),
            (tf.equal(image_format, "raw"), raw),
        ],
        default=unknown,
        exclusive=False,
    )
    return tf.ensure_shape(image, [None, None, 1])


def resize(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """uint8 [H, W, 1] -> float32 [S, S, 1] on the 0..255 scale; no resampling when equal.

    Resizing the single gray channel before widening to three is the same arithmetic at a
    third of the cost.
    """
    shape = tf.shape(image)
    same = tf.logical_and(tf.equal(shape[0], image_size), tf.equal(shape[1], image_size))
    resized = tf.cond(
        same,
        lambda: tf.cast(image, tf.float32),
        lambda: tf.image.resize(image, [image_size, image_size], method="bilinear"),
    )
    return tf.ensure_shape(resized, [image_size, image_size, 1])


def finish(
    image: tf.Tensor, *, training: bool, dtype: str, flip_seed: tf.Tensor | None
) -> tf.Tensor:
    """float32 [S, S, 1] (0..255) -> the model input [S, S, 3] in `dtype`.

    `flip_seed` is a [2] int tensor (the run's seed and the element's sequence number), so
    that a flip depends on the element and the epoch, never on thread scheduling. The flip
    runs on the one gray channel, and widening to three channels happens inside the
    normalisation's multiply-add, ((v / 255) - mean) / std = v * scale + offset: the same
    values as grayscale_to_rgb followed by the textbook formula, in two passes instead of five.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    if training:
        if flip_seed is None:
            raise ValueError("a training pipeline needs a flip seed")
        image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    scale = tf.constant([1.0 / (255.0 * std) for std in IMAGENET_STD])
    offset = tf.constant(
        [-mean / std for mean, std in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    )
    return tf.cast(image * scale + offset, dtype)
