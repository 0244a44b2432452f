"""Real Horovod jobs of `bench.run` on this machine: Gloo and MPI controllers, two ranks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.contract.results import find_results, load_result

pytestmark = [pytest.mark.horovod]

VENV_BIN = Path(sys.executable).parent
HOROVODRUN = VENV_BIN / "horovodrun"
TINY = ["--image-size", "32", "--batch-per-gpu", "2", "--telemetry-period-s", "0.2"]


def _python_module() -> list[str]:
    return [sys.executable, "-m", "bench.run"]


def _run(argv: list[str], env: dict[str, str], cwd: Path, timeout: float):
    began = time.monotonic()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return done, time.monotonic() - began


def _only_result(directory: Path) -> dict:
    found = find_results(directory)
    assert len(found) == 1, f"expected one result file, found {found}"
    return load_result(found[0])


@pytest.mark.slow
def test_gloo_two_ranks_average_gradients(tmp_path: Path, subprocess_env, repo_root) -> None:
    if not HOROVODRUN.exists():
        pytest.skip("horovodrun not installed (scripts/setup.sh)")
    out, weights = tmp_path / "out", tmp_path / "weights"
    env = dict(subprocess_env, CHEXBENCH_TEST_WEIGHTS_DIR=str(weights))
    argv = [
        str(HOROVODRUN),
        "-np",
        "2",
        "-H",
        "localhost:2",
        "--gloo",
        *_python_module(),
        "--model",
        "resnet50",
        "--mode",
        "synthetic",
        "--steps",
        "3",
        "--warmup-steps",
        "1",
        "--output-dir",
        str(out),
        *TINY,
    ]
    done, _ = _run(argv, env, repo_root, timeout=420)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = _only_result(out)
    assert result["status"] == "ok"
    cell = result["cell"]
    assert (cell["engine"], cell["gpus"], cell["global_batch"], cell["nodes"]) == (
        "horovod",
        2,
        4,
        1,
    )
    assert result["environment"]["horovod_controller"] == "gloo"
    timing, throughput = result["timing"], result["throughput"]
    assert [len(steps) for steps in timing["step_s"]] == [3, 3]
    assert [len(steps) for steps in timing["warmup_step_s"]] == [1, 1]
    # Both ranks count: 2 ranks x 2 images x 3 steps over the slower rank's time.
    expected = 2 * 2 * 3 / max(timing["measured_s"])
    assert throughput["images_per_sec"] == pytest.approx(expected)
    assert throughput["images_per_sec_per_gpu"] == pytest.approx(expected / 2)
    # Different inputs on each rank (their losses differ), identical weights after the steps:
    # the gradients were averaged and the initial weights broadcast.
    losses = result["details"]["loss"]["per_rank"]
    assert len(losses) == 2 and losses[0] != losses[1]
    rank0, rank1 = (json.loads((weights / f"weights-rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["first_kernel"] == rank1["first_kernel"]
    assert rank0["last_bias"] == rank1["last_bias"]
    assert rank0["checksum"] == pytest.approx(rank1["checksum"], rel=1e-9, abs=1e-9)
    assert rank0["abs_checksum"] == pytest.approx(rank1["abs_checksum"], rel=1e-9)
    # One node sampled telemetry: host samples present, GPU null with the reason.
    assert len(result["telemetry"]["host"]) == 1
    assert result["telemetry"]["gpu"] is None and result["telemetry"]["gpu_unavailable"]


def test_mpirun_pipeline_sums_ranks(
    tmp_path: Path, subprocess_env, repo_root, records_png: Path
) -> None:
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        pytest.skip("mpirun not installed (scripts/setup.sh)")
    out = tmp_path / "out"
    env = dict(subprocess_env, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    forward = [
        arg
        for name in ("PYTHONPATH", "PATH", "TF_CPP_MIN_LOG_LEVEL", "TF_USE_LEGACY_KERAS")
        for arg in ("-x", name)
    ]
    argv = [
        mpirun,
        "--allow-run-as-root",
        "-np",
        "2",
        "--oversubscribe",
        *forward,
        *_python_module(),
        "--mode",
        "pipeline",
        "--data-format",
        "tfrecord",
        "--records-dir",
        str(records_png),
        "--pipeline",
        "tuned",
        "--steps",
        "4",
        "--warmup-steps",
        "1",
        "--output-dir",
        str(out),
        *TINY,
    ]
    done, _ = _run(argv, env, repo_root, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = _only_result(out)
    assert result["status"] == "ok"
    assert result["environment"]["horovod_controller"] == "mpi"
    assert result["cell"]["gpus"] == 2 and result["cell"]["encoding"] == "png"
    probes = result["details"]["probe"]
    rates = [rank["images_per_sec"] for rank in probes] if isinstance(probes, list) else None
    per_rank_steps = result["timing"]["step_s"]
    assert [len(steps) for steps in per_rank_steps] == [4, 4]
    assert result["throughput"]["images_per_sec"] > 0
    if rates is not None:
        assert result["throughput"]["images_per_sec"] == pytest.approx(sum(rates))
    assert result["dataset"]["records_dir"] == str(records_png)


def test_a_dying_rank_takes_the_job_down(
    tmp_path: Path, subprocess_env, repo_root, records_png: Path
) -> None:
    if not HOROVODRUN.exists():
        pytest.skip("horovodrun not installed (scripts/setup.sh)")
    out = tmp_path / "out"
    env = dict(subprocess_env, CHEXBENCH_TEST_CRASH="1:0")
    argv = [
        str(HOROVODRUN),
        "-np",
        "2",
        "-H",
        "localhost:2",
        "--gloo",
        *_python_module(),
        "--mode",
        "pipeline",
        "--data-format",
        "tfrecord",
        "--records-dir",
        str(records_png),
        "--steps",
        "3",
        "--warmup-steps",
        "0",
        "--output-dir",
        str(out),
        *TINY,
    ]
    done, elapsed = _run(argv, env, repo_root, timeout=240)
    assert done.returncode != 0
    assert "crashing before step 0" in done.stdout + done.stderr
    assert elapsed < 240
    for path in find_results(out) if out.exists() else []:
        assert load_result(path)["status"] != "ok"
    # No rank is left behind.
    leftover = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True)
    assert leftover.returncode == 1, f"processes left running: {leftover.stdout}"
