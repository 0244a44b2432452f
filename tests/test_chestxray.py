"""The ChestX-ray14 reader on hand-made folders: both CSV headers, both layouts, problems."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from converters.chestxray import read_chestxray14
from converters.chestxray_layout import DatasetError
from converters.labels import LABELS

HEADER_2017 = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
    "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)
HEADER_2020 = HEADER_2017.rstrip(",")

# (file name, finding labels, follow-up, patient id)
ROWS = [
    ("00000001_000.png", "Cardiomegaly", 0, 1),
    ("00000001_001.png", "Cardiomegaly|Emphysema", 1, 1),
    ("00000002_000.png", "No Finding", 0, 2),
    ("00000003_000.png", "Hernia", 0, 3),
    ("00000003_001.png", "Effusion|Infiltration", 1, 3),
    ("00000004_000.png", "No Finding", 0, 4),
]
TRAIN_VAL = ["00000001_000.png", "00000001_001.png", "00000002_000.png", "00000004_000.png"]
TEST = ["00000003_000.png", "00000003_001.png"]


def _row(name: str, labels: str, follow_up: int, patient: int, *, trailing: bool) -> str:
    line = f"{name},{labels},{follow_up},{patient},58,M,PA,2682,2749,0.143,0.143"
    return line + ("," if trailing else "")


def _write_png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), color=100).save(path)


def make_tree(
    root: Path,
    *,
    csv_name: str = "Data_Entry_2017.csv",
    layout: str = "flat",
    rows: list[tuple[str, str, int, int]] | None = None,
    extra_lines: tuple[str, ...] = (),
    on_disk: list[str] | None = None,
    train_val: list[str] | None = None,
    test: list[str] | None = None,
) -> Path:
    """A ChestX-ray14 folder as NIH ships it, with only what a test needs changed."""
    rows = ROWS if rows is None else rows
    trailing = csv_name == "Data_Entry_2017.csv"
    header = HEADER_2017 if trailing else HEADER_2020
    lines = [header, *(_row(*row, trailing=trailing) for row in rows), *extra_lines]
    root.mkdir(parents=True, exist_ok=True)
    (root / csv_name).write_text("\n".join(lines) + "\n")
    (root / "train_val_list.txt").write_text(
        "\n".join(TRAIN_VAL if train_val is None else train_val) + "\n"
    )
    (root / "test_list.txt").write_text("\n".join(TEST if test is None else test) + "\n")
    names = [row[0] for row in rows] if on_disk is None else on_disk
    for position, name in enumerate(names):
        folder = (
            root / "images"
            if layout == "flat"
            else root / f"images_{position % 3 + 1:03d}" / "images"
        )
        _write_png(folder / name)
    return root


@pytest.mark.parametrize("csv_name", ["Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv"])
@pytest.mark.parametrize("layout", ["flat", "archive"])
def test_reads_both_headers_and_both_layouts(tmp_path: Path, csv_name: str, layout: str) -> None:
    data = read_chestxray14(make_tree(tmp_path, csv_name=csv_name, layout=layout))

    assert data.csv_path == tmp_path / csv_name
    assert [record.filename for record in data.records] == [row[0] for row in ROWS]
    assert [record.row for record in data.records] == [2, 3, 4, 5, 6, 7]
    first = data.records[1]
    assert first.patient_id == 1 and first.follow_up == 1
    assert first.labels[LABELS.index("Cardiomegaly")] == 1
    assert first.labels[LABELS.index("Emphysema")] == 1
    assert sum(first.labels) == 2
    assert data.records[2].labels == (0,) * 14  # No Finding
    assert data.records[3].labels[LABELS.index("Hernia")] == 1
    for record in data.records:
        assert record.path is not None and record.path.name == record.filename
        expected_parent = "images" if layout == "flat" else "images"
        assert record.path.parent.name == expected_parent
    if layout == "archive":
        assert {record.path.parent.parent.name for record in data.records} == {
            "images_001",
            "images_002",
            "images_003",
        }
    summary = data.summary
    assert summary.layout == layout
    assert (summary.rows, summary.records, summary.images_found) == (6, 6, 6)
    assert summary.bad_rows == () and summary.listed_missing == () and summary.unlisted == ()
    assert dict(summary.label_counts)["Cardiomegaly"] == 2
    assert data.split("test") == [data.records[3], data.records[4]]
    text = "\n".join(summary.lines())
    assert csv_name in text and "6 parsed" in text


def test_prefers_the_2017_csv_when_both_exist(tmp_path: Path) -> None:
    make_tree(tmp_path, csv_name="Data_Entry_2017_v2020.csv")
    make_tree(tmp_path, csv_name="Data_Entry_2017.csv", rows=ROWS[:3], on_disk=[])
    data = read_chestxray14(tmp_path)
    assert data.csv_path.name == "Data_Entry_2017.csv"
    assert len(data.records) == 3


def test_missing_unlisted_and_unsplit_images_are_reported(tmp_path: Path) -> None:
    on_disk = [row[0] for row in ROWS if row[0] != "00000002_000.png"] + ["99999999_000.png"]
    make_tree(
        tmp_path,
        on_disk=on_disk,
        train_val=["00000001_000.png", "00000001_001.png", "00000002_000.png", "ghost.png"],
    )
    data = read_chestxray14(tmp_path)
    summary = data.summary

    assert summary.listed_missing == ("00000002_000.png",)
    assert summary.unlisted == ("99999999_000.png",)
    assert summary.in_neither_list == ("00000004_000.png",)
    assert summary.lists_unknown == ("ghost.png",)
    missing = next(record for record in data.records if record.filename == "00000002_000.png")
    assert missing.path is None
    # Missing images are in no split; the unsplit image only in "all"; unlisted in none.
    all_names = [record.filename for record in data.split("all")]
    assert "00000002_000.png" not in all_names and "99999999_000.png" not in all_names
    assert "00000004_000.png" in all_names
    for name in ("train", "val", "test"):
        names = {record.filename for record in data.split(name, val_fraction=0.5)}
        assert "00000004_000.png" not in names and "00000002_000.png" not in names
    text = "\n".join(summary.lines())
    assert "1 image(s) listed in the CSV but missing on disk: 00000002_000.png" in text
    assert "99999999_000.png" in text and "ghost.png" in text


def test_unknown_label_names_file_and_row(tmp_path: Path) -> None:
    rows = [*ROWS[:2], ("00000002_000.png", "Effusion|Pneumonitis", 0, 2)]
    make_tree(tmp_path, rows=rows)
    with pytest.raises(DatasetError) as caught:
        read_chestxray14(tmp_path)
    assert caught.value.path == tmp_path / "Data_Entry_2017.csv"
    assert caught.value.row == 4
    message = str(caught.value)
    assert "Data_Entry_2017.csv" in message and "row 4" in message and "Pneumonitis" in message


def test_bad_rows_are_reported_not_fatal(tmp_path: Path) -> None:
    extra = (
        "00000005_000.png,No Finding,0,five,58,M,PA,2682,2749,0.143,0.143,",
        "00000006_000.png,No Finding,0,6,58,M,PA",
        "",
        _row("00000001_000.png", "Mass", 0, 1, trailing=True),
    )
    make_tree(tmp_path, extra_lines=extra)
    data = read_chestxray14(tmp_path)
    bad = dict(data.summary.bad_rows)

    assert set(bad) == {8, 9, 11}
    assert "Patient ID" in bad[8] and "five" in bad[8]
    assert "expected 11 values, got 7" in bad[9]
    assert "duplicate of row 2" in bad[11]
    assert len(data.records) == len(ROWS)
    assert data.summary.rows == len(ROWS) + 3  # the blank line is not a row
    assert "3 bad row(s): row 8:" in "\n".join(data.summary.lines())


@pytest.mark.parametrize(
    ("remove", "expected"),
    [
        ("Data_Entry_2017.csv", "no Data_Entry_2017.csv or Data_Entry_2017_v2020.csv"),
        ("images", "no images/ or images_NNN/images/ folder"),
        ("test_list.txt", "split list not found"),
    ],
)
def test_what_cannot_be_read_is_an_error(tmp_path: Path, remove: str, expected: str) -> None:
    import shutil

    make_tree(tmp_path)
    target = tmp_path / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(DatasetError, match=expected):
        read_chestxray14(tmp_path)


def test_empty_image_folder_and_wrong_header_are_errors(tmp_path: Path) -> None:
    make_tree(tmp_path, on_disk=[])
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match="no PNG images in images"):
        read_chestxray14(tmp_path)
    other = make_tree(tmp_path / "other")
    (other / "Data_Entry_2017.csv").write_text("name,labels\nx.png,Mass\n")
    with pytest.raises(DatasetError, match=r"Data_Entry_2017.csv, row 1: unexpected header"):
        read_chestxray14(other)


def test_splits_are_patient_disjoint_and_deterministic(tmp_path: Path) -> None:
    # 60 patients with 1-4 images each; every fifth patient in the test list.
    rows, train_val, test = [], [], []
    for patient in range(1, 61):
        for follow_up in range(patient % 4 + 1):
            name = f"{patient:08d}_{follow_up:03d}.png"
            rows.append((name, "No Finding" if patient % 3 else "Mass", follow_up, patient))
            (test if patient % 5 == 0 else train_val).append(name)
    data = read_chestxray14(make_tree(tmp_path, rows=rows, train_val=train_val, test=test))

    def patients(records: list) -> set[int]:
        return {record.patient_id for record in records}

    train, val = data.split("train", seed=3), data.split("val", seed=3)
    test_records = data.split("test")
    assert not patients(train) & patients(val)
    assert not patients(train) & patients(test_records)
    assert not patients(val) & patients(test_records)
    assert len(train) + len(val) == len(train_val) and len(test_records) == len(test)
    assert abs(len(val) - 0.1 * len(train_val)) <= 4  # about one patient of slack
    # CSV order within a split.
    assert [record.row for record in train] == sorted(record.row for record in train)
    # Same seed and fraction: same split, also from a fresh read; another seed differs.
    again = read_chestxray14(tmp_path)
    assert again.split("val", seed=3) == val
    assert patients(data.split("val", seed=4)) != patients(val)
    bigger = data.split("val", seed=3, val_fraction=0.3)
    assert abs(len(bigger) - 0.3 * len(train_val)) <= 4
    assert data.split("val", val_fraction=0.0) == []
    with pytest.raises(ValueError, match="unknown split"):
        data.split("validation")
    with pytest.raises(ValueError, match="val_fraction"):
        data.split("train", val_fraction=1.0)


def test_command_line_prints_summary_and_splits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from converters.chestxray import main

    assert main([str(make_tree(tmp_path / "ok"))]) == 0
    printed = capsys.readouterr().out
    assert "Data_Entry_2017.csv (6 rows, 6 parsed, 0 bad)" in printed
    assert "splits: train" in printed and "test 2, all 6" in printed
    assert main([str(tmp_path / "absent")]) == 2
    assert "absent: not a folder" in capsys.readouterr().err


def test_same_name_in_two_folders_is_reported_and_first_kept(tmp_path: Path) -> None:
    make_tree(tmp_path, layout="archive")  # 00000001_000.png lands in images_001
    _write_png(tmp_path / "images_003" / "images" / "00000001_000.png")
    data = read_chestxray14(tmp_path)

    assert data.summary.duplicate_files == ("00000001_000.png",)
    assert data.records[0].path == tmp_path / "images_001" / "images" / "00000001_000.png"
    assert data.summary.images_found == len(ROWS)
    assert "with the same name in two image folders" in "\n".join(data.summary.lines())
