"""`bench.run --page-cache warm|cold` end to end (one rank, in this process): a cold
pipeline cell starts with its files out of the page cache, a warm one with all of them in,
and the result says so, with the file system of the data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.contract.results import find_results, load_result
from bench.input import page_cache
from bench.job import main as job_main

TINY = ["--image-size", "32", "--batch-per-gpu", "2", "--telemetry-period-s", "0.2"]


@pytest.fixture(autouse=True)
def _one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHEXBENCH_ENGINE", "single")
    for name in ("HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS", "PMI_SIZE"):
        monkeypatch.delenv(name, raising=False)


def _pipeline(out: Path, data_args: list[str], state: str) -> dict:
    code = job_main.main(
        [
            "--mode",
            "pipeline",
            *data_args,
            "--steps",
            "4",
            "--warmup-steps",
            "1",
            "--page-cache",
            state,
            "--output-dir",
            str(out),
            *TINY,
        ]
    )
    assert code == 0
    (path,) = find_results(out)
    return load_result(path)


def test_cold_and_warm_pipeline_cells_record_their_residency(
    tmp_path: Path, synth_root: Path
) -> None:
    mount = page_cache.mount_of(synth_root)
    if mount is None or mount.fs_type in ("tmpfs", "ramfs"):
        pytest.skip("the test data sit on tmpfs: nothing can be evicted")
    data = ["--data-format", "raw", "--data-dir", str(synth_root)]
    files = page_cache.cell_files(data_format="raw", splits=("train",), data_dir=synth_root)
    page_cache.warm(files)  # start from the state a cold cell must undo

    cold = _pipeline(tmp_path / "cold", data, "cold")
    record = cold["dataset"]["page_cache"]
    assert cold["cell"]["page_cache"] == "cold" and record["state"] == "cold"
    assert record["files"] == len(files) and record["problem_count"] == 0
    assert record["before"]["fraction"] == pytest.approx(1.0)
    assert record["after"]["fraction"] < 0.05  # near zero at the start of the job
    assert record["at_end"]["fraction"] > record["after"]["fraction"]  # the probe read some
    storage = cold["environment"]["storage"]
    assert storage["data_dir"]["fs_type"] == mount.fs_type and storage["records_dir"] is None

    warm = _pipeline(tmp_path / "warm", data, "warm")
    record = warm["dataset"]["page_cache"]
    assert warm["cell"]["page_cache"] == "warm" and record["bytes_read"] > 0
    assert record["after"]["fraction"] == pytest.approx(1.0)  # full residency at the start
    assert record["at_end"]["fraction"] == pytest.approx(1.0)


def test_tfrecord_cell_evicts_its_shards(tmp_path: Path, records_png: Path) -> None:
    data = ["--data-format", "tfrecord", "--records-dir", str(records_png)]
    result = _pipeline(tmp_path / "cold", data, "cold")
    record = result["dataset"]["page_cache"]
    shards = page_cache.cell_files(
        data_format="tfrecord", splits=("train",), records_dir=records_png
    )
    assert record["files"] == len(shards) and record["after"]["fraction"] < 0.05
    assert result["environment"]["storage"]["records_dir"]["path"] == str(records_png)


# Synthetic mode asked for a cold cache records none: asserted in test_run.py's synthetic
# test, which runs that job anyway (a second ResNet50 trace here would cost ~15 s).


def test_bad_state_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        job_main.main(["--page-cache", "lukewarm"])
    assert exit_info.value.code == 2
    assert "page-cache" in capsys.readouterr().err
