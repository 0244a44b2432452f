"""The time-to-accuracy tables: time to quality, per-class AUC at the best epoch beside
CheXNet's published figures, and the same-learning check (reports.accuracy does the sums).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from converters.labels import LABELS
from reports import accuracy, intervals
from reports.accuracy import NOT_REACHED, FitRun
from reports.format import (
    NA,
    Table,
    fmt_seconds,
    headers_for,
    identity,
    identity_keys,
    is_missing,
    numeric_flags,
)
from reports.frame import CELL_KEYS, input_text
from reports.reference import CHEXNET_AUROC, CHEXNET_MEAN_AUROC, CHEXNET_SOURCE

NO_FIT = "no fit cell finished with a validation history"
SYNTHETIC_NOT_COMPARABLE = (
    "Figures on synthetic data (converters.synth, as in the smoke sweeps) are not comparable "
    "to CheXNet's: only the NIH ChestX-ray14 images, split and scored alike, are."
)


def labelled_cells(found: Sequence[FitRun]) -> pd.DataFrame:
    """The fit cells with the `input` column the identity keys need."""
    frame = accuracy.cells_of(found)
    conversions = {c for c in frame["conversion"]} - {"—"}
    frame["input"] = [
        input_text(row, with_conversion=len(conversions) > 1) for _, row in frame.iterrows()
    ]
    return frame


def time_to_quality_table(found: Sequence[FitRun]) -> Table:
    intro = (
        "Per fit cell: the best mean validation AUC, the epochs and wall time (seconds from "
        "the start of training to the end of that epoch's validation) it took, the same to "
        "the sweep's target mean AUC (`fit_target_auc`), and the time per epoch split into "
        "training and validation (median over the epochs after the first; the first also "
        "traces the model). With repeats: the mean and its 95% interval over repeats (low to "
        "high, clipped to what is possible)."
    )
    title = "Time to quality"
    if not found:
        return Table("time_to_quality", title, intro, missing=NO_FIT)
    frame = labelled_cells(found)
    keys = identity_keys(frame, always=("model", "gpus"), skip=("mode",))
    cells = accuracy.by_cell(found)
    rows = []
    summed = False
    for _, cell in frame.iterrows():
        runs = cells[tuple(cell[k] for k in CELL_KEYS)]
        qualities = [accuracy.quality(run) for run in runs]
        summed |= not all(q.elapsed_recorded for q in qualities)
        splits = [accuracy.epoch_split(run) for run in runs]
        rows.append(
            (
                *identity(cell, keys),
                str(len(runs)),
                _spread([q.best_auc for q in qualities], _auc, bounds=(0.0, 1.0)),
                _spread([q.best_epochs for q in qualities], _epochs, bounds=(1, math.inf)),
                _spread([q.best_wall_s for q in qualities], fmt_seconds, bounds=(0, math.inf)),
                *_target_cells(qualities),
                _spread([s["train_s"] for s in splits], fmt_seconds, bounds=(0, math.inf)),
                _spread([s["val_s"] for s in splits], fmt_seconds, bounds=(0, math.inf)),
                _spread([s["first_epoch_s"] for s in splits], fmt_seconds, bounds=(0, math.inf)),
            )
        )
    headers = (
        *headers_for(keys),
        "Repeats",
        "Best mean AUC",
        "Epochs to best",
        "Wall s to best",
        "Target AUC",
        "Epochs to target",
        "Wall s to target",
        "Train s/epoch",
        "Validation s/epoch",
        "First epoch s",
    )
    notes = list(accuracy.coverage_lines(found))
    if summed:
        notes.append(
            "Some results do not record per-epoch wall time: their wall times are the sums of "
            "the epochs' training and validation seconds (checkpoint writes not counted)."
        )
    return Table(
        "time_to_quality",
        title,
        intro,
        headers,
        tuple(rows),
        numeric_flags(keys, 10),
        notes=tuple(notes),
    )


def _target_cells(qualities: Sequence[accuracy.Quality]) -> tuple[str, str, str]:
    targets = sorted({q.target_auc for q in qualities if q.target_auc is not None})
    if not targets:
        return ("none set", "no target set", "no target set")
    target_text = ", ".join(_auc(t) for t in targets)
    reached = [q for q in qualities if q.target_epochs is not None]
    if not reached:
        return (target_text, NOT_REACHED, NOT_REACHED)
    partial = (
        f" ({len(reached)} of {len(qualities)} repeats reached it)"
        if len(reached) < len(qualities)
        else ""
    )
    return (
        target_text,
        _spread([q.target_epochs for q in reached], _epochs, bounds=(1, math.inf)) + partial,
        _spread([q.target_wall_s for q in reached], fmt_seconds, bounds=(0, math.inf)) + partial,
    )


def per_class_tables(found: Sequence[FitRun]) -> list[Table]:
    """One table per model: rows are the 14 findings and their mean, CheXNet's beside them."""
    intro = (
        "ROC AUC per finding on the validation split at each cell's best epoch (mean over "
        f"repeats), beside CheXNet's published test-set AUROC ({CHEXNET_SOURCE}; mean "
        f"{CHEXNET_MEAN_AUROC:.3f}). n/a: the validation split holds only positives or only "
        "negatives of that finding."
    )
    if not found:
        return [Table("per_class_auc", "Per-class AUC at the best epoch", intro, missing=NO_FIT)]
    frame = labelled_cells(found)
    cells = accuracy.by_cell(found)
    tables = []
    for model in sorted(set(frame["model"])):
        chosen = frame[frame["model"] == model]
        keys = per_model_keys(chosen)
        columns = []
        for _, cell in chosen.iterrows():
            runs = cells[tuple(cell[k] for k in CELL_KEYS)]
            per_run = [accuracy.best_per_class(run) for run in runs]
            columns.append((cell_name(cell, keys), per_run))
        rows = []
        for name in LABELS:
            values = [_mean([per.get(name) for per in per_run]) for _, per_run in columns]
            rows.append((name, _auc(CHEXNET_AUROC[name]), *(_auc(v) for v in values)))
        means = []
        for _, per_run in columns:
            per_cell = [_mean([per.get(name) for per in per_run]) for name in LABELS]
            means.append(_mean(per_cell))
        rows.append(("Mean", _auc(CHEXNET_MEAN_AUROC), *(_auc(v) for v in means)))
        headers = ("Finding", "CheXNet (Rajpurkar et al. 2017)", *(label for label, _ in columns))
        tables.append(
            Table(
                f"per_class_auc_{model}",
                f"Per-class AUC at the best epoch: {model}",
                intro,
                headers,
                tuple(rows),
                (False, *(True,) * (len(headers) - 1)),
                notes=(SYNTHETIC_NOT_COMPARABLE,),
            )
        )
    return tables


def same_learning_table(found: Sequence[FitRun]) -> Table:
    intro = (
        "Did a faster configuration learn the same? Best mean validation AUC of a cell minus "
        "that of the cell that differs only in data format (raw -> TFRecord) or only in GPU "
        "count (1 -> N). The 95% interval is over repeats (Welch) where both cells have two "
        "or more, else a bootstrap over the validation examples of their first repeats, each "
        "resampled independently (validation-sample noise only: it cannot see run-to-run "
        'training noise, which repeats measure). "No difference detected" unless the '
        "interval excludes zero."
    )
    title = "Same learning?"
    if not found:
        return Table("same_learning", title, intro, missing=NO_FIT)
    compared = accuracy.comparisons(found)
    if not compared:
        return Table(
            "same_learning",
            title,
            intro,
            missing="no two fit cells differ only in data format or only in GPU count",
        )
    frame = labelled_cells(found)
    keys = [k for k in identity_keys(frame, always=("model",)) if k != "mode"]
    lookup = {tuple(row[k] for k in CELL_KEYS): row for _, row in frame.iterrows()}
    rows = []
    for item in compared:
        first, second = lookup[item.first], lookup[item.second]
        interval = (
            NA if item.interval is None else f"{item.interval[0]:+.3f} to {item.interval[1]:+.3f}"
        )
        rows.append(
            (
                "data format" if item.about == "format" else "GPU count",
                cell_name(first, keys),
                cell_name(second, keys),
                NA if item.difference is None else f"{item.difference:+.3f}",
                interval,
                item.method,
                item.verdict,
            )
        )
    headers = (
        "Differs in",
        "Baseline",
        "Compared",
        "Δ best mean AUC",
        "95% interval",
        "Interval from",
        "Verdict",
    )
    return Table(
        "same_learning",
        title,
        intro,
        headers,
        tuple(rows),
        (False, False, False, True, True, False, False),
    )


def per_model_keys(cells: pd.DataFrame) -> list[str]:
    """The settings that tell one model's fit cells apart (the GPU count always)."""
    return [k for k in identity_keys(cells, always=("gpus",)) if k not in ("model", "mode")]


def cell_name(cell: pd.Series, keys: Sequence[str]) -> str:
    """'densenet121, raw, 2 GPUs': the given keys' values, the GPU count with its unit."""
    parts = []
    for key, text in zip(keys, identity(cell, keys), strict=True):
        parts.append(f"{text} GPU{'s' if text != '1' else ''}" if key == "gpus" else text)
    return ", ".join(parts)


def _spread(
    values: Sequence[Any], formatter: Any, *, bounds: tuple[float, float] | None = None
) -> str:
    """The value (one repeat) or mean (low to high) over repeats, the interval clipped to
    `bounds` (an AUC interval past 1 means nothing); n/a when none."""
    present = [float(v) for v in values if not is_missing(v)]
    if not present:
        return NA
    if len(present) == 1:
        return formatter(present[0])
    interval = intervals.mean_interval(present)
    assert interval is not None
    low, high = interval.low, interval.high
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return f"{formatter(interval.estimate)} ({formatter(low)} to {formatter(high)})"


def _auc(value: Any) -> str:
    return NA if is_missing(value) else f"{value:.3f}"


def _epochs(value: Any) -> str:
    if is_missing(value):
        return NA
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _mean(values: Sequence[Any]) -> float | None:
    present = [float(v) for v in values if not is_missing(v)]
    return sum(present) / len(present) if present else None
