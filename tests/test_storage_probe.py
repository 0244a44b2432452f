"""The storage probe on a small real set: fields, cold really cold, warm really warm."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.input import page_cache
from bench.measure import storage_probe as sp


def _disk_backed(path: Path) -> bool:
    mount = page_cache.mount_of(path)
    return mount is not None and mount.fs_type not in ("tmpfs", "ramfs")


def test_sample_respects_the_byte_budget(tmp_path: Path) -> None:
    paths = []
    for index in range(10):
        path = tmp_path / f"{index}.bin"
        path.write_bytes(b"x" * 1000)
        paths.append(str(path))
    chosen = sp.sample(paths, max_bytes=3500, seed=1)
    assert len(chosen) == 3 and set(chosen) <= set(paths)
    assert chosen == sp.sample(paths, max_bytes=3500, seed=1)  # deterministic
    everything = sp.sample(paths, max_bytes=10**9, seed=1)
    assert sorted(everything) == sorted(paths) and everything != paths  # shuffled, not listed
    assert len(sp.sample(paths, max_bytes=10, seed=0)) == 1  # at least one file


def test_probe_fields_on_a_small_set(synth_root: Path, records_png: Path) -> None:
    raw = page_cache.cell_files(data_format="raw", splits=("train",), data_dir=synth_root)
    shards = page_cache.cell_files(
        data_format="tfrecord", splits=("train",), records_dir=records_png
    )
    record = sp.storage_probe(
        raw_files=raw,
        shard_files=shards,
        parallelism=2,
        shard_parallelism=1,
        data_dir=synth_root,
        records_dir=records_png,
    )
    json.dumps(record)
    assert record["mounts"]["data_dir"]["fs_type"]
    assert record["mounts"]["records_dir"]["path"] == str(records_png)
    for kind, files, parallelism, chunk in (
        ("raw", raw, 2, None),
        ("tfrecord", shards, 1, sp.SHARD_CHUNK_BYTES),
    ):
        read = record[kind]
        assert read["files"] == len(files)  # the whole small set fits the default budget
        assert read["bytes"] == sum(os.path.getsize(path) for path in files)
        assert (read["parallelism"], read["chunk_bytes"]) == (parallelism, chunk)
        for name in ("cold", "warm"):
            figures = read[name]
            assert figures["bytes"] == read["bytes"] and figures["problems"] == []
            assert figures["mb_per_sec"] == pytest.approx(read["bytes"] / 1e6 / figures["seconds"])
            assert figures["files_per_sec"] == pytest.approx(read["files"] / figures["seconds"])
        if _disk_backed(synth_root):
            assert read["cold"]["resident_at_start"] < 0.05
            assert read["warm"]["resident_at_start"] == pytest.approx(1.0)
    expected = record["raw"]["cold"]["mb_per_sec"] / record["tfrecord"]["cold"]["mb_per_sec"]
    assert record["raw_over_tfrecord_cold_mb_per_sec"] == pytest.approx(expected)
    lines = sp.summary_lines(record)
    assert lines[0].startswith("raw files:") and "cold" in lines[1]


def test_cli_writes_the_record_and_refuses_bad_input(
    synth_root: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "probe.json"
    assert sp.main(["--data-dir", str(synth_root), "--max-mb", "0.01", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["tfrecord"] is None and record["raw"]["files"] >= 1
    assert "TFRecord shards: not probed" in capsys.readouterr().out

    assert sp.main(["--data-dir", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        sp.main([])
    assert exit_info.value.code == 2


def test_report_table_from_a_probe_record(synth_root: Path, records_png: Path, tmp_path) -> None:
    from reports.load import ResultsSet, _load_set
    from reports.storage import storage_table

    record = sp.storage_probe(
        raw_files=page_cache.cell_files(data_format="raw", splits=("train",), data_dir=synth_root),
        shard_files=page_cache.cell_files(
            data_format="tfrecord", splits=("train",), records_dir=records_png
        ),
        data_dir=synth_root,
        records_dir=records_png,
    )
    (tmp_path / "storage_probe.json").write_text(json.dumps(record))
    loaded = _load_set(tmp_path)
    assert loaded.storage_probe == record
    table = storage_table([loaded])
    assert table.missing is None and len(table.rows) == 2
    raw_row, shard_row = table.rows
    headers = list(table.headers)
    assert len(headers) == len(raw_row) == len(table.numeric)
    assert raw_row[0] == "raw files" and shard_row[0] == "TFRecord shards"
    assert raw_row[headers.index("Files")] == f"{record['raw']['files']:,}"
    cold = record["tfrecord"]["cold"]["mb_per_sec"]
    assert shard_row[headers.index("Cold MB/s")] == f"{cold:,.1f}"
    assert record["mounts"]["data_dir"]["fs_type"] in raw_row[-1]
    assert any("raw files / shards" in note for note in table.notes)

    empty = ResultsSet(
        root=tmp_path,
        label="x",
        sweep_name=None,
        sweep_yaml=None,
        summary=None,
        conversions=(),
        runs=(),
    )
    assert storage_table([empty]).missing
