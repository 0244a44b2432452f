"""Slurm for the sweep: srun's MPI plugins, and sweeps as batch jobs (`--submit`).

Horovod's ranks rendezvous under `srun` through MPI, by Slurm's PMIx plugin
(`srun --mpi=pmix`): Debian's OpenMPI 4.1 is built with PMIx only, so `--mpi=pmi2` and
`--mpi=none` make every rank abort in MPI_Init (docs/run.md, "Slurm"). `mpi_problem` says so
before a sweep starts when the plugin the launcher asks for is missing.

`batch_script` writes the sbatch script of a sweep (nodes, tasks, GPUs, time limit from the
sweep file); the script reruns `python -m bench.sweep ... --resume` inside the allocation,
so a job that was preempted or ran out of time continues where it stopped when resubmitted.
Imports only the standard library.
"""

from __future__ import annotations

import math
import shlex
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.sweep.schema import BatchSpec

# Minutes added to the cells' own time-outs for data preparation and the report.
PREPARE_MARGIN_MIN = 15

Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]


def _run(
    argv: Sequence[str], environ: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(environ) if environ is not None else None
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=60, check=False, env=env
    )


def mpi_plugins(run: Runner = _run) -> list[str]:
    """The MPI plugin types `srun --mpi=list` offers (e.g. pmix, pmi2, none)."""
    done = run(["srun", "--mpi=list"])
    listing = done.stdout + "\n" + done.stderr
    if done.returncode != 0:
        raise OSError(f"srun --mpi=list failed (exit {done.returncode}): {listing.strip()}")
    plugins = []
    for line in listing.splitlines():
        word = line.strip()
        # "MPI plugin types are...", then one indented name a line, then a versions line.
        if word and " " not in word and not word.endswith(":"):
            plugins.append(word)
    return plugins


def mpi_problem(
    plugin: str | None, run: Runner | None = None, environ: Mapping[str, str] | None = None
) -> str | None:
    """Why `srun --mpi=<plugin>` cannot start Horovod's ranks here, or None."""
    if not plugin:
        return None
    try:
        offered = mpi_plugins(run or (lambda argv: _run(argv, environ)))
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"cannot list srun's MPI plugins: {error}"
    if plugin in offered:
        return None
    return (
        f"srun offers no '{plugin}' MPI plugin (srun --mpi=list: {', '.join(offered) or 'none'}); "
        f"Horovod's ranks rendezvous through MPI and Debian's OpenMPI needs Slurm's pmix "
        f"plugin (slurm-wlm's mpi_pmix, Slurm built --with-pmix): ask the cluster's admins, or "
        f"set launcher.mpi to a plugin your MPI supports"
    )


@dataclass(frozen=True)
class Allocation:
    """What the batch job asks for: enough for the largest cell."""

    nodes: int
    tasks_per_node: int
    gpus_per_task: int | None
    time_limit_min: int


def allocation(
    cells: Sequence[tuple[int, int, float, int]],
    *,
    gpus_per_task: int | None,
    spec: BatchSpec,
) -> Allocation:
    """From each cell's (ranks, nodes, timeout_s, repeats): the nodes of the widest cell and
    tasks per node of the densest, so every cell fits; time = the sum of every repeat's
    time-out plus a margin, unless the sweep file names one."""
    if not cells:
        raise ValueError("no cells to submit")
    nodes = max(cell_nodes for _, cell_nodes, _, _ in cells)
    per_node = max(math.ceil(ranks / cell_nodes) for ranks, cell_nodes, _, _ in cells)
    budget_s = sum(timeout_s * repeats for _, _, timeout_s, repeats in cells)
    minutes = spec.time_limit_min or math.ceil(budget_s / 60) + PREPARE_MARGIN_MIN
    return Allocation(nodes, per_node, gpus_per_task, minutes)


def batch_script(
    *,
    sweep_name: str,
    sweep_argv: Sequence[str],
    workdir: Path,
    log: Path,
    wanted: Allocation,
    spec: BatchSpec,
) -> str:
    """The sbatch script: #SBATCH lines, then the sweep command (shell-quoted, one line)."""
    options = [
        f"--job-name={spec.job_name or 'chexbench-' + sweep_name}",
        f"--nodes={wanted.nodes}",
        f"--ntasks-per-node={wanted.tasks_per_node}",
        f"--time={wanted.time_limit_min}",
        f"--output={log}",
        "--open-mode=append",  # a resubmitted job's log continues the same file
        f"--chdir={workdir}",
    ]
    if wanted.gpus_per_task:
        options.append(f"--gpus-per-task={wanted.gpus_per_task}")
    for name in ("partition", "account", "qos"):
        value = getattr(spec, name)
        if value:
            options.append(f"--{name}={value}")
    options += list(spec.directives)
    lines = [
        "#!/bin/bash",
        *(f"#SBATCH {shlex.quote(option)}" for option in options),
        "# Written by python -m bench.sweep --submit. The sweep resumes: a resubmitted job",
        "# runs only the cells and repeats without an ok result.",
        'echo "chexbench: Slurm job ${SLURM_JOB_ID} on ${SLURM_JOB_NODELIST}, $(date -u)"',
        "exec " + shlex.join(sweep_argv),
    ]
    return "\n".join(lines) + "\n"


def submit(script: Path, run: Runner = _run) -> str:
    """`sbatch --parsable SCRIPT`; the job id."""
    done = run(["sbatch", "--parsable", str(script)])
    if done.returncode != 0:
        raise OSError(f"sbatch {script} failed (exit {done.returncode}): {done.stderr.strip()}")
    # --parsable prints "jobid" or "jobid;cluster".
    return done.stdout.strip().split(";", 1)[0]


def parse_time_limit(value: object) -> int:
    """Minutes from a sweep file's `slurm.time_limit`: an integer of minutes or Slurm's
    forms "M", "M:S", "H:M:S", "D-H", "D-H:M", "D-H:M:S" (seconds round up)."""
    if isinstance(value, bool):
        raise ValueError(f"must be minutes or a Slurm time, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"must be at least 1 minute, got {value}")
        return value
    text = str(value).strip()
    days, dash, rest = text.partition("-")
    if not dash:
        days, rest = "0", text
    parts = rest.split(":")
    if not days.isdigit() or not all(part.isdigit() for part in parts) or len(parts) > 3:
        raise ValueError(f"must be minutes or a Slurm time (H:MM:SS, D-HH:MM), got {value!r}")
    numbers = [int(part) for part in parts]
    if dash:  # after "D-" the first field is hours
        hours, minutes, seconds = [*numbers, 0, 0][:3]
    elif len(numbers) == 3:
        hours, minutes, seconds = numbers
    else:
        hours, (minutes, seconds) = 0, [*numbers, 0][:2]
    total = int(days) * 1440 + hours * 60 + minutes + math.ceil(seconds / 60)
    if total < 1:
        raise ValueError(f"must be at least 1 minute, got {value!r}")
    return total
