"""DS-Analyzer's stall arithmetic against hand-computed cases (95% intervals, reports.stats)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from reports import stall_frame, stall_shares, stalls
from reports.frame import NA_KEY

REPO = Path(__file__).resolve().parent.parent


def test_point_decomposition_by_hand() -> None:
    # batch 100: synthetic 1000 img/s -> 0.1 s, warm 800 -> 0.125 s, cold 500 -> 0.2 s.
    shares = stall_shares.stall_shares([1000.0], [800.0], [500.0], images_per_step=100)
    assert shares.step_compute_s == pytest.approx(0.1)
    assert shares.step_warm_s == pytest.approx(0.125)
    assert shares.step_cold_s == pytest.approx(0.2)
    assert shares.compute_share == pytest.approx(0.5)  # 0.1 / 0.2
    assert shares.prep_share == pytest.approx(0.125)  # 0.025 / 0.2
    assert shares.fetch_share == pytest.approx(0.375)  # 0.075 / 0.2
    # One repeat everywhere: no interval, reported as missing rather than as a point.
    assert math.isnan(shares.prep_low) and math.isnan(shares.fetch_high)


def test_intervals_by_hand() -> None:
    # batch 100: synthetic 0.1 s exactly; warm steps 0.1, 0.125, 0.15 s (mean 0.125, sd 0.025);
    # cold 0.2 s exactly. With exact denominators Fieller's interval is the numerator's t
    # interval over the denominator: t(0.975, df 2) = 4.303, se = 0.025 / sqrt(3).
    shares = stall_shares.stall_shares(
        [1000.0, 1000.0, 1000.0],
        [1000.0, 800.0, 2000.0 / 3],
        [500.0, 500.0, 500.0],
        images_per_step=100,
    )
    half = 4.303 * 0.025 / math.sqrt(3)  # 0.0621 s
    assert shares.step_warm_s == pytest.approx(0.125)
    assert (shares.step_warm_low_s, shares.step_warm_high_s) == (
        pytest.approx(0.125 - half, rel=1e-4),
        pytest.approx(0.125 + half, rel=1e-4),
    )
    # fetch = 1 - t_w / t_cold = 0.375, in [1 - (0.125 + half) / 0.2, 1 - (0.125 - half) / 0.2]
    assert shares.fetch_share == pytest.approx(0.375)
    assert (shares.fetch_low, shares.fetch_high) == (
        pytest.approx(1 - (0.125 + half) / 0.2, rel=1e-4),  # 0.064
        pytest.approx(1 - (0.125 - half) / 0.2, rel=1e-4),  # 0.686
    )
    assert stall_shares.is_real(shares.fetch_low, shares.fetch_high) is True
    # prep = (t_w - t_c) / t_cold = 0.125; the Welch difference has the warm cell's se and df
    assert shares.prep_share == pytest.approx(0.125)
    assert (shares.prep_low, shares.prep_high) == (
        pytest.approx((0.025 - half) / 0.2, rel=1e-4),  # -0.186: holds 0
        pytest.approx((0.025 + half) / 0.2, rel=1e-4),
    )
    assert stall_shares.is_real(shares.prep_low, shares.prep_high) is False
    assert shares.compute_share + shares.prep_share + shares.fetch_share == pytest.approx(1.0)
    # A cell that ran once has no interval, and neither has a share that needs it.
    once = stall_shares.stall_shares([1000.0, 1000.0], [800.0], [400.0, 500.0], images_per_step=100)
    assert math.isnan(once.step_warm_low_s) and math.isnan(once.prep_low)
    assert math.isnan(once.fetch_low) and math.isnan(once.fetch_high)
    assert not math.isnan(once.step_cold_low_s)  # the cold cell's own interval stands


def test_noise_is_not_called_a_stall() -> None:
    # Cold a little faster than warm in one repeat: the fetch stall's interval holds 0.
    shares = stall_shares.stall_shares(
        [1000.0, 1000.0], [500.0, 520.0], [490.0, 530.0], images_per_step=10
    )
    assert shares.fetch_low < 0 < shares.fetch_high
    assert stall_shares.is_real(shares.fetch_low, shares.fetch_high) is False
    assert stall_shares.is_real(math.nan, 1.0) is None
    assert stalls._with_interval(-0.3, -0.5, -0.1).endswith("<0!")
    assert stalls._with_interval(0.01, -0.02, 0.04).endswith("~0")
    assert stalls._with_interval(0.2, 0.1, 0.3) == "20.0% [10.0%, 30.0%]"


def test_a_faster_slower_configuration_is_flagged() -> None:
    runs = _runs()
    cold = runs.index[(runs["mode"] == "train") & (runs["page_cache"] == "cold")]
    runs.loc[cold, "status"] = "ok"
    runs.loc[cold, "images_per_sec"] = [900.0, 910.0]  # cold beats warm, twice
    table = stalls.stalls_table(runs)
    fetch = table.rows[0][list(table.headers).index("Fetch stall")]
    assert fetch.endswith("<0!")
    assert any("not a negative stall" in note for note in table.notes)


def test_without_a_cold_cell_the_fetch_stall_is_missing() -> None:
    shares = stall_shares.stall_shares([1000.0, 900.0], [500.0], [], images_per_step=10)
    assert math.isnan(shares.fetch_share) and math.isnan(shares.step_cold_s)
    assert math.isnan(shares.fetch_low) and math.isnan(shares.fetch_high)
    # shares of the warm step: t_c = mean(10 / 1000, 10 / 900), t_w = 0.02
    assert shares.compute_share == pytest.approx((10 / 1000 + 10 / 900) / 2 / 0.02)
    assert shares.prep_share + shares.compute_share == pytest.approx(1.0)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="synthetic"):
        stall_shares.stall_shares([], [1.0], [], images_per_step=1)
    with pytest.raises(ValueError, match="positive"):
        stall_shares.stall_shares([1.0], [0.0], [], images_per_step=1)


def _run(mode: str, page_cache: str, ips: float, **changes: object) -> dict:
    row = {
        "source": "s",
        "model": "resnet50",
        "mode": mode,
        "data_format": "raw",
        "encoding": "png",
        "conversion": NA_KEY,
        "pipeline": "tuned",
        "engine": "horovod",
        "gpus": 2,
        "nodes": 1,
        "device": "gpu",
        "batch_per_gpu": 32,
        "precision": "fp32",
        "image_size": 224,
        "xla": False,
        "page_cache": page_cache,
        "status": "ok",
        "images_per_sec": ips,
        "resident_at_start": 0.0 if page_cache == "cold" else 1.0,
    }
    if mode == "synthetic":
        row.update(data_format=NA_KEY, encoding=NA_KEY, pipeline=NA_KEY, page_cache=NA_KEY)
    row.update(changes)
    return row


def _runs() -> pd.DataFrame:
    return pd.DataFrame(
        [
            _run("synthetic", NA_KEY, 640.0),
            _run("synthetic", NA_KEY, 640.0, model="densenet121"),  # no train cells: no row
            _run("train", "warm", 512.0),
            _run("train", "warm", 512.0, repeat=1),
            _run("train", "cold", 320.0),
            _run("train", "cold", 320.0, status="failed", images_per_sec=None),  # not counted
            _run("pipeline", "warm", 2000.0, model=NA_KEY),
            _run("pipeline", "cold", 400.0, model=NA_KEY),
            _run("train", "warm", 600.0, data_format="tfrecord", conversion="png-full"),
            _run("train", "warm", 700.0, gpus=1),  # no 1-GPU synthetic cell: no row
        ]
    )


def test_frame_matches_cells_by_settings() -> None:
    frame = stall_frame.stalls_frame(_runs())
    assert list(frame["data_format"]) == ["raw", "tfrecord"]
    raw = frame.iloc[0]
    # global step 64 images: t_c = 0.1, t_w = 0.125, t_cold = 0.2
    assert (raw["compute_share"], raw["prep_share"], raw["fetch_share"]) == (
        pytest.approx(0.5),
        pytest.approx(0.125),
        pytest.approx(0.375),
    )
    assert (raw["repeats_synthetic"], raw["repeats_warm"], raw["repeats_cold"]) == (1, 2, 1)
    assert raw["pipeline_warm_ips"] == 2000.0 and raw["pipeline_cold_ips"] == 400.0
    assert raw["cold_resident_at_start"] == 0.0
    tfrecord = frame.iloc[1]
    assert math.isnan(tfrecord["fetch_share"]) and math.isnan(tfrecord["pipeline_warm_ips"])
    assert tfrecord["prep_share"] == pytest.approx(1 - 600 / 640)


def test_results_without_a_cache_state_give_no_rows() -> None:
    runs = _runs()
    assert stall_frame.stalls_frame(runs.drop(columns=["page_cache"])).empty
    runs["page_cache"] = NA_KEY
    assert stall_frame.stalls_frame(runs).empty
    table = stalls.stalls_table(runs)
    assert table.missing and not table.rows


def test_table_and_figure() -> None:
    table = stalls.stalls_table(_runs())
    assert len(table.rows) == 2
    assert len(table.headers) == len(table.rows[0]) == len(table.numeric)
    raw, tfrecord = table.rows
    headers = list(table.headers)
    assert raw[headers.index("Compute ms")] == "100.0"
    assert raw[headers.index("Fetch stall")].startswith("37.5%")
    # warm ran twice but synthetic once: no interval, shown as missing, and said why
    assert raw[headers.index("Preparation stall")] == "12.5% [n/a]"
    assert any("No interval" in note and "ran once" in note for note in table.notes)
    assert tfrecord[headers.index("Fetch stall")] == "n/a"
    assert any("Fetch stall n/a" in note for note in table.notes)
    figure = stalls.stalls_figure(_runs())
    assert figure.png is not None and figure.png.startswith(b"\x89PNG")
    assert figure.png == stalls.stalls_figure(_runs()).png  # byte-for-byte repeatable
    empty = stalls.stalls_figure(_runs().iloc[:1])
    assert empty.png is None and empty.note


def test_reports_stalls_imports_no_tensorflow() -> None:
    code = "import sys, reports.stalls; sys.exit('tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=False)
    assert done.returncode == 0


def _write_result(root: Path, mode: str, page_cache: str, ips: float, repeat: int) -> None:
    from bench.contract.cell import cell_record
    from bench.contract.results import empty_result, write_result

    settings = {
        "model": "resnet50",
        "mode": mode,
        "data_format": "raw",
        "pipeline": "tuned",
        "batch_per_gpu": 8,
        "precision": "fp32",
        "image_size": 64,
        "xla": False,
        "steps": 10,
        "warmup_steps": 2,
        "epochs": 1,
        "conversion": None,
        "page_cache": page_cache,
    }
    cell = cell_record(settings, gpus=1, nodes=1, engine="single", device="cpu", encoding="png")
    resident = {"warm": 1.0, "cold": 0.01}[page_cache]
    dataset = None
    if mode != "synthetic":
        dataset = {"source": "raw", "images": 1000, "page_cache": {"after": {"fraction": resident}}}
    result = empty_result(
        status="ok",
        cell=cell,
        repeat=repeat,
        sweep="stalls",
        dataset=dataset,
        throughput={"images_per_sec": ips, "step_p50_s": 8 / ips},
    )
    write_result(root / f"{mode}-{page_cache}", result)


def test_report_section_from_result_files(tmp_path: Path) -> None:
    from reports.build import build_report
    from reports.load import load_results_sets

    for repeat, (synthetic, warm, cold) in enumerate([(100.0, 80.0, 40.0), (100.0, 80.0, 50.0)]):
        _write_result(tmp_path, "synthetic", "warm", synthetic, repeat)
        _write_result(tmp_path, "train", "warm", warm, repeat)
        _write_result(tmp_path, "train", "cold", cold, repeat)
    report = build_report(load_results_sets([tmp_path]))
    tables = {t.key: t for section in report.sections for t in section.tables}
    stalls_table = tables["stalls"]
    assert len(stalls_table.rows) == 1
    row = dict(zip(stalls_table.headers, stalls_table.rows[0], strict=True))
    # t_c = 0.08 s, t_w = 0.1 s, t_cold = 0.18 s (mean of 8 / 40 and 8 / 50 s)
    assert row["Compute ms"] == "80.0" and row["Warm step ms"] == "100.0"
    assert row["Cold step ms"] == "180.0"
    # 44.4%; two cold repeats 0.04 s apart: t(df 1) = 12.706 puts the cold step's interval
    # through 0, so Fieller's interval of t_w / t_cold is unbounded, and says so
    assert row["Fetch stall"] == f"{1 - 0.1 / 0.18:.1%} [-inf, +inf] ~0"
    assert any("unbounded" in note for note in stalls_table.notes)
    assert row["Resident at cold start"] == "1.0%"
    throughput = tables["throughput"]
    assert "Page cache" in throughput.headers  # warm and cold cells kept apart
    assert {"warm", "cold"} <= {cell for r in throughput.rows for cell in r}
    input_bound = tables["input_bound"]  # both cache states find their synthetic cell
    assert len(input_bound.rows) == 2
    assert not any("n/a in Synthetic" in note for note in input_bound.notes)
    figure = next(f for f in report.figures if f.name == "stalls.png")
    assert figure.png is not None
    from reports.write import write_report

    write_report(report, tmp_path / "out")  # both renderers take every table
    markdown = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "Where the bytes come from" in markdown and "figures/stalls.png" in markdown
    assert "Preparation stall" in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
