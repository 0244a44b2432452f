"""`python -m bench.sweep [SWEEP.yaml]`: plan a grid, prepare data, run every cell, report.

    python -m bench.sweep                         # sweeps/default.yaml, a few CPU minutes
    python -m bench.sweep sweeps/chexnet-poster.yaml --set base.data_dir=/data/cxr14
    python -m bench.sweep SWEEP --dry-run         # the plan and every command, nothing run
    python -m bench.sweep SWEEP --resume          # only cells/repeats without an ok result
    python -m bench.sweep SWEEP --only '*resnet50*' --gpus 1

Exit codes: 0 every cell ok, 1 some cell failed or timed out (or data preparation failed),
2 bad sweep file or usage, 130 interrupted (Ctrl-C or SIGTERM; finished results kept).
A failing report (`python -m reports`) is printed as a warning and does not change the code:
the measurements are on disk and the report can be made again from them.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from bench import launchers, prepare, results, runner
from bench.plan import Cell, Sweep, SweepError, check, load_sweep, needs_records, plan

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SWEEP = REPO / "sweeps" / "default.yaml"
FILTERS = ("model", "mode", "data_format", "pipeline", "gpus", "precision")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
LOCK_NAME = ".sweep.lock"
DATA = "the data set"  # the failure key of base.synthetic's generation


@dataclass(frozen=True, kw_only=True)
class SweepOptions:
    """What `python -m bench.sweep` was asked to do."""

    sweep_file: Path = DEFAULT_SWEEP
    results: Path = Path("results")
    resume: bool = False
    dry_run: bool = False
    only: tuple[str, ...] = ()
    # Setting → accepted values (as written on the command line), e.g. gpus → ("1", "2").
    filters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    overrides: tuple[str, ...] = ()
    report: bool = True
    data_cache: Path | None = None
    progress: bool = True


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


def parse_args(argv: Sequence[str] | None = None) -> SweepOptions:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sweep",
        description="Run a benchmark sweep: plan the cells of a YAML grid, prepare their data, "
        "run each as a (Horovod) job, write results/<sweep>/ and a report.",
    )
    parser.add_argument(
        "sweep_file",
        nargs="?",
        type=Path,
        default=DEFAULT_SWEEP,
        help=f"the sweep file (default {DEFAULT_SWEEP.relative_to(REPO)})",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=Path("results"),
        help="results root; the sweep writes RESULTS/<name>/ (default results)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="run only the cells and repeats without an ok result"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="validate, print the plan and each command, run nothing",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="run cells whose slug or id matches this glob (repeatable)",
    )
    for name in FILTERS:
        parser.add_argument(
            "--" + name.replace("_", "-"),
            action="append",
            default=[],
            metavar="VALUE",
            dest=name,
            help=f"run only cells with this {name}",
        )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        dest="overrides",
        metavar="KEY.PATH=VALUE",
        help="override a sweep-file value (YAML)",
    )
    parser.add_argument("--no-report", action="store_true", help="do not run python -m reports")
    parser.add_argument(
        "--data-cache",
        type=Path,
        default=None,
        help="where synthetic data and conversions live "
        "(default $CHEXBENCH_DATA or <repo>/data)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    filters = {name: tuple(getattr(args, name)) for name in FILTERS if getattr(args, name)}
    return SweepOptions(
        sweep_file=args.sweep_file,
        results=args.results,
        resume=args.resume,
        dry_run=args.dry_run,
        only=tuple(args.only),
        filters=filters,
        overrides=tuple(args.overrides),
        report=not args.no_report,
        data_cache=args.data_cache,
        progress=not args.no_progress,
    )


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
        problems = check(sweep, cells, environ=environ, dry_run=options.dry_run)
        if problems:
            raise SweepError(problems)
    except SweepError as error:
        print(f"error: {error}", file=err)
        return EXIT_USAGE
    selected = select(cells, options)
    if not selected:
        print(f"error: no cell of {len(cells)} matches the --only/filter options", file=err)
        return EXIT_USAGE
    sweep_dir = options.results.absolute() / sweep.name
    if options.dry_run:
        print_plan(sweep, selected, sweep_dir, _job_environment(sweep, environ), out)
        return EXIT_OK
    if not options.resume and results.find_results(sweep_dir):
        print(
            f"error: {sweep_dir} already holds results; add --resume to run what is "
            f"missing, or choose another --results folder",
            file=err,
        )
        return EXIT_USAGE
    return _execute(sweep, cells, selected, sweep_dir, options, environ, out, err)


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


class _Terminated(KeyboardInterrupt):
    """SIGTERM (e.g. scancel) handled like Ctrl-C."""


def _terminate_handler(owner: int) -> Callable[[int, Any], None]:
    """SIGTERM → _Terminated in the sweep process; forked helpers (the converter's process
    pool) inherit the handler and must still just die."""

    def handle(signum: int, frame: Any) -> None:
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise _Terminated()

    return handle


def _execute(
    sweep: Sweep,
    cells: Sequence[Cell],
    selected: Sequence[Cell],
    sweep_dir: Path,
    options: SweepOptions,
    environ: dict[str, str],
    out: TextIO,
    err: TextIO,
) -> int:
    started_at = results.utc_now()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    holder = _lock(sweep_dir)
    if holder is not None:
        print(f"error: another sweep (pid {holder}) is running in {sweep_dir}", file=err)
        return EXIT_USAGE
    _write_sweep_files(sweep, cells, sweep_dir, options, _job_environment(sweep, environ))
    previous = _install_sigterm()
    interrupted = False
    try:
        _run_cells(sweep, selected, sweep_dir, options, environ, err)
    except KeyboardInterrupt:
        interrupted = True
        print(
            "interrupted: the running cell was stopped; finished results are kept "
            "(continue with --resume)",
            file=err,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
        (sweep_dir / LOCK_NAME).unlink(missing_ok=True)
    summary = runner.summarise(
        sweep.name, cells, sweep_dir, started_at=started_at, interrupted=interrupted
    )
    results.write_json_atomic(sweep_dir / "summary.json", summary)
    print(runner.summary_table(summary, [cell.id for cell in selected]), file=out)
    if interrupted:
        return EXIT_INTERRUPTED
    if options.report:
        _report(sweep_dir, environ, err)
    chosen = {cell.id for cell in selected}
    failed = [c for c in summary["cells"] if c["cell_id"] in chosen and c["status"] != "ok"]
    return EXIT_FAILED if failed else EXIT_OK


def _lock(sweep_dir: Path) -> int | None:
    """Take the folder's lock; the pid of a live sweep holding it, or None once taken."""
    lock = sweep_dir / LOCK_NAME
    for _ in range(2):
        try:
            with lock.open("x", encoding="utf-8") as stream:
                stream.write(str(os.getpid()))
            return None
        except FileExistsError:
            holder = _lock_holder(lock)
            if holder is not None:
                return holder
            lock.unlink(missing_ok=True)  # left by a sweep that was killed
    return None


def _lock_holder(lock: Path) -> int | None:
    try:
        pid = int(lock.read_text(encoding="utf-8").strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _install_sigterm() -> Any:
    try:
        return signal.signal(signal.SIGTERM, _terminate_handler(os.getpid()))
    except ValueError:  # not the main thread: leave SIGTERM alone
        return signal.getsignal(signal.SIGTERM)


def _write_sweep_files(
    sweep: Sweep,
    cells: Sequence[Cell],
    sweep_dir: Path,
    options: SweepOptions,
    env: Mapping[str, str],
) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    header = (
        f"# {sweep.source} as run by bench.sweep at {results.utc_now()}"
        + "".join(f"\n# --set {override}" for override in options.overrides)
        + "\n"
    )
    _write_text_atomic(
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


def _write_text_atomic(target: Path, text: str) -> None:
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, target)


def _run_cells(
    sweep: Sweep,
    cells: Sequence[Cell],
    sweep_dir: Path,
    options: SweepOptions,
    environ: dict[str, str],
    err: TextIO,
) -> None:
    jobs = runner.pending_jobs(
        cells, sweep_dir, resume=options.resume, env=_job_environment(sweep, environ)
    )
    if not jobs:
        print("nothing to run: every selected cell has an ok result", file=err)
        return
    failures = _prepare(sweep, [job.cell_ref for job in jobs], sweep_dir, options, err)
    progress = runner.Progress(total=len(jobs), stream=err)
    for job in jobs:
        progress.start(job.job)
        reason = _unprepared(job.cell_ref, failures)
        outcome = runner.skip(job.job, reason) if reason else runner.run_job(job.job)
        progress.finish(outcome)


def _unprepared(cell: Cell, failures: Mapping[str, str]) -> str | None:
    """Why the data this cell reads could not be prepared, or None."""
    if cell.settings["mode"] == "synthetic":
        return None
    if DATA in failures:
        return failures[DATA]
    return failures.get(cell.conversion) if needs_records(cell) else None


def _prepare(
    sweep: Sweep, cells: Sequence[Cell], sweep_dir: Path, options: SweepOptions, err: TextIO
) -> dict[str, str]:
    """Make the data the pending cells read; what failed (DATA or a conversion) → why."""
    if sweep.synthetic is not None:
        print(f"data: synthetic set in {sweep.data_dir()}", file=err)
        try:
            prepare.ensure_synthetic(sweep, progress=options.progress)
        except prepare.PrepareError as error:
            print(f"error: {error}", file=err)
            return {DATA: str(error)}
    failures: dict[str, str] = {}
    for name in sorted({cell.conversion for cell in cells if needs_records(cell)}):
        started = time.monotonic()
        print(f"conversion {name}: {sweep.records_dir(name)}", file=err)
        existed = (sweep.records_dir(name) / "manifest.json").is_file()
        try:
            record = prepare.ensure_conversion(sweep, name, sweep_dir, progress=options.progress)
        except prepare.PrepareError as error:
            print(f"error: {error}", file=err)
            failures[name] = str(error)
            continue
        how = "reused" if existed else "converted"
        print(
            f"conversion {name}: {how} ({record['images']} images, "
            f"{time.monotonic() - started:.1f} s)",
            file=err,
        )
    return failures


def _job_environment(sweep: Sweep, environ: Mapping[str, str]) -> dict[str, str]:
    """The launcher's environment: the repository importable, TF quiet, the sweep's env."""
    env = launchers.environment(sweep.launcher, environ)
    paths = [str(REPO), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["TF_USE_LEGACY_KERAS"] = "1"
    return env


def _report(sweep_dir: Path, environ: Mapping[str, str], err: TextIO) -> None:
    argv = [sys.executable, "-m", "reports", str(sweep_dir)]
    print(f"report: {shlex.join(argv)}", file=err)
    env = dict(environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    try:
        done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, check=False)
    except OSError as error:
        print(f"warning: the report could not start: {error}", file=err)
        return
    if done.returncode != 0:
        print(
            f"warning: the report failed (exit {done.returncode}); the results are intact, "
            f"run `{shlex.join(argv)}` again",
            file=err,
        )


if __name__ == "__main__":
    sys.exit(main())
