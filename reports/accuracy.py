"""Time to accuracy: what the fit cells learned, how fast, and whether the input changed it.

Read from the fit results alone (result["details"]["fit"], written by bench.job.fit):

    wall time to epoch e = history[e]["elapsed_s"] (training start to the end of epoch e's
                           validation and checkpoint); older results without it: the sum of
                           train_s + val_s up to e (checkpoint writes not counted)
    time to best         = wall time and epochs (1-based) to the first epoch with the
                           highest mean validation AUC
    time to target       = the same to the first epoch whose mean AUC >= the target: the
                           sweep file's top-level `fit_target_auc` (its sweep.yaml in the
                           results folder) or `python -m reports --fit-target-auc`; else
                           "not reached"
    epoch time           = train_s and val_s per epoch, median over the epochs after the first
                           (the first also traces the model), the first epoch apart

Across repeats: the mean and its 95% t interval (one repeat: the value alone, said so).
Same learning: best mean AUC of a cell minus that of the cell differing only in data format
(raw -> tfrecord) or GPU count (1 -> N); the interval is Welch's over repeats where both have
two or more, else a bootstrap over validation examples (bench.contract.validation_scores) of
the first repeats, each cell resampled independently (a paired resample would read the two runs'
training noise as a difference; an independent one is conservative and still blind to
run-to-run training noise). "no difference detected" unless the interval excludes zero.
"""

from __future__ import annotations

import math
import statistics
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import yaml

from bench.contract import validation_scores
from reports import analysis, intervals
from reports.frame import CELL_KEYS
from reports.load import ReportInputError, ResultsSet

NOT_REACHED = "not reached"


@dataclass(frozen=True)
class FitRun:
    """One finished fit run, its cell's key and what its epochs recorded."""

    path: str
    key: tuple[Any, ...]  # the values of CELL_KEYS
    repeat: int
    history: tuple[dict[str, Any], ...]
    fit: dict[str, Any]
    target_auc: float | None
    validation_images: int | None  # the validation split's size, from its description

    @property
    def cell(self) -> dict[str, Any]:
        return dict(zip(CELL_KEYS, self.key, strict=True))


@dataclass(frozen=True)
class Quality:
    """One run's time to quality; epochs are 1-based counts (best after 3 epochs: 3)."""

    best_auc: float | None
    best_epochs: int | None
    best_wall_s: float | None
    target_auc: float | None
    target_epochs: int | None
    target_wall_s: float | None
    elapsed_recorded: bool


TARGET_KEY = "fit_target_auc"


def target_of(results: ResultsSet) -> float | None:
    """The results set's `fit_target_auc`, from the sweep file it ran (sweep.yaml)."""
    if not results.sweep_yaml:
        return None
    where = results.root / "sweep.yaml"
    try:
        document = yaml.safe_load(results.sweep_yaml)
    except yaml.YAMLError as error:
        raise ReportInputError(f"{where}: not valid YAML ({error})") from error
    value = document.get(TARGET_KEY) if isinstance(document, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ReportInputError(f"{where}: {TARGET_KEY} must be a number in (0, 1], got {value!r}")
    return float(value)


def fit_runs(
    runs: pd.DataFrame,
    documents: Mapping[str, dict[str, Any]],
    targets: Mapping[str, float | None] | None = None,
) -> list[FitRun]:
    """Every ok fit run with a history, in the runs frame's order; `targets` maps a results
    set's label to its target mean AUC."""
    chosen = runs[(runs["mode"] == "fit") & (runs["status"] == "ok")]
    found = []
    for _, row in chosen.iterrows():
        result = documents[row["path"]]
        fit = ((result.get("details") or {}).get("fit")) or {}
        history = tuple(entry for entry in fit.get("history") or [] if isinstance(entry, dict))
        if not history:
            continue
        validation = fit.get("validation_dataset") or {}
        target = (targets or {}).get(row["source"])
        found.append(
            FitRun(
                path=row["path"],
                key=tuple(row[key] for key in CELL_KEYS),
                repeat=int(row["repeat"]),
                history=history,
                fit=fit,
                target_auc=target,
                validation_images=_int_or_none(validation.get("images")),
            )
        )
    return found


def by_cell(found: Sequence[FitRun]) -> dict[tuple[Any, ...], list[FitRun]]:
    cells: dict[tuple[Any, ...], list[FitRun]] = {}
    for run in found:
        cells.setdefault(run.key, []).append(run)
    return cells


def cells_of(found: Sequence[FitRun]) -> pd.DataFrame:
    """One row per fit cell (its CELL_KEYS), in first-seen order, for analysis.find_match."""
    keys = list(dict.fromkeys(run.key for run in found))
    return pd.DataFrame([dict(zip(CELL_KEYS, key, strict=True)) for key in keys])


def wall_times(history: Sequence[dict[str, Any]]) -> tuple[list[float], bool]:
    """Seconds from training start to the end of each epoch; True if recorded, not summed."""
    recorded = [entry.get("elapsed_s") for entry in history]
    if all(isinstance(value, int | float) for value in recorded):
        return [float(value) for value in recorded], True
    total, summed = 0.0, []
    for entry in history:
        total += float(entry.get("train_s") or 0.0) + float(entry.get("val_s") or 0.0)
        summed.append(total)
    return summed, False


def quality(run: FitRun, target_auc: float | None = None) -> Quality:
    """Time and epochs to the best mean AUC and to `target_auc` (default: the run's own)."""
    target = run.target_auc if target_auc is None else target_auc
    times, recorded = wall_times(run.history)
    aucs = [_float_or_none(entry.get("val_auc_mean")) for entry in run.history]
    defined = [(index, auc) for index, auc in enumerate(aucs) if auc is not None]
    best_index = max(defined, key=lambda item: item[1])[0] if defined else None
    reached = (
        next((index for index, auc in defined if auc >= target), None)
        if target is not None
        else None
    )
    return Quality(
        best_auc=aucs[best_index] if best_index is not None else None,
        best_epochs=None if best_index is None else best_index + 1,
        best_wall_s=None if best_index is None else times[best_index],
        target_auc=target,
        target_epochs=None if reached is None else reached + 1,
        target_wall_s=None if reached is None else times[reached],
        elapsed_recorded=recorded,
    )


def epoch_split(run: FitRun) -> dict[str, float | None]:
    """Median train and validation seconds per epoch after the first, and the first epoch."""
    train = [_float_or_none(entry.get("train_s")) for entry in run.history]
    val = [_float_or_none(entry.get("val_s")) for entry in run.history]
    later_train = [v for v in train[1:] if v is not None] or [v for v in train if v is not None]
    later_val = [v for v in val[1:] if v is not None] or [v for v in val if v is not None]
    first = None if train[0] is None or val[0] is None else train[0] + val[0]
    return {
        "train_s": statistics.median(later_train) if later_train else None,
        "val_s": statistics.median(later_val) if later_val else None,
        "first_epoch_s": first,
    }


def best_per_class(run: FitRun) -> dict[str, float | None]:
    """The per-class AUC at the run's best epoch (the history's own entry)."""
    best = quality(run)
    if best.best_epochs is None:
        return {}
    entry = run.history[best.best_epochs - 1]
    per_class = entry.get("val_auc_per_class") or run.fit.get("best_val_auc_per_class") or {}
    return {name: _float_or_none(value) for name, value in per_class.items()}


@dataclass(frozen=True)
class Comparison:
    """Cell `second` against cell `first` (the baseline): best mean AUC difference."""

    about: str  # "format" or "gpus"
    first: tuple[Any, ...]
    second: tuple[Any, ...]
    difference: float | None
    interval: tuple[float, float] | None
    method: str
    verdict: str


def comparisons(found: Sequence[FitRun]) -> list[Comparison]:
    """Every fit cell against its raw twin (if tfrecord) and its 1-GPU twin (if N GPUs)."""
    cells = by_cell(found)
    frame = cells_of(found)
    cache: dict[str, np.ndarray] = {}
    result = []
    for _, cell in frame.iterrows():
        key = tuple(cell[k] for k in CELL_KEYS)
        if cell["data_format"] == "tfrecord":
            raw = analysis.find_match(
                frame,
                cell,
                differ=("data_format", "encoding", "conversion"),
                fixed={"data_format": "raw"},
            )
            if raw is not None:
                base = tuple(raw[k] for k in CELL_KEYS)
                result.append(compare("format", cells[base], cells[key], cache))
        if int(cell["gpus"]) > 1:
            single = analysis.find_match(
                frame, cell, differ=("gpus", "nodes", "engine"), fixed={"gpus": 1}
            )
            if single is not None:
                base = tuple(single[k] for k in CELL_KEYS)
                result.append(compare("gpus", cells[base], cells[key], cache))
    return result


def compare(
    about: str,
    first: Sequence[FitRun],
    second: Sequence[FitRun],
    cache: dict[str, np.ndarray] | None = None,
) -> Comparison:
    """Cell `second` against cell `first`; `cache` keeps bootstrap draws between calls."""
    cache = {} if cache is None else cache
    best_a = [q.best_auc for q in map(quality, first) if q.best_auc is not None]
    best_b = [q.best_auc for q in map(quality, second) if q.best_auc is not None]
    keys = (first[0].key, second[0].key)
    if not best_a or not best_b:
        return Comparison(about, *keys, None, None, "n/a", "n/a (no mean AUC recorded)")
    difference = statistics.fmean(best_b) - statistics.fmean(best_a)
    welch = intervals.welch_interval(best_a, best_b)
    if welch is not None:
        method = f"repeats ({len(best_a)} and {len(best_b)}), Welch t 95%"
        return _judged(about, keys, difference, (welch.low, welch.high), method)
    scores = [_scores(first[0]), _scores(second[0])]
    if scores[0] is None or scores[1] is None:
        return Comparison(
            about,
            *keys,
            difference,
            None,
            "n/a",
            "n/a (one repeat and no stored validation scores: no interval)",
        )
    a, b = scores
    # Resampled independently (each run its own seed): a paired resample would count the two
    # runs' training noise (their per-example disagreement) as a real difference.
    low, high = intervals.percentile_interval(
        _bootstrap(second[0], b, cache) - _bootstrap(first[0], a, cache)
    )
    if math.isnan(low):
        return Comparison(about, *keys, difference, None, "n/a", "n/a (bootstrap undefined)")
    difference = best_b[0] - best_a[0]
    method = (
        f"bootstrap over validation examples ({a.examples} and {b.examples}, resampled "
        f"independently, {intervals.BOOTSTRAP_RESAMPLES} resamples, 95%; first repeats)"
    )
    return _judged(about, keys, difference, (low, high), method)


def _judged(
    about: str,
    keys: tuple[tuple[Any, ...], tuple[Any, ...]],
    difference: float,
    interval: tuple[float, float],
    method: str,
) -> Comparison:
    low, high = interval
    if low > 0:
        verdict = "higher: the interval excludes zero"
    elif high < 0:
        verdict = "lower: the interval excludes zero"
    else:
        verdict = "no difference detected"
    return Comparison(about, *keys, difference, interval, method, verdict)


def _bootstrap(
    run: FitRun, scores: validation_scores.ValidationScores, cache: dict[str, np.ndarray]
) -> np.ndarray:
    """The run's bootstrap distribution of the mean AUC (its own seed, from its path), once
    per `cache` (a run takes part in several comparisons)."""
    if run.path not in cache:
        seed = intervals.BOOTSTRAP_SEED ^ zlib.crc32(run.path.encode())
        cache[run.path] = intervals.bootstrap_mean_auc(scores.ranks, scores.labels, seed=seed)
    return cache[run.path]


def _scores(run: FitRun) -> validation_scores.ValidationScores | None:
    stored = run.fit.get("best_validation")
    if stored is None:
        return None
    try:
        return validation_scores.decode(stored)
    except validation_scores.ValidationScoresError:
        return None


def coverage_lines(found: Sequence[FitRun]) -> list[str]:
    """Which rank wrote the checkpoints, and whether validation covered every example once."""
    ranks = sorted({run.fit.get("checkpoint_rank") for run in found}, key=str)
    recorded = [rank for rank in ranks if isinstance(rank, int)]
    lines = []
    if recorded:
        names = ", ".join(str(rank) for rank in recorded)
        unrecorded = sum(1 for run in found if not isinstance(run.fit.get("checkpoint_rank"), int))
        tail = f" ({unrecorded} older run(s) did not record it)" if unrecorded else ""
        lines.append(
            f"The best weights (by mean validation AUC) were written by rank {names} only; "
            f"every rank holds the same weights{tail}."
        )
    else:
        lines.append("The rank that wrote the checkpoints is not recorded in these results.")
    mismatched, unknown = [], 0
    for run in found:
        if run.validation_images is None:
            unknown += 1
            continue
        counts = {_int_or_none(entry.get("val_examples")) for entry in run.history}
        if counts != {run.validation_images}:
            mismatched.append(f"{run.path} ({sorted(counts, key=str)} of {run.validation_images})")
    checked = len(found) - unknown
    if checked and not mismatched:
        lines.append(
            "Validation metrics are computed over every validation example exactly once: each "
            "rank predicts its own shard of the split, the predictions of all ranks are "
            "gathered before scoring, and every epoch of every fit run scored as many examples "
            f"as the split holds ({checked} of {len(found)} runs checked)."
        )
    if mismatched:
        lines.append(
            "Validation did NOT cover the split exactly once in: " + "; ".join(mismatched) + "."
        )
    if unknown:
        lines.append(f"{unknown} run(s) do not record their validation split's size.")
    return lines


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None
