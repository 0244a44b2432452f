"""The report on golden results shows intervals and claims no difference they do not support."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import golden_writer
import pytest

from bench.contract.results import find_results
from reports import stats
from reports.build import build_report
from reports.document import Report
from reports.format import Table
from reports.load import load_results_sets

GOLDEN = Path(__file__).parent / "golden" / golden_writer.SWEEP_NAME
DIFFERENCES = {"tfrecord faster", "tfrecord slower", "input-bound", "train faster"}
NO_CLAIMS = {stats.NO_DIFFERENCE, stats.BELOW_FACTOR}
PERCENT = r"([+-]?[\d,.]+%|[+-]inf)"


@pytest.fixture(scope="module")
def report() -> Report:
    return build_report(load_results_sets([GOLDEN]))


def table(report: Report, key: str) -> Table:
    return next(t for section in report.sections for t in section.tables if t.key == key)


def rows(found: Table) -> list[dict[str, str]]:
    return [dict(zip(found.headers, values, strict=True)) for values in found.rows]


def bounds(text: str) -> tuple[float, float]:
    """'[+2.7%, +27.9%]' -> (0.027, 0.279)."""
    match = re.fullmatch(rf"\[{PERCENT}, {PERCENT}\]", text)
    assert match, text
    return tuple(_number(part) for part in match.groups())  # type: ignore[return-value]


def _number(text: str) -> float:
    if text.endswith("inf"):
        return float(text.replace("inf", "1")) * float("inf")
    return float(text.rstrip("%").replace(",", "")) / 100


def test_every_cell_shows_an_interval_around_its_figure(report: Report) -> None:
    for row in rows(table(report, "throughput")):
        low, high = (
            float(part.replace(",", "")) for part in row["95% interval"].strip("[]").split(", ")
        )
        value = float(row["Images/s (global, mean)"].replace(",", ""))
        assert low < value < high, row
        method = row["Interval from"]
        assert method.startswith("batch means") or method == "t over 3 repeats", row


@pytest.mark.parametrize(
    ("key", "column", "verdict"),
    [
        ("speedup", "Speedup 95% interval", "Verdict"),
        ("input_bound", "Share 95% interval", "Verdict"),
        ("scaling", "Efficiency 95% interval", "Against linear"),
    ],
)
def test_a_stated_difference_has_an_interval_that_excludes_no_change(
    report: Report, key: str, column: str, verdict: str
) -> None:
    found = rows(table(report, key))
    assert found
    for row in found:
        low, high = bounds(row[column])
        no_change = 1.0 if key == "scaling" else 0.0
        if row[verdict] in NO_CLAIMS:
            continue
        assert row[verdict] in DIFFERENCES | {"scaling loss", "superlinear"}, row
        assert not low <= no_change <= high, row


def test_noise_level_differences_are_called_so(report: Report) -> None:
    # resnet50 at 2 GPUs: tfrecord 0.34 s/step against raw 0.33 s/step (-2.9%), each
    # within +-4% noise: not a finding.
    speedup = next(
        row
        for row in rows(table(report, "speedup"))
        if row["Model"] == "resnet50" and row["GPUs"] == "2"
    )
    assert speedup["Verdict"] == stats.NO_DIFFERENCE
    low, high = bounds(speedup["Speedup 95% interval"])
    assert low < 0 < high
    line = next(line for line in report.highlights if "training (2 GPUs)" in line)
    assert f"resnet50 tuned {stats.NO_DIFFERENCE} (-2.9% [" in line
    assert "densenet121 tuned +15.4% [" in line  # 0.39 against 0.45 s/step: significant


def test_the_summary_states_only_significant_differences(report: Report) -> None:
    for line in report.highlights:
        for claim in re.finditer(rf"{PERCENT} \[{PERCENT}, {PERCENT}\]", line):
            low, high = _number(claim.group(2)), _number(claim.group(3))
            before = line[: claim.start()]
            if low <= 0 <= high:
                assert before.rstrip(" (").endswith(stats.NO_DIFFERENCE), line


def _as_cpu(tmp_path: Path) -> Path:
    copy = shutil.copytree(GOLDEN, tmp_path / "cpu")
    for path in find_results(copy):
        document = json.loads(path.read_text(encoding="utf-8"))
        document["cell"]["device"] = "cpu"
        path.write_text(json.dumps(document), encoding="utf-8")
    return copy


def test_on_a_cpu_device_input_bound_says_model_and_input_share_cores(tmp_path: Path) -> None:
    report = build_report(load_results_sets([_as_cpu(tmp_path)]))
    notes = " ".join(table(report, "input_bound").notes)
    assert "share the same CPU cores" in notes
    line = next(line for line in report.highlights if "input" in line.lower() and "CPU" in line)
    assert "not a GPU waiting for its input" in line


def test_environment_labels_cuda_as_what_tensorflow_was_built_for(report: Report) -> None:
    environment = dict((row[0], row[1]) for row in report.environment.rows)
    assert environment["CUDA (TF build)"] == "TF built for CUDA 12.2"
    assert environment["cuDNN (TF build)"] == "TF built for cuDNN 8.9"
    assert environment["Repeat order"] == "interleaved"  # from summary.json


def test_identical_results_sets_compare_as_no_difference(tmp_path: Path) -> None:
    twin = golden_writer.write_golden(tmp_path / "results", name="twin")
    report = build_report(load_results_sets([GOLDEN, twin]))
    compared = rows(table(report, "comparison"))
    assert len(compared) == 16
    ratio = "twin / golden [95% interval]"
    assert all(row[ratio].startswith("1.00x [") for row in compared)
    assert all(row[ratio].endswith(stats.NO_DIFFERENCE) for row in compared)


def test_step_times_under_a_millisecond_keep_significant_digits(
    report: Report, tmp_path: Path
) -> None:
    fast = golden_writer.write_golden(tmp_path / "results", name="fast", speed=10_000)
    fast_rows = rows(table(build_report(load_results_sets([fast])), "throughput"))
    column = "Step p50 (ms)"
    shown = 0
    for slow, quick in zip(rows(table(report, "throughput")), fast_rows, strict=True):
        if slow[column] == "n/a":
            assert quick[column] == "n/a"
            continue
        expected = float(slow[column].replace(",", "")) / 10_000  # steps of 10-45 us
        assert float(quick[column]) == pytest.approx(expected, rel=0.06), quick
        shown += 1
    assert shown >= 10
