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

The parts: converters.chestxray_layout (the files and folders, `DatasetError`),
converters.chestxray_csv (rows -> `ImageRecord`), converters.chestxray_summary (the counts).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from converters.chestxray_csv import ImageRecord, read_csv
from converters.chestxray_layout import (
    TEST_LIST,
    TRAIN_VAL_LIST,
    DatasetError,
    find_csv,
    index_images,
    read_list,
)
from converters.chestxray_summary import DatasetSummary, summarize

SPLITS: tuple[str, ...] = ("train", "val", "test", "all")


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
    parsed = read_csv(csv_path, images)
    train_val = read_list(root / TRAIN_VAL_LIST)
    test = read_list(root / TEST_LIST)
    summary = summarize(
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
