"""Batch arrays for TensorFlow from the host decoder (bench.input.host_batch,
bench.input.decode_pool): aligned so that TensorFlow takes them without a copy, and reused
once TensorFlow is done with them."""

from __future__ import annotations

import collections
import weakref
from typing import Any

import numpy as np

__all__ = ["TENSOR_ALIGNMENT", "RecycledArrays", "aligned_empty"]

# TensorFlow takes a numpy function's output array without copying it when its data is
# aligned to this (EIGEN_MAX_ALIGN_BYTES), and copies it otherwise; numpy's allocations
# are aligned to 16 bytes only.
TENSOR_ALIGNMENT = 64


def aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised array whose data starts on a TENSOR_ALIGNMENT boundary."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(size + TENSOR_ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % TENSOR_ALIGNMENT
    return raw[start : start + size].view(dtype).reshape(shape)


class RecycledArrays:
    """Aligned arrays [count, *shape] for batches handed to TensorFlow, each reused once the
    array handed out is gone (TensorFlow holds it while a tensor uses its memory).

    Why: a fresh 3 MB batch array costs page faults and the kernel's zeroing of each page;
    in the tuned pipeline that was 8.5 us per 224 px image of the training process's CPU,
    against 1.2 us to copy into memory already mapped. Thread-safe; keeps at most `keep`
    arrays spare (more are made when more batches are alive at once, and then dropped).
    """

    def __init__(self, shape: tuple[int, ...], dtype: Any, *, keep: int = 16) -> None:
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.keep = keep
        self._row = int(np.prod(shape))
        self._spare: collections.deque[np.ndarray] = collections.deque()

    def take(self, count: int) -> np.ndarray:
        """An uninitialised aligned array of `count` rows, reused when one is spare."""
        try:
            whole = self._spare.pop()
            if len(whole) < count:
                whole = aligned_empty((count, *self.shape), self.dtype)
        except IndexError:
            whole = aligned_empty((max(count, 1), *self.shape), self.dtype)
        # Over a buffer object of its own: every view of the handed array (numpy's, or
        # TensorFlow's tensor) keeps that object alive, so it dies with the last of them.
        # (A slice of `whole` would not do: numpy points views at the memory's owner.)
        handed = np.frombuffer(memoryview(whole.reshape(-1)), self.dtype, count * self._row)
        weakref.finalize(handed.base, self._give_back, whole)
        return handed.reshape(count, *self.shape)

    def spare(self) -> int:
        return len(self._spare)

    def _give_back(self, whole: np.ndarray) -> None:
        if len(self._spare) < self.keep:
            self._spare.append(whole)
