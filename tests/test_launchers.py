"""Launchers: one contract every launcher passes, then what each does on its own.

The contract (as hydra's LauncherTestSuite): the command is a list of str, the worker argv
sits intact at its end, it starts as many processes as the cell has GPUs, nothing in it is
interpreted by a shell, and the sweep's environment reaches every rank. The argv checks run
for all four launchers; local, mpirun and horovodrun (Gloo) are also really executed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.sweep import launchers, schema
from bench.sweep.launchers import capacity, command, environment, worker_argv
from bench.sweep.load import parse_sweep
from bench.sweep.plan import Cell, plan

# Arguments a shell would split, glob, substitute or chain: they must arrive unchanged.
HOSTILE = ["a b", "; touch /tmp/chexbench-pwned", "$(echo hi)", "*", "'\"", "`id`", "x|y"]
ENV_NAME = "CHEXBENCH_LAUNCHER_TEST"
ENV_VALUE = "forwarded value; $HOME"

SPECS = {
    "local": ("{kind: local}", 1),
    "horovodrun": ("{kind: horovodrun, hosts: [localhost:2], controller: gloo}", 2),
    "mpirun": ("{kind: mpirun, hosts: [localhost:2]}", 2),
    "srun": ("{kind: srun}", 2),
}

WORKER_SCRIPT = """
import json, os, sys
rank = os.environ.get("HOROVOD_RANK") or os.environ.get("OMPI_COMM_WORLD_RANK") or "0"
report = {"rank": int(rank), "argv": sys.argv[1:], "env": os.environ.get("ENV_NAME")}
with open(f"report-{rank}.json", "w") as stream:  # in the cwd: ranks' stdout interleaves
    json.dump(report, stream)
""".replace("ENV_NAME", ENV_NAME)


def make_cell(launcher: str, gpus: int, worker: list[str] | None = None, nodes: int = 1) -> Cell:
    worker_line = f"worker: {json.dumps(worker)}\n" if worker else ""
    text = (
        f"name: launch\nlauncher: {launcher[:-1]}, env: {{{ENV_NAME}: '{ENV_VALUE}'}}}}\n"
        f"{worker_line}base: {{mode: synthetic, gpus: {gpus}, nodes: {nodes}, steps: 2}}\n"
    )
    sweep = parse_sweep(text, environ={})
    (cell,) = plan(sweep, results_dir=Path("/tmp/chexbench-results dir"))
    return cell


def process_count(argv: list[str], kind: str) -> int:
    flag = {"local": None, "horovodrun": "-np", "mpirun": "-np", "srun": "--ntasks"}[kind]
    return 1 if flag is None else int(argv[argv.index(flag) + 1])


@pytest.fixture(params=sorted(SPECS))
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


# ---------------------------------------------------------------- the contract


def test_command_is_a_list_of_strings_ending_with_the_worker_argv(kind: str) -> None:
    spec, gpus = SPECS[kind]
    cell = make_cell(spec, gpus, worker=["python3", "worker.py", *HOSTILE])
    argv = command(cell, 1)
    assert isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)
    worker = worker_argv(cell, 1)
    assert argv[-len(worker) :] == worker
    assert worker[: 2 + len(HOSTILE)] == ["python3", "worker.py", *HOSTILE]
    assert worker[worker.index("--repeat") + 1] == "1"
    assert worker[worker.index("--cell-id") + 1] == cell.id
    # The results folder has a space: it is one element, not two.
    assert worker[worker.index("--output-dir") + 1].startswith("/tmp/chexbench-results dir/")


def test_command_starts_one_process_per_gpu(kind: str) -> None:
    spec, gpus = SPECS[kind]
    cell = make_cell(spec, gpus)
    assert process_count(command(cell), kind) == cell.gpus == gpus


def test_no_shell_is_involved(kind: str) -> None:
    spec, gpus = SPECS[kind]
    argv = command(make_cell(spec, gpus))
    assert argv[0] not in ("sh", "bash", "/bin/sh", "/bin/bash")
    assert "-c" not in argv[: len(argv) - len(worker_argv(make_cell(spec, gpus)))]


def test_sweep_env_is_set_for_the_launcher(kind: str) -> None:
    spec, gpus = SPECS[kind]
    cell = make_cell(spec, gpus)
    env = environment(cell.launcher, {"PATH": "/usr/bin", "KEEP": "1"})
    assert env[ENV_NAME] == ENV_VALUE
    assert env["KEEP"] == "1"
    if kind == "mpirun":  # mpirun forwards only what -x names
        argv = command(cell, environ=env)
        assert argv[argv.index(ENV_NAME) - 1] == "-x"


@pytest.mark.horovod
# horovodrun with 2 ranks runs in test_sweep's real sweep; here 1 rank on a 2-slot host,
# which Gloo would otherwise fill with 2 ranks whatever -np says.
@pytest.mark.parametrize("real_kind,gpus", [("local", 1), ("mpirun", 2), ("horovodrun", 1)])
def test_launcher_really_runs_every_rank_with_argv_and_env_intact(
    real_kind: str, gpus: int, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    """Exactly `gpus` ranks (also 1 of 2 host slots), each with the argv and env intact."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    spec, _ = SPECS[real_kind]
    cell = make_cell(spec, gpus, worker=[sys.executable, str(script), *HOSTILE])
    env = environment(cell.launcher, subprocess_env)
    marker = Path("/tmp/chexbench-pwned")
    marker.unlink(missing_ok=True)
    done = subprocess.run(
        command(cell, environ=env),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    reports = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("report-*.json"))]
    assert sorted(report["rank"] for report in reports) == list(range(gpus))
    for report in reports:
        assert report["argv"] == worker_argv(cell)[2:]
        assert report["env"] == ENV_VALUE
    assert not marker.exists()


# ---------------------------------------------------------------- launcher-specific


def test_local_is_the_bare_worker_and_one_process() -> None:
    cell = make_cell("{kind: local}", 1)
    assert command(cell) == worker_argv(cell)
    assert worker_argv(cell)[:3] == [sys.executable, "-m", "bench.run"]
    assert capacity(cell.launcher) == launchers.Capacity(1, 1, capacity(cell.launcher).source)


def test_horovodrun_uses_the_venv_binary_hosts_and_controller() -> None:
    cell = make_cell("{kind: horovodrun, hosts: [a:4, b:4, c:4], controller: mpi}", 8, nodes=2)
    argv = command(cell)
    beside = Path(sys.executable).parent / "horovodrun"
    if beside.exists():
        assert argv[0] == str(beside)
    assert argv[argv.index("-H") + 1] == "a:4,b:4"  # the first `nodes` hosts
    # Fewer processes than slots: -H lists only the slots used, spread over the nodes.
    four = make_cell("{kind: horovodrun, hosts: [a:4, b:4, c:4]}", 4, nodes=2)
    assert command(four)[command(four).index("-H") + 1] == "a:2,b:2"
    assert "--mpi" in argv and "--gloo" not in argv
    assert capacity(cell.launcher).processes == 12
    assert capacity(cell.launcher).nodes == 3


def test_mpirun_forwards_env_binds_nothing_and_allows_root_only_as_root() -> None:
    cell = make_cell("{kind: mpirun, hosts: [n1:2, n2:2], mca: {btl: 'tcp,self'}}", 4, nodes=2)
    environ = {
        "PATH": "/bin",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "NCCL_DEBUG": "INFO",
        "SECRET_TOKEN": "x",
    }
    as_root = command(cell, environ=environ, uid=0)
    as_user = command(cell, environ=environ, uid=1000)
    assert "--allow-run-as-root" in as_root and "--allow-run-as-root" not in as_user
    forwarded = [as_root[i + 1] for i, word in enumerate(as_root) if word == "-x"]
    assert {"PATH", "TF_CPP_MIN_LOG_LEVEL", "NCCL_DEBUG", ENV_NAME} <= set(forwarded)
    assert "SECRET_TOKEN" not in forwarded
    assert as_root[as_root.index("--host") + 1] == "n1:2,n2:2"
    assert as_root[as_root.index("--bind-to") + 1] == "none"
    assert as_root[as_root.index("--map-by") + 1] == "slot"
    btl = as_root.index("btl")
    assert as_root[btl - 1 : btl + 2] == ["--mca", "btl", "tcp,self"]


def test_mpirun_hostfile(tmp_path: Path) -> None:
    hostfile = tmp_path / "hosts"
    hostfile.write_text("# cluster\nnode1 slots=4\nnode2 slots=4  # second\n")
    cell = make_cell(f"{{kind: mpirun, hostfile: '{hostfile}'}}", 8, nodes=2)
    argv = command(cell, uid=1000)
    assert argv[argv.index("--hostfile") + 1] == str(hostfile)
    assert "--host" not in argv
    assert capacity(cell.launcher).processes == 8


def test_srun_tasks_nodes_gpus_and_allocation_capacity() -> None:
    cell = make_cell("{kind: srun, extra_args: [--partition=gpu]}", 8, nodes=2)
    argv = command(cell)
    assert argv[:5] == ["srun", "--ntasks", "8", "--nodes", "2"]
    assert "--kill-on-bad-exit=1" in argv and "--partition=gpu" in argv
    # Horovod's ranks meet through MPI by Slurm's PMIx plugin (docs/run.md, "Slurm").
    assert "--mpi=pmix" in argv
    assert "--mpi=pmi2" in command(make_cell("{kind: srun, mpi: pmi2}", 2))
    assert not any(a.startswith("--mpi") for a in command(make_cell("{kind: srun, mpi: null}", 2)))
    assert argv[argv.index("--gpus-per-task") + 1] == "1"
    no_gpu = make_cell("{kind: srun, gpus_per_task: null}", 2)
    assert "--gpus-per-task" not in command(no_gpu)
    inside = {"SLURM_JOB_ID": "42", "SLURM_NTASKS": "8", "SLURM_JOB_NUM_NODES": "2"}
    assert capacity(cell.launcher, inside).processes == 8
    assert capacity(cell.launcher, inside).nodes == 2
    assert capacity(cell.launcher, {}).processes is None


@pytest.mark.parametrize(
    "processes,nodes,expected",
    [
        (1, 1, [("a", 1)]),
        (2, 1, [("a", 2)]),
        (4, 2, [("a", 2), ("b", 2)]),
        (6, 2, [("a", 4), ("b", 2)]),
        (3, 3, [("a", 1), ("b", 1), ("c", 1)]),
    ],
)
def test_spread_fills_the_first_nodes_round_robin(
    processes: int, nodes: int, expected: list[tuple[str, int]]
) -> None:
    hosts = [("a", 4), ("b", 2), ("c", 4)]
    assert launchers.spread(hosts, processes, nodes) == expected


def test_parse_host() -> None:
    assert schema.parse_host("node1:4") == ("node1", 4)
    assert schema.parse_host("node1", 2) == ("node1", 2)
    for bad in ("node1:0", "node1:x", ":4"):
        with pytest.raises(ValueError):
            schema.parse_host(bad)


def test_environment_does_not_change_the_callers_env() -> None:
    cell = make_cell("{kind: local}", 1)
    base = dict(os.environ)
    environment(cell.launcher, base)
    assert ENV_NAME not in base
