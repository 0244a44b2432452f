"""Golden fit results for the time-to-accuracy tests, written with the REAL result writer.

`write_fit_golden(out)` writes `out/fit-golden/` as bench.sweep lays out a sweep: one folder
per fit cell, result-r<repeat>-<run_id>.json files, a summary.json. Each history is hand-made
(`FIT_CELLS`): per-epoch mean AUC and wall time, so tests can compute time to best and to
`TARGET_AUC` by hand. At the best epoch the per-class AUCs are those of per-example scores
stored as bench.job.fit stores them (`best_validation`), so the bootstrap has real inputs; the
best mean AUC is then what those scores give (see `best_mean_auc`).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bench.contract import validation_scores
from bench.contract.results import empty_result, write_json_atomic, write_result
from bench.job.fit import per_class_auc
from converters.labels import LABELS

SWEEP_NAME = "fit-golden"
STARTED = datetime(2026, 3, 3, 9, 0, 0, tzinfo=timezone.utc)
TARGET_AUC = 0.80
VALIDATION_EXAMPLES = 240
TRAIN_S, VAL_S = 8.0, 2.0
LABEL_SEED = 11


@dataclass(frozen=True)
class FitRepeat:
    """Mean AUC after each epoch but the best (None there: the scores decide it), the best
    epoch (0-based), how separated the best epoch's scores are, and the extra wall seconds
    each epoch took beyond TRAIN_S + VAL_S (checkpoint writes)."""

    aucs: tuple[float | None, ...]
    separation: float
    noise_seed: int


@dataclass(frozen=True)
class FitCell:
    data_format: str
    gpus: int
    repeats: tuple[FitRepeat, ...]
    model: str = "densenet121"


FIT_CELLS: tuple[FitCell, ...] = (
    # Reached the target before the last epoch: at the best epoch (3 of 4) in repeat 0, at
    # epoch 2 with exactly the target in repeat 1.
    FitCell(
        "raw",
        1,
        (
            FitRepeat((0.70, 0.78, None, 0.81), separation=2.0, noise_seed=2),
            FitRepeat((0.71, 0.80, None, 0.79), separation=2.0, noise_seed=1),
        ),
    ),
    # Reached the target at the last epoch, which is the best.
    FitCell("tfrecord", 1, (FitRepeat((0.72, 0.79, None), separation=2.0, noise_seed=4),)),
    # Never reached the target: weakly separated scores, best at the last epoch.
    FitCell("tfrecord", 2, (FitRepeat((0.55, 0.60, None), separation=0.5, noise_seed=3),)),
)


def validation_labels() -> np.ndarray:
    """The validation split's labels, the same for every cell (one split)."""
    rng = np.random.default_rng(LABEL_SEED)
    prevalence = np.linspace(0.1, 0.4, len(LABELS))
    return (rng.random((VALIDATION_EXAMPLES, len(LABELS))) < prevalence).astype(np.float32)


def best_scores(repeat: FitRepeat) -> np.ndarray:
    """Scores whose class separation is `repeat.separation` noise units."""
    rng = np.random.default_rng(repeat.noise_seed)
    noise = rng.normal(size=(VALIDATION_EXAMPLES, len(LABELS)))
    logits = repeat.separation * validation_labels() + noise
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def best_mean_auc(repeat: FitRepeat) -> float:
    return float(per_class_auc(validation_labels(), best_scores(repeat))["mean"])


def elapsed(epoch: int, gpus: int) -> float:
    """Wall seconds to the end of epoch `epoch` (0-based): 1 s of checkpoint per epoch,
    training time halved at 2 GPUs."""
    return (epoch + 1) * (TRAIN_S / gpus + VAL_S + 1.0)


def write_fit_golden(out: Path, *, name: str = SWEEP_NAME) -> Path:
    root = out / name
    entries = []
    for index, spec in enumerate(FIT_CELLS):
        cell = _cell(spec)
        cell_id = hashlib.sha256(repr(sorted(cell.items())).encode()).hexdigest()[:10]
        folder = root / f"{cell_id}-{spec.model}-fit-{spec.data_format}-g{spec.gpus}"
        repeats = []
        for number, repeat in enumerate(spec.repeats):
            started = STARTED + timedelta(minutes=10 * index + 5 * number)
            result = _result(spec, cell, repeat, name=name, cell_id=cell_id, number=number)
            result["started_at"] = _stamp(started)
            result["finished_at"] = _stamp(started + timedelta(minutes=4))
            path = write_result(folder, result)
            repeats.append(
                {
                    "repeat": number,
                    "status": "ok",
                    "result": path.relative_to(root).as_posix(),
                    "log": None,
                }
            )
        entries.append(
            {
                "cell_id": cell_id,
                "slug": folder.name.split("-", 1)[1],
                "dir": folder.name,
                "status": "ok",
                "repeats": repeats,
            }
        )
    write_json_atomic(
        root / "summary.json",
        {
            "schema_version": 1,
            "name": name,
            "started_at": _stamp(STARTED),
            "finished_at": _stamp(STARTED + timedelta(minutes=40)),
            "interrupted": False,
            "counts": {"ok": len(entries)},
            "cells": entries,
        },
    )
    (root / "sweep.yaml").write_text(
        f"name: {name}\nfit_target_auc: {TARGET_AUC}\naxes:\n  mode: [fit]\n", encoding="utf-8"
    )
    return root


def _cell(spec: FitCell) -> dict[str, Any]:
    return {
        "model": spec.model,
        "mode": "fit",
        "data_format": spec.data_format,
        "encoding": "png",
        "pipeline": "tuned",
        "engine": "horovod" if spec.gpus > 1 else "single",
        "gpus": spec.gpus,
        "nodes": 1,
        "device": "gpu",
        "batch_per_gpu": 16,
        "global_batch": 16 * spec.gpus,
        "precision": "fp32",
        "image_size": 64,
        "xla": False,
        "steps": 1,
        "warmup_steps": 1,
        "epochs": len(spec.repeats[0].aucs),
        "conversion": "png64" if spec.data_format == "tfrecord" else None,
    }


def _result(
    spec: FitCell, cell: dict[str, Any], repeat: FitRepeat, *, name: str, cell_id: str, number: int
) -> dict[str, Any]:
    labels = validation_labels()
    scores = best_scores(repeat)
    best_auc = per_class_auc(labels, scores)
    best_epoch = repeat.aucs.index(None)
    history = []
    for epoch, mean in enumerate(repeat.aucs):
        per_class = best_auc["per_class"] if mean is None else dict.fromkeys(LABELS, mean)
        history.append(
            {
                "epoch": epoch,
                "learning_rate": 1e-3,
                "train_loss": 0.5 - 0.05 * epoch,
                "train_s": TRAIN_S / spec.gpus,
                "val_examples": VALIDATION_EXAMPLES,
                "val_loss": 0.4,
                "val_auc_mean": best_auc["mean"] if mean is None else mean,
                "val_auc_per_class": per_class,
                "val_auc_undefined": [],
                "val_s": VAL_S,
                "elapsed_s": elapsed(epoch, spec.gpus),
            }
        )
    run_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{cell_id}/{number}").hex
    steps = [[0.1] * 4 for _ in range(spec.gpus)]
    result = empty_result(
        run_id=run_id,
        sweep=name,
        cell_id=cell_id,
        repeat=number,
        cell=cell,
        config={"mode": "fit", "epochs": len(history)},
        environment={"hosts": ["node-a"], "gpu_names": ["NVIDIA H100"] * spec.gpus},
        dataset={"source": spec.data_format, "split": "train", "images": 960},
    )
    result.update(
        status="ok",
        timing={
            "unit": "seconds",
            "startup_s": 3.0,
            "time_to_first_batch_s": 1.0,
            "warmup_step_s": [[0.5] for _ in range(spec.gpus)],
            "step_s": steps,
            "measured_s": [0.4] * spec.gpus,
        },
        throughput={
            "images_per_sec": 16 * spec.gpus / 0.1,
            "images_per_sec_per_gpu": 160.0,
            "images_per_step": 16 * spec.gpus,
            "step_p50_s": 0.1,
            "step_p90_s": 0.1,
            "step_p99_s": 0.1,
        },
        telemetry={"gpu": None, "gpu_unavailable": "golden", "host": None},
        details={
            "fit": {
                "epochs_planned": len(history),
                "epochs_run": len(history),
                "best_epoch": best_epoch,
                "best_val_auc_mean": best_auc["mean"],
                "best_val_auc_per_class": best_auc["per_class"],
                "checkpoint": f"/ckpt/{run_id}.weights.h5",
                "checkpoint_rank": 0,
                "validation_examples_per_rank": [
                    len(range(rank, VALIDATION_EXAMPLES, spec.gpus)) for rank in range(spec.gpus)
                ],
                "best_validation": validation_scores.encode(scores, labels, order="split"),
                "validation_dataset": {"split": "val", "images": VALIDATION_EXAMPLES},
                "history": history,
            }
        },
    )
    return result


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
