"""The report's "Time to accuracy" section: its tables and its figure, from the results sets.

`python -m reports --fit-target-auc X` overrides every results set's `fit_target_auc`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from reports import accuracy, accuracy_tables
from reports.accuracy_plots import auc_time_figure
from reports.figure import Figure
from reports.format import Table, describe_cell
from reports.frame import CELL_KEYS, NA_KEY
from reports.load import ResultsSet

TITLE = "Time to accuracy"


def time_to_accuracy(
    sets: Sequence[ResultsSet],
    runs: pd.DataFrame,
    documents: Mapping[str, dict[str, Any]],
    *,
    target_auc: float | None = None,
) -> tuple[tuple[Table, ...], Figure, list[str]]:
    """The section's tables, its figure, and highlight lines for the report's summary."""
    targets = {
        one.label: target_auc if target_auc is not None else accuracy.target_of(one) for one in sets
    }
    found = accuracy.fit_runs(runs, documents, targets)
    if not found:  # one "no table" line for the section, not one per table
        return (accuracy_tables.time_to_quality_table(found),), auc_time_figure(found), []
    tables = (
        accuracy_tables.time_to_quality_table(found),
        accuracy_tables.same_learning_table(found),
        *accuracy_tables.per_class_tables(found),
    )
    return tables, auc_time_figure(found), highlights(found)


def highlights(found: Sequence[accuracy.FitRun]) -> list[str]:
    """One line on the best cell, one per detected change in learning."""
    if not found:
        return []
    lines = []
    best = max(
        (run for run in found if accuracy.quality(run).best_auc is not None),
        key=lambda run: accuracy.quality(run).best_auc or 0.0,
        default=None,
    )
    if best is not None:
        quality = accuracy.quality(best)
        lines.append(
            f"Best mean validation AUC: {quality.best_auc:.3f} after {quality.best_epochs} "
            f"epoch(s), {quality.best_wall_s:,.1f} s ({_describe(best)}, repeat "
            f"{best.repeat}; see Time to accuracy)."
        )
    changed = [item for item in accuracy.comparisons(found) if item.interval is not None]
    detected = [item for item in changed if item.verdict != "no difference detected"]
    if changed and not detected:
        lines.append(
            f"Same learning: no difference in best mean AUC detected in {len(changed)} "
            "format or GPU-count comparison(s)."
        )
    for item in detected:
        about = "the data format" if item.about == "format" else "the GPU count"
        lines.append(
            f"Learning changed with {about}: "
            f"{item.difference:+.3f} best mean AUC ({item.interval[0]:+.3f} to "
            f"{item.interval[1]:+.3f}) for {_describe_key(item.second)}."
        )
    return lines


def _describe(run: accuracy.FitRun) -> str:
    return _describe_key(run.key)


def _describe_key(key: tuple[Any, ...]) -> str:
    cell = {k: (None if v == NA_KEY else v) for k, v in zip(CELL_KEYS, key, strict=True)}
    return describe_cell(cell)
