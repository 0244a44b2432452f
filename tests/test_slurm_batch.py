"""Slurm without a cluster: job facts, srun's MPI plugin list, batch scripts."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from bench.sweep import slurm

# What Slurm 22.05 on Debian 12 prints for `srun --mpi=list` (on stderr).
MPI_LIST = (
    "MPI plugin types are...\n\tpmix\n\tnone\n\tcray_shasta\n\tpmi2\n"
    "specific pmix plugin versions available: pmix_v4\n"
)


def _runner(stdout: str = "", stderr: str = "", code: int = 0):
    seen: list[list[str]] = []

    def run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        seen.append(list(argv))
        return subprocess.CompletedProcess(list(argv), code, stdout, stderr)

    return run, seen


def test_job_facts_inside_and_outside_slurm() -> None:
    from bench.job.environment import slurm_job

    assert slurm_job({"PATH": "/bin"}) is None
    facts = slurm_job({"SLURM_JOB_ID": "42", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "2"})
    assert facts is not None
    assert facts["job_id"] == "42" and facts["step_id"] == "0" and facts["ntasks"] == "2"
    assert facts["partition"] is None  # unset is missing, not invented


def test_mpi_plugins_parsed_and_a_missing_one_named() -> None:
    run, seen = _runner(stderr=MPI_LIST)
    assert slurm.mpi_plugins(run) == ["pmix", "none", "cray_shasta", "pmi2"]
    assert seen == [["srun", "--mpi=list"]]
    assert slurm.mpi_problem("pmix", run) is None
    run, _ = _runner(stderr="MPI plugin types are...\n\tnone\n\tpmi2\n")
    problem = slurm.mpi_problem("pmix", run)
    assert problem is not None
    assert "no 'pmix' MPI plugin" in problem and "none, pmi2" in problem
    run, _ = _runner(stderr="srun: error: bad", code=1)
    assert "srun --mpi=list failed" in (slurm.mpi_problem("pmix", run) or "")


def test_allocation_fits_every_cell_and_budgets_their_timeouts() -> None:
    spec = slurm.BatchSpec()
    # (ranks, nodes, timeout_s, repeats): 8 ranks on 2 nodes, 3 ranks on one node.
    wanted = slurm.allocation([(8, 2, 600.0, 2), (3, 1, 300.0, 1)], gpus_per_task=1, spec=spec)
    assert wanted.nodes == 2 and wanted.tasks_per_node == 4 and wanted.gpus_per_task == 1
    assert wanted.time_limit_min == (2 * 600 + 300) // 60 + slurm.PREPARE_MARGIN_MIN
    named = slurm.allocation(
        [(1, 1, 60.0, 1)], gpus_per_task=None, spec=slurm.BatchSpec(time_limit_min=7)
    )
    assert named.time_limit_min == 7 and named.gpus_per_task is None
    with pytest.raises(ValueError, match="no cells"):
        slurm.allocation([], gpus_per_task=None, spec=spec)


def test_batch_script_asks_for_the_allocation_and_resumes(tmp_path: Path) -> None:
    spec = slurm.BatchSpec(partition="gpu", directives=("--constraint=h100",))
    wanted = slurm.Allocation(nodes=2, tasks_per_node=4, gpus_per_task=1, time_limit_min=90)
    argv = ["/venv/bin/python", "-m", "bench.sweep", "/s/my sweep.yaml", "--resume"]
    text = slurm.batch_script(
        sweep_name="demo",
        sweep_argv=argv,
        workdir=tmp_path,
        log=tmp_path / "r.log",
        wanted=wanted,
        spec=spec,
    )
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    directives = [line.removeprefix("#SBATCH ") for line in lines if line.startswith("#SBATCH")]
    assert "--nodes=2" in directives and "--ntasks-per-node=4" in directives
    assert "--gpus-per-task=1" in directives and "--time=90" in directives
    assert "--partition=gpu" in directives and "--constraint=h100" in directives
    assert "--job-name=chexbench-demo" in directives and f"--chdir={tmp_path}" in directives
    assert lines[-1] == "exec /venv/bin/python -m bench.sweep '/s/my sweep.yaml' --resume"
    done = subprocess.run(["bash", "-n"], input=text, text=True, check=False)
    assert done.returncode == 0


def test_submit_reads_the_job_id_or_says_why_not(tmp_path: Path) -> None:
    run, seen = _runner(stdout="1234;cluster\n")
    assert slurm.submit(tmp_path / "job.sbatch", run) == "1234"
    assert seen == [["sbatch", "--parsable", str(tmp_path / "job.sbatch")]]
    run, _ = _runner(stderr="sbatch: error: invalid partition", code=1)
    with pytest.raises(OSError, match="invalid partition"):
        slurm.submit(tmp_path / "job.sbatch", run)


def test_a_batch_scripts_task_count_is_not_a_rank_count() -> None:
    from bench.job.engine import launched_ranks

    # sbatch -n 2 sets SLURM_NTASKS=2 in the script's own process; an srun step's tasks
    # have SLURM_STEP_NUM_TASKS.
    assert launched_ranks({"SLURM_JOB_ID": "5", "SLURM_NTASKS": "2"}) == 1
    assert launched_ranks({"SLURM_NTASKS": "2", "SLURM_STEP_NUM_TASKS": "2"}) == 2


def test_the_batch_job_reruns_the_same_selection_with_resume(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from bench.sweep.submit import sweep_argv

    options = SimpleNamespace(
        sweep_file=Path("sweeps/x.yaml"),
        results=Path("res"),
        only=("*resnet*",),
        filters={"gpus": ("2",)},
        overrides=("base.steps=5",),
        report=False,
        data_cache=None,
    )
    argv = sweep_argv(options, python="/venv/bin/python")
    assert argv[:4] == [
        "/venv/bin/python",
        "-m",
        "bench.sweep",
        str(Path("sweeps/x.yaml").absolute()),
    ]
    assert argv[4:8] == ["--results", str(Path("res").absolute()), "--resume", "--no-progress"]
    assert argv[8:] == ["--only", "*resnet*", "--gpus", "2", "--set", "base.steps=5", "--no-report"]


@pytest.mark.parametrize(
    ("value", "minutes"),
    [
        (90, 90),
        ("90", 90),
        ("1:30", 2),
        ("2:00:00", 120),
        ("1-0", 1440),
        ("1-2:30", 1590),
        ("0:0:30", 1),
    ],
)
def test_time_limits_in_slurms_forms(value: object, minutes: int) -> None:
    assert slurm.parse_time_limit(value) == minutes


@pytest.mark.parametrize("value", [0, -5, True, "abc", "1:2:3:4", "0", "x-1"])
def test_bad_time_limits_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="must be"):
        slurm.parse_time_limit(value)


def test_the_slurm_section_and_launcher_mpi_are_validated() -> None:
    from bench.sweep.load import parse_sweep
    from bench.sweep.schema import SweepError

    sweep = parse_sweep(
        "name: s\nlauncher: {kind: srun, mpi: pmi2}\n"
        "slurm: {time_limit: '1:30:00', partition: gpu, directives: [--exclusive]}\n"
        "base: {mode: synthetic}\n",
        source="s.yaml",
    )
    assert sweep.launcher.mpi == "pmi2"
    assert sweep.slurm.time_limit_min == 90 and sweep.slurm.partition == "gpu"
    assert sweep.slurm.directives == ("--exclusive",)
    assert parse_sweep("name: t\nbase: {mode: synthetic}\n").slurm == slurm.BatchSpec()
    with pytest.raises(SweepError) as raised:
        parse_sweep(
            "name: s\nlauncher: {kind: srun, mpi: 'pm ix'}\n"
            "slurm: {time_limit: soon, partiton: gpu, directives: [exclusive]}\n"
            "base: {mode: synthetic}\n",
            source="s.yaml",
        )
    text = str(raised.value)
    assert "s.yaml:2: launcher.mpi: must be an srun MPI plugin" in text
    assert "s.yaml:3: slurm.time_limit: must be minutes or a Slurm time" in text
    assert "slurm.partiton: unknown key; did you mean 'partition'?" in text
    assert "slurm.directives[0]: must be an sbatch option" in text


def test_a_missing_srun_mpi_plugin_is_refused_before_the_sweep_runs(tmp_path: Path) -> None:
    """Inside an allocation whose srun lacks the plugin: exit 2, naming it (a fake srun)."""
    import os
    import sys

    fake = tmp_path / "bin" / "srun"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'MPI plugin types are...' >&2\necho '\tnone' >&2\n")
    fake.chmod(0o755)
    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        "name: s\nlauncher: {kind: srun, gpus_per_task: null}\nbase: {mode: synthetic}\n"
    )
    env = dict(os.environ, PATH=f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    env.update(SLURM_JOB_ID="7", SLURM_NTASKS="1", SLURM_JOB_NUM_NODES="1")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run(
        [sys.executable, "-m", "bench.sweep", str(sweep), "--results", str(tmp_path / "r")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "launcher.mpi: srun offers no 'pmix' MPI plugin (srun --mpi=list: none)" in done.stderr
    assert not (tmp_path / "r").exists()
