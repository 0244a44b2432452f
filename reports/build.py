"""Assemble a `Report` (sections of tables and figures) from results sets, and write it out.

The report is derived from the result files alone: the same results give the same bytes
(the only date in it is the span of the runs, read from the results).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from reports import analysis, tables
from reports.capacity import DemandError, capacity_rows, service_worker_cores
from reports.capacity_report import TITLE, capacity_figure, capacity_inputs, capacity_table
from reports.document import Report, Section
from reports.failures import failed_runs, failures_table, pending_table
from reports.format import Table, common_settings, describe_cell, fmt_pct, fmt_rate
from reports.frame import NA_KEY, cells_frame, runs_frame
from reports.load import ResultsSet
from reports.plots import all_figures

NOT_RECORDED = "n/a (not recorded)"


def build_report(
    sets: Sequence[ResultsSet],
    *,
    host_cores_per_gpu: float | None = None,
    worker_cores: float | None = None,
) -> Report:
    """`host_cores_per_gpu` (C) and `worker_cores` (an input-service worker's size) for
    the capacity section; by default C from the results' environment and the worker size
    from their input-service sections."""
    runs = runs_frame(sets)
    cells = cells_frame(runs)
    documents = {run.path.as_posix(): run.result for one in sets for run in one.runs}
    conversions = {
        (one.label, record["name"]): record for one in sets for record in one.conversions
    }
    figures = {figure.name: figure for figure in all_figures(cells, runs, documents)}
    failed = failed_runs(sets)
    multi = len(sets) > 1
    capacity = capacity_section(
        sets, host_cores_per_gpu=host_cores_per_gpu, worker_cores=worker_cores
    )
    sections = [
        Section("Throughput", (tables.throughput_table(cells),), (figures["scaling.png"],)),
        Section("Scaling", (tables.scaling_table(cells),), (figures["efficiency.png"],)),
        Section(
            "TFRecords against raw files", (tables.speedup_table(cells),), (figures["speedup.png"],)
        ),
        Section(
            "Is the job input-bound?",
            (tables.input_bound_table(cells),),
            (figures["supply_demand.png"],),
        ),
        Section(
            "GPU utilization",
            (tables.gpu_table(cells, runs, documents),),
            (figures["gpu_utilization.png"],),
        ),
        capacity,
        Section(
            "Conversion cost and pay-off",
            (tables.conversion_table(sets), tables.payoff_table(cells, conversions)),
        ),
    ]
    if multi:
        sections.append(
            Section(
                "Results sets compared", (tables.comparison_table(cells, [s.label for s in sets]),)
            )
        )
    pending = pending_table(sets)
    failure_tables = (failures_table(failed, multi=multi),)
    sections.append(Section("Failures", failure_tables + ((pending,) if pending else ())))
    return Report(
        title="chexbench report: " + ", ".join(one.label for one in sets),
        period=_period(runs),
        highlights=tuple(_highlights(cells, runs, conversions)),
        environment=environment_table(sets),
        sweep_files=tuple((s.label, s.sweep_yaml) for s in sets if s.sweep_yaml),
        common_settings=common_settings(cells),
        sections=tuple(sections),
        failures=tuple(failed),
        figures=(*figures.values(), *capacity.figures),
    )


def capacity_section(
    sets: Sequence[ResultsSet],
    *,
    host_cores_per_gpu: float | None,
    worker_cores: float | None,
) -> Section:
    """Cores per GPU each input needs, from pipeline-mode CPU cost and the demands."""
    documents = [run.result for one in sets for run in one.runs]
    try:
        costs, demands, cores = capacity_inputs(
            documents, [one.sweep_yaml for one in sets], host_cores_per_gpu=host_cores_per_gpu
        )
    except DemandError as error:  # a sweep file from before validation knew `demand:`
        return Section(TITLE, (Table("capacity", TITLE, "", missing=str(error)),))
    if worker_cores is None:
        worker_cores = service_worker_cores(documents)
    rows = capacity_rows(costs, demands, host_cores_per_gpu=cores, worker_cores=worker_cores)
    return Section(
        TITLE,
        (capacity_table(rows, host_cores_per_gpu=cores, worker_cores=worker_cores),),
        (capacity_figure(costs, demands, host_cores_per_gpu=cores),),
    )


def environment_table(sets: Sequence[ResultsSet]) -> Table:
    """One column per results set: where and with what the runs ran."""
    names = (
        "Sweep",
        "Folder",
        "Runs",
        "Started",
        "Finished",
        "Hosts",
        "GPUs",
        "Driver",
        "CUDA",
        "cuDNN",
        "TensorFlow",
        "Keras",
        "Horovod",
        "Python",
        "Platform",
        "CPUs per host",
    )
    columns = [_environment_column(results) for results in sets]
    rows = tuple((name, *(column[i] for column in columns)) for i, name in enumerate(names))
    return Table(
        "environment",
        "Environment",
        "Where the runs ran, read from the results.",
        ("", *(results.label for results in sets)),
        rows,
        (False,) * (1 + len(sets)),
    )


def _environment_column(results: ResultsSet) -> tuple[str, ...]:
    envs = [run.result.get("environment") or {} for run in results.runs]
    statuses = [run.result["status"] for run in results.runs]
    counts = ", ".join(
        f"{statuses.count(s)} {s}" for s in ("ok", "failed", "timeout") if statuses.count(s)
    )
    summary = results.summary or {}
    started = summary.get("started_at") or _min([r.result.get("started_at") for r in results.runs])
    finished = summary.get("finished_at") or _max(
        [r.result.get("finished_at") for r in results.runs]
    )
    return (
        results.sweep_name or NOT_RECORDED,
        results.root.name,
        counts,
        _stamp(started),
        _stamp(finished),
        _join(host for env in envs for host in env.get("hosts") or []),
        _gpu_names(envs, results),
        *(
            _join(env.get(key) for env in envs)
            for key in ("driver", "cuda", "cudnn", "tensorflow", "keras")
        ),
        _horovod(envs),
        *(_join(env.get(key) for env in envs) for key in ("python", "platform", "cpu_count")),
    )


def _gpu_names(envs: list[dict[str, Any]], results: ResultsSet) -> str:
    largest: dict[str, int] = {}
    for env in envs:
        names = [str(name) for name in env.get("gpu_names") or []]
        for name in set(names):
            largest[name] = max(largest.get(name, 0), names.count(name))
    if largest:
        return ", ".join(f"up to {count} x {name}" for name, count in sorted(largest.items()))
    reasons = {
        (run.result.get("telemetry") or {}).get("gpu_unavailable") for run in results.runs
    } - {None}
    return "none recorded" + (f" ({'; '.join(sorted(reasons))})" if reasons else "")


def _horovod(envs: list[dict[str, Any]]) -> str:
    versions = _join(env.get("horovod") for env in envs)
    controllers = _join(env.get("horovod_controller") for env in envs)
    return versions if controllers == NOT_RECORDED else f"{versions} ({controllers})"


def _join(values: Any) -> str:
    unique = sorted({str(value) for value in values if value not in (None, "", [])})
    return ", ".join(unique) if unique else NOT_RECORDED


def _min(values: list[Any]) -> str | None:
    present = [v for v in values if isinstance(v, str)]
    return min(present) if present else None


def _max(values: list[Any]) -> str | None:
    present = [v for v in values if isinstance(v, str)]
    return max(present) if present else None


def _stamp(value: str | None) -> str:
    """'2026-03-02T09:00:00.000000Z' -> '2026-03-02 09:00:00 UTC'."""
    if not value:
        return NOT_RECORDED
    return value.replace("T", " ").split(".")[0].rstrip("Z") + " UTC"


def _period(runs: pd.DataFrame) -> str:
    first, last = _min(runs["started_at"].tolist()), _max(runs["finished_at"].tolist())
    files = f"{len(runs)} result file{'s' if len(runs) != 1 else ''}"
    return f"Runs from {_stamp(first)} to {_stamp(last)} ({files})."


def _highlights(
    cells: pd.DataFrame, runs: pd.DataFrame, conversions: dict[tuple[str, str], dict[str, Any]]
) -> list[str]:
    """A few sentences a reader should see first; each points at its table."""
    lines: list[str] = []
    multi = cells["source"].nunique() > 1
    training = cells[cells["mode"].isin(analysis.TRAINING_MODES)]
    if not training.empty:
        best = training.loc[training["images_per_sec"].idxmax()]
        lines.append(
            f"Fastest training cell: {_name(best, multi=multi)}, "
            f"{fmt_rate(best['images_per_sec'])} images/s."
        )
    speedups = analysis.speedup_frame(cells)
    speedups = (
        speedups[speedups["mode"].isin(analysis.TRAINING_MODES)] if not speedups.empty else speedups
    )
    lines += _speedup_highlights(speedups, multi=multi)
    bound = analysis.input_bound_frame(cells)
    if not bound.empty and bound["input_bound_share"].notna().any():
        worst = bound.loc[bound["input_bound_share"].idxmax()]
        lines.append(
            f"Most input-bound: {_name(worst, multi=multi)} loses "
            f"{fmt_pct(worst['input_bound_share'])} of what the GPUs can "
            "consume to its input."
        )
    payoff = analysis.payoff_frame(cells, conversions)
    finite = payoff[payoff["epochs"] < float("inf")] if not payoff.empty else payoff
    if not finite.empty:
        fastest = finite.loc[finite["epochs"].idxmin()]
        where = _name(fastest, multi=multi, data=False)
        lines.append(
            f"The conversion {fastest['conversion_name']} pays for itself after "
            f"{fastest['epochs']:,.1f} epochs at best ({where})."
        )
    failed = int((runs["status"] != "ok").sum())
    if failed:
        lines.append(f"{failed} of {len(runs)} runs failed or timed out (see Failures).")
    return lines


def _speedup_highlights(speedups: pd.DataFrame, *, multi: bool) -> list[str]:
    """One line per results set: each training pair's speedup at the most GPUs it ran on."""
    lines = []
    for source, group in speedups.groupby("source", sort=False):
        top = group[group["gpus"] == group["gpus"].max()]
        pairs = ", ".join(
            f"{_name(row, multi=False, data=False, gpus=False)} "
            f"{fmt_pct(row['speedup'], signed=True)}"
            for _, row in top.iterrows()
        )
        gpus = int(top["gpus"].iloc[0])
        where = f"{source}, " if multi else ""
        lines.append(
            f"TFRecords over raw files ({where}{gpus} GPU{'s' if gpus != 1 else ''}): {pairs}."
        )
    return lines


def _name(row: pd.Series, *, multi: bool, data: bool = True, gpus: bool = True) -> str:
    """The cell's one-line name; `data=False` leaves the data format out (a raw/tfrecord pair);
    `multi` prefixes the results set's label."""
    cell = {key: (None if value == NA_KEY else value) for key, value in row.to_dict().items()}
    if not data:
        cell["data_format"] = None
    if not gpus:
        cell["gpus"] = None
    name = describe_cell(cell)
    return f"{row['source']}: {name}" if multi else name
