"""`python -m bench.sweep`: the sweep as one line of stages, each called once from `run`.

    load + validate -> plan -> check -> select -> (dry run: print) -> lock -> record the
    plan -> prepare data -> storage probe -> execute the pending jobs -> summarise -> report

Exit codes: 0 every selected cell ok, 1 some cell failed or timed out (or its data could
not be prepared), 2 bad sweep file or usage, 130 interrupted (Ctrl-C or SIGTERM; finished
results kept). A failing report is a warning: the results are on disk, run it again.
"""

from __future__ import annotations

import fnmatch
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from bench.contract import results
from bench.sweep import launchers, prepare, summary
from bench.sweep.checks import check
from bench.sweep.cli import REPO, SweepOptions, parse_args
from bench.sweep.jobs import pending_jobs, run_jobs
from bench.sweep.load import load_sweep
from bench.sweep.lock import LockHeld, sweep_lock
from bench.sweep.plan import Cell, needs_records, plan
from bench.sweep.schema import Sweep, SweepError
from bench.sweep.storage import run_storage_probe
from bench.sweep.submit import submit_sweep
from converters.manifest import write_text_atomic

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


def run(
    options: SweepOptions,
    *,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """The whole sweep; returns the exit code. Tests call this directly."""
    environ = dict(os.environ if environ is None else environ)
    out, err = out or sys.stdout, err or sys.stderr
    try:
        sweep = load_sweep(
            options.sweep_file,
            overrides=options.overrides,
            environ=environ,
            data_cache=options.data_cache,
        )
        cells = plan(sweep, results_dir=options.results.absolute())
        # A submission is checked like a dry run: the allocation does not exist yet.
        outside = options.dry_run or options.submit
        problems = check(sweep, cells, environ=environ, dry_run=outside)
        if problems:
            raise SweepError(problems)
    except SweepError as error:
        problems = error.problems + _partial_problems(error.partial, options, environ)
        print(f"error: {SweepError(list(dict.fromkeys(problems)))}", file=err)
        return EXIT_USAGE
    selected = select(cells, options)
    if not selected:
        print(f"error: no cell of {len(cells)} matches the --only/filter options", file=err)
        return EXIT_USAGE
    sweep_dir = options.results.absolute() / sweep.name
    job_env = job_environment(sweep, environ)
    if options.dry_run:
        print_plan(sweep, selected, sweep_dir, job_env, out)
        return EXIT_OK
    if options.submit:
        return _submit(sweep, selected, sweep_dir, options, out, err)
    if not options.resume and results.find_results(sweep_dir):
        print(
            f"error: {sweep_dir} already holds results; add --resume to run what is "
            f"missing, or choose another --results folder",
            file=err,
        )
        return EXIT_USAGE
    started_at = results.utc_now()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    try:
        with sweep_lock(sweep_dir):
            write_sweep_files(sweep, cells, sweep_dir, options, job_env)
            interrupted = _run_pending(sweep, selected, sweep_dir, options, job_env, err)
            document = summary.summarise(
                sweep.name, cells, sweep_dir, started_at=started_at, interrupted=interrupted
            )
            results.write_json_atomic(sweep_dir / "summary.json", document)
    except LockHeld as error:
        print(f"error: {error}", file=err)
        return EXIT_USAGE
    print(summary.summary_table(document, [cell.id for cell in selected]), file=out)
    if interrupted:
        return EXIT_INTERRUPTED
    if options.report:
        summary.report(sweep_dir, environ, err, repo=REPO)
    chosen = {cell.id for cell in selected}
    failed = [c for c in document["cells"] if c["cell_id"] in chosen and c["status"] != "ok"]
    return EXIT_FAILED if failed else EXIT_OK


def _submit(
    sweep: Sweep,
    selected: Sequence[Cell],
    sweep_dir: Path,
    options: SweepOptions,
    out: TextIO,
    err: TextIO,
) -> int:
    if shutil.which("sbatch") is None:
        print("error: --submit needs sbatch (Slurm's client) on PATH", file=err)
        return EXIT_USAGE
    try:
        submit_sweep(
            sweep_name=sweep.name,
            cells=selected,
            gpus_per_task=sweep.launcher.gpus_per_task,
            spec=sweep.slurm,
            options=options,
            sweep_dir=sweep_dir,
            out=out,
        )
    except (OSError, subprocess.SubprocessError) as error:
        print(f"error: {error}", file=err)
        return EXIT_FAILED
    return EXIT_OK


def select(cells: Sequence[Cell], options: SweepOptions) -> list[Cell]:
    """The cells `--only` and the filters let through (all of them when none is given)."""
    chosen = []
    for cell in cells:
        if options.only and not any(
            fnmatch.fnmatchcase(cell.slug, pattern) or fnmatch.fnmatchcase(cell.id, pattern)
            for pattern in options.only
        ):
            continue
        if all(_shown(cell, name) in values for name, values in options.filters.items()):
            chosen.append(cell)
    return chosen


def _shown(cell: Cell, name: str) -> str:
    """A setting as filters see it: synthetic cells have no data format or pipeline."""
    if cell.settings["mode"] == "synthetic" and name in ("data_format", "pipeline"):
        return "-"
    return str(cell.settings[name])


def _partial_problems(
    partial: Sweep | None, options: SweepOptions, environ: Mapping[str, str]
) -> list[str]:
    """The plan-level problems (conversions, capacity, data) of a sweep file that also has
    schema problems, from its valid settings: one run lists every problem found."""
    if partial is None:
        return []
    try:
        cells = plan(partial, results_dir=options.results.absolute())
        outside = options.dry_run or options.submit
        return check(partial, cells, environ=environ, dry_run=outside)
    except (SweepError, ValueError, TypeError, KeyError):
        return []  # what is left does not plan: the schema problems say why


def print_plan(
    sweep: Sweep, cells: Sequence[Cell], sweep_dir: Path, env: Mapping[str, str], out: TextIO
) -> None:
    print(
        f"sweep {sweep.name}: {len(cells)} cell(s) x {sweep.repeats} repeat(s), "
        f"launcher {sweep.launcher.kind}, timeout {sweep.timeout_s:g} s, "
        f"results {sweep_dir}",
        file=out,
    )
    if sweep.synthetic is not None:
        print(f"data: synthetic set {sweep.data_dir()} (made on first use)", file=out)
    else:
        print(f"data: {sweep.data_dir()}", file=out)
    for name in sorted({cell.conversion for cell in cells if needs_records(cell)}):
        print(f"conversion {name}: {sweep.records_dir(name)}", file=out)
    for index, cell in enumerate(cells, 1):
        print(f"[{index}/{len(cells)}] {cell.id} {cell.slug}", file=out)
        print(f"    {shlex.join(launchers.command(cell, 0, environ=env))}", file=out)


def write_sweep_files(
    sweep: Sweep,
    cells: Sequence[Cell],
    sweep_dir: Path,
    options: SweepOptions,
    env: Mapping[str, str],
) -> None:
    """sweep.yaml (the file as run, overrides applied) and plan.json (every cell, argv)."""
    header = (
        f"# {sweep.source} as run by bench.sweep at {results.utc_now()}"
        + "".join(f"\n# --set {override}" for override in options.overrides)
        + "\n"
    )
    write_text_atomic(
        sweep_dir / "sweep.yaml", header + yaml.safe_dump(dict(sweep.document), sort_keys=False)
    )
    document = {
        "name": sweep.name,
        "source": sweep.source,
        "created_at": results.utc_now(),
        "cells": [
            {**cell.describe(), "command": launchers.command(cell, 0, environ=env)}
            for cell in cells
        ],
    }
    results.write_json_atomic(sweep_dir / "plan.json", document)


def _run_pending(
    sweep: Sweep,
    cells: Sequence[Cell],
    sweep_dir: Path,
    options: SweepOptions,
    env: Mapping[str, str],
    err: TextIO,
) -> bool:
    """Prepare the data and run every pending job; True when interrupted."""
    previous = _install_sigterm()
    try:
        jobs = pending_jobs(cells, sweep_dir, resume=options.resume, env=env)
        if not jobs:
            print("nothing to run: every selected cell has an ok result", file=err)
            return False
        pending = [job.cell_ref for job in jobs]
        failures = prepare.prepare_data(
            sweep, pending, sweep_dir, progress=options.progress, err=err
        )
        if options.storage_probe:
            run_storage_probe(
                sweep, pending, failures, sweep_dir, env=env, resume=options.resume, err=err
            )
        run_jobs(jobs, failures, err)
    except KeyboardInterrupt:
        print(
            "interrupted: the running cell was stopped; finished results are kept "
            "(continue with --resume)",
            file=err,
        )
        return True
    finally:
        signal.signal(signal.SIGTERM, previous)
    return False


def job_environment(sweep: Sweep, environ: Mapping[str, str]) -> dict[str, str]:
    """The launcher's environment: the repository importable, TF quiet, the sweep's env."""
    env = launchers.environment(sweep.launcher, environ)
    paths = [str(REPO), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["TF_USE_LEGACY_KERAS"] = "1"
    return env


class _Terminated(KeyboardInterrupt):
    """SIGTERM (e.g. scancel) handled like Ctrl-C."""


def _terminate_handler(owner: int) -> Callable[[int, Any], None]:
    """SIGTERM -> _Terminated in the sweep process; forked helpers (the converter's process
    pool) inherit the handler and must still just die."""

    def handle(signum: int, frame: Any) -> None:
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise _Terminated()

    return handle


def _install_sigterm() -> Any:
    try:
        return signal.signal(signal.SIGTERM, _terminate_handler(os.getpid()))
    except ValueError:  # not the main thread: leave SIGTERM alone
        return signal.getsignal(signal.SIGTERM)
