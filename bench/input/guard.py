"""The bad-data guard: no example is ever lost silently, and a bad one is always named.

tf.data cannot catch an error per element, and its errors do not say which file failed
("Invalid PNG data, size 1234"). The guard works around both without leaving the graph,
at a cost per *batch* rather than per image (per-image bookkeeping cost more CPU than
decoding a 256-px image):

1. `decoding`: every element is numbered (`seq`, from enumerate) before decoding, and the
   decode function first writes (seq, file index, record index, problem) to a table.
2. the pipeline decodes with an order-preserving map followed by `ignore_errors()`, so an
   element that fails to decode simply goes missing from an ordered stream.
3. `check`, per batch: the numbers missing between the last batch and this one are the
   failures; the table names their file (and record). Elements the source stage already
   knew to be bad (an unreadable record) arrive with a problem code. A finite stream ends
   with a sentinel, so that failures at the very end are seen too.

Then either the run fails with `InvalidArgumentError: bad data: <file> (record N): <why>`,
or, with skip_bad, the elements are dropped, counted in `skipped` and named on stderr.

`decoding_batch`: the same for a decoder of whole batches (raw uint8 records): one table
write per batch, bad images marked, not missing; only a batch that fails as a whole (a
record that is no tf.train.Example) goes missing, and `end_batch` replaces its sentinel.
`marking_batch`: for a decoder that never loses an element (bench.input.host_decode): the
batches carry their file and record indexes and `check(marked=True)` names bad ones from
the batch itself, with no table (~4 us per image less of the training process's CPU).

A stream in which nothing decodes would never fill a batch: an element more than
`stall_limit` numbers ahead of the last checked batch is passed on marked as stalled.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from bench.input.decoders import BatchDecoder
from bench.input.preprocess import flip_bits
from bench.input.shared_table import SharedTable
from bench.input.sources import (
    PROBLEM_NONE,
    PROBLEM_UNDECODABLE,
    PROBLEM_UNREADABLE,
    PROBLEMS,
    known_problem,
    plain,
)
from converters.labels import NUM_LABELS

DECODE_FAILED = "could not be read or decoded as an image"
BATCH_FAILED = (
    "in a batch of records that failed to parse as a whole (one or more of them is not a "
    "tf.train.Example; python -m converters.verify names it)"
)
# Codes after PROBLEM_UNREADABLE (bench.input.sources): set by the guard itself.
PROBLEM_STALLED = 2
PROBLEM_BATCH_FAILED = 4  # lost with a whole batch that failed to decode
STALLED = "not one batch of usable examples among the last {limit} read"
NAMED = 10  # bad elements named in one message; the rest are counted
Element = dict[str, tf.Tensor]
PROGRESS = 0  # the progress table's one key
Decoder = Callable[[Element], tuple[tf.Tensor, tf.Tensor]]


def stall_limit(batch_size: int) -> int:
    """Elements a decoded element may run ahead of the checks before the guard calls it a
    stall: far above what tf.data holds in flight (parallel maps and batches)."""
    return 256 * batch_size + 65536


class BadDataGuard:
    """Numbers elements before decoding and accounts for every one after it, per batch."""

    def __init__(self, files: tuple[str, ...], *, skip_bad: bool, batch_size: int) -> None:
        self.skip_bad = skip_bad
        self.limit = stall_limit(batch_size)
        self._files = tf.constant(files)
        # Rows (seq, file index, record index, problem) by seq, removed once checked; the
        # first number not yet accounted for (key PROGRESS); per decoded batch, one more
        # than its highest number (`end_batch`). Shared by name (bench.input.shared_table).
        self._rows = SharedTable(f"chexbench-guard-rows-{uuid.uuid4().hex}", width=4)
        self._progress = SharedTable(f"chexbench-guard-progress-{uuid.uuid4().hex}", width=1)
        self._issued = SharedTable(f"chexbench-guard-issued-{uuid.uuid4().hex}", width=1)
        # Elements dropped (skip_bad) since the dataset was built; this process only.
        self.skipped = tf.Variable(0, dtype=tf.int64, trainable=False)

    def skipped_count(self) -> int:
        return int(self.skipped.numpy())

    def numbered(self, elements: tf.data.Dataset, *, finite: bool) -> tf.data.Dataset:
        """(seq, element) pairs; a finite stream ends with a sentinel (source_id -1)."""
        if finite:
            elements = elements.concatenate(
                tf.data.Dataset.from_tensors(_sentinel(elements.element_spec))
            )
        return elements.enumerate()

    def decoding(self, decode: Decoder, image_size: int) -> Callable[..., Element]:
        """The per-element map function: remember where `seq` came from, then decode.

        Sentinels, known-bad and stalled elements are not decoded but get a zero image, so
        that they reach `check` in order.
        """

        def function(seq: tf.Tensor, element: Element) -> Element:
            # A fresh element that goes missing failed to decode (DECODE_FAILED).
            end, known, fresh, stalled, remember = self._remember(seq, element, PROBLEM_NONE)
            with tf.control_dependencies([remember]):
                image, label = tf.cond(
                    tf.logical_and(fresh, tf.logical_not(stalled)),
                    lambda: decode(element),
                    lambda: (
                        tf.zeros([image_size, image_size, 1], tf.uint8),
                        tf.zeros([NUM_LABELS], tf.float32),
                    ),
                )
            problem = tf.where(tf.logical_and(fresh, stalled), PROBLEM_STALLED, known)
            return {"seq": seq, "problem": problem, "end": end, "image": image, "label": label}

        return plain(function)

    def decoding_batch(self, decode: BatchDecoder, image_size: int) -> Callable[..., Element]:
        """`decoding` for a batch decoder (bench.input.decoders.batch_loader), mapped over
        batches of numbered elements: one table write and one decoder call per batch (asked
        to mirror none).

        Bad images come back marked with their problem code, not missing; a batch that
        fails as a whole goes missing and `check` names its records with BATCH_FAILED. A
        batch in which every element has stalled is not decoded.
        """

        def function(seq: tf.Tensor, elements: Element) -> Element:
            end, known, fresh, stalled, remember = self._remember(
                seq, elements, PROBLEM_BATCH_FAILED
            )
            issued = self._issued.insert(seq[-1:], seq[-1:, None] + 1)
            count = tf.shape(seq)[0]
            flips = tf.zeros([count], tf.bool)
            # Written before decoding, so that a batch that fails still leaves its trace.
            with tf.control_dependencies([remember, issued]):
                images, labels, decoded = tf.cond(
                    tf.reduce_any(tf.logical_and(fresh, tf.logical_not(stalled))),
                    lambda: decode(elements, flips),
                    lambda: (
                        tf.zeros([count, image_size, image_size, 1], tf.uint8),
                        tf.zeros([count, NUM_LABELS], tf.float32),
                        tf.fill([count], PROBLEM_UNDECODABLE),
                    ),
                )
            bad = tf.logical_and(fresh, decoded != PROBLEM_NONE)
            problem = tf.where(bad, decoded, known)
            problem = tf.where(tf.logical_and(fresh, stalled), PROBLEM_STALLED, problem)
            return {"seq": seq, "problem": problem, "end": end, "image": images, "label": labels}

        return plain(function)

    def marking_batch(
        self, decode: BatchDecoder, *, flip_seed: int | None = None
    ) -> Callable[..., Element]:
        """The map function for a decoder that marks bad elements (see above), for
        `check(..., marked=True)`. With `flip_seed` the decoder is asked to mirror the
        images `flip_bits` picks (the same ones flip_batch would)."""

        def function(seq: tf.Tensor, elements: Element) -> Element:
            count = tf.shape(seq)[0]
            flips = tf.zeros([count], tf.bool) if flip_seed is None else flip_bits(seq, flip_seed)
            images, labels, decoded = decode(elements, flips)
            end = elements["source_id"] < 0
            return {
                "seq": seq,
                "source_id": elements["source_id"],
                "record": elements["record"],
                "problem": tf.where(end, PROBLEM_NONE, decoded),
                "end": end,
                "image": images,
                "label": labels,
            }

        return plain(function)

    def _remember(
        self, seq: tf.Tensor, elements: Element, if_missing: int
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Operation]:
        """For one element (scalar `seq`) or a batch: (end, known problem, fresh, stalled,
        the table write). The table's row holds why the element is bad should it go missing:
        its known problem, or `if_missing` for a fresh one."""
        end = elements["source_id"] < 0
        # Elements without a payload (bench.input.host_decode) have no problem known yet.
        before = known_problem(elements) if "payload" in elements else tf.zeros_like(seq, tf.int32)
        known = tf.where(end, PROBLEM_NONE, before)
        fresh = tf.logical_and(tf.logical_not(end), known == PROBLEM_NONE)
        progress = self._progress.find(tf.constant([PROGRESS], tf.int64), default=0)[0, 0]
        stalled = seq - progress > self.limit
        problem = tf.cast(tf.where(fresh, if_missing, known), tf.int64)
        rows = tf.stack([seq, elements["source_id"], elements["record"], problem], axis=-1)
        remember = self._rows.insert(tf.reshape(seq, [-1]), tf.reshape(rows, [-1, 4]))
        return end, known, fresh, stalled, remember

    def end_batch(self, image_size: int) -> tf.data.Dataset:
        """A one-element batch to append to a finite stream of `decoding_batch` batches:
        its end element carries the count of numbers handed out, so that `check` sees the
        elements of a last batch that failed as a whole. (A sentinel element could go
        missing with that batch.) Built lazily, after every batch before it."""

        def end(_: tf.Tensor) -> Element:
            return {
                "seq": tf.reshape(tf.reduce_max(tf.concat([[0], self._issued.values()], 0)), [1]),
                "problem": tf.constant([PROBLEM_NONE]),
                "end": tf.constant([True]),
                "image": tf.zeros([1, image_size, image_size, 1], tf.uint8),
                "label": tf.zeros([1, NUM_LABELS], tf.float32),
            }

        return tf.data.Dataset.range(1).map(plain(end))

    def check(
        self,
        batches: tf.data.Dataset,
        *,
        drop_marked: bool,
        output: Callable[[Element], Any] | None = None,
        marked: bool = False,
    ) -> tf.data.Dataset:
        """Account for the gaps and problems of each batch: fail, or drop and count.

        Batches keep `seq`, `image` and `label`, or become `output(batch)` when given (a
        cheap function, such as picking the model's inputs: it runs in the guard's
        sequential scan). With `drop_marked`, sentinels and bad elements are removed (a
        batch may shrink, or vanish); without it the caller knows none can be there (an
        endless stream that fails on bad data). `marked`: batches of `marking_batch`.
        """
        start = (tf.constant(0, tf.int64), tf.constant(0, tf.int64))
        # The fields (and the output) are made inside the scan: each map stage of its own
        # costs ~1 us per image and its threads' hand-offs.
        finish = _drop_marked if drop_marked else _fields
        if output is not None and not drop_marked:
            finish = _then(_fields, output)

        accounting = self._account_marked if marked else self._account

        def account(state: tuple[tf.Tensor, tf.Tensor], batch: Element):
            state, batch = accounting(state, batch)
            return state, finish(batch)

        checked = batches.scan(start, plain(account))
        if not drop_marked:
            return checked
        checked = checked.filter(plain(lambda batch: tf.size(batch["seq"]) > 0))
        return checked if output is None else checked.map(plain(output))

    def _account(
        self, state: tuple[tf.Tensor, tf.Tensor], batch: Element
    ) -> tuple[tuple[tf.Tensor, tf.Tensor], Element]:
        """State: (the first number not yet accounted for, one more than the last good
        element's). A decoder that marks bad images instead of losing them keeps batches
        coming: too long a run of bad ones is a stall too."""
        expected, good_end = state
        seq = batch["seq"]
        last = seq[-1]
        good = tf.logical_and(tf.logical_not(batch["end"]), batch["problem"] == PROBLEM_NONE)
        good_end = tf.maximum(good_end, tf.reduce_max(tf.where(good, seq + 1, 0)))
        span = last + 1 - expected
        present = tf.scatter_nd((seq - expected)[:, None], tf.ones_like(seq), span[None])
        missing = tf.boolean_mask(tf.range(expected, last + 1), tf.equal(present, 0))
        is_bad = tf.logical_and(
            batch["problem"] != PROBLEM_NONE, batch["problem"] != PROBLEM_STALLED
        )
        bad = tf.concat([missing, tf.boolean_mask(seq, is_bad)], 0)
        marked = tf.boolean_mask(batch["problem"], is_bad)
        stalled = tf.logical_or(
            tf.reduce_any(tf.equal(batch["problem"], PROBLEM_STALLED)),
            last + 1 - good_end > self.limit,
        )
        acted = tf.cond(
            tf.logical_or(tf.size(bad) > 0, stalled),
            lambda: self._act(bad, marked, stalled),
            lambda: tf.constant(0, tf.int64),
        )
        advanced = self._progress.insert(tf.constant([PROGRESS], tf.int64), [[last + 1]])
        with tf.control_dependencies([acted]):
            checked = self._rows.remove(tf.range(expected, last + 1))
        with tf.control_dependencies([advanced, checked]):
            return (last + 1, good_end), {**batch, "seq": tf.identity(seq)}

    def _account_marked(
        self, state: tuple[tf.Tensor, tf.Tensor], batch: Element
    ) -> tuple[tuple[tf.Tensor, tf.Tensor], Element]:
        """`_account` for `marking_batch` batches: the same state, nothing to look up."""
        _, good_end = state
        seq, problem = batch["seq"], batch["problem"]
        last = seq[-1]
        good = tf.logical_and(tf.logical_not(batch["end"]), problem == PROBLEM_NONE)
        good_end = tf.maximum(good_end, tf.reduce_max(tf.where(good, seq + 1, 0)))
        is_bad = problem != PROBLEM_NONE
        stalled = last + 1 - good_end > self.limit
        rows = tf.stack(
            [seq, batch["source_id"], batch["record"], tf.cast(problem, tf.int64)], axis=-1
        )

        def act() -> tf.Tensor:
            bad = tf.boolean_mask(rows, is_bad)
            return self._report(bad, tf.ones([tf.shape(bad)[0]], tf.bool), stalled)

        acted = tf.cond(
            tf.logical_or(tf.reduce_any(is_bad), stalled), act, lambda: tf.constant(0, tf.int64)
        )
        with tf.control_dependencies([acted]):
            return (last + 1, good_end), {**batch, "seq": tf.identity(seq)}

    def _act(self, bad: tf.Tensor, marked: tf.Tensor, stalled: tf.Tensor) -> tf.Tensor:
        """Name the bad elements (numbers `bad`: the missing ones, then those that arrived
        with the problem codes `marked`); fail, or report and count them."""
        rows = self._rows.find(bad, default=-1)
        # Why: the table's row for a missing element, the element's own code for the rest.
        lost = tf.size(bad) - tf.size(marked)
        reasons = tf.concat([rows[:lost, 3], tf.cast(marked, tf.int64)], 0)
        rows = tf.concat([rows[:, :3], reasons[:, None]], 1)
        # A row never written (or already removed) does not name its file.
        return self._report(rows, tf.equal(rows[:, 0], bad), stalled)

    def _report(self, rows: tf.Tensor, known: tf.Tensor, stalled: tf.Tensor) -> tf.Tensor:
        """Fail on, or report and count, bad elements' rows (seq, file, record, problem)."""
        text = _describe(self._files, rows, known)
        count = tf.size(rows[:, 0], out_type=tf.int64)
        stall_text = STALLED.format(limit=self.limit)
        if not self.skip_bad:
            check = tf.debugging.Assert(
                False,
                [
                    "bad data:",
                    text,
                    "(set skip_bad to skip such examples and count them)",
                    tf.where(stalled, stall_text, ""),
                ],
            )
            with tf.control_dependencies([check]):
                return tf.constant(0, tf.int64)
        fail_on_stall = tf.debugging.Assert(
            tf.logical_not(stalled), ["bad data:", stall_text, "; skipped:", text]
        )
        printed = tf.print("chexbench: skipped bad data:", text, output_stream=sys.stderr)
        with tf.control_dependencies([fail_on_stall, printed]):
            return self.skipped.assign_add(count)


def _then(first: Callable[[Element], Element], second: Callable[[Element], Any]) -> Callable:
    return lambda batch: second(first(batch))


def _fields(batch: Element) -> Element:
    return {name: batch[name] for name in ("seq", "image", "label")}


def _drop_marked(batch: Element) -> Element:
    """Only real, good elements: not the end sentinel, not a known-bad record."""
    keep = tf.logical_and(tf.logical_not(batch["end"]), tf.equal(batch["problem"], PROBLEM_NONE))
    return {name: tf.boolean_mask(value, keep) for name, value in _fields(batch).items()}


def _sentinel(spec: dict[str, tf.TensorSpec]) -> Element:
    """An element of the same structure that marks the end of a finite stream."""
    element = {
        name: tf.constant("") if item.dtype == tf.string else tf.zeros(item.shape, item.dtype)
        for name, item in spec.items()
    }
    element["source_id"] = tf.constant(-1, tf.int64)
    return element


# By code; a stalled element is not a reason of its own (STALLED says why).
_REASONS = ("", PROBLEMS[PROBLEM_UNREADABLE], "", DECODE_FAILED, BATCH_FAILED)


def _describe(files: tf.Tensor, rows: tf.Tensor, known: tf.Tensor) -> tf.Tensor:
    """Table rows [k, 4] -> one string naming the first NAMED: "file (record r): reason; ..."."""
    shown = rows[:NAMED]
    names = tf.gather(files, tf.maximum(shown[:, 1], 0))
    names = tf.where(known[:NAMED], names, "an example whose file is no longer known")
    records = shown[:, 2]
    record_text = tf.where(
        records >= 0, tf.strings.join([" (record ", tf.strings.as_string(records), ")"]), ""
    )
    problem = shown[:, 3]
    reasons = tf.where(
        problem > 0, tf.gather(tf.constant(_REASONS), tf.maximum(problem, 0)), DECODE_FAILED
    )
    text = tf.strings.reduce_join(
        tf.strings.join([names, record_text, ": ", reasons]), separator="; "
    )
    more = tf.shape(rows, out_type=tf.int64)[0] - NAMED
    return tf.strings.join(
        [
            text,
            tf.where(more > 0, tf.strings.join([" and ", tf.strings.as_string(more), " more"]), ""),
        ]
    )
