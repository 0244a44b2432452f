"""`python -m reports RESULTS [RESULTS ...] [--out DIR] [--cores-per-gpu C] [--worker-cores K]`:
report.md, report.html, figures/.

Exit codes: 0 written; 1 written, but some result files could not be read (each named on
stderr and in the report's failures section), or an unexpected failure (with its
traceback); 2 bad usage, or no readable result found.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="python -m reports",
        description="Build report.md, report.html (self-contained) and figures/*.png from "
        "benchmark result files. Several folders are compared side by side.",
    )
    result.add_argument(
        "results",
        nargs="+",
        type=Path,
        metavar="RESULTS",
        help="a sweep's results folder, or any folder with result-*.json " "files below it",
    )
    result.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write the report (default: the results folder; "
        "required with several folders)",
    )
    result.add_argument(
        "--fit-target-auc",
        type=_target,
        default=None,
        metavar="AUC",
        help="the target mean validation AUC for time to accuracy (default: each sweep "
        "file's fit_target_auc)",
    )
    result.add_argument(
        "--cores-per-gpu",
        type=_positive,
        default=None,
        metavar="C",
        help="CPU cores per GPU on the training host, for the capacity section's GPU time "
        "lost (default: from the results' environment)",
    )
    result.add_argument(
        "--worker-cores",
        type=_positive,
        default=None,
        metavar="K",
        help="cores of one input-service worker, for the capacity section (default: from "
        "the results' input_service)",
    )
    return result


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _target(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a mean AUC in (0, 1], got {text}")
    return value


def run(
    results: Sequence[Path],
    out: Path | None,
    *,
    fit_target_auc: float | None = None,
    cores_per_gpu: float | None = None,
    worker_cores: float | None = None,
) -> tuple[list[Path], list[str]]:
    """Load, build and write the report; returns the files written and one line per result
    file that could not be read. Raises ReportInputError."""
    from reports.build import build_report
    from reports.load import ReportInputError, load_results_sets, unreadable_files
    from reports.write import write_report

    if out is None:
        if len(results) > 1:
            raise ReportInputError("several results folders: name the report folder with --out")
        out = results[0]
    sets = load_results_sets(results)
    unreadable = [f"{entry.path}: {entry.reason}" for entry in unreadable_files(sets)]
    report = build_report(
        sets,
        fit_target_auc=fit_target_auc,
        host_cores_per_gpu=cores_per_gpu,
        worker_cores=worker_cores,
    )
    return write_report(report, out), unreadable


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    from reports.load import ReportInputError

    try:
        written, unreadable = run(
            arguments.results,
            arguments.out,
            fit_target_auc=arguments.fit_target_auc,
            cores_per_gpu=arguments.cores_per_gpu,
            worker_cores=arguments.worker_cores,
        )
    except ReportInputError as error:
        print(f"reports: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Exception:  # any other failure is a bug: show where
        print("reports: unexpected failure", file=sys.stderr)
        traceback.print_exc()
        return EXIT_FAILED
    for path in written:
        if path.suffix in (".md", ".html"):
            print(path)
    if unreadable:
        for line in unreadable:
            print(f"reports: cannot read {line}", file=sys.stderr)
        print(
            f"reports: {len(unreadable)} result file(s) left out (listed in the report's "
            "failures section); the report holds every readable result",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
