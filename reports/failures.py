"""Runs that did not finish: failed and timed-out results, and planned runs with no result."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reports.format import NA, Table, describe_cell
from reports.load import ResultsSet

LOG_TAIL_LINES = 12
MESSAGE_CHARS = 160


@dataclass(frozen=True)
class Failure:
    """A failed or timed-out run, with the tail of its log."""

    source: str
    cell: str
    repeat: int
    status: str
    exit_code: str
    message: str
    log_tail: str
    path: str


def failed_runs(sets: Sequence[ResultsSet]) -> list[Failure]:
    """Every failed or timed-out run, in stable order."""
    found = []
    for results in sets:
        for run in results.runs:
            result = run.result
            if result["status"] == "ok":
                continue
            error = result.get("error") or {}
            tail = "\n".join(str(error.get("log_tail") or "").splitlines()[-LOG_TAIL_LINES:])
            exit_code = error.get("exit_code")
            found.append(
                Failure(
                    source=results.label,
                    cell=describe_cell(result.get("cell") or {}),
                    repeat=int(result.get("repeat") or 0),
                    status=result["status"],
                    exit_code=NA if exit_code is None else str(exit_code),
                    message=str(error.get("message") or ""),
                    log_tail=tail,
                    path=_relative(run.path, results.root),
                )
            )
    return found


def failures_table(found: Sequence[Failure], *, multi: bool) -> Table:
    intro = "Runs that failed or timed out; the tail of each log follows the table."
    if not found:
        return Table("failures", "Failed and timed-out runs", intro, missing="every run finished")
    rows = tuple(
        ((f.source,) if multi else ())
        + (f.cell, str(f.repeat), f.status, f.exit_code, _short(f.message))
        for f in found
    )
    headers = (("Source",) if multi else ()) + ("Cell", "Repeat", "Status", "Exit code", "Error")
    return Table(
        "failures", "Failed and timed-out runs", intro, headers, rows, (False,) * len(headers)
    )


def pending_table(sets: Sequence[ResultsSet]) -> Table | None:
    """Planned runs that summary.json lists without a result (an interrupted sweep), or None."""
    rows = []
    for results in sets:
        entries = (results.summary or {}).get("cells")
        for entry in entries if isinstance(entries, list) else []:
            repeats = entry.get("repeats") if isinstance(entry, dict) else None
            for repeat in repeats if isinstance(repeats, list) else []:
                if isinstance(repeat, dict) and repeat.get("status") == "pending":
                    name = str(entry.get("slug") or entry.get("dir") or entry.get("cell_id"))
                    rows.append((results.label, name, str(repeat.get("repeat", NA))))
    if not rows:
        return None
    return Table(
        "pending",
        "Planned runs without a result",
        "Runs the sweep planned but that left no result file (the sweep was interrupted or "
        "is still running; python -m bench.sweep --resume runs them).",
        ("Source", "Cell", "Repeat"),
        tuple(rows),
        (False, False, True),
    )


def _relative(path: Path, root: Path) -> str:
    """The result file as <results folder>/<cell folder>/<file>: the same wherever it lives."""
    try:
        return (Path(root.name) / path.relative_to(root)).as_posix()
    except ValueError:
        return path.as_posix()


def _short(message: str) -> str:
    """The error message on one table line; the whole story is in the log tail below."""
    line = " ".join(message.split())
    return line if len(line) <= MESSAGE_CHARS else line[: MESSAGE_CHARS - 1] + "…"
