"""`DatasetSummary`: what a ChestX-ray14 folder holds and every problem found in it, counted
and named, printable on one screen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from converters.chestxray_csv import ParsedCsv
from converters.labels import LABELS

# How many names of each problem kind `DatasetSummary.lines` prints before "... N more".
_SHOWN = 5


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


def summarize(
    *,
    root: Path,
    csv_path: Path,
    parsed: ParsedCsv,
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
