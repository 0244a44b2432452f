"""What the TFRecords cost to make, and after how many epochs they pay for themselves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from reports import analysis
from reports.format import (
    NA,
    Table,
    fmt_epochs,
    fmt_megabytes,
    fmt_number,
    fmt_rate,
    fmt_seconds,
    fmt_yes_no,
    headers_for,
    identity,
    identity_keys,
    numeric_flags,
)
from reports.load import ResultsSet
from reports.tables import fmt_interval


def conversion_table(sets: Sequence[ResultsSet]) -> Table:
    intro = (
        "What preparing the TFRecords cost (converters.tfrecord, recorded by the sweep). "
        "Reused: the sweep found the conversion already made; the time is the original "
        "conversion's."
    )
    records = [(results.label, record) for results in sets for record in results.conversions]
    if not records:
        return Table(
            "conversion",
            "Conversion cost",
            intro,
            missing="these results hold no conversions/*.json record",
        )
    multi = len(sets) > 1
    rows = []
    for label, record in records:
        row = (
            record.get("name", NA),
            str(record.get("encoding") or NA),
            str(record.get("resize") or "source size"),
            str(record.get("compression") or NA),
            fmt_number(record.get("images"), 0),
            fmt_number(record.get("wall_seconds")),
            fmt_rate(record.get("images_per_sec")),
            fmt_megabytes(record.get("bytes_in")),
            fmt_megabytes(record.get("bytes_out")),
            fmt_yes_no(record.get("reused")),
        )
        rows.append((label, *row) if multi else row)
    headers = (
        "Name",
        "Encoding",
        "Resize",
        "Compression",
        "Images",
        "Wall time (s)",
        "Images/s",
        "MB in",
        "MB out",
        "Reused",
    )
    numeric = (False,) * 4 + (True,) * 5 + (False,)
    if multi:
        headers, numeric = ("Source", *headers), (False, *numeric)
    return Table("conversion", "Conversion cost", intro, headers, tuple(rows), numeric)


def payoff_table(
    cells: pd.DataFrame, conversions: Mapping[tuple[str, str], dict[str, Any]]
) -> Table:
    intro = (
        "When does converting to TFRecords pay for itself? Epoch time = dataset images / "
        "images/s; pay-off = conversion wall time / (epoch time raw - epoch time "
        'tfrecord), in epochs. "never": the tfrecord cell is not faster. The interval '
        "follows the speedup's 95% interval (the raw epoch time held at its value); its "
        'upper end is "never" where the speedup may be 0 or below.'
    )
    frame = analysis.payoff_frame(cells, conversions)
    if frame.empty:
        reason = (
            "no conversion record"
            if not conversions
            else "no train or fit tfrecord cell with both a matching raw cell and its "
            "conversion record"
        )
        return Table("payoff", "Conversion pay-off", intro, missing=reason)
    keys = identity_keys(frame, always=("model", "gpus"))
    rows = tuple(
        (
            *identity(row, keys),
            fmt_seconds(row["epoch_raw_s"]),
            fmt_seconds(row["epoch_tfrecord_s"]),
            fmt_seconds(row["conversion_s"]),
            fmt_epochs(row["epochs"]),
            fmt_interval(row["epochs_low"], row["epochs_high"], fmt_epochs),
        )
        for _, row in frame.iterrows()
    )
    notes = ()
    if frame["conversion_s"].isna().any():
        notes = (
            "n/a: the conversion record holds no positive wall time (a conversion resumed "
            "or reused from elsewhere); its cost is unknown here.",
        )
    headers = (
        *headers_for(keys),
        "Epoch raw (s)",
        "Epoch tfrecord (s)",
        "Conversion (s)",
        "Pays off after (epochs)",
        "95% interval",
    )
    return Table(
        "payoff", "Conversion pay-off", intro, headers, rows, numeric_flags(keys, 5), notes
    )
