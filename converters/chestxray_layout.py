"""ChestX-ray14 as NIH lays it out on disk: the CSV and split-list names, the image folders
(flat `images/` and/or `images_NNN/images/`), found with one scan per folder; and
`DatasetError`, what cannot be read, naming the file (and row).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

CSV_NAMES: tuple[str, ...] = ("Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv")
TRAIN_VAL_LIST = "train_val_list.txt"
TEST_LIST = "test_list.txt"


IMAGE_SUFFIX = ".png"


_ARCHIVE_DIR = re.compile(r"images_\d{3}")


class DatasetError(ValueError):
    """The data set cannot be read; the message names the file (and row, where one applies)."""

    def __init__(self, message: str, *, path: Path | None = None, row: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}, row {row}: " if row is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.row = row


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


def read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(
            "split list not found (NIH ships train_val_list.txt and test_list.txt)", path=path
        )
    with open(path, encoding="utf-8-sig") as handle:
        return [line.strip() for line in handle if line.strip()]
