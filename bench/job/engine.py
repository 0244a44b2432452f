"""The distributed engine: Horovod, or one process where Horovod is absent.

Both implement `Engine`, so the run code has one path. Horovod is used whenever it is
installed (also at one rank: the same code measures 1 and N GPUs); `CHEXBENCH_ENGINE=single`
forces one process, `CHEXBENCH_ENGINE=horovod` makes a missing Horovod an error.

Collectives are only called with the same sequence on every rank; a rank that dies makes
the launcher (horovodrun / mpirun / srun) end the job, the engine never waits on its own.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any, Protocol

import tensorflow as tf

from bench.contract.cell import engine_name

# Environment variables by which launchers tell a process it is one of several.
LAUNCHER_SIZE_VARIABLES = (
    "HOROVOD_SIZE",
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "PMIX_SIZE",
    # Not SLURM_NTASKS: a batch script's own process has it too (the job's task count),
    # and a one-process cell started from there is one rank.
    "SLURM_STEP_NUM_TASKS",
)
LAUNCHER_RANK_VARIABLES = (
    "HOROVOD_RANK",
    "OMPI_COMM_WORLD_RANK",
    "PMI_RANK",
    "PMIX_RANK",
    "SLURM_PROCID",
)


class EngineError(RuntimeError):
    """The engine cannot start as asked (Horovod missing under a multi-rank launcher...)."""


class Engine(Protocol):
    name: str  # "horovod" | "single"
    rank: int
    size: int
    local_rank: int
    local_size: int
    controller: str | None  # "gloo" | "mpi" | None

    def allreduce_mean(self, value: float) -> float: ...

    def allgather_object(self, value: Any) -> list[Any]: ...

    def broadcast_object(self, value: Any, root_rank: int = 0) -> Any: ...

    def broadcast_variables(self, variables: Sequence[tf.Variable]) -> None: ...

    def gradient_tape(self, tape: tf.GradientTape) -> tf.GradientTape: ...

    def barrier(self) -> None: ...

    def shutdown(self) -> None: ...


class SingleProcess:
    """One process, no Horovod: every collective is the identity."""

    name = "single"
    rank = 0
    size = 1
    local_rank = 0
    local_size = 1
    controller: str | None = None

    def allreduce_mean(self, value: float) -> float:
        return float(value)

    def allgather_object(self, value: Any) -> list[Any]:
        return [value]

    def broadcast_object(self, value: Any, root_rank: int = 0) -> Any:
        return value

    def broadcast_variables(self, variables: Sequence[tf.Variable]) -> None:
        return None

    def gradient_tape(self, tape: tf.GradientTape) -> tf.GradientTape:
        return tape

    def barrier(self) -> None:
        return None

    def shutdown(self) -> None:
        return None


class HorovodEngine:
    """Horovod over Gloo or MPI (NCCL for GPU tensors where built)."""

    name = "horovod"

    def __init__(self) -> None:
        import horovod.tensorflow as hvd

        hvd.init()
        self._hvd = hvd
        self.rank = hvd.rank()
        self.size = hvd.size()
        self.local_rank = hvd.local_rank()
        self.local_size = hvd.local_size()
        self.controller = "gloo" if hvd.gloo_enabled() else "mpi" if hvd.mpi_enabled() else None
        launched = launched_ranks()
        if launched > 1 and self.size != launched:
            # E.g. srun without a PMI plugin MPI can use: every task would run alone.
            raise EngineError(
                f"the launcher started {launched} ranks but Horovod joined {self.size} "
                f"(controller {self.controller}); under srun Horovod needs MPI through "
                f"Slurm's pmix plugin (srun --mpi=pmix, see docs/run.md)"
            )

    def allreduce_mean(self, value: float) -> float:
        tensor = tf.constant(float(value), dtype=tf.float64)
        return float(self._hvd.allreduce(tensor, op=self._hvd.Average).numpy())

    def allgather_object(self, value: Any) -> list[Any]:
        return list(self._hvd.allgather_object(value))

    def broadcast_object(self, value: Any, root_rank: int = 0) -> Any:
        return self._hvd.broadcast_object(value, root_rank=root_rank)

    def broadcast_variables(self, variables: Sequence[tf.Variable]) -> None:
        self._hvd.broadcast_variables(list(variables), root_rank=0)

    def gradient_tape(self, tape: tf.GradientTape) -> tf.GradientTape:
        # At one rank Horovod's allreduce is an identity behind a tf.cond, but wrapping the
        # tape still costs ~25 s of tracing for DenseNet121 on a CPU: skip it there.
        if self.size == 1:
            return tape
        return self._hvd.DistributedGradientTape(tape)

    def barrier(self) -> None:
        self.allreduce_mean(0.0)

    def shutdown(self) -> None:
        self._hvd.shutdown()


def launched_ranks(environ: dict[str, str] | None = None) -> int:
    """How many ranks the launcher says this job has (1 when started bare)."""
    environ = dict(os.environ) if environ is None else environ
    for variable in LAUNCHER_SIZE_VARIABLES:
        if environ.get(variable, "").isdigit():
            return int(environ[variable])
    return 1


def launched_rank(environ: dict[str, str] | None = None) -> int:
    """This process's rank as the launcher set it (0 when started bare)."""
    environ = dict(os.environ) if environ is None else environ
    for variable in LAUNCHER_RANK_VARIABLES:
        if environ.get(variable, "").isdigit():
            return int(environ[variable])
    return 0


def horovod_available() -> bool:
    try:
        import horovod.tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def make_engine() -> Engine:
    """Horovod where installed (or required), one process otherwise: the choice is
    `bench.contract.cell.engine_name`, the one the sweep predicts for its records."""
    ranks = launched_ranks()
    try:
        name = engine_name(os.environ, ranks=ranks, horovod_installed=horovod_available())
    except ValueError as error:
        raise EngineError(str(error)) from error
    return HorovodEngine() if name == "horovod" else SingleProcess()


def pin_gpu(engine: Engine) -> str:
    """One GPU per local rank, memory growth on; returns the device kind: "gpu" or "cpu"."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "cpu"
    if len(gpus) == 1:
        chosen = gpus[0]  # the launcher already gave each rank its own GPU
    elif engine.local_rank < len(gpus):
        chosen = gpus[engine.local_rank]
    else:
        raise EngineError(
            f"local rank {engine.local_rank} on {socket.gethostname()} has no GPU: "
            f"{len(gpus)} visible for {engine.local_size} local ranks"
        )
    tf.config.experimental.set_memory_growth(chosen, True)
    tf.config.set_visible_devices(chosen, "GPU")
    return "gpu"
