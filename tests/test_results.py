"""The result file contract: atomic, never overwritten, versioned, validated on load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.contract.results import (
    SCHEMA_VERSION,
    ResultSchemaError,
    empty_result,
    failure_result,
    find_results,
    load_result,
    write_result,
)


def ok_result() -> dict:
    return empty_result(
        status="ok",
        finished_at="2026-01-01T00:00:01.000000Z",
        cell={"model": "resnet50", "gpus": 1},
        throughput={"images_per_sec": 123.5},
    )


def test_written_result_loads_back_equal(tmp_path: Path) -> None:
    result = ok_result()
    path = write_result(tmp_path / "cell", result)
    assert load_result(path) == result
    assert find_results(tmp_path) == [path]
    assert [p.name for p in (tmp_path / "cell").iterdir()] == [path.name]  # no temp left
    assert path.stat().st_mode & 0o777 == 0o644  # readable by the team, not only its writer


def test_a_result_file_is_never_overwritten(tmp_path: Path) -> None:
    result = ok_result()
    path = write_result(tmp_path, result)
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        write_result(tmp_path, {**result, "throughput": {"images_per_sec": 1.0}})
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("version", "advice"),
    [(SCHEMA_VERSION + 1, "upgrade the harness"), (SCHEMA_VERSION - 1, "re-run the cell")],
)
def test_other_schema_versions_are_rejected_with_advice(
    tmp_path: Path, version: int, advice: str
) -> None:
    path = tmp_path / "result-r0-x.json"
    path.write_text(json.dumps({**ok_result(), "schema_version": version}))
    with pytest.raises(ResultSchemaError, match=advice) as caught:
        load_result(path)
    assert str(path) in str(caught.value)


def test_missing_key_and_bad_status_are_named(tmp_path: Path) -> None:
    incomplete = ok_result()
    del incomplete["timing"]
    with pytest.raises(ResultSchemaError, match="timing"):
        write_result(tmp_path, incomplete)
    with pytest.raises(ResultSchemaError, match="'status'"):
        write_result(tmp_path, {**ok_result(), "status": "great"})
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("rate", [0.0, -5.0, float("nan"), "fast", True])
def test_a_rate_that_is_not_positive_is_named(tmp_path: Path, rate: Any) -> None:
    result = ok_result()
    result["throughput"] = {**(result["throughput"] or {}), "images_per_sec": rate}
    with pytest.raises(ResultSchemaError, match=r"'throughput\.images_per_sec'"):
        write_result(tmp_path, result)
    assert not list(tmp_path.iterdir())


def test_failure_result_carries_the_reason_and_no_figures(tmp_path: Path) -> None:
    result = failure_result(
        status="timeout",
        message="cell exceeded 60 s",
        cell={"model": "densenet121"},
        exit_code=None,
        log_tail="step 3\n",
        sweep="default",
        cell_id="c1",
        repeat=1,
    )
    loaded = load_result(write_result(tmp_path, result))
    assert loaded["status"] == "timeout"
    assert loaded["error"]["message"] == "cell exceeded 60 s"
    assert loaded["throughput"] is None and loaded["timing"] is None
    with pytest.raises(ValueError, match="failed or timeout"):
        failure_result(status="ok", message="", cell={})
