"""An int64 hash table that every tf.data function using it finds by its shared name.

Why not a variable: tf.data captures a variable by value in each function it serializes (a
tf.data service worker would get one copy per stage); a named table is found by name.
Used by the bad-data guard (bench.input.guard).
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["SharedTable"]


class SharedTable:
    """An int64 hash table (key -> [width] values) that every tf.data function using it
    finds by its shared name: one table per process (or per tf.data service worker)."""

    def __init__(self, name: str, *, width: int) -> None:
        self.name = name
        self.width = width

    def _handle(self) -> tf.Tensor:
        return tf.raw_ops.MutableHashTableOfTensorsV2(
            key_dtype=tf.int64,
            value_dtype=tf.int64,
            value_shape=[self.width],
            shared_name=self.name,
            use_node_name_sharing=False,
        )

    def insert(self, keys: tf.Tensor, values: tf.Tensor) -> tf.Operation:
        values = tf.reshape(tf.cast(values, tf.int64), [-1, self.width])
        return tf.raw_ops.LookupTableInsertV2(
            table_handle=self._handle(), keys=tf.cast(keys, tf.int64), values=values
        )

    def find(self, keys: tf.Tensor, *, default: int) -> tf.Tensor:
        """[len(keys), width]; `default` in every column of a key not in the table."""
        return tf.raw_ops.LookupTableFindV2(
            table_handle=self._handle(),
            keys=tf.cast(keys, tf.int64),
            default_value=tf.fill([self.width], tf.constant(default, tf.int64)),
        )

    def remove(self, keys: tf.Tensor) -> tf.Operation:
        return tf.raw_ops.LookupTableRemoveV2(
            table_handle=self._handle(), keys=tf.cast(keys, tf.int64)
        )

    def values(self) -> tf.Tensor:
        """Every value in the table, flattened."""
        _, values = tf.raw_ops.LookupTableExportV2(
            table_handle=self._handle(), Tkeys=tf.int64, Tvalues=tf.int64
        )
        return tf.reshape(values, [-1])
