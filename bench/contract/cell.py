"""The one definition of a cell as the result file records it, and of its id and slug.

Three writers need the same `result["cell"]`: the job (`bench.job.record`, with what the
job observed: engine, device, nodes), the sweep (`bench.sweep.jobs`, for a repeat that
died before writing its own result) and the tests' golden writer. All call `cell_record`.
The planner's id (`cell_hash`) and folder slug (`cell_slug`) live here for the same reason.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PRECISION_TAGS = {"fp32": "fp32", "mixed_float16": "fp16", "mixed_bfloat16": "bf16"}
ENGINE_CHOICES = ("auto", "horovod", "single")


def cell_record(
    settings: Mapping[str, Any],
    *,
    gpus: int,
    nodes: int | None,
    engine: str,
    device: str | None,
    encoding: str | None,
    slug: str | None = None,
) -> dict[str, Any]:
    """`result["cell"]`: the settings that define what was measured.

    `settings` holds the RunConfig fields by name plus `conversion`; `nodes` and `device`
    are None when the job never reported them (it died before). `page_cache` ("warm" or
    "cold"; null in synthetic mode, which reads nothing) is there when `settings` has it.
    """
    synthetic = settings["mode"] == "synthetic"
    record = {
        "model": settings["model"],
        "mode": settings["mode"],
        "data_format": None if synthetic else settings["data_format"],
        "encoding": None if synthetic else encoding,
        "pipeline": None if synthetic else settings["pipeline"],
        "engine": engine,
        "gpus": gpus,
        "nodes": nodes,
        "device": device,
        "batch_per_gpu": settings["batch_per_gpu"],
        "global_batch": settings["batch_per_gpu"] * gpus,
        "precision": settings["precision"],
        "image_size": settings["image_size"],
        "xla": settings["xla"],
        "steps": settings["steps"],
        "warmup_steps": settings["warmup_steps"],
        "epochs": settings["epochs"] if settings["mode"] == "fit" else None,
        "conversion": settings.get("conversion"),
    }
    if "page_cache" in settings:  # absent from results written before the setting existed
        record["page_cache"] = None if synthetic else settings["page_cache"]
    if settings.get("input_workers") and not synthetic:  # only where a pool fed the cell
        record["input_workers"] = settings["input_workers"]
    if slug is not None:
        record["slug"] = slug
    return record


def engine_name(environ: Mapping[str, str], *, ranks: int, horovod_installed: bool) -> str:
    """The engine a job runs under: "horovod" wherever it is installed, else "single".

    CHEXBENCH_ENGINE=single|horovod forces one. Raises ValueError when the request cannot
    be met (the job turns it into an EngineError; the sweep only predicts).
    """
    choice = environ.get("CHEXBENCH_ENGINE", "auto")
    if choice not in ENGINE_CHOICES:
        raise ValueError(f"CHEXBENCH_ENGINE must be auto, horovod or single; got {choice!r}")
    if choice == "single":
        if ranks > 1:
            raise ValueError(f"CHEXBENCH_ENGINE=single but the launcher started {ranks} ranks")
        return "single"
    if horovod_installed:
        return "horovod"
    if choice == "horovod" or ranks > 1:
        raise ValueError(
            f"Horovod is not installed but the job has {ranks} rank(s) "
            f"(CHEXBENCH_ENGINE={choice}); build it with scripts/setup.sh"
        )
    return "single"


def cell_hash(identity: Mapping[str, Any]) -> str:
    """A short id stable across runs and Python versions: sha256 of canonical JSON."""
    canonical = json.dumps(
        {k: jsonable(v) for k, v in identity.items()},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:10]


def cell_slug(settings: Mapping[str, Any]) -> str:
    """densenet121-tfrecord-png64-tuned-train-g2-b8-fp32-64px[-svc2]: readable, not unique."""
    parts = [settings["model"]]
    if settings["mode"] == "synthetic":
        parts.append("synthetic")
    else:
        parts.append(settings["data_format"])
        if settings["data_format"] == "tfrecord" and settings["conversion"]:
            parts.append(settings["conversion"])
        parts += [settings["pipeline"], settings["mode"]]
        if settings.get("page_cache") == "cold":
            parts.append("cold")
    parts.append(f"g{settings['gpus']}")
    if settings["nodes"] > 1:
        parts.append(f"n{settings['nodes']}")
    parts += [
        f"b{settings['batch_per_gpu']}",
        PRECISION_TAGS.get(settings["precision"], str(settings["precision"])),
        f"{settings['image_size']}px",
    ]
    if settings["xla"]:
        parts.append("xla")
    if settings.get("input_workers") and settings["mode"] != "synthetic":
        parts.append(f"svc{settings['input_workers']}")  # input-service workers
    return re.sub(r"[^A-Za-z0-9_.-]", "_", "-".join(str(part) for part in parts))


def jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value
