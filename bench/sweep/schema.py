"""The sweep file's schema: its keys, their defaults and the loaded `Sweep`.

A sweep file (YAML) has these top-level keys (see docs/sweeps.md for the reference):

    name, description, base, axes, include, exclude, conversions, launcher, timeout_s,
    repeats, worker, fit_target_auc, input_service, demand

`base` holds settings for every cell: any RunConfig field, `gpus`, `nodes`, `conversion`,
and the data: `data_dir` (a ChestX-ray14 folder) or `synthetic: {images, size, seed}`.
`axes` maps the same keys to lists; the cells are their Cartesian product. `exclude`
entries (partial cells, a list value matching any of its items) remove matching cells of
the product; each `include` entry adds an extra sub-grid: its own values fixed, every axis
it does not name expanded as usual. Included cells are not subject to `exclude`.
`fit_target_auc` (a mean validation AUC in (0, 1]) is the quality target the report's time
to accuracy reads from the sweep.yaml a sweep leaves; it is no cell setting (a new target
reruns nothing) and does not stop training.

Stages that use it, in order: `bench.sweep.load` (YAML with line numbers, overrides,
`${VAR}`), `bench.sweep.validate` (every problem at once, each naming file, line and key),
`bench.sweep.plan` (pure: sweep -> cells), `bench.sweep.checks` (what the machine allows).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.contract.config import RunConfig

TOP_KEYS = (
    "name",
    "description",
    "base",
    "axes",
    "include",
    "exclude",
    "conversions",
    "launcher",
    "timeout_s",
    "repeats",
    "worker",
    "slurm",
    "fit_target_auc",
    "input_service",
    "demand",
)
# RunConfig fields the sweep sets itself, never the sweep file.
RUNNER_FIELDS = (
    "output_dir",
    "sweep",
    "cell_id",
    "repeat",
    "extra",
    "records_dir",
    "input_service",
    "input_service_dir",
)
CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name not in RUNNER_FIELDS)
CELL_KEYS = (*CONFIG_KEYS, "gpus", "nodes", "conversion")
DEFAULTS: dict[str, Any] = {
    **{f.name: f.default for f in dataclasses.fields(RunConfig) if f.name in CONFIG_KEYS},
    "gpus": 1,
    "nodes": 1,
    "conversion": None,
}
# Settings that cannot change what a synthetic-mode cell measures (no input pipeline).
SYNTHETIC_IGNORES = (
    "data_format",
    "pipeline",
    "conversion",
    "split",
    "val_fraction",
    "parallel_calls",
    "cycle_length",
    "shuffle_buffer",
    "prefetch",
    "cache",
    "private_threads",
    "decode_processes",
    "skip_bad",
    "page_cache",
    "drop_caches",
    "input_workers",
    "input_worker_cores",
)
MINIMUM = {
    "batch_per_gpu": 1,
    "image_size": 1,
    "steps": 1,
    "epochs": 1,
    "gpus": 1,
    "nodes": 1,
    "warmup_steps": 0,
    "lr_warmup_epochs": 0,
    "early_stop_patience": 1,
    "parallel_calls": 1,
    "cycle_length": 1,
    "shuffle_buffer": 1,
    "prefetch": 0,
    "private_threads": 1,
    "decode_processes": 0,
    "seed": 0,
    "input_workers": 0,
    "input_worker_cores": 1,
}
SYNTHETIC_KEYS = {"images": 240, "size": 64, "seed": 0, "layout": "archive"}
CONVERSION_KEYS = (
    "encoding",
    "quality",
    "resize",
    "compression",
    "shard_count",
    "target_shard_mb",
    "splits",
    "workers",
    "val_fraction",
    "seed",
)
LAUNCHER_KEYS = (
    "kind",
    "hosts",
    "slots_per_host",
    "hostfile",
    "controller",
    "extra_args",
    "env",
    "forward",
    "mca",
    "gpus_per_task",
    "mpi",
    "kill_grace_s",
)
SLURM_KEYS = ("time_limit", "partition", "account", "qos", "job_name", "directives")
INPUT_SERVICE_KEYS = ("hosts", "dispatcher_host", "base_port", "start_timeout_s", "remote_command")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
PRECISION_TAGS = {"fp32": "fp32", "mixed_float16": "fp16", "mixed_bfloat16": "bf16"}

KeyPath = tuple[str | int, ...]


class SweepError(ValueError):
    """Every problem found in a sweep file, each naming the file, line and key."""

    def __init__(self, problems: Sequence[str], *, partial: Sweep | None = None) -> None:
        self.problems = list(problems)
        # The valid part of a sweep file with schema problems: still planned and checked.
        self.partial = partial
        count = len(self.problems)
        super().__init__(
            f"{count} problem{'s' if count != 1 else ''} in the sweep:\n  "
            + "\n  ".join(self.problems)
        )


# ---------------------------------------------------------------- the launcher section

LAUNCHER_KINDS = ("local", "horovodrun", "mpirun", "srun")
LAUNCHER_CONTROLLERS = ("gloo", "mpi")
# What every rank needs to find Python, its libraries and the TF/Horovod/NCCL knobs.
DEFAULT_FORWARD = (
    "PATH",
    "PYTHONPATH",
    "LD_LIBRARY_PATH",
    "VIRTUAL_ENV",
    "TF_*",
    "HOROVOD_*",
    "NCCL_*",
    "CUDA_*",
    "OMP_*",
    "CHEXBENCH_*",
)
# OpenMPI defaults: TCP/shared-memory transports; openib is deprecated and noisy.
DEFAULT_MCA = (("pml", "ob1"), ("btl", "^openib"))


@dataclass(frozen=True, kw_only=True)
class LauncherSpec:
    """The `launcher:` section of a sweep file."""

    kind: str = "local"
    # (host, slots) pairs; horovodrun/mpirun use the first `nodes` of them.
    hosts: tuple[tuple[str, int], ...] = (("localhost", 1),)
    hostfile: Path | None = None
    controller: str = "gloo"
    extra_args: tuple[str, ...] = ()
    # Variables set for the job (and forwarded to every rank).
    env: tuple[tuple[str, str], ...] = ()
    # Names or globs of variables mpirun forwards with -x.
    forward: tuple[str, ...] = DEFAULT_FORWARD
    mca: tuple[tuple[str, str], ...] = DEFAULT_MCA
    gpus_per_task: int | None = 1
    # srun --mpi=...: how Horovod's ranks meet under srun (MPI through Slurm's PMIx plugin
    # with Debian's OpenMPI; docs/run.md, "Slurm"). None: srun's default.
    mpi: str | None = "pmix"
    # Seconds given to the job between SIGTERM and SIGKILL.
    kill_grace_s: float = 10.0


@dataclass(frozen=True, kw_only=True)
class BatchSpec:
    """The `slurm:` section of a sweep file: how `--submit` asks for the allocation."""

    time_limit_min: int | None = None  # None: the cells' time-outs plus a margin
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    job_name: str | None = None  # default chexbench-<sweep name>
    directives: tuple[str, ...] = ()  # more sbatch options, e.g. "--constraint=h100"


def default_worker() -> tuple[str, ...]:
    return (sys.executable, "-m", "bench.run")


def parse_host(text: str, default_slots: int = 1) -> tuple[str, int]:
    """`node1:4` → ("node1", 4); `node1` → ("node1", default_slots)."""
    host, sep, slots = text.strip().partition(":")
    if not host:
        raise ValueError(f"empty host name in {text!r}")
    if not sep:
        return host, default_slots
    if not slots.isdigit() or int(slots) < 1:
        raise ValueError(f"slots in {text!r} must be a positive integer")
    return host, int(slots)


@dataclass(frozen=True)
class SyntheticSpec:
    """A synthetic ChestX-ray14 folder made on first use (converters.synth.generate)."""

    images: int = 240
    size: int = 64
    seed: int = 0
    layout: str = "archive"

    def folder_name(self) -> str:
        return f"synthetic-{self.images}x{self.size}-seed{self.seed}-{self.layout}"


@dataclass(frozen=True)
class ConversionSpec:
    """One named TFRecord conversion (converters.options.ConversionOptions' settings)."""

    name: str
    encoding: str = "png"
    quality: int = 95
    resize: int | None = None
    compression: str = "none"
    shard_count: int | None = None
    target_shard_mb: float = 150.0
    splits: tuple[str, ...] = ("train", "val", "test")
    workers: int | None = None
    val_fraction: float = 0.1
    seed: int = 0

    def options(self) -> dict[str, Any]:
        """The settings that define the records (workers only changes the speed)."""
        values = dataclasses.asdict(self)
        values.pop("name")
        values.pop("workers")
        values["splits"] = list(self.splits)
        return values


@dataclass(frozen=True, kw_only=True)
class InputServiceSpec:
    """The `input_service:` section: where a cell's input-service workers run (cells
    with `input_workers` > 0; the sweep starts the pool before each job and stops it after).
    """

    hosts: tuple[str, ...] = ()  # empty: this host; else round robin over these
    dispatcher_host: str = "localhost"  # the name the workers reach this host by
    base_port: int | None = None  # fixed ports from here (needed with hosts)
    start_timeout_s: float = 120.0
    remote_command: tuple[str, ...] = ("ssh", "-o", "BatchMode=yes")


@dataclass(frozen=True)
class Sweep:
    """A loaded, schema-checked sweep file."""

    name: str
    source: str
    document: Mapping[str, Any]
    base: Mapping[str, Any]
    axes: Mapping[str, tuple[Any, ...]]
    include: tuple[Mapping[str, tuple[Any, ...]], ...]
    exclude: tuple[Mapping[str, tuple[Any, ...]], ...]
    synthetic: SyntheticSpec | None
    conversions: Mapping[str, ConversionSpec]
    launcher: LauncherSpec
    timeout_s: float
    repeats: int
    worker: tuple[str, ...]
    data_cache: Path
    locations: Mapping[KeyPath, str]
    slurm: BatchSpec = field(default_factory=BatchSpec)
    fit_target_auc: float | None = None  # the report's quality target, no cell setting
    input_service: InputServiceSpec = dataclasses.field(default_factory=InputServiceSpec)
    # Reference rates (images/s one GPU consumes) for the report's capacity section.
    demand: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def where(self, path: KeyPath) -> str:
        """`file:line: key.path` for messages; the closest located parent if unlocated."""
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.locations:
                return f"{self.locations[path[:cut]]}: {dotted(path)}"
        return f"{self.source}: {dotted(path)}"

    def data_dir(self) -> Path | None:
        if self.synthetic is not None:
            return self.data_cache / self.synthetic.folder_name()
        value = self.base.get("data_dir")
        return Path(value) if value is not None else None

    def records_dir(self, conversion: str) -> Path:
        """Where a conversion of this sweep's data lives: keyed by source and options."""
        spec = self.conversions[conversion]
        source = self.data_dir()
        key = json.dumps({"source": str(source), **spec.options()}, sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:10]
        stem = source.name if source is not None else "data"
        return self.data_cache / "records" / f"{stem}-{conversion}-{digest}"


def suggest(word: str, choices: Sequence[str]) -> str:
    """`; did you mean 'x'?` for the closest valid name, or nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def dotted(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"
