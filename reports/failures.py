"""Runs that did not finish: failed and timed-out results, result files that cannot be read,
and planned runs with no result.

A failed run whose cell and repeat have an ok result as well (a later `--resume` re-ran it)
is kept, marked "superseded". A failed run's log excerpt shows the lines that explain the
failure (the ranks' error lines, wherever they sit in the log) before the log's last lines:
a launcher (mpirun, horovodrun) prints its own traceback after the ranks' lines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.contract.results import ERROR_LINE, TRACEBACK_FRAME
from reports.format import NA, Table, describe_cell
from reports.load import ResultsSet

LOG_TAIL_LINES = 12
EXPLAINING_LINES = 8
SUPERSEDED = "superseded"
UNREADABLE = "unreadable"
_REPEAT_IN_NAME = re.compile(r"result-r(\d+)-")
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

    @property
    def superseded(self) -> bool:
        return SUPERSEDED in self.status

    @property
    def unreadable(self) -> bool:
        return self.status.startswith(UNREADABLE)


def failed_runs(sets: Sequence[ResultsSet]) -> list[Failure]:
    """Every failed or timed-out run, then every unreadable result file, in stable order."""
    found = []
    for results in sets:
        succeeded = {
            _run_key(run.result, run.path) for run in results.runs if run.result["status"] == "ok"
        }
        ok_in_folder = {
            (run.path.parent, int(run.result.get("repeat") or 0))
            for run in results.runs
            if run.result["status"] == "ok"
        }
        for run in results.runs:
            result = run.result
            if result["status"] == "ok":
                continue
            error = result.get("error") or {}
            exit_code = error.get("exit_code")
            status = result["status"]
            if _run_key(result, run.path) in succeeded:
                status = f"{status}, {SUPERSEDED} by a later ok run"
            found.append(
                Failure(
                    source=results.label,
                    cell=describe_cell(result.get("cell") or {}),
                    repeat=int(result.get("repeat") or 0),
                    status=status,
                    exit_code=NA if exit_code is None else str(exit_code),
                    message=str(error.get("message") or ""),
                    log_tail=log_excerpt(str(error.get("log_tail") or "")),
                    path=_relative(run.path, results.root),
                )
            )
        for entry in results.unreadable:
            repeat = _repeat_from_name(entry.path.name)
            status = UNREADABLE
            if (entry.path.parent, repeat) in ok_in_folder:
                status = f"{status}, {SUPERSEDED} by a later ok run"
            found.append(
                Failure(
                    source=results.label,
                    cell=f"result file in {entry.path.parent.name}",
                    repeat=repeat,
                    status=status,
                    exit_code=NA,
                    message=f"cannot read {entry.path}: {entry.reason}",
                    log_tail=f"{entry.path}: {entry.reason}",
                    path=_relative(entry.path, results.root),
                )
            )
    return found


def _run_key(result: dict[str, Any], path: Path) -> tuple[str, int]:
    """One cell's repeat: by cell id where recorded, else by the cell folder."""
    cell = result.get("cell_id") or str(path.parent)
    return str(cell), int(result.get("repeat") or 0)


def _repeat_from_name(name: str) -> int:
    found = _REPEAT_IN_NAME.match(name)
    return int(found.group(1)) if found else 0


def log_excerpt(log: str) -> str:
    """The lines that explain a failure, then the log's last lines.

    The whole log when it is short; otherwise up to EXPLAINING_LINES error lines from
    before the tail (in order, repeats dropped), a "..." line, and the last LOG_TAIL_LINES.
    """
    lines = log.splitlines()
    if len(lines) <= LOG_TAIL_LINES:
        return "\n".join(lines)
    head, tail = lines[:-LOG_TAIL_LINES], lines[-LOG_TAIL_LINES:]
    explaining: list[str] = []
    for line in head:
        explains = ERROR_LINE.search(line) and not TRACEBACK_FRAME.match(line)
        if explains and line not in explaining and line not in tail:
            explaining.append(line)
    explaining = explaining[-EXPLAINING_LINES:]
    if not explaining:
        return "\n".join(tail)
    return "\n".join([*explaining, "...", *tail])


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
