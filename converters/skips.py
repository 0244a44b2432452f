"""The images of a conversion that are not converted before any shard is written: listed in
the CSV but missing on disk, and CSV rows rejected because they do not parse. Each becomes a
`skipped` entry of the manifest ({split, filename, row, reason}); --strict refuses them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from converters.chestxray import ChestXray14
from converters.shards import StrictModeError


def missing_images(dataset: ChestXray14, splits: Sequence[str]) -> list[dict[str, Any]]:
    """Images the CSV lists for the requested splits that are not on disk, as skip entries.

    train and val are divided by patient inside the data layer, so a missing train_val image
    is reported as split "train/val".
    """
    wanted_train_val = bool({"train", "val"} & set(splits))
    entries = []
    for record in dataset.records:
        if record.path is not None:
            continue
        if record.filename in dataset.test:
            group = "test" if "test" in splits else None
        elif record.filename in dataset.train_val:
            group = "train/val" if wanted_train_val else None
        else:
            group = None
        if group is not None:
            entries.append(
                {
                    "split": group,
                    "filename": record.filename,
                    "row": record.row,
                    "reason": "listed in the CSV but missing on disk",
                }
            )
    return entries


def rejected_rows(dataset: ChestXray14, splits: Sequence[str]) -> list[dict[str, Any]]:
    """CSV rows that were not converted because they do not parse, as skip entries.

    A row is counted for the requested splits when its image is in one of their split lists,
    or when it cannot be placed (no file name, or in neither list).
    """
    wanted_train_val = bool({"train", "val"} & set(splits))
    reasons = dict(dataset.summary.bad_rows)
    entries = []
    for row, filename in dataset.summary.bad_row_files:
        if filename in dataset.test:
            group: str | None = "test" if "test" in splits else None
        elif filename in dataset.train_val:
            group = "train/val" if wanted_train_val else None
        else:
            group = "unknown"
        if group is not None:
            entries.append(
                {
                    "split": group,
                    "filename": filename,
                    "row": row,
                    "reason": f"CSV row rejected: {reasons[row]}",
                }
            )
    return entries


def refuse_skips_under_strict(
    dataset: ChestXray14, missing: list[dict[str, Any]], rejected: list[dict[str, Any]]
) -> None:
    """Under --strict, the first image that would be skipped fails the conversion."""
    if missing:
        first = missing[0]
        raise StrictModeError(
            f"{dataset.csv_path}, row {first['row']}: {first['filename']} is "
            f"listed but missing on disk ({len(missing)} missing; --strict)"
        )
    if rejected:
        first = rejected[0]
        raise StrictModeError(
            f"{dataset.csv_path}, row {first['row']}: {first['reason']} "
            f"({len(rejected)} rejected row(s); --strict)"
        )
