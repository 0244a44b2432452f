"""Writing a report: report.md, report.html and figures/*.png into one folder."""

from __future__ import annotations

from pathlib import Path

from reports.document import FIGURES_DIR, REPORT_HTML, REPORT_MD, Report
from reports.render_html import render_html
from reports.render_md import render_markdown


def write_report(report: Report, out: Path) -> list[Path]:
    """Write report.md, report.html and figures/*.png into `out`; stale figures go."""
    figures_dir = out / FIGURES_DIR
    figures_dir.mkdir(parents=True, exist_ok=True)
    written = []
    drawn = {figure.name for figure in report.figures if figure.png}
    for stale in sorted(figures_dir.glob("*.png")):
        if stale.name not in drawn:
            stale.unlink()
    for figure in report.figures:
        if figure.png:
            path = figures_dir / figure.name
            path.write_bytes(figure.png)
            written.append(path)
    for name, text in ((REPORT_MD, render_markdown(report)), (REPORT_HTML, render_html(report))):
        path = out / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
