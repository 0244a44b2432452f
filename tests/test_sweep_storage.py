"""The sweep's storage probe stage: once per sweep, its record beside the results, kept on
--resume, skipped with --no-storage-probe, and shown by the report."""

from __future__ import annotations

import dataclasses
import io
import json
import sys
from pathlib import Path

from bench.sweep import SweepOptions, run

FAKE_WORKER = """
import sys
from pathlib import Path
from bench.contract import results
from bench.contract.config import RunConfig

config = RunConfig.from_argv(sys.argv[1:])
document = results.empty_result(
    status="ok", sweep=config.sweep, cell_id=config.cell_id, repeat=config.repeat,
    cell={"model": config.model, "mode": config.mode, "batch_per_gpu": config.batch_per_gpu},
    config=None, throughput={"images_per_sec": 10.0}, finished_at=results.utc_now())
results.write_result(Path(config.output_dir), document)
"""

BODY = (
    "base: {synthetic: {images: 40, size: 32, seed: 1}, mode: pipeline, image_size: 32}\n"
    "conversions: {small: {encoding: png, shard_count: 2, workers: 1}}\n"
    "axes: {data_format: [raw, tfrecord], conversion: [small]}\n"
)


def _sweep(tmp_path: Path, body: str = BODY) -> Path:
    worker = tmp_path / "worker.py"
    worker.write_text(FAKE_WORKER)
    path = tmp_path / "probe.yaml"
    path.write_text(
        f"name: probe\nworker: [{sys.executable}, {worker}]\nlauncher: {{kind: local}}\n" + body
    )
    return path


def _run(options: SweepOptions, env: dict[str, str]) -> tuple[int, str]:
    err = io.StringIO()
    code = run(options, environ=env, out=io.StringIO(), err=err)
    return code, err.getvalue()


def test_probe_runs_once_and_is_kept_on_resume(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    env = {**subprocess_env, "CHEXBENCH_DATA": str(tmp_path / "cache")}
    options = SweepOptions(
        sweep_file=_sweep(tmp_path), results=tmp_path / "r", report=False, progress=False
    )
    code, err = _run(options, env)
    assert code == 0, err
    path = tmp_path / "r" / "probe" / "storage_probe.json"
    record = json.loads(path.read_text())
    assert record["raw"]["files"] > 0 and record["tfrecord"]["files"] == 2
    assert record["records_dir"].startswith(str(tmp_path / "cache" / "records"))
    assert record["raw"]["cold"]["mb_per_sec"] > 0 and record["split"] == "train"
    assert "storage probe: raw files:" in err
    before = path.stat().st_mtime_ns

    code, err = _run(dataclasses.replace(options, resume=True), env)
    assert code == 0, err
    assert path.stat().st_mtime_ns == before  # nothing pending: not run again

    from reports.build import build_report
    from reports.load import load_results_sets

    report = build_report(load_results_sets([tmp_path / "r" / "probe"]))
    storage = next(t for s in report.sections for t in s.tables if t.key == "storage")
    assert storage.missing is None and [row[0] for row in storage.rows] == [
        "raw files",
        "TFRecord shards",
    ]


def test_no_storage_probe_and_synthetic_only_sweeps_skip_it(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    env = {**subprocess_env, "CHEXBENCH_DATA": str(tmp_path / "cache")}
    options = SweepOptions(
        sweep_file=_sweep(tmp_path),
        results=tmp_path / "r",
        report=False,
        progress=False,
        storage_probe=False,
    )
    code, err = _run(options, env)
    assert code == 0, err
    assert not (tmp_path / "r" / "probe" / "storage_probe.json").exists()

    synthetic = _sweep(tmp_path, "axes: {mode: synthetic, image_size: 32}\n")
    code, err = _run(
        SweepOptions(sweep_file=synthetic, results=tmp_path / "s", report=False, progress=False),
        env,
    )
    assert code == 0, err
    assert not (tmp_path / "s" / "probe" / "storage_probe.json").exists()


def test_cli_flag() -> None:
    from bench.sweep import parse_args

    assert parse_args([]).storage_probe is True
    assert parse_args(["--no-storage-probe"]).storage_probe is False
