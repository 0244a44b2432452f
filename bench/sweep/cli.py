"""The command line of `python -m bench.sweep [SWEEP.yaml]`: arguments -> SweepOptions.

    python -m bench.sweep                         # sweeps/default.yaml, a few CPU minutes
    python -m bench.sweep sweeps/chexnet-poster.yaml --set base.data_dir=/data/cxr14
    python -m bench.sweep SWEEP --dry-run         # the plan and every command, nothing run
    python -m bench.sweep SWEEP --resume          # only cells/repeats without an ok result
    python -m bench.sweep SWEEP --only '*resnet50*' --gpus 1
    python -m bench.sweep SWEEP --submit          # as a Slurm batch job (bench/sweep/submit.py)

Exit codes: 0 every cell ok, 1 some cell failed or timed out (or data preparation failed),
2 bad sweep file or usage, 130 interrupted (Ctrl-C or SIGTERM; finished results kept).
A failing report (`python -m reports`) is printed as a warning and does not change the code:
the measurements are on disk and the report can be made again from them.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SWEEP = REPO / "sweeps" / "default.yaml"
FILTERS = ("model", "mode", "data_format", "pipeline", "gpus", "precision")


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
    submit: bool = False
    storage_probe: bool = True


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
    parser.add_argument(
        "--submit",
        action="store_true",
        help="write an sbatch script for the selected cells and submit it; the job runs "
        "this sweep with --resume inside the allocation",
    )
    parser.add_argument(
        "--no-storage-probe",
        action="store_true",
        help="skip the once-per-sweep cold/warm read of the data folder (storage_probe.json)",
    )
    args = parser.parse_args(argv)
    if args.submit and args.dry_run:
        parser.error("--submit and --dry-run exclude each other")
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
        submit=args.submit,
        storage_probe=not args.no_storage_probe,
    )
