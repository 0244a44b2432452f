"""Launchers: turn a planned cell into the argv list that starts its job, never a shell string.

`command(cell, repeat)` wraps the worker argv (`python -m bench.run <RunConfig argv>`) in
the launcher the sweep names:

- `local`: the bare worker argv, one process (Horovod's engine falls back to "single").
- `horovodrun`: `-np N -H host:slots,... --gloo|--mpi`, the venv's horovodrun.
- `mpirun` (OpenMPI): `-np N --host ...|--hostfile F`, `-x VAR` forwarding, no binding.
- `srun` (Slurm, inside an allocation): `--ntasks N --nodes M --mpi=pmix --gpus-per-task 1
  ...`: Horovod's ranks meet through MPI by Slurm's PMIx plugin (docs/run.md, "Slurm").

The worker argv always comes last and intact: no element is ever parsed by a shell.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.sweep.plan import Cell
from bench.sweep.schema import LAUNCHER_KINDS, LauncherSpec


@dataclass(frozen=True)
class Capacity:
    """How many processes and nodes a launcher can start; None = unknown (srun outside)."""

    processes: int | None
    nodes: int | None
    source: str


def capacity(
    spec: LauncherSpec, environ: Mapping[str, str] | None = None, *, nodes: int | None = None
) -> Capacity:
    """What a job may ask: local 1, host lists their slots (of the first `nodes` hosts),
    srun its allocation (unknown outside one)."""
    environ = os.environ if environ is None else environ
    if spec.kind == "local":
        return Capacity(1, 1, "the local launcher starts one process")
    if spec.kind == "srun":
        return _slurm_capacity(environ)
    hosts = _hosts(spec)
    used = hosts[:nodes] if nodes is not None else hosts
    slots = sum(count for _, count in used)
    return Capacity(slots, len(hosts), f"{spec.kind} hosts {_host_list(used)}")


def command(
    cell: Cell, repeat: int = 0, *, environ: Mapping[str, str] | None = None, uid: int | None = None
) -> list[str]:
    """The argv that runs repeat `repeat` of `cell` through its sweep's launcher."""
    worker = worker_argv(cell, repeat)
    spec = cell.launcher
    environ = os.environ if environ is None else environ
    if spec.kind == "local":
        return worker
    if spec.kind == "horovodrun":
        return _horovodrun(spec, cell.gpus, cell.nodes) + worker
    if spec.kind == "mpirun":
        uid = os.geteuid() if uid is None else uid
        return _mpirun(spec, cell.gpus, cell.nodes, environ, uid) + worker
    if spec.kind == "srun":
        return _srun(spec, cell.gpus, cell.nodes) + worker
    raise ValueError(
        f"unknown launcher kind {spec.kind!r}; expected one of {', '.join(LAUNCHER_KINDS)}"
    )


def worker_argv(cell: Cell, repeat: int = 0) -> list[str]:
    """What every rank runs: the sweep's worker command plus the cell's RunConfig argv."""
    return [*cell.worker, *cell.config.replace(repeat=repeat).to_argv()]


def environment(spec: LauncherSpec, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The launcher process's environment: `base` plus the sweep's `env:` settings."""
    result = dict(os.environ if base is None else base)
    result.update(dict(spec.env))
    return result


def _horovodrun(spec: LauncherSpec, processes: int, nodes: int) -> list[str]:
    # horovodrun (Gloo) starts one rank per listed slot whatever -np says, so -H lists
    # exactly the slots this job uses.
    listing = _host_list(spread(_hosts(spec), processes, nodes))
    return [
        _horovodrun_path(),
        "-np",
        str(processes),
        "-H",
        listing,
        "--" + spec.controller,
        *spec.extra_args,
    ]


def spread(hosts: Sequence[tuple[str, int]], processes: int, nodes: int) -> list[tuple[str, int]]:
    """Processes per host: round-robin over the first `nodes` hosts, within their slots."""
    chosen = list(hosts[:nodes])
    counts = [0] * len(chosen)
    placed = 0
    while placed < processes and any(counts[i] < chosen[i][1] for i in range(len(chosen))):
        for index, (_, slots) in enumerate(chosen):
            if placed < processes and counts[index] < slots:
                counts[index] += 1
                placed += 1
    return [(host, count) for (host, _), count in zip(chosen, counts, strict=True) if count]


def _hosts(spec: LauncherSpec) -> tuple[tuple[str, int], ...]:
    return _hostfile_hosts(spec.hostfile) if spec.hostfile else spec.hosts


def _host_list(hosts: Sequence[tuple[str, int]]) -> str:
    return ",".join(f"{host}:{count}" for host, count in hosts)


def _horovodrun_path() -> str:
    # The venv's horovodrun sits next to its python, even when the venv is not activated.
    beside = Path(sys.executable).parent / "horovodrun"
    return str(beside) if beside.exists() else (shutil.which("horovodrun") or "horovodrun")


def _mpirun(
    spec: LauncherSpec, processes: int, nodes: int, environ: Mapping[str, str], uid: int
) -> list[str]:
    argv = ["mpirun", "-np", str(processes)]
    if spec.hostfile:
        argv += ["--hostfile", str(spec.hostfile)]
    else:
        argv += ["--host", _host_list(spread(spec.hosts, processes, nodes))]
    argv += ["--bind-to", "none", "--map-by", "slot"]
    for name, value in spec.mca:
        argv += ["--mca", name, value]
    for name in forwarded_names(spec, environ):
        argv += ["-x", name]
    if uid == 0:
        argv.append("--allow-run-as-root")
    return argv + list(spec.extra_args)


def forwarded_names(spec: LauncherSpec, environ: Mapping[str, str]) -> list[str]:
    """Variables mpirun passes on: those present that match `forward`, and the sweep's env."""
    present = set(environ) | {name for name, _ in spec.env}
    chosen = {
        name
        for name in present
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in spec.forward)
    }
    return sorted(chosen | {name for name, _ in spec.env})


def _srun(spec: LauncherSpec, processes: int, nodes: int) -> list[str]:
    argv = [
        "srun",
        "--ntasks",
        str(processes),
        "--nodes",
        str(nodes),
        "--kill-on-bad-exit=1",
        "--export=ALL",
    ]
    if spec.mpi:
        argv.append(f"--mpi={spec.mpi}")
    if spec.gpus_per_task:
        argv += ["--gpus-per-task", str(spec.gpus_per_task)]
    return argv + list(spec.extra_args)


def _slurm_capacity(environ: Mapping[str, str]) -> Capacity:
    if "SLURM_JOB_ID" not in environ:
        return Capacity(None, None, "srun outside a Slurm allocation (SLURM_JOB_ID unset)")
    tasks = _int_or_none(environ.get("SLURM_NTASKS"))
    nodes = _int_or_none(environ.get("SLURM_JOB_NUM_NODES") or environ.get("SLURM_NNODES"))
    return Capacity(
        tasks,
        nodes,
        f"Slurm job {environ['SLURM_JOB_ID']} "
        f"(SLURM_NTASKS={tasks}, SLURM_JOB_NUM_NODES={nodes})",
    )


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _hostfile_hosts(path: Path) -> tuple[tuple[str, int], ...]:
    """OpenMPI hostfile lines `host slots=N`; a missing file reads as no hosts."""
    hosts: list[tuple[str, int]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return ()
    for line in lines:
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        slots = next(
            (
                int(word.split("=", 1)[1])
                for word in words[1:]
                if word.startswith("slots=") and word.split("=", 1)[1].isdigit()
            ),
            1,
        )
        hosts.append((words[0], slots))
    return tuple(hosts)
