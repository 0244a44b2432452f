"""Read NIH ChestX-ray14 the way NIH ships it: the CSV, the split lists, the image folders.

Accepted layout under one root folder:

    Data_Entry_2017.csv          (original header, trailing comma on every line) or
    Data_Entry_2017_v2020.csv    (the 2020 re-release, no trailing comma)
    train_val_list.txt, test_list.txt      (one file name per line)
    images/*.png                 (flat) and/or images_001/images/*.png ... images_012/images/*.png

Images are found by file name (one walk over the image folders), never by a stat per row.
Nothing is hidden: rows that do not parse, images listed but missing, files present but not
listed, and images in neither split list are all counted in `DatasetSummary`. Only an unknown
finding label, a missing CSV or split list, or no images at all is fatal (`DatasetError`).
"""

from __future__ import annotations

import csv
import os
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from converters.labels import LABELS, UnknownLabelError, encode_labels

CSV_NAMES: tuple[str, ...] = ("Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv")
TRAIN_VAL_LIST = "train_val_list.txt"
TEST_LIST = "test_list.txt"
SPLITS: tuple[str, ...] = ("train", "val", "test", "all")
IMAGE_SUFFIX = ".png"
# The columns read by name; the rest (age, gender, view, sizes, spacing) only count.
REQUIRED_HEADER: tuple[str, ...] = ("Image Index", "Finding Labels", "Follow-up #", "Patient ID")
# Logical values per data row: the two bracketed headers each hold two values.
VALUES_PER_ROW = 11
_ARCHIVE_DIR = re.compile(r"images_\d{3}")
# How many names of each problem kind `DatasetSummary.lines` prints before "... N more".
_SHOWN = 5


class DatasetError(ValueError):
    """The data set cannot be read; the message names the file (and row, where one applies)."""

    def __init__(self, message: str, *, path: Path | None = None, row: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}, row {row}: " if row is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.row = row


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
class DatasetSummary:
    """What was found, and every problem, counted and named; printable with `lines()`."""

    root: Path
    csv_path: Path
    layout: str  # "flat", "archive", "flat+archive"
    image_dirs: int
    rows: int  # data rows in the CSV (blank lines excluded)
    records: int  # rows that parsed
    images_found: int  # PNG files in the image folders
    patients: int
    listed_missing: tuple[str, ...]  # in the CSV, not on disk
    unlisted: tuple[str, ...]  # on disk, not in the CSV
    bad_rows: tuple[tuple[int, str], ...]  # (line number, why)
    duplicate_files: tuple[str, ...]  # the same file name in two image folders (first kept)
    train_val_listed: int
    test_listed: int
    in_neither_list: tuple[str, ...]  # CSV rows in no split list: only in split "all"
    in_both_lists: tuple[str, ...]  # in both lists: treated as test, never trained on
    lists_unknown: tuple[str, ...]  # split-list names with no CSV row
    label_counts: tuple[tuple[str, int], ...]  # positives per finding, CSV rows on disk
    bad_row_files: tuple[tuple[int, str], ...] = ()  # (line number, Image Index of a bad row)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (paths as strings, tuples as lists)."""
        data = asdict(self)
        data["root"] = str(self.root)
        data["csv_path"] = str(self.csv_path)
        data["label_counts"] = dict(self.label_counts)
        return data

    def lines(self) -> list[str]:
        """A one-screen printable summary: counts first, then the first few names per problem."""
        found = self.records - len(self.listed_missing)
        out = [
            f"ChestX-ray14 at {self.root}",
            f"  csv: {self.csv_path.name} ({self.rows} rows, {self.records} parsed, "
            f"{len(self.bad_rows)} bad)",
            f"  images: {self.images_found} PNG files in {self.image_dirs} folder(s), "
            f"layout {self.layout}; {found} of {self.records} listed images on disk",
            f"  patients: {self.patients}; split lists: {self.train_val_listed} train_val, "
            f"{self.test_listed} test",
        ]
        problems = [
            ("listed in the CSV but missing on disk", self.listed_missing),
            ("on disk but not in the CSV", self.unlisted),
            ("with the same name in two image folders (first kept)", self.duplicate_files),
            ("in neither split list (only in split 'all')", self.in_neither_list),
            ("in both split lists (treated as test)", self.in_both_lists),
            ("in a split list but not in the CSV", self.lists_unknown),
        ]
        for what, names in problems:
            if names:
                out.append(f"  {len(names)} image(s) {what}: {_first(names)}")
        if self.bad_rows:
            shown = "; ".join(f"row {row}: {why}" for row, why in self.bad_rows[:_SHOWN])
            more = (
                f" ... and {len(self.bad_rows) - _SHOWN} more"
                if len(self.bad_rows) > _SHOWN
                else ""
            )
            out.append(f"  {len(self.bad_rows)} bad row(s): {shown}{more}")
        if self.records:
            items = [
                f"{name} {100.0 * count / max(found, 1):.1f}%" for name, count in self.label_counts
            ]
            out.extend(_wrap("  positives (images on disk): ", items))
        return out


@dataclass(frozen=True)
class ChestXray14:
    """The whole data set as read: CSV rows in order, the official lists, the summary."""

    root: Path
    csv_path: Path
    records: tuple[ImageRecord, ...]
    train_val: frozenset[str]
    test: frozenset[str]
    summary: DatasetSummary

    def split(self, name: str, *, val_fraction: float = 0.1, seed: int = 0) -> list[ImageRecord]:
        """The images of one split that are on disk, in CSV order.

        `test` is the official test list. `train` and `val` divide train_val by patient
        (no patient in both), deterministically from (`seed`, `val_fraction`); the division
        is computed over every train_val row of the CSV, so it does not move when images
        go missing. `all` is every CSV row on disk, listed in a split file or not.
        """
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r} (expected one of {', '.join(SPLITS)})")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        present = [record for record in self.records if record.path is not None]
        if name == "all":
            return present
        if name == "test":
            return [record for record in present if record.filename in self.test]
        train_val = [
            record
            for record in self.records
            if record.filename in self.train_val and record.filename not in self.test
        ]
        val_patients = _val_patients(train_val, val_fraction=val_fraction, seed=seed)
        want_val = name == "val"
        return [
            record
            for record in present
            if record.filename in self.train_val
            and record.filename not in self.test
            and (record.patient_id in val_patients) == want_val
        ]


def read_chestxray14(root: Path) -> ChestXray14:
    """Read the data set under `root`; raises `DatasetError` only for what cannot be read."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError("not a folder", path=root)
    csv_path = find_csv(root)
    images, image_dirs, duplicates = index_images(root)
    parsed = _read_csv(csv_path, images)
    train_val = _read_list(root / TRAIN_VAL_LIST)
    test = _read_list(root / TEST_LIST)
    summary = _summarize(
        root=root,
        csv_path=csv_path,
        parsed=parsed,
        images=images,
        image_dirs=image_dirs,
        duplicates=duplicates,
        train_val=train_val,
        test=test,
    )
    return ChestXray14(
        root=root,
        csv_path=csv_path,
        records=parsed.records,
        train_val=frozenset(train_val),
        test=frozenset(test),
        summary=summary,
    )


def find_csv(root: Path) -> Path:
    """Data_Entry_2017.csv when present (what most users have), else the v2020 file."""
    for name in CSV_NAMES:
        candidate = root / name
        if candidate.is_file():
            return candidate
    raise DatasetError(f"no {' or '.join(CSV_NAMES)} in this folder", path=root)


def image_folders(root: Path) -> list[Path]:
    """`images/` and `images_NNN/images/` under `root`, in sorted order."""
    folders = []
    if (root / "images").is_dir():
        folders.append(root / "images")
    for entry in sorted(os.scandir(root), key=lambda item: item.name):
        if entry.is_dir() and _ARCHIVE_DIR.fullmatch(entry.name):
            inner = Path(entry.path) / "images"
            if inner.is_dir():
                folders.append(inner)
    return folders


def index_images(root: Path) -> tuple[dict[str, Path], int, tuple[str, ...]]:
    """File name -> path for every PNG in the image folders: one scan per folder.

    Returns (index, number of folders, names found in more than one folder).
    """
    folders = image_folders(root)
    if not folders:
        raise DatasetError("no images/ or images_NNN/images/ folder", path=root)
    index: dict[str, Path] = {}
    duplicates: list[str] = []
    for folder in folders:
        with os.scandir(folder) as entries:
            for entry in entries:
                if not entry.name.lower().endswith(IMAGE_SUFFIX) or not entry.is_file():
                    continue
                if entry.name in index:
                    duplicates.append(entry.name)
                    continue
                index[entry.name] = Path(entry.path)
    if not index:
        names = ", ".join(str(folder.relative_to(root)) for folder in folders)
        raise DatasetError(f"no PNG images in {names}", path=root)
    return index, len(folders), tuple(sorted(duplicates))


@dataclass(frozen=True)
class _ParsedCsv:
    rows: int
    records: tuple[ImageRecord, ...]
    bad_rows: tuple[tuple[int, str], ...]
    bad_row_files: tuple[tuple[int, str], ...]  # (line number, Image Index as written)


def _read_csv(csv_path: Path, images: dict[str, Path]) -> _ParsedCsv:
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
    return _ParsedCsv(
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


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(
            "split list not found (NIH ships train_val_list.txt and test_list.txt)", path=path
        )
    with open(path, encoding="utf-8-sig") as handle:
        return [line.strip() for line in handle if line.strip()]


def _val_patients(train_val: list[ImageRecord], *, val_fraction: float, seed: int) -> set[int]:
    """Patients for validation: a seeded shuffle of the sorted patient ids, taken in order
    until they hold `val_fraction` of the train_val images (at least one patient when the
    fraction is positive and there are two or more patients)."""
    images_per_patient = Counter(record.patient_id for record in train_val)
    patients = sorted(images_per_patient)
    if val_fraction == 0.0 or len(patients) < 2:
        return set()
    random.Random(seed).shuffle(patients)
    target = val_fraction * len(train_val)
    chosen: set[int] = set()
    taken = 0
    for patient in patients[:-1]:  # the last patient always stays in train
        if chosen and taken + images_per_patient[patient] / 2 > target:
            break
        chosen.add(patient)
        taken += images_per_patient[patient]
    return chosen


def _summarize(
    *,
    root: Path,
    csv_path: Path,
    parsed: _ParsedCsv,
    images: dict[str, Path],
    image_dirs: int,
    duplicates: tuple[str, ...],
    train_val: list[str],
    test: list[str],
) -> DatasetSummary:
    listed = {record.filename for record in parsed.records}
    train_val_set, test_set = set(train_val), set(test)
    on_disk = [record for record in parsed.records if record.path is not None]
    counts = [0] * len(LABELS)
    for record in on_disk:
        for position, bit in enumerate(record.labels):
            counts[position] += bit
    flat = (root / "images").is_dir()
    archive = image_dirs - int(flat) > 0
    layout = "flat+archive" if flat and archive else ("flat" if flat else "archive")
    return DatasetSummary(
        root=root,
        csv_path=csv_path,
        layout=layout,
        image_dirs=image_dirs,
        rows=parsed.rows,
        records=len(parsed.records),
        images_found=len(images),
        patients=len({record.patient_id for record in parsed.records}),
        listed_missing=tuple(record.filename for record in parsed.records if record.path is None),
        unlisted=tuple(sorted(set(images) - listed)),
        bad_rows=parsed.bad_rows,
        bad_row_files=parsed.bad_row_files,
        duplicate_files=duplicates,
        train_val_listed=len(train_val_set),
        test_listed=len(test_set),
        in_neither_list=tuple(
            record.filename
            for record in parsed.records
            if record.filename not in train_val_set and record.filename not in test_set
        ),
        in_both_lists=tuple(sorted(train_val_set & test_set)),
        lists_unknown=tuple(sorted((train_val_set | test_set) - listed)),
        label_counts=tuple(zip(LABELS, counts, strict=True)),
    )


def _wrap(head: str, items: list[str], width: int = 100) -> list[str]:
    """`head` then the items, comma-separated, wrapped between items (never inside one)."""
    lines, current = [], head
    for position, item in enumerate(items):
        piece = item + ("," if position < len(items) - 1 else "")
        if current.strip() and len(current) + len(piece) > width:
            lines.append(current.rstrip())
            current = "    "
        current += piece + " "
    lines.append(current.rstrip())
    return lines


def _first(names: tuple[str, ...]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" ... and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def main(argv: list[str] | None = None) -> int:
    """`python -m converters.chestxray ROOT [--val-fraction F] [--seed S]`: print the summary
    and the split sizes; exit 2 when the data set cannot be read."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m converters.chestxray",
        description="Read a ChestX-ray14 folder and print what was found and every problem.",
    )
    parser.add_argument("root", type=Path)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        data = read_chestxray14(args.root)
        sizes = {
            name: len(data.split(name, val_fraction=args.val_fraction, seed=args.seed))
            for name in SPLITS
        }
    except (DatasetError, ValueError) as error:
        print(f"converters.chestxray: {error}", file=sys.stderr)
        return 2
    print("\n".join(data.summary.lines()))
    print("  splits: " + ", ".join(f"{name} {count}" for name, count in sizes.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
