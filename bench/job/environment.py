"""What the job ran on: hosts, GPUs, driver, CUDA/cuDNN, TF, Keras, Horovod, Python, CPUs.

`local_facts()` is what one rank knows; `capture(engine)` gathers them (a collective: call it
on every rank) and merges them into the result's `environment`.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf

from bench.job.engine import Engine
from bench.job.telemetry import nvml_inventory

# Slurm variables a job records (result `environment.slurm`), by their key there.
JOB_VARIABLES = {
    "job_id": "SLURM_JOB_ID",
    "job_name": "SLURM_JOB_NAME",
    "cluster": "SLURM_CLUSTER_NAME",
    "partition": "SLURM_JOB_PARTITION",
    "job_nodelist": "SLURM_JOB_NODELIST",
    "job_num_nodes": "SLURM_JOB_NUM_NODES",
    "ntasks": "SLURM_NTASKS",
    "step_id": "SLURM_STEP_ID",
    "step_num_tasks": "SLURM_STEP_NUM_TASKS",
    "step_nodelist": "SLURM_STEP_NODELIST",
    "gpus_per_task": "SLURM_GPUS_PER_TASK",
}


def slurm_job(environ: Mapping[str, str]) -> dict[str, str | None] | None:
    """The Slurm job and step this process runs in, or None outside Slurm."""
    if "SLURM_JOB_ID" not in environ:
        return None
    return {key: environ.get(variable) for key, variable in JOB_VARIABLES.items()}


def _versions() -> dict[str, Any]:
    import tf_keras

    build = dict(tf.sysconfig.get_build_info())
    facts: dict[str, Any] = {
        "tensorflow": tf.__version__,
        "keras": tf_keras.__version__,
        "keras_in_use": tf.keras.Model.__module__.split(".")[0],  # must be tf_keras
        "cuda": build.get("cuda_version"),
        "cudnn": build.get("cudnn_version"),
        "tensorflow_built_with_cuda": bool(build.get("is_cuda_build")),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import horovod
        import horovod.tensorflow as hvd

        facts["horovod"] = horovod.__version__
        facts["horovod_built"] = {
            "gloo": bool(hvd.gloo_built()),
            "mpi": bool(hvd.mpi_built()),
            "nccl": bool(hvd.nccl_built()),
        }
    except ImportError:
        facts["horovod"] = None
        facts["horovod_built"] = None
    return facts


def _tf_gpu_names() -> list[str]:
    names = []
    for device in tf.config.get_visible_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        names.append(str(details.get("device_name", device.name)))
    return names


def local_facts(engine: Engine, *, with_nvml: bool) -> dict[str, Any]:
    """This rank's host, CPU count and GPU; NVML's view only where asked (one per node)."""
    return {
        "host": socket.gethostname(),
        "rank": engine.rank,
        "local_rank": engine.local_rank,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "tf_gpus": _tf_gpu_names(),
        "nvml": nvml_inventory() if with_nvml else None,
        "slurm": slurm_job(os.environ),
    }


def merge(per_rank: Sequence[dict[str, Any]], engine: Engine) -> dict[str, Any]:
    """The result's `environment` from every rank's `local_facts()` (rank order)."""
    hosts = list(dict.fromkeys(rank["host"] for rank in per_rank))
    inventories = [rank["nvml"] for rank in per_rank if rank["nvml"] is not None]
    working = [inv for inv in inventories if inv.get("available")]
    gpu_names = [name for rank in per_rank for name in rank["tf_gpus"]]
    environment: dict[str, Any] = {
        "hosts": hosts,
        "nodes": len(hosts),
        "ranks": len(per_rank),
        "ranks_per_host": {host: sum(r["host"] == host for r in per_rank) for host in hosts},
        "gpu_names": gpu_names or None,
        "driver": working[0]["driver"] if working else None,
        "cuda_driver": working[0]["cuda_driver"] if working else None,
        "nvml": inventories,
        "nvml_unavailable": None
        if working
        else "; ".join(sorted({inv.get("reason", "") for inv in inventories})) or None,
        "horovod_controller": engine.controller,
        "engine": engine.name,
        "cpu_count": per_rank[0]["cpu_count"],
        "cpu_count_per_host": {r["host"]: r["cpu_count"] for r in per_rank},
        "cpu_affinity_per_rank": [r["cpu_affinity"] for r in per_rank],
        "argv": sys.argv,
        # The Slurm job and step rank 0 ran in (None outside Slurm).
        "slurm": per_rank[0].get("slurm"),
    }
    environment.update(_versions())
    return environment


def capture(engine: Engine) -> dict[str, Any]:
    """Gather every rank's facts (a collective) and merge them; same answer on every rank."""
    facts = local_facts(engine, with_nvml=engine.local_rank == 0)
    return merge(engine.allgather_object(facts), engine)
