"""The validation scores a fit run keeps at its best epoch, compactly: what a report needs to
bootstrap the mean validation AUC over validation examples, with no TensorFlow.

ROC AUC depends on the scores only through their order, so each class's scores are kept as
dense ranks (equal scores share a rank, so ties stay ties): uint16 while there are fewer
than 65,536 examples, uint32 beyond. Labels are kept as bits. Both are zlib-compressed and
base64-encoded, row-major [examples, classes]. The AUC computed from the stored ranks equals
the one computed from the scores exactly.

Stored in result["details"]["fit"]["best_validation"] (optional; absent in older results):

    {"encoding": "zlib+base64", "examples": int, "classes": int,
     "rank_dtype": "uint16" | "uint32", "score_ranks": str, "labels": str,
     "order": "split" | "ranks"}

`order` "split": examples in the split's own order (the order one worker reads it), so two
runs over the same split line up example by example whatever their rank count; "ranks":
rank 0's examples, then rank 1's, ... (the split order could not be rebuilt).
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

ENCODING = "zlib+base64"
UINT16_LIMIT = 2**16


class ValidationScoresError(ValueError):
    """A stored `best_validation` that cannot be decoded; the message says what is wrong."""


@dataclass(frozen=True)
class ValidationScores:
    """Per-example score ranks [examples, classes] and 0/1 labels [examples, classes]."""

    ranks: np.ndarray
    labels: np.ndarray
    order: str

    @property
    def examples(self) -> int:
        return int(self.labels.shape[0])


def encode(probabilities: np.ndarray, labels: np.ndarray, *, order: str) -> dict[str, Any]:
    """The JSON-able form of one epoch's validation scores and labels."""
    probabilities = np.asarray(probabilities)
    labels = np.asarray(labels)
    if probabilities.shape != labels.shape or probabilities.ndim != 2:
        raise ValueError(
            f"scores {probabilities.shape} and labels {labels.shape} must be equal 2-D shapes"
        )
    examples, classes = labels.shape
    dtype = np.uint16 if examples < UINT16_LIMIT else np.uint32
    ranks = np.empty((examples, classes), dtype=dtype)
    for index in range(classes):
        _, inverse = np.unique(probabilities[:, index], return_inverse=True)
        ranks[:, index] = inverse.reshape(-1)
    bits = np.packbits(labels.astype(bool).reshape(-1))
    return {
        "encoding": ENCODING,
        "examples": int(examples),
        "classes": int(classes),
        "rank_dtype": np.dtype(dtype).name,
        "score_ranks": _pack(ranks.astype(np.dtype(dtype).newbyteorder("<")).tobytes()),
        "labels": _pack(bits.tobytes()),
        "order": order,
    }


def decode(document: Any) -> ValidationScores:
    """Read back what `encode` wrote; raises ValidationScoresError naming the bad key."""
    if not isinstance(document, dict):
        raise ValidationScoresError("best_validation is not an object")
    if document.get("encoding") != ENCODING:
        found = document.get("encoding")
        raise ValidationScoresError(f"best_validation: unknown encoding {found!r}")
    try:
        examples, classes = int(document["examples"]), int(document["classes"])
        dtype = np.dtype(document["rank_dtype"]).newbyteorder("<")
        ranks = np.frombuffer(_unpack(document["score_ranks"]), dtype=dtype)
        bits = np.frombuffer(_unpack(document["labels"]), dtype=np.uint8)
        order = str(document.get("order", "ranks"))
    except (KeyError, TypeError, ValueError, zlib.error) as error:
        raise ValidationScoresError(f"best_validation: {error}") from error
    if ranks.size != examples * classes:
        raise ValidationScoresError(
            f"best_validation: {ranks.size} ranks for {examples} x {classes} examples"
        )
    labels = np.unpackbits(bits)[: examples * classes]
    if labels.size != examples * classes:
        raise ValidationScoresError(f"best_validation: too few label bits for {examples} examples")
    return ValidationScores(
        ranks=ranks.reshape(examples, classes).astype(np.int64),
        labels=labels.reshape(examples, classes).astype(np.int8),
        order=order,
    )


def _pack(raw: bytes) -> str:
    return base64.b64encode(zlib.compress(raw, 6)).decode("ascii")


def _unpack(text: str) -> bytes:
    return zlib.decompress(base64.b64decode(text.encode("ascii"), validate=True))
