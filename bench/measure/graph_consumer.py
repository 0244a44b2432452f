"""The probe's consumer for tf.data datasets: batches pulled inside one compiled function per
call, as Keras `fit`'s train step pulls them, each batch timed in the graph.

Why: a Python loop calling `next()` on an eager iterator spends ~0.6 ms of this process's
CPU per batch rebuilding the element's Python structure and dispatching the op (10 us per
224 px image at batch 64, measured with the tuned pipeline on the team's 2-core VM),
CPU that a training step never spends and that the probe then charged to the pipeline.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

__all__ = ["CONSUMER", "GraphPuller", "is_dataset"]

CONSUMER = "batches pulled in a compiled function (tf.function), as a training step does"


def is_dataset(dataset: Any) -> bool:
    return isinstance(dataset, tf.data.Dataset)


class GraphPuller:
    """`puller(count)` pulls up to `count` batches from `iterator` (an iterator of a
    tf.data.Dataset) in one call; returns (seconds, images) per batch, images being the
    leading dimension of the batch's first component. Fewer when the dataset ends.

    Traced and run once when made, so that tracing never falls in a timed window.
    """

    def __init__(self, iterator: Any) -> None:
        self._iterator = iterator
        self._pull = tf.function(
            self._pull_graph, autograph=False, input_signature=[tf.TensorSpec([], tf.int32)]
        )
        self._pull(tf.constant(0, tf.int32))

    def __call__(self, count: int) -> list[tuple[float, int]]:
        if count < 1:
            return []
        start, stamps, sizes = self._pull(tf.constant(count, tf.int32))
        ends = stamps.numpy()
        seconds = np.diff(np.concatenate([[float(start.numpy())], ends]))
        return [(float(s), int(n)) for s, n in zip(seconds, sizes.numpy(), strict=True)]

    def _pull_graph(self, count: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        start = tf.timestamp()
        scalar = tf.TensorShape([])
        stamps = tf.TensorArray(tf.float64, size=0, dynamic_size=True, element_shape=scalar)
        sizes = tf.TensorArray(tf.int64, size=0, dynamic_size=True, element_shape=scalar)

        def more(index: tf.Tensor, ended: tf.Tensor, *_: Any) -> tf.Tensor:
            return tf.logical_and(index < count, tf.logical_not(ended))

        def pull(index: tf.Tensor, ended: tf.Tensor, stamps: Any, sizes: Any) -> tuple:
            optional = self._iterator.get_next_as_optional()

            def got() -> tuple:
                first = tf.nest.flatten(optional.get_value())[0]
                size = tf.shape(first, out_type=tf.int64)[0]
                # The stamp follows the element, and the next iteration waits for the stamp:
                # loop iterations may otherwise overlap and stamp out of order.
                with tf.control_dependencies([size]):
                    stamp = tf.timestamp()
                with tf.control_dependencies([stamp]):
                    return (
                        tf.identity(index + 1),
                        tf.identity(tf.constant(False)),
                        stamps.write(index, stamp),
                        sizes.write(index, size),
                    )

            def end() -> tuple:
                return index, tf.constant(True), stamps, sizes

            return tf.cond(optional.has_value(), got, end)

        # The first pull waits for `start`: unordered, a call's first batch was sometimes
        # stamped before its start (negative times, first seen in CI).
        with tf.control_dependencies([start]):
            first_index = tf.identity(tf.constant(0))
        _, _, stamps, sizes = tf.while_loop(
            more, pull, (first_index, tf.constant(False), stamps, sizes), parallel_iterations=1
        )
        return start, stamps.stack(), sizes.stack()
