"""The report's summary: a few sentences, each a conclusion the intervals support.

A sentence names a difference (a speedup, an input-bound share, a pay-off) only where the
comparison is significant (reports.stats.compare); otherwise it says "no difference
detected at this noise level" and shows the interval, so a reader never takes noise for a
finding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from reports import analysis, stats
from reports.failures import Failure
from reports.format import describe_cell, fmt_rate
from reports.frame import NA_KEY


def highlights(
    cells: pd.DataFrame,
    runs: pd.DataFrame,
    conversions: Mapping[tuple[str, str], dict[str, Any]],
    failures: Sequence[Failure] = (),
) -> list[str]:
    """The summary lines; each points at its table."""
    lines: list[str] = []
    multi = cells["source"].nunique() > 1
    training = cells[cells["mode"].isin(analysis.TRAINING_MODES)]
    if not training.empty:
        best = training.loc[training["images_per_sec"].idxmax()]
        lines.append(
            f"Fastest training cell: {cell_name(best, multi=multi)}, "
            f"{fmt_rate(best['images_per_sec'])} images/s "
            f"(95% interval {_rate_interval(best)})."
        )
    speedups = analysis.speedup_frame(cells)
    lines += speedup_lines(speedups, multi=multi)
    lines += input_bound_lines(analysis.input_bound_frame(cells), multi=multi)
    payoff = analysis.payoff_frame(cells, conversions)
    supported = (
        payoff[payoff["speedup_significant"] & (payoff["epochs"] < float("inf"))]
        if not payoff.empty
        else payoff
    )
    if not supported.empty:
        fastest = supported.loc[supported["epochs"].idxmin()]
        where = cell_name(fastest, multi=multi, data=False)
        lines.append(
            f"The conversion {fastest['conversion_name']} pays for itself after "
            f"{fastest['epochs']:,.1f} epochs at best ({where}; 95% interval "
            f"{_epochs(fastest['epochs_low'])}-{_epochs(fastest['epochs_high'])})."
        )
    noisy = int(cells["noisy"].sum()) if "noisy" in cells else 0
    if noisy:
        lines.append(
            f"{noisy} of {len(cells)} cells were measured on a noisy machine (see the "
            "Noise column of Throughput): their intervals are wide."
        )
    lines += _failure_highlights(failures, total=len(runs))
    return lines


def _failure_highlights(failures: Sequence[Failure], *, total: int) -> list[str]:
    """How many runs failed for good, how many a later ok run superseded, and how many
    result files could not be read."""
    runs = [f for f in failures if not f.unreadable]
    standing = [f for f in runs if not f.superseded]
    unreadable = [f for f in failures if f.unreadable]
    lines = []
    superseded = len(runs) - len(standing)
    later = f" ({superseded} more superseded by a later ok run)" if superseded else ""
    if standing:
        lines.append(f"{len(standing)} of {total} runs failed or timed out{later} (see Failures).")
    elif superseded:
        lines.append(f"Every failed run was re-run: {superseded} superseded by a later ok run.")
    if unreadable:
        lines.append(
            f"{len(unreadable)} result file(s) could not be read and are left out "
            "(see Failures)."
        )
    return lines


def speedup_lines(speedups: pd.DataFrame, *, multi: bool) -> list[str]:
    """Per results set: supply (pipeline mode) and training, at the most GPUs each ran on."""
    lines = []
    if speedups.empty:
        return lines
    for source, group in speedups.groupby("source", sort=False):
        where = f"{source}, " if multi else ""
        for label, modes in (
            ("supply (pipeline mode)", ("pipeline",)),
            ("training", analysis.TRAINING_MODES),
        ):
            chosen = group[group["mode"].isin(modes)]
            if chosen.empty:
                continue
            top = chosen[chosen["gpus"] == chosen["gpus"].max()]
            gpus = int(top["gpus"].iloc[0])
            pairs = "; ".join(
                f"{cell_name(row, multi=False, data=False, gpus=False, mode=False)} "
                f"{_speedup_text(row)}"
                for _, row in top.iterrows()
            )
            lines.append(
                f"TFRecords over raw files, {label} ({where}{gpus} "
                f"GPU{'s' if gpus != 1 else ''}): {pairs}."
            )
    return lines


def _speedup_text(row: pd.Series) -> str:
    interval = stats.Interval(row["speedup"], row["speedup_low"], row["speedup_high"])
    shown = stats.difference_text(interval)
    if row["speedup_significant"]:
        return shown
    return f"{row['speedup_verdict']} ({shown})"


def input_bound_lines(bound: pd.DataFrame, *, multi: bool) -> list[str]:
    """The most input-bound cell among the significant ones, or why none is stated."""
    if bound.empty or not bound["input_bound_share"].notna().any():
        return []
    cpu = bool((bound["device"] == "cpu").any())
    caveat = (
        " On a CPU device the model and the input pipeline share the same cores: this is "
        "their competition for the CPU, not a GPU waiting for its input."
        if cpu
        else ""
    )
    significant = bound[bound["input_bound_share_significant"]]
    significant = significant[significant["input_bound_share_verdict"] == "slower"]
    if significant.empty:
        return [
            "Input-bound: no training cell is significantly slower than the model alone "
            f"(no difference detected at this noise level).{caveat}"
        ]
    worst = significant.loc[significant["input_bound_share"].idxmax()]
    interval = stats.Interval(
        worst["input_bound_share"],
        worst["input_bound_share_low"],
        worst["input_bound_share_high"],
    )
    return [
        f"Most input-bound: {cell_name(worst, multi=multi)} loses "
        f"{stats.difference_text(interval, signed=False)} of what the model alone "
        f"consumes to its input.{caveat}"
    ]


def cell_name(
    row: pd.Series, *, multi: bool, data: bool = True, gpus: bool = True, mode: bool = True
) -> str:
    """The cell's one-line name; `data=False` leaves the data format out (a raw/tfrecord pair);
    `multi` prefixes the results set's label."""
    cell = {key: (None if value == NA_KEY else value) for key, value in row.to_dict().items()}
    if not data:
        cell["data_format"] = None
    if not gpus:
        cell["gpus"] = None
    if not mode:
        cell["mode"] = None
    name = describe_cell(cell)
    return f"{row['source']}: {name}" if multi else name


def _rate_interval(cell: pd.Series) -> str:
    if pd.isna(cell["ips_low"]):
        return "n/a"
    return f"{fmt_rate(cell['ips_low'])}-{fmt_rate(cell['ips_high'])}"


def _epochs(value: float) -> str:
    if pd.isna(value):
        return "n/a"
    return "never" if value == float("inf") else f"{value:,.1f}"
