"""Faults a hostile user met in the reports (issue 14), each reproduced as they met it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import golden_writer
import pytest

from bench.contract.results import (
    failure_result,
    find_results,
    load_result,
    new_run_id,
    write_result,
)
from reports.__main__ import main

GOLDEN = Path(__file__).parent / "golden" / golden_writer.SWEEP_NAME


def _failures_section(report: Path) -> str:
    text = report.read_text(encoding="utf-8")
    return text[text.index("## Failures") :]


def _resumed_ok(sweep: Path, failed: Path) -> Path:
    """What `--resume` leaves: an ok result beside the failed one, same cell and repeat."""
    failed_doc = load_result(failed)
    donor = next(
        load_result(path)
        for path in find_results(sweep)
        if load_result(path)["status"] == "ok"
        and load_result(path)["cell"].get("mode") == failed_doc["cell"].get("mode")
    )
    document = donor | {
        "cell": failed_doc["cell"],
        "cell_id": failed_doc["cell_id"],
        "repeat": failed_doc["repeat"],
        "run_id": new_run_id(),
        "config": failed_doc.get("config") or donor.get("config"),
    }
    return write_result(failed.parent, document)


# --- fault 4: one unreadable result file blocked every report ------------------------------


def test_a_truncated_result_still_gives_a_report_listing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = shutil.copytree(GOLDEN, tmp_path / "sweep")
    results = find_results(sweep)
    victim = results[5]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # a run killed while writing, say

    assert main([str(sweep)]) == 1
    err = capsys.readouterr().err
    assert str(victim) in err and "not valid JSON" in err
    report = sweep / "report.md"
    text = report.read_text(encoding="utf-8")
    assert f"({len(results) - 1} result files)" in text  # every readable one is in it
    failures = _failures_section(report)
    assert victim.name in failures and "not valid JSON" in failures
    assert "unreadable" in failures

    # After --resume re-ran that cell, the file is still listed, marked superseded.
    replacement = json.loads(data)
    replacement["run_id"] = new_run_id()
    write_result(victim.parent, replacement)
    assert main([str(sweep)]) == 1
    failures = _failures_section(report)
    assert "unreadable, superseded by a later ok run" in failures


# --- fault 7: failed runs of cells that now have an ok result; the ranks' lines cut off -----


LAUNCHER_TAIL = [
    "--------------------------------------------------------------------------",
    "Primary job  terminated normally, but 1 process returned",
    "a non-zero exit code. Per user-direction, the job has been aborted.",
    "--------------------------------------------------------------------------",
    "Traceback (most recent call last):",
    *(f'  File "/venv/lib/horovod/runner/launch.py", line {100 + i}, in run' for i in range(8)),
    "    raise RuntimeError(",
    "RuntimeError: Horovod detected that one or more processes exited with non-zero status, "
    "thus causing the job to be terminated. The first process to do so was:",
    "Process name: 0",
    "Exit code: 3",
]


def test_superseded_failures_are_marked_and_the_ranks_error_lines_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = shutil.copytree(GOLDEN, tmp_path / "sweep")
    failed = next(path for path in find_results(sweep) if load_result(path)["status"] != "ok")
    failed_doc = load_result(failed)
    log = "\n".join(
        [
            "[1,0]<stdout>:bench.run: rank 0 of 2 on node-a: building the dataset",
            "[1,0]<stderr>:bench.run: rank 0 crashing before step 0 (test hook)",
            "[1,1]<stdout>:bench.run: rank 1 of 2 on node-a: building the dataset",
            *LAUNCHER_TAIL,
        ]
    )
    # A second failed cell, as a launcher leaves it; nothing re-ran it.
    other_cell = failed_doc["cell"] | {"batch_per_gpu": 3}
    write_result(
        failed.parent.with_name(failed.parent.name + "-b3"),
        failure_result(
            status="failed",
            message="exited with code 3",
            cell=other_cell,
            exit_code=3,
            log_tail=log,
            sweep=failed_doc.get("sweep"),
            cell_id="b3" + failed_doc["cell_id"],
            repeat=0,
        ),
    )
    _resumed_ok(sweep, failed)

    assert main([str(sweep)]) == 0
    failures = _failures_section(sweep / "report.md")
    assert f"{failed_doc['status']}, superseded by a later ok run" in failures
    assert failures.count("superseded") == 2  # in the table and above its log excerpt
    assert "rank 0 crashing before step 0" in failures
    summary = (sweep / "report.md").read_text(encoding="utf-8").split("## Failures")[0]
    assert "(1 more superseded by a later ok run)" in summary
    assert "Exit code: 3" in failures  # the tail is still shown
