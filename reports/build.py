"""Assemble a `Report` (sections of tables and figures) from results sets, and write it out.

The report is derived from the result files alone: the same results give the same bytes
(the only date in it is the span of the runs, read from the results).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from reports import conclusions, conversion_tables, gpu_tables, tables
from reports.accuracy_section import TITLE as ACCURACY_TITLE
from reports.accuracy_section import time_to_accuracy
from reports.capacity import DemandError, capacity_rows, service_worker_cores
from reports.capacity_report import TITLE as CAPACITY_TITLE
from reports.capacity_report import capacity_figure, capacity_inputs, capacity_table
from reports.document import Report, Section
from reports.failures import failed_runs, failures_table, pending_table
from reports.format import Table, common_settings
from reports.frame import cells_frame, runs_frame
from reports.load import ResultsSet
from reports.plots import all_figures
from reports.stalls import stalls_figure, stalls_table
from reports.storage import storage_table

NOT_RECORDED = "n/a (not recorded)"


def build_report(
    sets: Sequence[ResultsSet],
    *,
    fit_target_auc: float | None = None,
    host_cores_per_gpu: float | None = None,
    worker_cores: float | None = None,
) -> Report:
    """`fit_target_auc` overrides every results set's own target (its sweep file's);
    `host_cores_per_gpu` (C) and `worker_cores` (an input-service worker's size) are for
    the capacity section, by default from the results' environment and input service."""
    runs = runs_frame(sets)
    cells = cells_frame(runs)
    documents = {run.path.as_posix(): run.result for one in sets for run in one.runs}
    conversions = {
        (one.label, record["name"]): record for one in sets for record in one.conversions
    }
    figures = {figure.name: figure for figure in all_figures(cells, runs, documents)}
    figures["stalls.png"] = stalls_figure(runs)
    failed = failed_runs(sets)
    multi = len(sets) > 1
    capacity = capacity_section(
        sets, host_cores_per_gpu=host_cores_per_gpu, worker_cores=worker_cores
    )
    sections = [
        Section(
            "Throughput",
            (tables.throughput_table(cells),),
            (figures["scaling.png"], figures["formats.png"]),
        ),
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
            "Where the bytes come from: fetch and preparation stalls",
            (stalls_table(runs), storage_table(sets)),
            (figures["stalls.png"],),
        ),
        Section(
            "GPU utilization",
            (gpu_tables.gpu_table(cells, runs, documents),),
            (figures["gpu_utilization.png"],),
        ),
        capacity,
        Section(
            "Conversion cost and pay-off",
            (
                conversion_tables.conversion_table(sets),
                conversion_tables.payoff_table(cells, conversions),
            ),
        ),
    ]
    fit_tables, fit_figure, fit_lines = time_to_accuracy(
        sets, runs, documents, target_auc=fit_target_auc
    )
    sections.append(Section(ACCURACY_TITLE, fit_tables, (fit_figure,)))
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
        highlights=(*conclusions.highlights(cells, runs, conversions, failed), *fit_lines),
        environment=environment_table(sets),
        sweep_files=tuple((s.label, s.sweep_yaml) for s in sets if s.sweep_yaml),
        common_settings=common_settings(cells),
        sections=tuple(sections),
        failures=tuple(failed),
        figures=(*figures.values(), *capacity.figures, fit_figure),
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
        return Section(CAPACITY_TITLE, (Table("capacity", CAPACITY_TITLE, "", missing=str(error)),))
    if worker_cores is None:
        worker_cores = service_worker_cores(documents)
    rows = capacity_rows(costs, demands, host_cores_per_gpu=cores, worker_cores=worker_cores)
    return Section(
        CAPACITY_TITLE,
        (capacity_table(rows, host_cores_per_gpu=cores, worker_cores=worker_cores),),
        (capacity_figure(costs, demands, host_cores_per_gpu=cores),),
    )


def environment_table(sets: Sequence[ResultsSet]) -> Table:
    """One column per results set: where and with what the runs ran."""
    names = (
        "Sweep",
        "Folder",
        "Runs",
        "Repeat order",
        "Started",
        "Finished",
        "Hosts",
        "GPUs",
        "Driver",
        "CUDA (TF build)",
        "cuDNN (TF build)",
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
        str(summary.get("repeat_order") or NOT_RECORDED),
        _stamp(started),
        _stamp(finished),
        _join(host for env in envs for host in env.get("hosts") or []),
        _gpu_names(envs, results),
        _join(env.get("driver") for env in envs),
        *(_built_for(envs, key, label) for key, label in (("cuda", "CUDA"), ("cudnn", "cuDNN"))),
        *(_join(env.get(key) for env in envs) for key in ("tensorflow", "keras")),
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


def _built_for(envs: list[dict[str, Any]], key: str, label: str) -> str:
    """What TensorFlow was built against ('TF built for CUDA 12.5.1'): a build property, not
    a sign that a CUDA device was there (the GPUs row says that)."""
    versions = _join(env.get(key) for env in envs)
    if versions == NOT_RECORDED:
        return NOT_RECORDED
    return ", ".join(f"TF built for {label} {version}" for version in versions.split(", "))


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
