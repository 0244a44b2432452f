"""report.html: ONE self-contained file (inline CSS, figures as data URIs), printable.

No script, no external font, stylesheet or image: it reads the same offline, in any browser
and on paper.
"""

from __future__ import annotations

import base64
from html import escape

from reports.document import Report
from reports.figure import Figure
from reports.format import NA, Table

CSS = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #d9dee7; --band: #f5f7fa; --accent: #1f5fa8; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); max-width: 1180px; margin: 0 auto; padding: 24px 28px 60px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 8px; padding-bottom: 4px;
     border-bottom: 2px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 6px; }
p.period, p.intro, figcaption, .note { color: var(--muted); }
p.intro { margin: 2px 0 8px; max-width: 900px; }
nav { margin: 14px 0 6px; font-size: 13px; }
nav a { color: var(--accent); margin-right: 14px; text-decoration: none; }
ul.highlights { background: #eef4fb; border-left: 4px solid var(--accent);
                padding: 10px 10px 10px 30px; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left;
         vertical-align: top; }
th { background: var(--band); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.na { color: #9aa1ad; font-style: italic; }
tbody tr:nth-child(even) { background: #fbfcfd; }
.missing { background: #fff8e6; border: 1px solid #f0dca8; padding: 8px 12px; border-radius: 4px; }
figure { margin: 14px 0 22px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
pre { background: #f6f8fa; border: 1px solid var(--line); padding: 8px 10px; overflow-x: auto;
      font-size: 12px; white-space: pre-wrap; }
details summary { cursor: pointer; color: var(--accent); }
@media print {
  body { max-width: none; padding: 0; font-size: 11px; }
  nav { display: none; }
  h2 { break-after: avoid; page-break-after: avoid; }
  h3 { break-after: avoid; page-break-after: avoid; }
  table, figure, pre { break-inside: avoid; page-break-inside: avoid; }
  .table-wrap { overflow: visible; }
  details > *:not(summary) { display: block; }
  a { color: inherit; text-decoration: none; }
}
"""


def render_html(report: Report) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(report.title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{escape(report.title)}</h1>",
        f'<p class="period">{escape(report.period)}</p>',
        _nav(report),
    ]
    if report.highlights:
        parts += [
            '<h2 id="summary">Summary</h2>',
            '<ul class="highlights">',
            *(f"<li>{escape(line)}</li>" for line in report.highlights),
            "</ul>",
        ]
    parts += ['<section id="environment">', html_table(report.environment, level=2)]
    for label, text in report.sweep_files:
        parts.append(
            f"<details><summary>sweep.yaml of {escape(label)}</summary>"
            f"<pre>{escape(text)}</pre></details>"
        )
    if report.common_settings:
        parts.append(
            f'<p class="note">Settings shared by every finished cell: '
            f"{escape(report.common_settings)}.</p>"
        )
    parts.append("</section>")
    for index, section in enumerate(report.sections):
        parts += [f'<section id="s{index}">', f"<h2>{escape(section.title)}</h2>"]
        for table in section.tables:
            parts.append(html_table(table, level=3))
            if table.key == "failures":
                parts += _log_tails(report)
        parts += [_figure(figure) for figure in section.figures]
        parts.append("</section>")
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def html_table(table: Table, *, level: int) -> str:
    head = (
        f'<h{level} id="t-{escape(table.key)}">{escape(table.title)}</h{level}>'
        f'<p class="intro">{escape(table.intro)}</p>'
    )
    if table.missing:
        return head + f'<p class="missing">No table: {escape(table.missing)}.</p>'
    header = "".join(
        f'<th{_class(numeric)} scope="col">{escape(text)}</th>'
        for text, numeric in zip(table.headers, table.numeric, strict=True)
    )
    body = "".join(
        "<tr>"
        + "".join(_td(value, numeric) for value, numeric in zip(row, table.numeric, strict=True))
        + "</tr>"
        for row in table.rows
    )
    notes = "".join(f'<p class="note">{escape(note)}</p>' for note in table.notes)
    return (
        f'{head}<div class="table-wrap"><table data-table="{escape(table.key)}">'
        f"<thead><tr>{header}</tr></thead><tbody>{body}</tbody></table></div>{notes}"
    )


def _td(value: str, numeric: bool) -> str:
    classes = (["num"] if numeric else []) + (["na"] if value.startswith(NA) else [])
    attribute = f' class="{" ".join(classes)}"' if classes else ""
    return f"<td{attribute}>{escape(value)}</td>"


def _class(numeric: bool) -> str:
    return ' class="num"' if numeric else ""


def _figure(figure: Figure) -> str:
    if not figure.png:
        return (
            f'<p class="missing">Figure &ldquo;{escape(figure.title)}&rdquo; not drawn: '
            f"{escape(figure.note or '')}.</p>"
        )
    data = base64.b64encode(figure.png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{escape(figure.title)}" '
        f'data-figure="{escape(figure.name)}"><figcaption>{escape(figure.caption)}'
        "</figcaption></figure>"
    )


def _nav(report: Report) -> str:
    links = ['<a href="#environment">Environment</a>']
    links += [
        f'<a href="#s{index}">{escape(section.title)}</a>'
        for index, section in enumerate(report.sections)
    ]
    return "<nav>" + "".join(links) + "</nav>"


def _log_tails(report: Report) -> list[str]:
    return [
        f"<p><strong>{escape(failure.cell)}</strong>, repeat {failure.repeat} "
        f"({escape(failure.status)}), <code>{escape(failure.path)}</code>:</p>"
        f"<pre>{escape(failure.log_tail or '(empty log)')}</pre>"
        for failure in report.failures
    ]
