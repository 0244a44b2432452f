"""When a measurement counts as noisy: one rule for the sweep's report (reports.stats) and
the pipeline benchmark (bench.measure.pipeline_benchmark). No TensorFlow here; numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["CV_REPEATS_NOISY", "CV_STEPS_NOISY", "cv"]

CV_STEPS_NOISY = 0.10  # coefficient of variation of a run's steps above which it is noisy
CV_REPEATS_NOISY = 0.05  # ... of repeated measurements' rates (a cell's repeats, rounds)


def cv(values: Sequence[float]) -> float | None:
    """Coefficient of variation (sample sd / mean); None for fewer than 2 values."""
    array = np.asarray(values, dtype=float)
    if array.size < 2 or not array.mean() > 0:
        return None
    return float(array.std(ddof=1) / array.mean())
