"""Checks that need the world: launcher capacity, the data folder, conversions, configs.

`check(sweep, cells)` lists every reason some cell cannot run, one line each, before any
cell is launched.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence

from bench.sweep import launchers, slurm
from bench.sweep.plan import Cell, needs_records
from bench.sweep.schema import Sweep, suggest


def check(
    sweep: Sweep,
    cells: Sequence[Cell],
    *,
    environ: Mapping[str, str] | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Every reason some cell cannot run: launcher capacity, data, conversions, config."""
    environ = os.environ if environ is None else environ
    problems: dict[str, None] = {}  # ordered set: one line per distinct problem
    for cell in cells:
        for problem in _cell_problems(sweep, cell, environ, dry_run):
            problems.setdefault(problem)
    problems.update(dict.fromkeys(_data_problems(sweep, cells)))
    problems.update(dict.fromkeys(_launcher_problems(sweep, environ, dry_run)))
    return list(problems)


def _cell_problems(
    sweep: Sweep, cell: Cell, environ: Mapping[str, str], dry_run: bool
) -> list[str]:
    problems = []
    if cell.problem:
        where = sweep.where(cell.origins.get("mode", ("base",)))
        problems.append(f"{where}: cell {cell.slug}: {cell.problem}")
    uses_records = needs_records(cell)
    if uses_records and cell.conversion is None:
        names = ", ".join(sweep.conversions) or "none defined under conversions:"
        where = sweep.where(cell.origins.get("data_format", ("base",)))
        problems.append(f"{where}: tfrecord cells need a `conversion` (defined: {names})")
    elif uses_records and cell.conversion not in sweep.conversions:
        where = sweep.where(cell.origins.get("conversion", ("base",)))
        problems.append(
            f"{where}: no conversion named {cell.conversion!r} under conversions:"
            f"{suggest(str(cell.conversion), tuple(sweep.conversions))}"
        )
    available = launchers.capacity(cell.launcher, environ, nodes=cell.nodes)
    if available.processes is None:
        return problems
    if cell.gpus > available.processes:
        where = sweep.where(cell.origins.get("gpus", ("base",)))
        problems.append(
            f"{where}: gpus {cell.gpus} is more than {available.processes} "
            f"process(es): {available.source} on {cell.nodes} node(s)"
        )
    if available.nodes is not None and cell.nodes > available.nodes:
        where = sweep.where(cell.origins.get("nodes", ("base",)))
        problems.append(
            f"{where}: nodes {cell.nodes} is more than {available.nodes}: {available.source}"
        )
    if cell.nodes > cell.gpus:
        where = sweep.where(cell.origins.get("nodes", ("base",)))
        problems.append(f"{where}: nodes {cell.nodes} is more than gpus {cell.gpus}")
    return problems


def _data_problems(sweep: Sweep, cells: Sequence[Cell]) -> list[str]:
    needs_data = any(cell.settings["mode"] != "synthetic" for cell in cells)
    if not needs_data or sweep.synthetic is not None:
        return []
    data_dir = sweep.data_dir()
    if data_dir is None:
        return [
            f"{sweep.source}: base.data_dir: missing; cells that read data need a "
            f"ChestX-ray14 folder (base.data_dir, --set base.data_dir=PATH) or "
            f"base.synthetic"
        ]
    if not data_dir.is_dir():
        return [
            f"{sweep.where(('base', 'data_dir'))}: {data_dir} does not exist or is not a "
            f"folder (override with --set base.data_dir=PATH)"
        ]
    return []


def _launcher_problems(sweep: Sweep, environ: Mapping[str, str], dry_run: bool) -> list[str]:
    spec = sweep.launcher
    where = sweep.where(("launcher", "kind"))
    if spec.kind == "srun" and "SLURM_JOB_ID" not in environ and not dry_run:
        return [
            f"{where}: srun runs inside a Slurm allocation (salloc/sbatch); "
            f"SLURM_JOB_ID is unset"
        ]
    if spec.kind in ("mpirun", "srun") and not dry_run and shutil.which(spec.kind) is None:
        return [f"{where}: {spec.kind} is not on PATH"]
    if spec.kind == "srun" and not dry_run:
        problem = slurm.mpi_problem(spec.mpi, environ=environ)
        if problem:
            return [f"{sweep.where(('launcher', 'mpi'))}: {problem}"]
    if spec.hostfile is not None and not spec.hostfile.is_file():
        return [f"{sweep.where(('launcher', 'hostfile'))}: {spec.hostfile} does not exist"]
    return []
