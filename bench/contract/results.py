"""The result file: one JSON document per run, written once, atomically, never overwritten.

This module is the contract between the worker (`bench.run`), the sweep runner (which
writes the result of a job that died before writing its own) and the reports. It imports
neither TensorFlow, Horovod nor NVML, so that `reports` can use it.

Layout (schema_version 1); every key is always present, `null` where not applicable:

    schema_version  int
    run_id          str, unique per run (uuid4 hex)
    sweep           str | null           the sweep's name
    cell_id         str | null           stable hash of the planned cell
    repeat          int                  0-based repeat index
    started_at      str                  UTC ISO-8601, "Z"
    finished_at     str
    status          "ok" | "failed" | "timeout"
    error           null | {"message": str, "exit_code": int | null, "log_tail": str}
    cell            {model, mode, data_format, encoding, pipeline, engine, gpus, nodes,
                     batch_per_gpu, global_batch, precision, image_size, xla, steps,
                     warmup_steps, page_cache, ...}  the settings that define what was
                     measured (page_cache: "warm" | "cold", null in synthetic mode;
                     absent from results written before it existed)
    config          the full RunConfig as a dict (paths as strings), or null
    environment     {hosts, gpu_names, driver, cuda, cudnn, tensorflow, keras, horovod,
                     horovod_controller, python, platform, cpu_count, ...,
                     slurm: null | {job_id, job_name, cluster, partition, job_nodelist,
                       job_num_nodes, ntasks, step_id, step_num_tasks, step_nodelist,
                       gpus_per_task} (strings as Slurm set them, null where unset;
                       optional: absent in results written before it),
                     storage: {data_dir, records_dir: null | {path, mount_point, fs_type,
                     source, options}} (optional)} or partial
    dataset         null | {source, path, split, images, records_dir, encoding, ...,
                     decoder (optional): "host per batch: OpenCV ..." | "TensorFlow ...",
                     page_cache (optional): {state, action, files, bytes_read,
                     before, after, at_end: {files, bytes, measured_bytes, resident_bytes,
                     fraction, unmeasured_files, unreadable}, memory_limit_bytes,
                     larger_than_memory, seconds, problems, problem_count, note, host,
                     hosts (several nodes)}}  what bench.job.cache_state did
    timing          null | {
                      unit: "seconds",
                      startup_s: float,            process start -> first step begins
                      time_to_first_batch_s: float,
                      warmup_step_s: [[float]],    per rank, the excluded warm-up steps
                      step_s: [[float]],           per rank, the measured steps
                      measured_s: [float],         per rank, wall time of the measured steps
                    }
    throughput      null | {images_per_sec, images_per_sec_per_gpu, images_per_step,
                            step_p50_s, step_p90_s, step_p99_s,
                            window_images_per_sec: [float] (optional; consecutive windows
                              of the measured steps, each's images/s: reports.stats takes
                              the cell's interval from them), window_steps: int | null}
    telemetry       {
                      gpu: null | {period_s, devices: [{host, index, name, uuid,
                            pci_bus_id, ranks,   (optional, newer results: one entry
                                                  per (host, uuid); the ranks that used it)
                            t_s: [...], utilization_pct: [...], memory_used_bytes: [...],
                            power_w: [...], sm_clock_mhz: [...], gpm: null | {...}}]},
                      gpu_unavailable: null | str,   why there are no GPU samples
                      host: null | [{host, period_s, t_s, cpu_pct, memory_used_bytes}],
                      measured_window_s: null | [start, end]  (same clock as t_s)
                    }
    details         null | mode-specific: pipeline probe figures, fit history, ...

Optional (additive) keys:

    cell.input_workers   int, only where an input-service pool fed the cell
    input_service   {workers, where ("local" | [hosts]), cores_each, dispatcher,
                     processing_mode, compression, window: [start, end] | null,
                     worker_cpu_s: float | null (all workers over the window),
                     started_by: "job" | "sweep",
                     per_worker: [{index, host, address, cores, cpus, log,
                                   cpu_s, cores_used}]}   (bench.service.usage)
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from converters.manifest import utc_now, write_text_atomic

# A log line that says why a run failed (an exception, "error:", "failed", a crash, bad data):
# the sweep keeps such lines from before a log's tail in `error.log_tail`, and the report
# shows them above the tail; a launcher prints its own traceback after the ranks' lines.
ERROR_LINE = re.compile(
    r"\b\w*(Error|Exception)\b|\berror:|\bfailed\b|\bcrash|\bbad data\b|\bKilled\b",
    re.IGNORECASE,
)
# Traceback frames match ERROR_LINE's words often and explain nothing on their own.
TRACEBACK_FRAME = re.compile(r'^\s*(File "|Traceback \(most recent call last\))')

SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "timeout")
REQUIRED_KEYS = (
    "schema_version",
    "run_id",
    "sweep",
    "cell_id",
    "repeat",
    "started_at",
    "finished_at",
    "status",
    "error",
    "cell",
    "config",
    "environment",
    "dataset",
    "timing",
    "throughput",
    "telemetry",
    "details",
)
RESULT_GLOB = "result-*.json"


class ResultSchemaError(ValueError):
    """A result file this version cannot read; the message names the file and key."""


def new_run_id() -> str:
    return uuid.uuid4().hex


def result_filename(result: Mapping[str, Any]) -> str:
    """`result-r<repeat>-<run_id>.json`: unique, sortable by repeat."""
    return f"result-r{int(result['repeat'])}-{result['run_id']}.json"


def empty_result(**known: Any) -> dict[str, Any]:
    """A result with every key present: `null` (or the given value) for each."""
    result: dict[str, Any] = dict.fromkeys(REQUIRED_KEYS)
    result.update(
        schema_version=SCHEMA_VERSION,
        run_id=new_run_id(),
        repeat=0,
        started_at=utc_now(),
        telemetry={
            "gpu": None,
            "gpu_unavailable": "not sampled",
            "host": None,
            "measured_window_s": None,
        },
    )
    result.update(known)
    return result


def failure_result(
    *,
    status: str,
    message: str,
    cell: Mapping[str, Any],
    exit_code: int | None = None,
    log_tail: str = "",
    **known: Any,
) -> dict[str, Any]:
    """The result of a run that did not finish: status, the reason, no figures."""
    if status not in ("failed", "timeout"):
        raise ValueError(f"a failure result has status failed or timeout, not {status!r}")
    result = empty_result(cell=dict(cell), **known)
    result.update(
        status=status,
        finished_at=utc_now(),
        error={"message": message, "exit_code": exit_code, "log_tail": log_tail},
    )
    return result


def validate(result: Mapping[str, Any], *, where: str = "result") -> None:
    """Reject a document that is not a result this version understands."""
    if not isinstance(result, Mapping):
        raise ResultSchemaError(f"{where}: a result is a JSON object")
    version = result.get("schema_version")
    if not isinstance(version, int):
        raise ResultSchemaError(f"{where}: key 'schema_version' missing or not an integer")
    if version != SCHEMA_VERSION:
        direction = "newer" if version > SCHEMA_VERSION else "older"
        raise ResultSchemaError(
            f"{where}: schema_version {version} is {direction} than this harness's "
            f"{SCHEMA_VERSION}; "
            + (
                "upgrade the harness to read it"
                if version > SCHEMA_VERSION
                else "re-run the cell with this harness (bench.sweep --resume) to rewrite it"
            )
        )
    missing = [key for key in REQUIRED_KEYS if key not in result]
    if missing:
        raise ResultSchemaError(f"{where}: missing key(s) {', '.join(missing)}")
    if result["status"] not in STATUSES:
        raise ResultSchemaError(
            f"{where}: key 'status' is {result['status']!r}, expected one of {STATUSES}"
        )
    if result["status"] == "ok" and result["throughput"] is None and result["details"] is None:
        raise ResultSchemaError(f"{where}: status ok but neither 'throughput' nor 'details'")
    if result["status"] != "ok" and not result["error"]:
        raise ResultSchemaError(f"{where}: status {result['status']} needs an 'error'")
    _validate_rate(result.get("throughput"), where)


def _validate_rate(throughput: Any, where: str) -> None:
    """A measured rate is a positive number; none measured is null, never 0."""
    if throughput is None:
        return
    if not isinstance(throughput, Mapping):
        raise ResultSchemaError(f"{where}: key 'throughput' is not an object")
    rate = throughput.get("images_per_sec")
    if rate is None:
        return
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate < math.inf:
        raise ResultSchemaError(
            f"{where}: key 'throughput.images_per_sec' is {rate!r}, expected a positive number"
        )


def write_result(directory: Path, result: Mapping[str, Any]) -> Path:
    """Validate, then write atomically (temporary name, fsync, rename); never overwrite."""
    validate(result, where=f"result for {directory}")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / result_filename(result)
    if target.exists():
        raise FileExistsError(f"{target} exists; result files are never overwritten")
    write_json_atomic(target, result)
    return target


def write_json_atomic(target: Path, document: Any) -> None:
    """Write JSON to `target` so that a reader sees the old file or the whole new one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=1, sort_keys=True, default=_to_json) + "\n"
    write_text_atomic(target, text)


def load_result(path: Path) -> dict[str, Any]:
    """Read and validate one result file; errors name the file."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ResultSchemaError(f"{path}: not valid JSON ({error})") from error
    validate(document, where=str(path))
    return document


def find_results(root: Path) -> list[Path]:
    """Every result file under `root`, in a stable order."""
    return sorted(root.rglob(RESULT_GLOB))


def _to_json(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a result file")
