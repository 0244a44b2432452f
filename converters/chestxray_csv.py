"""The ChestX-ray14 CSV, row by row: the header checked, each row an `ImageRecord` or the reason
it is bad (counted, never fatal); an unknown finding label is fatal (`DatasetError`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from converters.chestxray_layout import DatasetError
from converters.labels import LABELS, UnknownLabelError, encode_labels

# The columns read by name; the rest (age, gender, view, sizes, spacing) only count.
REQUIRED_HEADER: tuple[str, ...] = ("Image Index", "Finding Labels", "Follow-up #", "Patient ID")
# Logical values per data row: the two bracketed headers each hold two values.
VALUES_PER_ROW = 11


@dataclass(frozen=True)
class ImageRecord:
    """One CSV row. `path` is None when the CSV lists the image but it is not on disk."""

    filename: str
    path: Path | None
    labels: tuple[int, ...]
    patient_id: int
    follow_up: int
    row: int  # 1-based line number in the CSV; the header is line 1


@dataclass(frozen=True)
class ParsedCsv:
    rows: int
    records: tuple[ImageRecord, ...]
    bad_rows: tuple[tuple[int, str], ...]
    bad_row_files: tuple[tuple[int, str], ...]  # (line number, Image Index as written)


def read_csv(csv_path: Path, images: dict[str, Path]) -> ParsedCsv:
    records: list[ImageRecord] = []
    bad_rows: list[tuple[int, str]] = []
    bad_row_files: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    rows = 0
    # utf-8-sig: a CSV re-saved by a spreadsheet starts with a byte-order mark.
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        _check_header(csv_path, header)
        for values in reader:
            line = reader.line_num
            if not values or all(not value.strip() for value in values):
                continue
            rows += 1
            record_or_reason = _parse_row(csv_path, line, values, images)
            if isinstance(record_or_reason, str):
                bad_rows.append((line, record_or_reason))
                bad_row_files.append((line, values[0].strip()))
                continue
            if record_or_reason.filename in seen:
                first = seen[record_or_reason.filename]
                bad_rows.append((line, f"duplicate of row {first} ({record_or_reason.filename})"))
                bad_row_files.append((line, record_or_reason.filename))
                continue
            seen[record_or_reason.filename] = line
            records.append(record_or_reason)
    if rows and not records:
        first_line, first_reason = bad_rows[0]
        raise DatasetError(
            f"every one of the {rows} data row(s) was rejected; the first: {first_reason}",
            path=csv_path,
            row=first_line,
        )
    return ParsedCsv(
        rows=rows,
        records=tuple(records),
        bad_rows=tuple(bad_rows),
        bad_row_files=tuple(bad_row_files),
    )


def _check_header(csv_path: Path, header: list[str] | None) -> None:
    if header is None:
        raise DatasetError("empty file: no header line", path=csv_path, row=1)
    names = tuple(name.strip() for name in header[: len(REQUIRED_HEADER)])
    if names != REQUIRED_HEADER:
        raise DatasetError(
            f"unexpected header: first columns are {list(names)}, expected "
            f"{list(REQUIRED_HEADER)}",
            path=csv_path,
            row=1,
        )


def _parse_row(
    csv_path: Path, line: int, values: list[str], images: dict[str, Path]
) -> ImageRecord | str:
    """An ImageRecord, or the reason the row is bad. An unknown label raises."""
    # The 2017 file ends its lines with a comma; a re-saved file may add more: trailing empty
    # values beyond the eleven carry nothing and are dropped.
    while len(values) > VALUES_PER_ROW and not values[-1].strip():
        values = values[:-1]
    if len(values) != VALUES_PER_ROW:
        return f"expected {VALUES_PER_ROW} values, got {len(values)}"
    filename = values[0].strip()
    if not filename:
        return "empty Image Index"
    try:
        labels = encode_labels(values[1], where=f"{csv_path}, row {line}")
    except UnknownLabelError as error:
        raise DatasetError(
            f"unknown label {error.label!r} for {filename} (known: "
            f"{', '.join(LABELS)}, No Finding)",
            path=csv_path,
            row=line,
        ) from error
    try:
        follow_up = int(values[2])
    except ValueError:
        return f"Follow-up # is not an integer: {values[2]!r}"
    try:
        patient_id = int(values[3])
    except ValueError:
        return f"Patient ID is not an integer: {values[3]!r}"
    return ImageRecord(
        filename=filename,
        path=images.get(filename),
        labels=labels,
        patient_id=patient_id,
        follow_up=follow_up,
        row=line,
    )
