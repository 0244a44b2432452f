"""Write the golden sweep the report tests read, with the REAL result writer, times pinned.

`python -m tests.golden_writer OUT` writes `OUT/<name>/` laid out as bench.sweep lays out a
sweep: sweep.yaml, plan.json, summary.json, conversions/png-full.json and one folder per cell
holding result-r<repeat>-<run_id>.json files. Everything is derived from the step times in
`GOLDEN_CELLS`, so tests can compute the expected figures by hand. The committed copy lives
in tests/golden/; test_reports checks it still equals a fresh write.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench.contract.cell import cell_hash, cell_record, cell_slug
from bench.contract.results import empty_result, failure_result, write_json_atomic, write_result

SWEEP_NAME = "golden"
STARTED = datetime(2026, 3, 2, 9, 0, 0, tzinfo=timezone.utc)
BATCH_PER_GPU = 64
DATASET_IMAGES = 1000
CONVERSION = "png-full"
CONVERSION_WALL_S = 120.0
WINDOW_S = (2.0, 9.0)  # seconds after the first sample
EPOCH_S = STARTED.timestamp()  # samples are stamped with wall-clock time
SAMPLES = 21
HOST_CPU_PCT = {None: 10.0, "raw": 85.0, "tfrecord": 40.0}
SAMPLE_PERIOD_S = 0.5
GPU_NAME = "NVIDIA V100-SXM2-32GB"
PENDING_ID = "0000000000"
PENDING_SLUG = "resnet50-raw-naive-train-g1-b64-fp32-224px"
NO_NVML = "NVML unavailable: pynvml.NVMLError_LibraryNotFound (no NVIDIA driver on this host)"


@dataclass(frozen=True)
class GoldenCell:
    """One planned cell; `step_s` holds each repeat's step time (None: the repeat failed)."""

    model: str
    mode: str
    data_format: str | None
    gpus: int
    step_s: tuple[float | None, ...]
    pipeline: str | None = "tuned"
    status: str = "ok"
    utilization: tuple[float, ...] | None = None  # the in-window pattern; None: no NVML


# Measured steps wobble around the cell's step time (a slow wave, as a shared machine's load
# does); the pattern sums to zero over the 20 steps, so every run's rate is still exactly
# batch / step time, and the intervals (reports.stats) have a known, non-zero width.
STEP_JITTER = tuple(0.04 * math.sin(2 * math.pi * i / 10) for i in range(20))

RAW_UTIL = (60.0, 85.0, 40.0, 90.0, 70.0)
TFR_UTIL = (92.0, 95.0, 88.0, 97.0, 93.0)
SYN_UTIL = (99.0, 98.0, 100.0, 99.0)

GOLDEN_CELLS: tuple[GoldenCell, ...] = (
    GoldenCell("densenet121", "synthetic", None, 1, (0.32,), None, utilization=SYN_UTIL),
    GoldenCell("densenet121", "synthetic", None, 2, (0.34,), None, utilization=SYN_UTIL),
    GoldenCell("resnet50", "synthetic", None, 1, (0.25,), None, utilization=SYN_UTIL),
    GoldenCell("resnet50", "synthetic", None, 2, (0.26,), None, utilization=SYN_UTIL),
    GoldenCell("densenet121", "pipeline", "raw", 1, (0.35,)),
    GoldenCell("densenet121", "pipeline", "raw", 2, (0.37,)),
    GoldenCell("densenet121", "pipeline", "tfrecord", 1, (0.10,)),
    GoldenCell("densenet121", "pipeline", "tfrecord", 2, (0.11,)),
    GoldenCell("densenet121", "train", "raw", 1, (0.40, 0.42, 0.38), utilization=RAW_UTIL),
    GoldenCell("densenet121", "train", "raw", 2, (0.45,), utilization=RAW_UTIL),
    GoldenCell("densenet121", "train", "tfrecord", 1, (0.355, 0.345), utilization=TFR_UTIL),
    GoldenCell("densenet121", "train", "tfrecord", 2, (0.39,), utilization=TFR_UTIL),
    GoldenCell("resnet50", "train", "raw", 1, (0.30,)),
    GoldenCell("resnet50", "train", "raw", 2, (0.33,), utilization=RAW_UTIL),
    GoldenCell("resnet50", "train", "tfrecord", 1, (0.28,)),
    # Slower than raw at 2 GPUs: the conversion never pays for itself here.
    GoldenCell("resnet50", "train", "tfrecord", 2, (0.34,), utilization=TFR_UTIL),
    GoldenCell("resnet50", "train", "tfrecord", 2, (None,), "naive", status="failed"),
    GoldenCell("densenet121", "train", "raw", 2, (None,), "naive", status="timeout"),
)


def write_golden(
    out: Path,
    *,
    name: str = SWEEP_NAME,
    host: str = "node-a",
    speed: float = 1.0,
    formats: tuple[str, ...] = ("raw", "tfrecord"),
    gpu_telemetry: bool = True,
) -> Path:
    """Write the golden sweep under `out/<name>`.

    `speed` multiplies every throughput (a second, faster cluster); `formats` keeps only the
    cells of those data formats (and synthetic ones); `gpu_telemetry=False` writes every run
    as one without NVML (a CPU-only machine).
    """
    root = out / name
    cells = []
    for index, spec in enumerate(GOLDEN_CELLS):
        if spec.data_format not in (None, *formats):
            continue
        if not gpu_telemetry:
            spec = dataclasses.replace(spec, utilization=None)
        cell = _cell(spec)
        cell_id = cell_hash(_settings(spec))
        folder = root / f"{cell_id}-{cell_slug(_settings(spec))}"
        repeats = []
        for repeat, step_s in enumerate(spec.step_s):
            started = STARTED + timedelta(minutes=2 * index, seconds=30 * repeat)
            result = _result(
                spec,
                cell,
                name=name,
                cell_id=cell_id,
                repeat=repeat,
                started=started,
                host=host,
                step_s=None if step_s is None else step_s / speed,
            )
            path = write_result(folder, result)
            repeats.append(_summary_repeat(repeat, result["status"], path.relative_to(root)))
        cells.append(_summary_cell(cell_id, folder.name, repeats))
    # Planned but never run (the sweep was interrupted before it): no result file.
    cells.append(
        _summary_cell(
            PENDING_ID, f"{PENDING_ID}-{PENDING_SLUG}", [_summary_repeat(0, "pending", None)]
        )
    )
    finished = STARTED + timedelta(minutes=2 * len(GOLDEN_CELLS))
    counts: dict[str, int] = {}
    for entry in cells:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    write_json_atomic(
        root / "summary.json",
        {
            "schema_version": 1,
            "name": name,
            "started_at": _stamp(STARTED),
            "finished_at": _stamp(finished),
            "interrupted": True,
            "repeat_order": "interleaved",
            "counts": counts,
            "cells": cells,
        },
    )
    write_json_atomic(root / "plan.json", {"name": name, "cells": [c["cell_id"] for c in cells]})
    if "tfrecord" in formats:
        write_json_atomic(root / "conversions" / f"{CONVERSION}.json", _conversion(name))
    (root / "sweep.yaml").write_text(
        f"name: {name}\nmodels: [densenet121, resnet50]\nformats: [raw, tfrecord]\n"
        "gpus: [1, 2]\nmodes: [synthetic, pipeline, train]\nbatch_per_gpu: 64\n",
        encoding="utf-8",
    )
    return root


def _summary_repeat(repeat: int, status: str, result: Path | None) -> dict[str, Any]:
    return {"repeat": repeat, "status": status, "result": result and result.as_posix(), "log": None}


def _summary_cell(cell_id: str, folder: str, repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """A summary.json entry as bench.sweep.execute writes it (the fields the report reads)."""
    found = {entry["status"] for entry in repeats}
    status = next((s for s in ("failed", "timeout", "pending") if s in found), "ok")
    slug = folder.split("-", 1)[1]
    return {"cell_id": cell_id, "slug": slug, "dir": folder, "status": status, "repeats": repeats}


def _settings(spec: GoldenCell) -> dict[str, Any]:
    """The cell's settings as the planner holds them (synthetic cells keep the defaults)."""
    tfrecord = spec.data_format == "tfrecord"
    return {
        "model": spec.model,
        "mode": spec.mode,
        "data_format": spec.data_format or "raw",
        "pipeline": spec.pipeline or "tuned",
        "gpus": spec.gpus,
        "nodes": 1,
        "batch_per_gpu": BATCH_PER_GPU,
        "precision": "fp32",
        "image_size": 224,
        "xla": False,
        "steps": 20,
        "warmup_steps": 5,
        "epochs": 1,
        "conversion": CONVERSION if tfrecord else None,
    }


def _cell(spec: GoldenCell) -> dict[str, Any]:
    """result["cell"] through the one definition every writer uses."""
    return cell_record(
        _settings(spec),
        gpus=spec.gpus,
        nodes=1,
        engine="horovod" if spec.gpus > 1 else "single",
        device="gpu",
        encoding=None if spec.data_format is None else "png",
    )


def _result(
    spec: GoldenCell,
    cell: dict[str, Any],
    *,
    name: str,
    cell_id: str,
    repeat: int,
    started: datetime,
    host: str,
    step_s: float | None,
) -> dict[str, Any]:
    run_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{cell_id}/{repeat}").hex
    known = {
        "run_id": run_id,
        "sweep": name,
        "cell_id": cell_id,
        "repeat": repeat,
        "started_at": _stamp(started),
        "environment": _environment(spec, host),
        "dataset": _dataset(spec, name),
    }
    if step_s is None:
        tail = (
            'Traceback (most recent call last):\n  File "bench/job/main.py", line 88\n'
            "tensorflow.python.framework.errors_impl.ResourceExhaustedError: OOM when "
            "allocating tensor with shape[64,1024,14,14]"
            if spec.status == "failed"
            else "step 3 of 20 ... no progress for 600 s"
        )
        return failure_result(
            status=spec.status,
            message=f"run {spec.status}",
            cell=cell,
            exit_code=1 if spec.status == "failed" else None,
            log_tail=tail,
            **known,
        ) | {"finished_at": _stamp(started + timedelta(seconds=20))}
    result = empty_result(cell=cell, **known)
    steps, warmup, global_batch = cell["steps"], cell["warmup_steps"], cell["global_batch"]
    result.update(
        status="ok",
        finished_at=_stamp(started + timedelta(seconds=20)),
        timing={
            "unit": "seconds",
            "startup_s": 3.0,
            "time_to_first_batch_s": 1.0,
            "warmup_step_s": [[step_s * 2] * warmup for _ in range(spec.gpus)],
            "step_s": [
                [step_s * (1 + STEP_JITTER[i % len(STEP_JITTER)]) for i in range(steps)]
                for _ in range(spec.gpus)
            ],
            "measured_s": [step_s * steps] * spec.gpus,
        },
        throughput={
            "images_per_sec": global_batch / step_s,
            "images_per_sec_per_gpu": BATCH_PER_GPU / step_s,
            "images_per_step": global_batch,
            "step_p50_s": step_s,
            "step_p90_s": step_s,
            "step_p99_s": step_s,
        },
        telemetry=_telemetry(spec, host),
    )
    return result


def _telemetry(spec: GoldenCell, host: str) -> dict[str, Any]:
    """Samples on the wall clock (epoch seconds), as bench.job.telemetry records them."""
    offsets = [round(i * SAMPLE_PERIOD_S, 3) for i in range(SAMPLES)]
    times = [EPOCH_S + offset for offset in offsets]
    window = [EPOCH_S + WINDOW_S[0], EPOCH_S + WINDOW_S[1]]
    inside = [WINDOW_S[0] <= offset <= WINDOW_S[1] for offset in offsets]
    hosts = [
        {
            "host": host,
            "period_s": SAMPLE_PERIOD_S,
            "cpu_count": 40,
            "t_s": times,
            # Busy in the window, idle outside it: the report must average the window only.
            "cpu_pct": [HOST_CPU_PCT[spec.data_format] if k else 2.0 for k in inside],
            "memory_used_bytes": [64 * 2**30] * len(times),
        }
    ]
    if spec.utilization is None:
        return {"gpu": None, "gpu_unavailable": NO_NVML, "host": hosts, "measured_window_s": window}
    devices = []
    for index in range(spec.gpus):
        utilization = [
            _utilization(offset, i, spec.utilization, index) for i, offset in enumerate(offsets)
        ]
        devices.append(
            {
                "host": host,
                "index": index,
                "name": GPU_NAME,
                "uuid": f"GPU-golden-{index}",
                "t_s": times,
                "utilization_pct": utilization,
                "memory_used_bytes": [(20 + index) * 2**30 if k else 2 * 2**30 for k in inside],
                "power_w": [100.0 + 2.0 * u for u in utilization],
                "sm_clock_mhz": [1530] * len(times),
                "gpm": None,
            }
        )
    return {
        "gpu": {"period_s": SAMPLE_PERIOD_S, "devices": devices},
        "gpu_unavailable": None,
        "host": hosts,
        "measured_window_s": window,
    }


def _utilization(offset: float, i: int, pattern: tuple[float, ...], device: int) -> float:
    """Low during start-up and warm-up, the cell's pattern (lower on later GPUs) inside the
    measured window."""
    if offset < WINDOW_S[0]:
        return 15.0
    if offset > WINDOW_S[1]:
        return 5.0
    return pattern[i % len(pattern)] - 4.0 * device


def _environment(spec: GoldenCell, host: str) -> dict[str, Any]:
    return {
        "hosts": [host],
        "gpu_names": [GPU_NAME] * spec.gpus,
        "driver": "535.104.05",
        "cuda": "12.2",
        "cudnn": "8.9",
        "tensorflow": "2.18.1",
        "keras": "2.18.0",
        "horovod": "0.28.1",
        "horovod_controller": "gloo",
        "python": "3.11.2",
        "platform": "Linux-5.15-x86_64",
        "cpu_count": 40,
    }


def _dataset(spec: GoldenCell, name: str) -> dict[str, Any] | None:
    if spec.data_format is None:
        return None
    records = f"/data/{name}/records/{CONVERSION}" if spec.data_format == "tfrecord" else None
    return {
        "source": spec.data_format,
        "path": "/data/chestxray14",
        "split": "train",
        "images": DATASET_IMAGES,
        "encoding": "png",
        "records_dir": records,
    }


def _conversion(name: str) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "name": CONVERSION,
        "records_dir": f"/data/{name}/records/{CONVERSION}",
        "encoding": "png",
        "resize": None,
        "compression": "none",
        "images": DATASET_IMAGES,
        "wall_seconds": CONVERSION_WALL_S,
        "images_per_sec": DATASET_IMAGES / CONVERSION_WALL_S,
        "bytes_in": 400_000_000,
        "bytes_out": 410_000_000,
        "reused": False,
        "created_at": _stamp(STARTED - timedelta(minutes=5)),
    }


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


if __name__ == "__main__":
    print(write_golden(Path(sys.argv[1])))
