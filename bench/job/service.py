"""The job's side of an input-service pool: find or start it, read through it, describe it.

    with job_service(workers=2, target=None, log_dir=..., engine=engine,
                     on_death=fail) as service:
        dataset = service.read(build_dataset(..., service_workers=2), rank=0, part="train")
        ...
        result["input_service"] = service.describe(window)

With `target` None (bench.run on its own), rank 0 starts a local pool (bench.service.pool)
and stops it on leaving, whatever happened; every rank learns the address from rank 0.
With a target (the sweep started the pool before the job), the job only reads through it
and derives the workers' CPU from the pool's log folder. No TensorFlow at import.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.service.config import ServiceConfig
from bench.service.pool import ServicePool
from bench.service.usage import describe_service


def job_name(run_id: str, *, rank: int, part: str = "train") -> str:
    """A job name of its own for one rank's dataset in one run (and part: train, val-3)."""
    return f"chexbench-{run_id}-{part}-rank{rank}"


def through_service(dataset: Any, *, service: str, job_name: str) -> Any:
    """`dataset` read through the service at `service` (grpc://host:port), static sharding.

    `dataset` must come from bench.input.pipelines.build_dataset with service_workers set to the
    pool's worker count, so that each worker takes its part.
    """
    import tensorflow as tf

    data_service = tf.data.experimental.service
    return dataset.apply(
        data_service.distribute(
            processing_mode=data_service.ShardingPolicy.HINT,
            service=service,
            job_name=job_name,
            compression=None,
        )
    )


@dataclass(frozen=True)
class JobService:
    """The pool one job reads through."""

    workers: int
    target: str
    log_dir: Path
    run_id: str
    owned: bool  # started by this job (rank 0), not by the sweep

    def read(self, dataset: Any, *, rank: int, part: str = "train") -> Any:
        """`dataset` (built with service_workers=self.workers) through the pool, as a job
        of its own for this run, rank and part."""
        return through_service(
            dataset, service=self.target, job_name=job_name(self.run_id, rank=rank, part=part)
        )

    def describe(self, window: tuple[float, float] | None) -> dict[str, Any]:
        section = describe_service(self.log_dir, window)
        section["started_by"] = "job" if self.owned else "sweep"
        return section


@contextlib.contextmanager
def job_service(
    *,
    workers: int,
    target: str | None,
    log_dir: Path,
    run_id: str,
    engine: Any,
    cores_each: int | None = None,
    on_death: Callable[[str], None] | None = None,
) -> Iterator[JobService | None]:
    """The job's pool: None with no workers; the sweep's at `target`; else one that rank 0
    starts here and stops on leaving (every rank enters, a collective)."""
    if workers < 1:
        yield None
        return
    pool = None
    if target is None and engine.rank == 0:
        pool = ServicePool(ServiceConfig(workers=workers, log_dir=log_dir, cores_each=cores_each))
    try:
        if pool is not None:
            pool.start()
            if on_death is not None:
                pool.watch(on_death)
        shared = (pool.target, str(log_dir)) if pool is not None else (target, str(log_dir))
        found_target, found_dir = engine.broadcast_object(shared)
        yield JobService(
            workers=workers,
            target=found_target,
            log_dir=Path(found_dir),
            run_id=run_id,
            owned=target is None,
        )
    finally:
        if pool is not None:
            pool.stop()
