"""The end of a sweep: summary.json and its one-screen table, then the report.

The summary is read back from the result files, so that it says what is on disk.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from bench.contract import results
from bench.sweep.execute import repeat_statuses
from bench.sweep.jobs import REPEAT_ORDER, result_cell
from bench.sweep.plan import Cell


def summarise(
    name: str, cells: Sequence[Cell], sweep_dir: Path, *, started_at: str, interrupted: bool
) -> dict[str, Any]:
    """summary.json: every planned cell's status, read back from the result files."""
    entries = [_cell_summary(cell, sweep_dir) for cell in cells]
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    return {
        "schema_version": 1,
        "name": name,
        "started_at": started_at,
        "finished_at": results.utc_now(),
        "interrupted": interrupted,
        "repeat_order": REPEAT_ORDER,
        "counts": counts,
        "cells": entries,
    }


def _cell_summary(cell: Cell, sweep_dir: Path) -> dict[str, Any]:
    directory = sweep_dir / cell.folder
    statuses = repeat_statuses(directory)
    repeats, rates = [], []
    for repeat in range(cell.repeats):
        status, path = statuses.get(repeat, ("pending", None))
        repeats.append(
            {
                "repeat": repeat,
                "status": status,
                "result": str(path.relative_to(sweep_dir)) if path else None,
                "log": f"{cell.folder}/run-{repeat}.log",
            }
        )
        if path is not None and status == "ok":
            rates.append(_images_per_sec(path))
    found = {entry["status"] for entry in repeats}
    status = next((s for s in ("failed", "timeout", "pending") if s in found), "ok")
    return {
        "cell_id": cell.id,
        "slug": cell.slug,
        "dir": cell.folder,
        "status": status,
        "repeats": repeats,
        "images_per_sec": rates,
        **result_cell(cell),
    }


def _images_per_sec(path: Path) -> float | None:
    document = results.load_result(path)
    throughput = document.get("throughput") or {}
    return throughput.get("images_per_sec")


def summary_table(summary: Mapping[str, Any], selected: Sequence[str] = ()) -> str:
    """A one-screen table: cell, status, repeats ok, images/s."""
    from tabulate import tabulate

    rows = []
    for entry in summary["cells"]:
        if selected and entry["cell_id"] not in selected:
            continue
        ok = sum(1 for repeat in entry["repeats"] if repeat["status"] == "ok")
        rates = [rate for rate in entry["images_per_sec"] if rate is not None]
        rate = f"{sum(rates) / len(rates):.1f}" if rates else "-"
        rows.append([entry["slug"], entry["status"], f"{ok}/{len(entry['repeats'])}", rate])
    counts = ", ".join(f"{count} {status}" for status, count in sorted(summary["counts"].items()))
    table = tabulate(rows, headers=["cell", "status", "ok", "images/s"], tablefmt="simple")
    return f"sweep {summary['name']}: {counts}\n{table}"


def report(sweep_dir: Path, environ: Mapping[str, str], err: TextIO, *, repo: Path) -> None:
    """Run `python -m reports` on the sweep's folder; a failure is a warning."""
    argv = [sys.executable, "-m", "reports", str(sweep_dir)]
    print(f"report: {shlex.join(argv)}", file=err)
    env = dict(environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    try:
        done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, check=False)
    except OSError as error:
        print(f"warning: the report could not start: {error}", file=err)
        return
    if done.returncode != 0:
        print(
            f"warning: the report failed (exit {done.returncode}); the results are intact, "
            f"run `{shlex.join(argv)}` again",
            file=err,
        )
