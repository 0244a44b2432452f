"""The bad-data guard: no example is ever lost silently, and a bad one is always named.

tf.data cannot catch an error per element, and its errors do not say which file failed
("Invalid PNG data, size 1234"). The guard works around both without leaving the graph:

1. `register`: before decoding, every element gets a sequence number, and the number is
   written to a table with the element's file index and record index.
2. the pipeline decodes with an order-preserving map followed by `ignore_errors()`, so an
   element that fails to decode simply goes missing from an ordered stream.
3. `check`: a scan over the decoded stream sees each gap in the sequence numbers, looks the
   missing numbers up in the table, and so knows the file (and record) of every failure.
   Elements the source stage already knew to be bad (an unreadable record) arrive with a
   problem code. A finite stream ends with a sentinel, so that failures at the very end
   are seen too.

Then either the run fails with `InvalidArgumentError: bad data: <file> (record N): <why>`,
or, with skip_bad, the element is dropped, counted in `skipped` and named on stderr.
"""

from __future__ import annotations

import sys

import tensorflow as tf

from bench.sources import (
    PROBLEM_EXTRA_RECORD,
    PROBLEM_NONE,
    PROBLEM_UNREADABLE,
    PROBLEMS,
    plain,
)

DECODE_FAILED = "could not be read or decoded as an image"
Element = dict[str, tf.Tensor]


class BadDataGuard:
    """Numbers elements before decoding and accounts for every one after it."""

    def __init__(self, files: tuple[str, ...], *, skip_bad: bool) -> None:
        self.skip_bad = skip_bad
        self._files = tf.constant(files)
        self._where = tf.lookup.experimental.MutableHashTable(
            key_dtype=tf.int64, value_dtype=tf.int64, default_value=[-1, -1]
        )
        # How many elements were dropped (skip_bad) since the dataset was built.
        self.skipped = tf.Variable(0, dtype=tf.int64, trainable=False)

    def skipped_count(self) -> int:
        return int(self.skipped.numpy())

    def register(self, elements: tf.data.Dataset, *, finite: bool) -> tf.data.Dataset:
        """Number the elements (`seq`) and remember where each number came from.

        The source stage's elements carry `end` (False); a finite stream gets a sentinel
        with `end` True, so that failures among its last elements are seen.
        """
        if finite:
            elements = elements.concatenate(
                tf.data.Dataset.from_tensors(_sentinel(elements.element_spec))
            )
        return elements.enumerate().map(plain(self._remember))

    def check(self, decoded: tf.data.Dataset) -> tf.data.Dataset:
        """Account for gaps and problems in the decoded stream; fail, or drop and count."""
        checked = decoded.scan(tf.constant(0, tf.int64), plain(self._account))
        return checked.filter(plain(_keep))

    def _remember(self, seq: tf.Tensor, element: Element) -> Element:
        where = tf.stack([element["source_id"], element["record"]])
        insert = self._where.insert(seq[None], where[None])
        with tf.control_dependencies([insert]):
            return {**element, "seq": tf.identity(seq)}

    def _account(self, expected: tf.Tensor, element: Element) -> tuple[tf.Tensor, Element]:
        """Per element: forget its number; on a gap or a problem, fail or count."""
        seq = element["seq"]
        bad = tf.logical_or(seq > expected, element["problem"] != PROBLEM_NONE)
        acted = tf.cond(bad, lambda: self._act(expected, element), lambda: tf.constant(0, tf.int64))
        remove = self._where.remove(tf.range(expected, seq + 1, dtype=tf.int64))
        with tf.control_dependencies([acted, remove]):
            return seq + 1, {**element, "seq": tf.identity(seq)}

    def _act(self, expected: tf.Tensor, element: Element) -> tf.Tensor:
        """Name the bad elements up to this one; fail, or report and count them."""
        messages = self._messages(expected, element)
        text = tf.strings.reduce_join(messages, separator="; ")
        if not self.skip_bad:
            check = tf.debugging.Assert(
                False, ["bad data:", text, "(set skip_bad to skip such examples and count them)"]
            )
            with tf.control_dependencies([check]):
                return tf.constant(0, tf.int64)
        printed = tf.print("chexbench: skipped bad data:", text, output_stream=sys.stderr)
        with tf.control_dependencies([printed]):
            return self.skipped.assign_add(tf.size(messages, out_type=tf.int64))

    def _messages(self, expected: tf.Tensor, element: Element) -> tf.Tensor:
        seq = element["seq"]
        missing = tf.range(expected, seq, dtype=tf.int64)
        lost = _describe(self._files, self._where.lookup(missing), DECODE_FAILED)
        own_reason = tf.gather(
            tf.constant(["", PROBLEMS[PROBLEM_UNREADABLE], PROBLEMS[PROBLEM_EXTRA_RECORD]]),
            element["problem"],
        )
        own = _describe(self._files, self._where.lookup(seq[None]), own_reason)
        own = own[: tf.cast(element["problem"] != PROBLEM_NONE, tf.int32)]
        return tf.concat([lost, own], axis=0)


def _keep(element: Element) -> tf.Tensor:
    """Real, good elements only: not the end sentinel, not a known-bad record."""
    return tf.logical_and(tf.logical_not(element["end"]), tf.equal(element["problem"], 0))


def _sentinel(spec: dict[str, tf.TensorSpec]) -> Element:
    """An element of the same structure that marks the end of a finite stream."""
    element = {
        name: tf.zeros(item.shape, item.dtype)
        for name, item in spec.items()
        if item.dtype != tf.string
    }
    element.update(
        {name: tf.constant("") for name, item in spec.items() if item.dtype == tf.string}
    )
    element["end"] = tf.constant(True)
    element["source_id"] = tf.constant(-1, tf.int64)
    return element


def _describe(files: tf.Tensor, where: tf.Tensor, reason: tf.Tensor | str) -> tf.Tensor:
    """[k, 2] (file index, record index) -> k strings "file (record r): reason"."""
    names = tf.gather(files, tf.maximum(where[:, 0], 0))
    records = where[:, 1]
    record_text = tf.where(
        records >= 0, tf.strings.join([" (record ", tf.strings.as_string(records), ")"]), ""
    )
    return tf.strings.join([names, record_text, ": ", reason])
