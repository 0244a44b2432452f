"""Faults a hostile user met in the converters (issue 14), each reproduced as they met it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from converters import chestxray
from converters.chestxray import read_chestxray14
from converters.manifest import load_manifest
from converters.synth import generate
from converters.tfrecord import main
from converters.verify import verify


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A fresh 16-image, 32 px synthetic set that a test may damage."""
    return generate(tmp_path / "source", images=16, size=32, seed=3)


def _csv_lines(root: Path) -> tuple[Path, list[str]]:
    path = read_chestxray14(root).csv_path
    return path, path.read_text().splitlines()


def _convert(*argv: str) -> int:
    return main([*argv, "--quiet", "--workers", "1"])


# --- fault 1: --strict let a rejected CSV row through, unlisted ---------------------------


def test_a_rejected_csv_row_is_listed_in_skipped_and_strict_fails(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_path, lines = _csv_lines(source)
    values = lines[3].split(",")
    filename, values[3] = values[0], "P10"  # Patient ID is not a number
    lines[3] = ",".join(values)
    csv_path.write_text("\n".join(lines) + "\n")

    out = tmp_path / "out"
    assert _convert(str(source), str(out), "--splits", "all") == 0
    skipped = {entry["filename"]: entry for entry in load_manifest(out).skipped}
    assert filename in skipped, "a rejected row must be listed in the manifest's skipped"
    assert skipped[filename]["row"] == 4
    assert "Patient ID" in skipped[filename]["reason"] and "P10" in skipped[filename]["reason"]
    assert "1 image(s) skipped" in capsys.readouterr().err

    strict = tmp_path / "strict"
    assert _convert(str(source), str(strict), "--strict") == 1
    err = capsys.readouterr().err
    assert "row 4" in err and "P10" in err and "--strict" in err
    assert not (strict / "manifest.json").exists()


# --- fault 2: --resume with other options replaced the finished conversion -----------------


def test_resume_with_other_options_is_refused_naming_them(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert _convert(str(source), str(out), "--shard-count", "2") == 0
    before = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}

    code = _convert(str(source), str(out), "--shard-count", "2", "--resume", "--encoding", "jpeg")
    assert code == 2
    err = capsys.readouterr().err
    assert "--encoding: png in OUT, jpeg now" in err
    after = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    assert after == before, "a refused --resume must not touch the conversion"

    # An interrupted conversion (no manifest yet) is protected the same way.
    (out / "manifest.json").unlink()
    assert _convert(str(source), str(out), "--resume", "--resize", "16") == 2
    err = capsys.readouterr().err
    assert "--resize: not given in OUT, 16 now" in err and "--shard-count" in err
    # The same options finish it; workers and --strict may differ.
    assert _convert(str(source), str(out), "--shard-count", "2", "--resume", "--strict") == 0
    assert load_manifest(out).stats["reused_shards"] == 6


# --- fault 3 (converter half): two --resume converters on one OUT -------------------------


def test_two_resume_converters_on_one_out_take_turns(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    source = generate(tmp_path / "source", images=120, size=64, seed=5)
    out = tmp_path / "out"
    argv = [
        *("-m", "converters.tfrecord", str(source), str(out)),
        *("--splits", "all", "--shard-count", "4", "--resize", "320", "--workers", "1"),
        *("--quiet", "--resume"),
    ]
    first = subprocess.Popen(
        [sys.executable, *argv], env=subprocess_env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not list(out.glob(".*.partial")):  # the first one is writing its first shard
        assert first.poll() is None, "the first conversion ended before the second started"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    second = subprocess.run(
        [sys.executable, *argv], env=subprocess_env, capture_output=True, text=True, timeout=300
    )
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    assert second.returncode == 0, second.stderr
    assert "waiting for the conversion in" in second.stderr and "pid" in second.stderr
    manifest = load_manifest(out)
    assert manifest.stats["reused_shards"] == 0, "the second must not rewrite the first's work"
    assert verify(out).ok


# --- fault 6: a trailing comma too many on every line --------------------------------------


def test_extra_trailing_commas_are_tolerated(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_path, lines = _csv_lines(source)
    csv_path.write_text("\n".join(line + "," for line in lines) + "\n")
    out = tmp_path / "out"
    assert _convert(str(source), str(out), "--splits", "all") == 0
    manifest = load_manifest(out)
    assert (
        manifest.record_count("train")
        + manifest.record_count("val")
        + manifest.record_count("test")
        == len(lines) - 1
    )
    assert manifest.skipped == ()


def test_every_row_rejected_is_exit_2_with_the_first_reason(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_path, lines = _csv_lines(source)
    csv_path.write_text("\n".join([lines[0]] + [line + ",x" for line in lines[1:]]) + "\n")
    assert chestxray.main([str(source)]) == 2
    err = capsys.readouterr().err
    assert "every one of the 16 data row(s) was rejected" in err
    assert "row 2" in err and "expected 11 values, got 13" in err
    assert _convert(str(source), str(tmp_path / "out")) == 2
    assert "was rejected" in capsys.readouterr().err


# --- fault 9: a JPEG named .png ------------------------------------------------------------


def test_a_jpeg_named_png_is_recorded_warned_and_strict_fails(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = next(r for r in read_chestxray14(source).records if r.path is not None)
    buffer = io.BytesIO()
    with Image.open(record.path) as image:
        image.convert("L").save(buffer, format="JPEG", quality=90)
    record.path.write_bytes(buffer.getvalue())

    out = tmp_path / "out"
    assert _convert(str(source), str(out), "--splits", "all") == 0
    err = capsys.readouterr().err
    assert "not in the format their name says" in err and record.filename in err
    document = json.loads((out / "manifest.json").read_text())
    [entry] = document["misnamed"]
    assert (entry["filename"], entry["row"], entry["format"]) == (
        record.filename,
        record.row,
        "JPEG",
    )

    assert _convert(str(source), str(tmp_path / "strict"), "--strict") == 1
    err = capsys.readouterr().err
    assert record.filename in err and "JPEG" in err and "--strict" in err


# --- fault 10: converters.verify was one process, record by record, silent ----------------


def test_verify_checks_shards_in_parallel_with_the_same_report(
    records_png: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from converters import features
    from converters import verify as verify_module

    damaged = tmp_path / "records"
    shutil.copytree(records_png, damaged)
    for shard_file in (features.shard_name("train", 1, 3), features.shard_name("test", 2, 3)):
        data = (damaged / shard_file).read_bytes()
        (damaged / shard_file).write_bytes(data[: len(data) - 50])
    serial = verify(damaged, workers=1)
    parallel = verify(damaged, workers=2)
    assert not serial.ok
    assert parallel.problems == serial.problems
    assert (parallel.records_read, parallel.images_decoded, parallel.shards_checked) == (
        serial.records_read,
        serial.images_decoded,
        serial.shards_checked,
    )

    # By default every core checks shards once the conversion is big enough to pay for it.
    used: list[int] = []
    real_run_checks = verify_module.run_checks

    def spy(tasks, *, workers, progress):  # type: ignore[no-untyped-def]
        used.append(workers)
        return real_run_checks(tasks, workers=workers, progress=progress)

    monkeypatch.setattr(verify_module, "run_checks", spy)
    monkeypatch.setattr(verify_module, "default_workers", lambda: 2)
    monkeypatch.setattr(verify_module, "POOL_MIN_RECORDS", 1)
    assert verify(records_png).ok
    assert used == [2]


def test_verify_shows_progress(records_png: Path, subprocess_env: dict[str, str]) -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "converters.verify", str(records_png), "--workers", "2"],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert shown.returncode == 0, shown.stderr
    total = load_manifest(records_png).stats["images"]
    assert "verifying: 100%" in shown.stderr and f"{total}/{total}" in shown.stderr
