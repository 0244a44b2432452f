"""What an input-service pool's workers spent: from their logs and the pool's service.json.

No TensorFlow and no process handles: the job (or anything else that can read the pool's
log folder) derives the workers' CPU over its measured window, so the pool may belong to
the sweep. Each worker logs `chexbench-service {"event": "cpu", "time": T, "cpu_s": C}`
lines (bench.service.server): cumulative CPU seconds at wall-clock time T.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.service.server import MARKER

MANIFEST = "service.json"
PROCESSING_MODE = "static sharding (ShardingPolicy.HINT), one job per rank"
Samples = list[tuple[float, float]]


def read_events(path: Path) -> tuple[dict[str, Any] | None, Samples, bool]:
    """(the ready event, CPU samples (time, cpu seconds), whether it logged stopping)."""
    ready, samples, stopped = None, [], False
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None, [], False
    for line in text.splitlines():
        if not line.startswith(MARKER):
            continue
        try:
            event = json.loads(line[len(MARKER) :])
        except json.JSONDecodeError:
            continue  # a line cut short by the server's death
        kind = event.get("event")
        if kind == "ready":
            ready = event
        elif kind in ("cpu", "stopped"):
            samples.append((float(event["time"]), float(event["cpu_s"])))
            stopped = stopped or kind == "stopped"
    return ready, samples, stopped


def cpu_seconds(
    samples: Sequence[tuple[float, float]], window: tuple[float, float]
) -> float | None:
    """CPU seconds spent within `window`, interpolated between cumulative samples
    (time, cpu seconds); None when the samples do not cover the window."""
    start, end = window
    if len(samples) < 2 or end < start:
        return None
    ordered = sorted(samples)
    if ordered[0][0] > start or ordered[-1][0] < end:
        return None
    return _at(ordered, end) - _at(ordered, start)


def _at(samples: Sequence[tuple[float, float]], moment: float) -> float:
    for (t0, c0), (t1, c1) in itertools.pairwise(samples):
        if t0 <= moment <= t1:
            return c0 if t1 == t0 else c0 + (c1 - c0) * (moment - t0) / (t1 - t0)
    raise ValueError(f"{moment} is outside the samples")  # callers check the range first


def load_manifest(log_dir: Path) -> dict[str, Any]:
    path = Path(log_dir) / MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable input-service manifest: {error}") from error


def describe_service(log_dir: Path, window: tuple[float, float] | None) -> dict[str, Any]:
    """The result's `input_service` section: the pool's shape, and each worker's CPU
    seconds and cores used over `window` (epoch seconds), None where not covered."""
    manifest = load_manifest(log_dir)
    period = float(manifest.get("sample_period_s") or 0.25)
    workers = []
    for worker in manifest["workers"]:
        samples = _samples_past(Path(worker["log"]), window[1] if window else None, period)
        cpu_s = cpu_seconds(samples, window) if window else None
        window_s = window[1] - window[0] if window else None
        workers.append(
            {
                **worker,
                "cpu_s": cpu_s,
                "cores_used": cpu_s / window_s if cpu_s is not None and window_s else None,
            }
        )
    cpu = [item["cpu_s"] for item in workers]
    return {
        "workers": len(workers),
        "where": manifest.get("where"),
        "cores_each": manifest.get("cores_each"),
        "dispatcher": (manifest.get("dispatcher") or {}).get("address"),
        "processing_mode": PROCESSING_MODE,
        "compression": None,
        "window": list(window) if window else None,
        "worker_cpu_s": None if any(v is None for v in cpu) else sum(cpu),
        "per_worker": workers,
    }


def _samples_past(path: Path, moment: float | None, period: float) -> Samples:
    """The log's samples, waiting a few sample periods for one past `moment` (a worker
    reports every period; one that stopped reports no more)."""
    deadline = time.monotonic() + 4 * period + 1.0
    while True:
        _, samples, stopped = read_events(path)
        late = moment is not None and (not samples or samples[-1][0] < moment)
        if not late or stopped or time.monotonic() > deadline:
            return samples
        time.sleep(period / 2)
