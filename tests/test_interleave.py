"""Repeats run interleaved (A B A B ...), and the sweep records that it did."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.contract import results
from bench.sweep import jobs, summary
from bench.sweep.load import load_sweep
from bench.sweep.plan import plan


def _sweep(tmp_path: Path) -> Path:
    path = tmp_path / "interleaved.yaml"
    path.write_text(
        f"name: interleaved\nworker: [{sys.executable}, -c, pass]\n"
        "launcher: {kind: local, kill_grace_s: 1}\n"
        "base: {mode: synthetic}\nrepeats: 3\naxes: {batch_per_gpu: [1, 2]}\n"
    )
    return path


def test_repeats_alternate_between_cells(tmp_path: Path) -> None:
    sweep = load_sweep(_sweep(tmp_path), environ={}, data_cache=tmp_path / "cache")
    cells = plan(sweep)
    planned = jobs.pending_jobs(cells, tmp_path / "out", resume=False, env={})
    order = [(job.cell_ref.settings["batch_per_gpu"], job.job.repeat) for job in planned]
    assert order == [(1, 0), (2, 0), (1, 1), (2, 1), (1, 2), (2, 2)]


def test_resume_keeps_the_interleaving_of_what_is_left(tmp_path: Path) -> None:
    sweep = load_sweep(_sweep(tmp_path), environ={}, data_cache=tmp_path / "cache")
    cells = plan(sweep)
    first = cells[0]
    done = results.empty_result(
        status="ok",
        sweep="interleaved",
        cell_id=first.id,
        repeat=0,
        throughput={"images_per_sec": 10.0},
        finished_at=results.utc_now(),
    )
    results.write_result(tmp_path / "out" / first.folder, done)
    planned = jobs.pending_jobs(cells, tmp_path / "out", resume=True, env={})
    order = [(job.cell_ref.settings["batch_per_gpu"], job.job.repeat) for job in planned]
    assert order == [(2, 0), (1, 1), (2, 1), (1, 2), (2, 2)]
    written = summary.summarise(
        "interleaved", cells, tmp_path / "out", started_at=results.utc_now(), interrupted=False
    )
    assert json.loads(json.dumps(written))["repeat_order"] == "interleaved"
