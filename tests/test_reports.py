"""The report generator on golden result files written by the real result writer.

Expected figures are computed here by hand from the golden step times (tests/golden_writer.py),
not taken from the implementation.
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from statistics import mean

import golden_writer
import numpy as np
import pytest
from golden_writer import (
    BATCH_PER_GPU,
    CONVERSION_WALL_S,
    DATASET_IMAGES,
    NO_NVML,
    RAW_UTIL,
    WINDOW_S,
    write_golden,
)

from bench.contract.results import failure_result, find_results, load_result, write_result
from reports.__main__ import main
from reports.build import build_report
from reports.document import Report
from reports.format import Table
from reports.load import load_results_sets

GOLDEN = Path(__file__).parent / "golden" / golden_writer.SWEEP_NAME
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = (
    "scaling.png",
    "formats.png",
    "efficiency.png",
    "speedup.png",
    "supply_demand.png",
    "gpu_utilization.png",
    "capacity_cores_per_gpu.png",
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def ips(step_s: float, gpus: int = 1) -> float:
    """images/s of a run whose every step took `step_s`."""
    return BATCH_PER_GPU * gpus / step_s


# `python -m reports` in a fresh interpreter, which then lists the heavy modules it holds.
CLI_PROBE = """
import runpy, sys
import reports, reports.load, reports.frame, reports.analysis, reports.format
import reports.tables, reports.failures, reports.telemetry
import reports.plots, reports.build, reports.render_md, reports.render_html
sys.argv = ["reports", *sys.argv[1:]]
try:
    runpy.run_module("reports", run_name="__main__")
except SystemExit as done:
    assert done.code == 0, done.code
heavy = sorted(m for m in ("tensorflow", "horovod", "pynvml", "keras", "tf_keras")
               if m in sys.modules)
print("HEAVY", heavy)
"""


@pytest.fixture(scope="module")
def golden_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the committed golden sweep, made by the real CLI in a subprocess."""
    out = tmp_path_factory.mktemp("cli") / "report"
    repo = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", CLI_PROBE, str(GOLDEN), "--out", str(out)],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (out.parent / "cli-stdout.txt").write_text(done.stdout, encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def report() -> Report:
    return build_report(load_results_sets([GOLDEN]))


def table(report: Report, key: str) -> Table:
    return next(t for section in report.sections for t in section.tables if t.key == key)


def row(found: Table, **match: str) -> dict[str, str]:
    """The one row whose named columns hold the given texts, as {header: text}."""
    rows = [dict(zip(found.headers, values, strict=True)) for values in found.rows]
    chosen = [r for r in rows if all(r[column] == text for column, text in match.items())]
    assert len(chosen) == 1, (match, rows)
    return chosen[0]


def test_committed_goldens_are_what_the_writer_writes(tmp_path: Path) -> None:
    fresh = write_golden(tmp_path)
    committed = sorted(p.relative_to(GOLDEN) for p in GOLDEN.rglob("*") if p.is_file())
    written = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
    assert committed == written
    _, mismatch, errors = filecmp.cmpfiles(
        GOLDEN, fresh, [str(p) for p in committed], shallow=False
    )
    assert (
        not mismatch and not errors
    ), "stale goldens: rm -r tests/golden/golden; python -m tests.golden_writer tests/golden"
    results = find_results(GOLDEN)
    assert len(results) == 21
    assert {load_result(path)["status"] for path in results} == {"ok", "failed", "timeout"}


def test_scaling_efficiency_by_hand(report: Report) -> None:
    scaling = table(report, "scaling")
    raw_1gpu = mean([ips(0.40), ips(0.42), ips(0.38)])  # the mean over repeats
    efficiency = ips(0.45, gpus=2) / (2 * raw_1gpu)
    assert efficiency == pytest.approx(0.8874, abs=1e-4)
    found = row(scaling, Model="densenet121", Mode="train", Input="raw", GPUs="2")
    assert found["Efficiency"] == f"{efficiency:.1%}" == "88.7%"
    assert found["Images/s at 1 GPU"] == "160.3"
    resnet = row(scaling, Model="resnet50", Mode="train", Input="tfrecord/png", GPUs="2")
    assert resnet["Efficiency"] == f"{ips(0.34, 2) / (2 * ips(0.28)):.1%}"


def test_tfrecord_speedup_by_hand(report: Report) -> None:
    speedup = table(report, "speedup")
    raw = mean([ips(0.40), ips(0.42), ips(0.38)])
    tfrecord = mean([ips(0.355), ips(0.345)])
    densenet = row(speedup, Model="densenet121", Mode="train", GPUs="1")
    assert densenet["Speedup"] == f"{tfrecord / raw - 1:+.1%}" == "+14.1%"
    resnet = row(speedup, Model="resnet50", Mode="train", GPUs="2")
    assert resnet["Speedup"] == f"{ips(0.34, 2) / ips(0.33, 2) - 1:+.1%}" == "-2.9%"
    supply = row(speedup, Model="densenet121", Mode="pipeline", GPUs="1")
    assert supply["Speedup"] == "+250.0%"  # 0.35 s raw against 0.10 s tfrecord


def test_input_bound_share_and_headroom_by_hand(report: Report) -> None:
    bound = table(report, "input_bound")
    found = row(bound, Model="densenet121", Input="raw", GPUs="2")
    share = 1 - ips(0.45, 2) / ips(0.34, 2)
    assert found["Input-bound share"] == f"{share:.1%}" == "24.4%"
    assert found["Headroom"] == f"{ips(0.37, 2) / ips(0.34, 2):.2f}x" == "0.92x"


def test_conversion_pay_off_by_hand(report: Report) -> None:
    payoff = table(report, "payoff")
    epoch_raw = DATASET_IMAGES / mean([ips(0.40), ips(0.42), ips(0.38)])
    epoch_tfrecord = DATASET_IMAGES / mean([ips(0.355), ips(0.345)])
    epochs = CONVERSION_WALL_S / (epoch_raw - epoch_tfrecord)
    found = row(payoff, Model="densenet121", GPUs="1")
    assert found["Pays off after (epochs)"] == f"{epochs:,.1f}" == "155.5"
    assert found["Epoch raw (s)"] == "6.24"
    # resnet50 at 2 GPUs: tfrecord (0.34 s/step) is slower than raw (0.33 s/step).
    assert row(payoff, Model="resnet50", GPUs="2")["Pays off after (epochs)"] == "never"


def test_gpu_table_cuts_warm_up_and_names_missing_nvml(report: Report) -> None:
    gpu = table(report, "gpu")
    times = np.arange(21) * 0.5
    inside = np.flatnonzero((times >= WINDOW_S[0]) & (times <= WINDOW_S[1]))
    samples = [RAW_UTIL[i % len(RAW_UTIL)] - 4.0 * device for device in (0, 1) for i in inside]
    found = row(gpu, Model="densenet121", Mode="train", Input="raw", GPUs="2")
    assert found["Utilization mean"] == f"{np.mean(samples) / 100:.1%}" == "67.0%"
    assert found["Utilization p10"] == f"{np.percentile(samples, 10) / 100:.1%}"
    assert found["Memory peak (GiB)"] == "21.0"
    assert found["Samples"] == str(len(samples))
    # The host is idle (2%) outside the window and at 85% inside while decoding raw files.
    assert found["Host CPU mean"] == f"{golden_writer.HOST_CPU_PCT['raw'] / 100:.1%}" == "85.0%"
    missing = row(gpu, Model="resnet50", Mode="train", Input="raw", GPUs="1")
    assert missing["Utilization mean"] == "n/a [1]" and missing["Samples"] == "0"
    assert any(NO_NVML in note for note in gpu.notes)


def test_markdown_has_tables_figures_and_failures(golden_report: Path) -> None:
    text = (golden_report / "report.md").read_text(encoding="utf-8")
    for title in (
        "Throughput per cell",
        "Scaling efficiency",
        "TFRecord over raw files",
        "Input-bound share and pipeline headroom",
        "GPU and host utilization, power and memory",
        "Conversion cost",
        "Conversion pay-off",
        "Failed and timed-out runs",
    ):
        assert f"### {title}" in text
    for name in FIGURES:
        assert f"](figures/{name})" in text
    assert re.search(r"\|\s+152\.4-168\.4\s+\|", text)  # the 3-repeat cell's spread
    assert "ResourceExhaustedError: OOM" in text and "timeout" in text
    pending = text.split("### Planned runs without a result")[1]
    assert f"| golden   | {golden_writer.PENDING_SLUG} |" in pending
    assert "2026-03-02 09:00:00 UTC" in text
    assert " 0.0%" not in text  # nothing missing is shown as zero


def test_capacity_section_counts_cores_per_gpu(golden_report: Path) -> None:
    """The golden pipeline runs carry no probe CPU figures: the section still shows the
    shipped reference costs against every demand, labelled, and says what is missing."""
    text = (golden_report / "report.md").read_text(encoding="utf-8")
    section = text.split("Input capacity: cores per GPU", 1)[1].split("\n## ", 1)[0]
    # 16 cores decode 1,000 full-size PNGs/s: 0.016 core-s each; x 2912/s = 46.6 cores.
    row = next(line for line in section.splitlines() if "H100 ResNet50 bf16 b64 " in line)
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[0].startswith("full-size 1024 px PNG") and cells[1] == "16.0"  # ms per image
    assert cells[2] == "reference (H100 host)" and cells[4] == "2,912" and cells[6] == "46.6"
    assert "capacity_cores_per_gpu.png" in section


def test_figures_are_real_pngs(golden_report: Path) -> None:
    for name in FIGURES:
        data = (golden_report / "figures" / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        assert len(data) > 10_000, name


def test_regenerating_gives_identical_files(golden_report: Path, tmp_path: Path) -> None:
    first = sorted(p.relative_to(golden_report) for p in golden_report.rglob("*") if p.is_file())
    assert len(first) == 2 + len(FIGURES)
    # Delete part of a copy of the output, leave a stale figure, and run again.
    again = shutil.copytree(golden_report, tmp_path / "again")
    shutil.rmtree(again / "figures")
    (again / "report.html").unlink()
    (again / "figures").mkdir()
    (again / "figures" / "stale.png").write_bytes(PNG_MAGIC)
    assert main([str(GOLDEN), "--out", str(again)]) == 0
    second = sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert first == second  # the stale figure is gone
    for relative in first:
        assert (golden_report / relative).read_bytes() == (again / relative).read_bytes(), relative


def test_html_is_self_contained_and_printable(golden_report: Path) -> None:
    html = (golden_report / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert len(sources) == len(FIGURES)
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert "@media print" in html
    assert html.count("<table") == 11  # environment + 9 result tables + pending runs


def test_raw_only_cpu_sweep_says_what_is_missing(tmp_path: Path) -> None:
    results = write_golden(
        tmp_path / "results", name="raw-only", formats=("raw",), gpu_telemetry=False
    )
    assert main([str(results)]) == 0
    text = (results / "report.md").read_text(encoding="utf-8")
    assert "No table: needs both raw and tfrecord cells; these results have only raw" in text
    assert "### Conversion pay-off" in text and "No table: no conversion record" in text
    assert f"No GPU samples: {NO_NVML}" in text
    assert 'Figure "GPU utilization over time" not drawn' in text
    assert 'Figure "TFRecord over raw files" not drawn' in text
    assert not (results / "figures" / "speedup.png").exists()
    assert (results / "figures" / "scaling.png").read_bytes().startswith(PNG_MAGIC)


def test_two_clusters_side_by_side(tmp_path: Path) -> None:
    other = write_golden(tmp_path / "results", name="cluster-b", host="node-b", speed=1.25)
    out = tmp_path / "compared"
    assert main([str(GOLDEN), str(other), "--out", str(out)]) == 0
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "# chexbench report: golden, cluster-b" in text
    assert "### Results sets compared" in text
    compared = text.split("### Results sets compared")[1].split("##")[0]
    models = ("| densenet121", "| resnet50")
    rows = [line for line in compared.splitlines() if line.startswith(models)]
    assert len(rows) == 16  # every finished cell of the golden sweep, in both sets
    assert all("| 1.25x [" in line for line in rows)  # the ratio, then its interval
    assert all("no difference" not in line for line in rows)  # 25% is well beyond the noise
    assert "node-a" in text and "node-b" in text


def test_bad_input_exits_2_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty)]) == 2
    assert f"{empty}: no result files" in capsys.readouterr().err
    assert main([str(tmp_path / "absent")]) == 2
    broken = shutil.copytree(GOLDEN, tmp_path / "broken")
    victim = find_results(broken)[3]
    document = json.loads(victim.read_text(encoding="utf-8"))
    victim.write_text(json.dumps(document | {"schema_version": 99}), encoding="utf-8")
    assert main([str(GOLDEN), str(broken)]) == 2  # several folders need --out
    assert "--out" in capsys.readouterr().err
    assert not (broken / "report.md").exists()
    # One unreadable file is named, and every other result is still reported (issue 14).
    assert main([str(broken)]) == 1
    error = capsys.readouterr().err
    assert str(victim) in error and "schema_version 99 is newer" in error
    assert "schema_version 99 is newer" in (broken / "report.md").read_text(encoding="utf-8")


def test_cli_runs_without_tensorflow_horovod_or_nvml(golden_report: Path) -> None:
    stdout = (golden_report.parent / "cli-stdout.txt").read_text(encoding="utf-8")
    assert "HEAVY []" in stdout  # neither imported by reports nor by bench.contract.results
    assert f"{golden_report / 'report.html'}" in stdout


CHECK_SCRIPT = """<script>
window.addEventListener('load', function () {
  var out = document.createElement('pre');
  out.id = 'load-check';
  out.textContent = JSON.stringify({
    images: Array.from(document.images).map(function (img) {
      return [img.dataset.figure, img.naturalWidth, img.naturalHeight]; }),
    tables: Array.from(document.querySelectorAll('table')).map(function (t) {
      return [t.dataset.table, t.querySelectorAll('tbody tr').length]; })
  });
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed " "(scripts/setup.sh --dev installs it)"
)
def test_html_in_headless_chromium(golden_report: Path, tmp_path: Path) -> None:
    html = (golden_report / "report.html").read_text(encoding="utf-8")
    page = tmp_path / "checked.html"
    page.write_text(html.replace("</body>", CHECK_SCRIPT + "\n</body>"), encoding="utf-8")
    argv = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'<pre id="load-check">(.*?)</pre>', done.stdout, re.DOTALL)
    assert found, done.stdout[-2000:]
    check = json.loads(found.group(1).replace("&amp;", "&"))
    assert sorted(name for name, _, _ in check["images"]) == sorted(FIGURES)
    assert all(width > 100 and height > 100 for _, width, height in check["images"])
    rows = dict(check["tables"])
    assert rows["throughput"] == 16 and rows["speedup"] == 6 and rows["failures"] == 2
    assert {"environment", "scaling", "input_bound", "gpu", "conversion", "payoff"} <= set(rows)


def test_degenerate_results_still_give_a_report(tmp_path: Path) -> None:
    failed_only = tmp_path / "failed-only"
    write_result(
        failed_only / "cell",
        failure_result(
            status="failed",
            message="boom",
            cell={"model": "resnet50", "mode": "train", "gpus": 1},
            log_tail="Traceback: boom",
        ),
    )
    assert main([str(failed_only)]) == 0
    text = (failed_only / "report.md").read_text(encoding="utf-8")
    assert "No table: no run finished with a throughput figure" in text
    assert "Traceback: boom" in text and not (failed_only / "figures" / "scaling.png").exists()
    synthetic_only = write_golden(tmp_path, name="synthetic-only", formats=(), gpu_telemetry=False)
    assert main([str(synthetic_only)]) == 0
    text = (synthetic_only / "report.md").read_text(encoding="utf-8")
    assert "No table: needs both raw and tfrecord cells; these results have neither" in text
    assert "No table: no train or fit cell finished" in text
    assert (synthetic_only / "figures" / "scaling.png").read_bytes().startswith(PNG_MAGIC)
