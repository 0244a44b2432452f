"""`python -m reports RESULTS [RESULTS ...] [--out DIR] [--cores-per-gpu C] [--worker-cores K]`:
report.md, report.html, figures/.

Exit codes: 0 written; 2 bad usage, no results found or an unreadable file (named on
stderr); 1 an unexpected failure (with its traceback).
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
        "--cores-per-gpu",
        type=float,
        default=None,
        metavar="C",
        help="CPU cores per GPU on the training host, for the capacity section's GPU time "
        "lost (default: from the results' environment)",
    )
    result.add_argument(
        "--worker-cores",
        type=float,
        default=None,
        metavar="K",
        help="cores of one input-service worker, for the capacity section (default: from "
        "the results' input_service)",
    )
    return result


def run(
    results: Sequence[Path],
    out: Path | None,
    *,
    cores_per_gpu: float | None = None,
    worker_cores: float | None = None,
) -> list[Path]:
    """Load, build and write the report; returns the files written. Raises ReportInputError."""
    from reports.build import build_report
    from reports.load import ReportInputError, load_results_sets
    from reports.write import write_report

    if out is None:
        if len(results) > 1:
            raise ReportInputError("several results folders: name the report folder with --out")
        out = results[0]
    sets = load_results_sets(results)
    report = build_report(sets, host_cores_per_gpu=cores_per_gpu, worker_cores=worker_cores)
    return write_report(report, out)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    from reports.load import ReportInputError

    try:
        for name in ("cores_per_gpu", "worker_cores"):
            value = getattr(arguments, name)
            if value is not None and value <= 0:
                raise ReportInputError(f"--{name.replace('_', '-')} must be positive")
        written = run(
            arguments.results,
            arguments.out,
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
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
