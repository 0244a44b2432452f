"""Cells -> jobs: one job per cell and repeat (only the missing ones with --resume), run
in order, repeats interleaved across cells. A job's process is the business of
`bench.sweep.execute`.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bench.contract.cell import cell_record, engine_name
from bench.contract.config import config_dict
from bench.service.config import ServiceConfig
from bench.sweep import launchers
from bench.sweep.execute import Job, Progress, repeat_statuses, run_job, skip
from bench.sweep.plan import Cell
from bench.sweep.prepare import unprepared


@dataclass(frozen=True)
class PlannedJob:
    """A job and the planned cell it runs."""

    job: Job
    cell_ref: Cell


# How repeats are ordered: "interleaved" = round-robin over cells (see pending_jobs);
# summary.json records it.
REPEAT_ORDER = "interleaved"


def pending_jobs(
    cells: Sequence[Cell], sweep_dir: Path, *, resume: bool, env: Mapping[str, str]
) -> list[PlannedJob]:
    """One job per cell and repeat; with `resume`, only repeats without an ok result.

    Repeats are interleaved (REPEAT_ORDER): repeat 0 of every cell, then repeat 1 of every
    cell, ... (A B A B), so that slow drift of a shared machine hits compared cells alike
    instead of all of one cell's repeats.
    """
    jobs = []
    done = {cell.id: repeat_statuses(sweep_dir / cell.folder) if resume else {} for cell in cells}
    rounds = max((cell.repeats for cell in cells), default=0)
    for repeat, cell in ((r, c) for r in range(rounds) for c in cells):
        if repeat >= cell.repeats or done[cell.id].get(repeat, ("",))[0] == "ok":
            continue
        job = Job(
            cell_id=cell.id,
            slug=cell.slug,
            repeat=repeat,
            directory=sweep_dir / cell.folder,
            argv=tuple(launchers.command(cell, repeat, environ=env)),
            timeout_s=cell.timeout_s,
            kill_grace_s=cell.launcher.kill_grace_s,
            env=env,
            cell=result_cell(cell),
            sweep=cell.config.sweep,
            config=config_dict(cell.config.replace(repeat=repeat)),
            service=service_config(cell, sweep_dir / cell.folder / f"service-r{repeat}", env),
        )
        jobs.append(PlannedJob(job, cell))
    return jobs


def service_config(
    cell: Cell, log_dir: Path, env: Mapping[str, str] | None
) -> ServiceConfig | None:
    """The input-service pool the sweep starts before this cell's job, or None."""
    workers = cell.config.input_workers
    if workers < 1 or cell.config.mode == "synthetic":  # nothing to read
        return None
    spec = cell.input_service
    return ServiceConfig(
        workers=workers,
        log_dir=log_dir,
        hosts=spec.hosts,
        cores_each=cell.config.input_worker_cores,
        dispatcher_host=spec.dispatcher_host,
        base_port=spec.base_port,
        start_timeout_s=spec.start_timeout_s,
        remote_command=spec.remote_command,
        env=dict(env) if env is not None else None,
    )


def result_cell(cell: Cell, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """result["cell"] as bench.run writes it, for the results the sweep writes itself."""
    environ = os.environ if env is None else env
    return cell_record(
        {**cell.settings, "conversion": cell.conversion},
        gpus=cell.gpus,
        nodes=cell.nodes,
        engine=expected_engine(cell, environ),
        device=None,  # the job never reported which device it ran on
        encoding=cell.encoding,
        slug=cell.slug,
    )


def expected_engine(cell: Cell, env: Mapping[str, str]) -> str:
    """The engine the job will pick (`bench.contract.cell.engine_name`); "unknown" when it
    will refuse to start (its own result then says why)."""
    installed = importlib.util.find_spec("horovod") is not None
    try:
        return engine_name(env, ranks=cell.gpus, horovod_installed=installed)
    except ValueError:
        return "unknown"


def run_jobs(jobs: Sequence[PlannedJob], failures: Mapping[str, str], err: TextIO) -> None:
    """Run each job in order (or record why its data was not there), showing progress."""
    progress = Progress(total=len(jobs), stream=err)
    for planned in jobs:
        progress.start(planned.job)
        reason = unprepared(planned.cell_ref, failures)
        outcome = skip(planned.job, reason) if reason else run_job(planned.job)
        progress.finish(outcome)
