"""Sweeps on a real one-node Slurm cluster (tests/slurm_cluster.py): the srun launcher
inside an allocation, the capacity check reading it, and `--submit` as a batch job."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.contract import results

REPO = Path(__file__).resolve().parent.parent


def _env(cluster, tmp_path: Path) -> dict[str, str]:
    env = cluster.environ()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["CHEXBENCH_DATA"] = str(tmp_path / "data")
    for name in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_JOB_NUM_NODES", "CHEXBENCH_ENGINE"):
        env.pop(name, None)  # the test's own process is not inside a job
    return env


def _sweep(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\nlauncher: {{kind: srun, gpus_per_task: null}}\n" + body)
    return path


def test_capacity_check_reads_the_allocation(slurm_cluster, tmp_path: Path) -> None:
    sweep = _sweep(tmp_path, "too-wide", "base: {mode: synthetic, gpus: 2}\n")
    argv = [
        sys.executable,
        "-m",
        "bench.sweep",
        str(sweep),
        "--dry-run",
        "--results",
        str(tmp_path),
    ]
    # Inside a one-task allocation the 2-rank cell does not fit; inside a two-task one it does.
    small = slurm_cluster.run(["srun", "--ntasks", "1", *argv], env=_env(slurm_cluster, tmp_path))
    assert small.returncode == 2, small.stdout + small.stderr
    assert "more than 1" in small.stderr and "Slurm job" in small.stderr, small.stderr
    wide = slurm_cluster.run(
        [
            "srun",
            "--ntasks",
            "2",
            "--ntasks-per-node",
            "2",
            "bash",
            "-c",
            'test "$SLURM_PROCID" = 0 || exit 0; exec "$@"',
            "x",
            *argv,
        ],
        env=_env(slurm_cluster, tmp_path),
    )
    assert wide.returncode == 0, wide.stdout + wide.stderr
    assert "srun --ntasks 2 --nodes 1" in wide.stdout and "--mpi=pmix" in wide.stdout


def _wait_for_job(cluster, job_id: str, timeout_s: float = 420.0) -> str:
    """Until the job has left the queue; its last state (squeue's view)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = cluster.run(["squeue", "--noheader", "--jobs", job_id, "--format=%T"], timeout=20)
        state = done.stdout.strip()
        if done.returncode != 0 or not state:
            return "left the queue"
        time.sleep(1.0)
    cluster.run(["scancel", job_id])
    raise AssertionError(f"Slurm job {job_id} still queued or running after {timeout_s:.0f} s")


@pytest.mark.slow
@pytest.mark.horovod
def test_submitted_sweep_runs_a_two_task_horovod_cell_and_resumes(
    slurm_cluster, tmp_path: Path, synth_root: Path
) -> None:
    sweep = _sweep(
        tmp_path,
        "on-slurm",
        "timeout_s: 300\n"
        "slurm: {time_limit: 20}\n"
        f"base: {{data_dir: {synth_root}, image_size: 32, batch_per_gpu: 4, steps: 3,"
        " warmup_steps: 1, shuffle_buffer: 16}\n"
        "axes: {mode: [pipeline], data_format: [raw], gpus: [2]}\n",
    )
    env = _env(slurm_cluster, tmp_path)
    root = tmp_path / "results"
    submit = [sys.executable, "-m", "bench.sweep", str(sweep), "--results", str(root), "--submit"]
    first = subprocess.run(
        submit, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert first.returncode == 0, first.stdout + first.stderr
    job = re.search(r"Slurm job (\d+)", first.stdout)
    assert job, first.stdout
    sweep_dir = root / "on-slurm"
    log = sweep_dir / "slurm" / f"slurm-{job.group(1)}.log"
    assert str(log) in first.stdout and str(sweep_dir) in first.stdout
    script = sweep_dir / "slurm" / "job.sbatch"
    text = script.read_text()
    assert "#SBATCH --nodes=1" in text and "#SBATCH --ntasks-per-node=2" in text
    assert "#SBATCH --time=20" in text and "--resume" in text
    _wait_for_job(slurm_cluster, job.group(1))
    logged = log.read_text()
    found = results.find_results(sweep_dir)
    assert len(found) == 1, logged[-4000:]
    result = results.load_result(found[0])
    assert result["status"] == "ok", logged[-4000:]
    assert result["cell"]["gpus"] == 2 and result["cell"]["engine"] == "horovod"
    environment = result["environment"]
    assert environment["ranks"] == 2 and environment["horovod_controller"] == "mpi"
    assert environment["slurm"]["job_id"] == job.group(1)
    assert environment["slurm"]["step_num_tasks"] == "2"
    assert (sweep_dir / "summary.json").is_file()
    assert (sweep_dir / "report.md").is_file() and (sweep_dir / "report.html").is_file(), (
        sorted(p.name for p in sweep_dir.iterdir()),
        logged[-3000:],
    )
    assert f"Slurm job {job.group(1)}" in logged  # the script's own first line
    # Resubmitted (as after a time-out): the job resumes and reruns nothing that is ok.
    second = subprocess.run(
        submit, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert second.returncode == 0, second.stdout + second.stderr
    again = re.search(r"Slurm job (\d+)", second.stdout)
    assert again and again.group(1) != job.group(1)
    _wait_for_job(slurm_cluster, again.group(1))
    second_log = (sweep_dir / "slurm" / f"slurm-{again.group(1)}.log").read_text()
    assert f"Slurm job {again.group(1)}" in second_log
    assert results.find_results(sweep_dir) == found, second_log[-3000:]
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert summary["counts"] == {"ok": 1}, second_log[-3000:]
