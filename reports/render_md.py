"""report.md: GitHub-flavoured markdown, tables by tabulate, figures in figures/ beside it."""

from __future__ import annotations

import re
from html import escape

from tabulate import tabulate

from reports.document import FIGURES_DIR, Report
from reports.figure import Figure
from reports.format import Table


def render_markdown(report: Report) -> str:
    lines = [f"# {report.title}", "", report.period, ""]
    if report.highlights:
        lines += ["## Summary", "", *(f"- {line}" for line in report.highlights), ""]
    lines += markdown_table(report.environment, level=2)
    for label, text in report.sweep_files:
        lines += [
            f"<details><summary>sweep.yaml of {escape(label)}</summary>",
            "",
            f"{_fence(text)}yaml",
            text.rstrip("\n"),
            _fence(text),
            "",
            "</details>",
            "",
        ]
    if report.common_settings:
        lines += [f"Settings shared by every finished cell: {report.common_settings}.", ""]
    for section in report.sections:
        lines += [f"## {section.title}", ""]
        for table in section.tables:
            lines += markdown_table(table, level=3)
            if table.key == "failures":
                lines += _log_tails(report)
        for figure in section.figures:
            lines += _figure(figure)
    return "\n".join(lines).rstrip("\n") + "\n"


def markdown_table(table: Table, *, level: int) -> list[str]:
    lines = [f"{'#' * level} {table.title}", "", table.intro, ""]
    if table.missing:
        return [*lines, f"_No table: {table.missing}._", ""]
    rows = [[_cell(value) for value in row] for row in table.rows]
    align = ["right" if numeric else "left" for numeric in table.numeric]
    lines += [
        tabulate(
            rows,
            headers=[_cell(h) for h in table.headers],
            tablefmt="github",
            colalign=align,
            disable_numparse=True,
        ),
        "",
    ]
    lines += [f"_{note}_" for note in table.notes]
    return [*lines, ""] if table.notes else lines


def _figure(figure: Figure) -> list[str]:
    if not figure.png:
        return [f'_Figure "{figure.title}" not drawn: {figure.note}._', ""]
    return [f"![{figure.title}]({FIGURES_DIR}/{figure.name})", "", f"_{figure.caption}_", ""]


def _log_tails(report: Report) -> list[str]:
    lines = []
    for failure in report.failures:
        tail = failure.log_tail or "(empty log)"
        fence = _fence(tail)
        lines += [
            f"**{_inline(failure.cell)}**, repeat {failure.repeat} ({failure.status}), "
            f"`{failure.path}`:",
            "",
            f"{fence}text",
            tail,
            fence,
            "",
        ]
    return lines


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in `text`, so that it cannot close early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _cell(value: str) -> str:
    """A table cell: one line, pipes escaped so that they do not split the column."""
    return " ".join(str(value).split()).replace("|", "\\|")


def _inline(value: str) -> str:
    return value.replace("*", "\\*").replace("_", "\\_")
