"""`python -m bench.sweep SWEEP --submit`: the sweep as a Slurm batch job.

Writes `<results>/<sweep>/slurm/job.sbatch` (nodes, tasks per node, GPUs per task and time
limit from the sweep file, see bench/sweep/slurm.py), submits it with `sbatch`, and prints the
job id and where the results and the log (`slurm/slurm-<job id>.log`) go. Inside the
allocation the script runs the same sweep, with the same selection and overrides, with
`--resume`: resubmitting after a time-out or preemption continues where the job stopped.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from bench.sweep import slurm


def sweep_argv(options: Any, *, python: str | None = None) -> list[str]:
    """The sweep command the batch job runs: these options, absolute paths, --resume."""
    argv = [python or sys.executable, "-m", "bench.sweep", str(Path(options.sweep_file).absolute())]
    argv += ["--results", str(Path(options.results).absolute()), "--resume", "--no-progress"]
    for pattern in options.only:
        argv += ["--only", pattern]
    for name, values in options.filters.items():
        for value in values:
            argv += ["--" + name.replace("_", "-"), str(value)]
    for override in options.overrides:
        argv += ["--set", override]
    if not options.report:
        argv.append("--no-report")
    if options.data_cache is not None:
        argv += ["--data-cache", str(Path(options.data_cache).absolute())]
    return argv


def submit_sweep(
    *,
    sweep_name: str,
    cells: Sequence[Any],
    gpus_per_task: int | None,
    spec: slurm.BatchSpec,
    options: Any,
    sweep_dir: Path,
    out: TextIO,
    environ: Mapping[str, str] | None = None,
    run: slurm.Runner | None = None,
) -> str:
    """Write the batch script, submit it, print where things go; the job id."""
    wanted = slurm.allocation(
        [(cell.gpus, cell.nodes, cell.timeout_s, cell.repeats) for cell in cells],
        gpus_per_task=gpus_per_task,
        spec=spec,
    )
    folder = sweep_dir / "slurm"
    folder.mkdir(parents=True, exist_ok=True)  # sbatch opens the log there: it must exist
    script = folder / "job.sbatch"
    text = slurm.batch_script(
        sweep_name=sweep_name,
        sweep_argv=sweep_argv(options),
        workdir=Path(os.getcwd()),
        log=folder / "slurm-%j.log",
        wanted=wanted,
        spec=spec,
    )
    script.write_text(text, encoding="utf-8")
    job_id = slurm.submit(script, run) if run is not None else slurm.submit(script)
    gpus = f", {wanted.gpus_per_task} GPU(s) per task" if wanted.gpus_per_task else ""
    print(
        f"submitted Slurm job {job_id}: {len(cells)} cell(s) on {wanted.nodes} node(s) x "
        f"{wanted.tasks_per_node} task(s){gpus}, time limit {wanted.time_limit_min} min",
        file=out,
    )
    print(f"  script:  {script}", file=out)
    print(f"  results: {sweep_dir}", file=out)
    print(f"  log:     {folder / f'slurm-{job_id}.log'}", file=out)
    print("  resubmit the same command to continue after a time-out (it resumes)", file=out)
    return job_id
