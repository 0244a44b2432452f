"""The poster's CheXNet: DenseNet121 or ResNet50, global average pooling, Dense(14, sigmoid).

Also the optimizer (Adam, optionally scaled by the number of workers with a linear warm-up),
the precision policy, and the custom train step: Horovod's DistributedGradientTape in a
tf.function (model.fit with DistributedOptimizer is silently broken with tf_keras here).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf
import tf_keras

from bench.input.preprocess import to_model_input
from bench.job.engine import Engine

NUM_CLASSES = 14
APPLICATIONS = {
    "densenet121": tf_keras.applications.DenseNet121,
    "resnet50": tf_keras.applications.ResNet50,
}
# The files tf_keras.applications would download for weights="imagenet", include_top=False.
IMAGENET_NOTOP_FILES = {
    "densenet121": "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
}
PRECISION_POLICIES = {
    "fp32": "float32",
    "mixed_float16": "mixed_float16",
    "mixed_bfloat16": "mixed_bfloat16",
}
INPUT_DTYPES = {"fp32": "float32", "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


class WeightsError(ValueError):
    """Weights that cannot be used without a download; the message names the file."""


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def resolve_weights(model_name: str, weights: str | None) -> str | None:
    """None, or a weights file that exists: "imagenet" only from Keras' cache, never fetched."""
    if weights is None:
        return None
    if weights == "imagenet":
        cached = keras_cache_dir() / IMAGENET_NOTOP_FILES[model_name]
        if not cached.is_file():
            raise WeightsError(
                f"weights 'imagenet': {cached} is not in Keras' cache and this harness never "
                f"downloads; copy the file there or pass its path with --weights"
            )
        return str(cached)
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    return str(path)


def set_precision(precision: str) -> None:
    """The global Keras policy; must precede model building."""
    tf_keras.mixed_precision.set_global_policy(PRECISION_POLICIES[precision])


class ImageNetInput(tf_keras.layers.Layer):
    """uint8 gray images [B, S, S, 1] -> 3 channels, ImageNet mean/std, the compute dtype.

    The model's first layer, so that it runs on the device: the input pipeline ships one
    byte per pixel and spends no host CPU on it (bench.input.preprocess).
    """

    def call(self, images: tf.Tensor) -> tf.Tensor:
        return to_model_input(images, self.compute_dtype)


def build_model(
    model_name: str, image_size: int, *, weights: str | None = None, precision: str = "fp32"
) -> tf_keras.Model:
    """CheXNet at `image_size` on uint8 gray input; the output stays float32 under mixed
    precision."""
    set_precision(precision)
    inputs = tf_keras.Input((image_size, image_size, 1), dtype="uint8", name="image")
    normalised = ImageNetInput(name="imagenet_input")(inputs)
    backbone = APPLICATIONS[model_name](
        include_top=False, weights=resolve_weights(model_name, weights), input_tensor=normalised
    )
    pooled = tf_keras.layers.GlobalAveragePooling2D(name="avg_pool")(backbone.output)
    logits = tf_keras.layers.Dense(NUM_CLASSES, name="logits")(pooled)
    # Sigmoid in float32: float16 probabilities near 0 and 1 make the loss unstable.
    outputs = tf_keras.layers.Activation("sigmoid", dtype="float32", name="findings")(logits)
    return tf_keras.Model(inputs, outputs, name=f"chexnet_{model_name}")


def scaled_learning_rate(base: float, workers: int, scale: bool) -> float:
    return base * workers if scale else base


def learning_rate_at(step: int, *, base: float, target: float, warmup_steps: int) -> float:
    """Linear warm-up from `base` to `target` over `warmup_steps` (Goyal et al.)."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return target
    return base + (target - base) * step / warmup_steps


def make_optimizer(learning_rate: float, precision: str) -> tf_keras.optimizers.Optimizer:
    optimizer = tf_keras.optimizers.Adam(learning_rate=learning_rate)
    if precision == "mixed_float16":
        # Dynamic loss scaling: float16 gradients underflow otherwise.
        optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def optimizer_variables(optimizer: tf_keras.optimizers.Optimizer) -> list[tf.Variable]:
    variables = optimizer.variables
    return list(variables() if callable(variables) else variables)


@dataclass
class Trainer:
    """A compiled train step and predict step for one model on one engine."""

    model: tf_keras.Model
    optimizer: tf_keras.optimizers.Optimizer
    engine: Engine
    xla: bool = False

    def __post_init__(self) -> None:
        self.loss_fn = tf_keras.losses.BinaryCrossentropy()
        self._scaled = isinstance(self.optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
        self.train_step = tf.function(self._train_step)
        self.predict_step = tf.function(self._predict, jit_compile=self.xla or None)
        # XLA compiles forward and backward; Horovod's collectives stay outside it.
        self._forward = tf.function(self._forward_loss, jit_compile=self.xla or None)
        self._broadcast_done = False

    def _forward_loss(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        probabilities = self.model(images, training=True)
        loss = self.loss_fn(labels, probabilities)
        scaled = self.optimizer.get_scaled_loss(loss) if self._scaled else loss
        return loss, scaled

    def _train_step(self, images: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss, scaled = self._forward(images, labels)
        tape = self.engine.gradient_tape(tape)
        variables = self.model.trainable_variables
        gradients = tape.gradient(scaled, variables)
        if self._scaled:
            gradients = self.optimizer.get_unscaled_gradients(gradients)
        self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return loss

    def _predict(self, images: tf.Tensor) -> tf.Tensor:
        return self.model(images, training=False)

    def set_learning_rate(self, value: float) -> None:
        self.optimizer.learning_rate.assign(value)

    @property
    def learning_rate(self) -> float:
        return float(self.optimizer.learning_rate.numpy())

    def step(self, images: tf.Tensor, labels: tf.Tensor) -> float:
        """One step; reading the loss waits for the device (the per-step sync)."""
        loss = float(self.train_step(images, labels).numpy())
        if not self._broadcast_done:
            # The Horovod way: after the first step every variable exists (optimizer slots
            # included); from here on all ranks start from rank 0's values.
            self.broadcast()
        return loss

    def broadcast(self) -> None:
        self.engine.broadcast_variables(self.model.variables + optimizer_variables(self.optimizer))
        self._broadcast_done = True


def make_trainer(
    *,
    model_name: str,
    image_size: int,
    precision: str,
    xla: bool,
    learning_rate: float,
    weights: str | None,
    engine: Engine,
) -> Trainer:
    model = build_model(model_name, image_size, weights=weights, precision=precision)
    return Trainer(
        model=model, optimizer=make_optimizer(learning_rate, precision), engine=engine, xla=xla
    )
