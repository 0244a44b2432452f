"""`python -m reports RESULTS [RESULTS ...] [--out DIR]`: report.md, report.html, figures/.

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
    return result


def run(results: Sequence[Path], out: Path | None) -> list[Path]:
    """Load, build and write the report; returns the files written. Raises ReportInputError."""
    from reports.build import build_report
    from reports.load import ReportInputError, load_results_sets
    from reports.write import write_report

    if out is None:
        if len(results) > 1:
            raise ReportInputError("several results folders: name the report folder with --out")
        out = results[0]
    sets = load_results_sets(results)
    return write_report(build_report(sets), out)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    from reports.load import ReportInputError

    try:
        written = run(arguments.results, arguments.out)
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
