"""The report as data: titled sections of tables and figures, highlights, failures.

`build` makes a `Report` from results; `render_md` and `render_html` format it; `write`
puts the files on disk. Each depends on this module, none on another.
"""

from __future__ import annotations

from dataclasses import dataclass

from reports.failures import Failure
from reports.figure import Figure
from reports.format import Table

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
FIGURES_DIR = "figures"


@dataclass(frozen=True)
class Section:
    title: str
    tables: tuple[Table, ...]
    figures: tuple[Figure, ...] = ()


@dataclass(frozen=True)
class Report:
    title: str
    period: str
    highlights: tuple[str, ...]
    environment: Table
    sweep_files: tuple[tuple[str, str], ...]  # (label, sweep.yaml as run)
    common_settings: str
    sections: tuple[Section, ...]
    failures: tuple[Failure, ...]
    figures: tuple[Figure, ...]
