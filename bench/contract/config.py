"""RunConfig: everything one benchmark job (`python -m bench.run`) needs, frozen.

The sweep turns a planned cell into `RunConfig(...).to_argv()`; the worker parses it back
with `RunConfig.from_argv(argv)`. Both directions are derived from the dataclass fields,
so a new setting is one field here and nothing else.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

MODELS = ("densenet121", "resnet50")
MODES = ("synthetic", "pipeline", "train", "fit")
DATA_FORMATS = ("raw", "tfrecord")
PIPELINES = ("naive", "tuned")
PRECISIONS = ("fp32", "mixed_float16", "mixed_bfloat16")
PAGE_CACHE_STATES = ("warm", "cold")

Model = Literal["densenet121", "resnet50"]
Mode = Literal["synthetic", "pipeline", "train", "fit"]
DataFormat = Literal["raw", "tfrecord"]
PipelineKind = Literal["naive", "tuned"]
Precision = Literal["fp32", "mixed_float16", "mixed_bfloat16"]
PageCache = Literal["warm", "cold"]


class ConfigError(ValueError):
    """A setting that cannot work; the message names the setting."""


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """One job: one model, one input, one mode, on every rank of one Horovod job."""

    model: Model = "densenet121"
    mode: Mode = "train"
    data_format: DataFormat = "raw"
    pipeline: PipelineKind = "tuned"
    # The ChestX-ray14 folder (raw files); needed by raw cells and by fit's labels.
    data_dir: Path | None = None
    # A conversion written by converters.tfrecord (holds manifest.json).
    records_dir: Path | None = None
    split: str = "train"
    val_fraction: float = 0.1
    batch_per_gpu: int = 64
    image_size: int = 224
    precision: Precision = "fp32"
    xla: bool = False
    steps: int = 50
    warmup_steps: int = 10
    epochs: int = 1
    early_stop_patience: int | None = None
    learning_rate: float = 1e-3
    scale_lr: bool = False
    lr_warmup_epochs: int = 0
    # None: random init; "imagenet" where Keras' cache holds it; or a weights file.
    weights: str | None = None
    seed: int = 0
    # tf.data knobs (None = AUTOTUNE / the pipeline's default).
    parallel_calls: int | None = None
    cycle_length: int | None = None
    shuffle_buffer: int = 1024
    prefetch: int | None = None
    cache: bool = False
    private_threads: int | None = None
    # Host decoder worker processes per rank (tuned pipeline): None = the pipeline's
    # choice (bench.input.pipelines.decode_processes), 0 = in the pipeline's own threads.
    decode_processes: int | None = None
    skip_bad: bool = False
    # The page cache before the job reads: warm (read every file once) or cold (evicted).
    page_cache: PageCache = "warm"
    drop_caches: bool = False
    # Input-service workers (tf.data service, bench.service.pool): 0 = the pipeline runs
    # in the training process. With N and no input_service, rank 0 starts a local
    # dispatcher and N workers (of input_worker_cores cores each, if set) and stops them.
    input_workers: int = 0
    input_worker_cores: int | None = None
    # Set by the sweep when it started the pool: the dispatcher (grpc://host:port) and the
    # pool's log folder (service.json, the workers' logs).
    input_service: str | None = None
    input_service_dir: Path | None = None
    telemetry_period_s: float = 0.5
    # Where the result JSON goes, and what it belongs to.
    output_dir: Path = Path("results/adhoc")
    sweep: str | None = None
    cell_id: str | None = None
    repeat: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_choice("model", self.model, MODELS)
        _check_choice("mode", self.mode, MODES)
        _check_choice("data_format", self.data_format, DATA_FORMATS)
        _check_choice("pipeline", self.pipeline, PIPELINES)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("page_cache", self.page_cache, PAGE_CACHE_STATES)
        for name in ("batch_per_gpu", "image_size", "steps", "epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be 0 or more, got {self.warmup_steps}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.telemetry_period_s <= 0:
            raise ConfigError(f"telemetry_period_s must be positive, got {self.telemetry_period_s}")
        if self.decode_processes is not None and self.decode_processes < 0:
            raise ConfigError(f"decode_processes must be 0 or more, got {self.decode_processes}")
        if self.input_workers < 0:
            raise ConfigError(f"input_workers must be 0 or more, got {self.input_workers}")
        if self.input_worker_cores is not None and self.input_worker_cores < 1:
            raise ConfigError(
                f"input_worker_cores must be at least 1, got {self.input_worker_cores}"
            )
        if (self.input_service is None) != (self.input_service_dir is None):
            raise ConfigError("input_service and input_service_dir go together")
        if self.input_service is not None and self.input_workers < 1:
            raise ConfigError("input_service needs input_workers of 1 or more")

    def to_argv(self) -> list[str]:
        """The `python -m bench.run` arguments that rebuild this config exactly."""
        argv: list[str] = []
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            flag = "--" + spec.name.replace("_", "-")
            if spec.name == "extra":
                for key, item in sorted(value.items()):
                    argv += ["--extra", f"{key}={item}"]
            elif isinstance(value, bool):
                argv.append(flag if value else "--no-" + spec.name.replace("_", "-"))
            elif value is not None:
                argv += [flag, str(value)]
        return argv

    @classmethod
    def from_argv(cls, argv: list[str]) -> RunConfig:
        """Parse `python -m bench.run` arguments; bad values exit 2 with the flag named."""
        namespace = parser().parse_args(argv)
        values = vars(namespace)
        try:
            values["extra"] = dict(_split_pair(item) for item in values.pop("extra") or [])
            return cls(**values)
        except ConfigError as error:
            parser().error(str(error))
            raise  # unreachable: error() exits

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)


def config_dict(config: RunConfig) -> dict[str, Any]:
    """The RunConfig as a JSON-able dict (paths as strings): a result's `config`."""
    return {
        key: str(value) if isinstance(value, Path) else value
        for key, value in dataclasses.asdict(config).items()
    }


# One line of `python -m bench.run --help` per field; a test checks every field has one.
HELP = {
    "model": "the CheXNet backbone",
    "mode": "synthetic: the model on device-resident random tensors; pipeline: the input "
    "alone; train: both (the measurement); fit: the training recipe with validation AUC",
    "data_format": "raw PNG files (data-dir) or TFRecords (records-dir)",
    "pipeline": "naive (map, batch) or tuned (parallel interleave and map, prefetch)",
    "data_dir": "the ChestX-ray14 folder: raw images, and the labels and splits for fit",
    "records_dir": "a conversion written by converters.tfrecord (holds manifest.json)",
    "split": "the split read by pipeline and train modes (train, val or test)",
    "val_fraction": "share of the training patients held out for validation (raw files)",
    "batch_per_gpu": "images per step on each rank; the global batch is this times ranks",
    "image_size": "the model's input size in pixels (square)",
    "precision": "fp32, or Keras mixed precision (float16 or bfloat16 compute)",
    "xla": "compile the training step with XLA",
    "steps": "measured steps (train, synthetic), or the pipeline's measured batches",
    "warmup_steps": "steps run before the clock starts (tracing, autotuning); excluded",
    "epochs": "fit mode: training epochs",
    "early_stop_patience": "fit mode: stop after this many epochs without a better val AUC",
    "learning_rate": "Adam's learning rate (CheXNet: 1e-3)",
    "scale_lr": "multiply the learning rate by the number of ranks (Goyal et al.)",
    "lr_warmup_epochs": "fit mode: ramp the learning rate up linearly over these epochs",
    "weights": "initial weights: none (random), imagenet (from Keras' cache) or a file",
    "seed": "random seed for weights, shuffling and synthetic tensors",
    "parallel_calls": "tf.data map parallelism (default AUTOTUNE)",
    "cycle_length": "tf.data interleave width over files or shards (default AUTOTUNE)",
    "shuffle_buffer": "shuffle buffer, in images",
    "prefetch": "batches prefetched (default AUTOTUNE)",
    "cache": "tf.data's in-memory cache of decoded images (not the page cache)",
    "page_cache": "before the job reads: warm (every data file read once) or cold (evicted)",
    "drop_caches": "with --page-cache cold: drop the whole page cache first (needs root)",
    "private_threads": "a private tf.data thread pool of this size",
    "decode_processes": "host decoder worker processes per rank (tuned pipeline); default: "
    "for resized records the node's cores shared by its ranks, for full-size images 0 "
    "(decode in the pipeline's own threads)",
    "skip_bad": "skip and count images that cannot be read or decoded, instead of failing",
    "input_workers": "tf.data service workers that run the pipeline (0: in this process); "
    "without --input-service, rank 0 starts a local dispatcher and this many workers",
    "input_worker_cores": "pin each local input-service worker to this many cores",
    "input_service": "the dispatcher of a pool started by the sweep (grpc://host:port)",
    "input_service_dir": "that pool's log folder (service.json and the workers' logs)",
    "telemetry_period_s": "seconds between GPU and host telemetry samples",
    "output_dir": "where the result JSON is written",
    "sweep": "the sweep this run belongs to (set by bench.sweep)",
    "cell_id": "the planned cell's id (set by bench.sweep)",
    "repeat": "the repeat index within the cell (set by bench.sweep)",
    "extra": "free-form labels stored with the result (KEY=VALUE, repeatable)",
}


def parser() -> argparse.ArgumentParser:
    """An argparse parser with one flag per RunConfig field."""
    result = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Run one CheXNet benchmark job (every rank of a Horovod job runs this).",
    )
    hints = typing.get_type_hints(RunConfig)
    for spec in dataclasses.fields(RunConfig):
        flag = "--" + spec.name.replace("_", "-")
        if spec.name == "extra":
            result.add_argument(
                flag,
                action="append",
                metavar="KEY=VALUE",
                help=HELP[spec.name],
            )
            continue
        hint = hints[spec.name]
        default = spec.default
        if hint is bool:
            result.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=HELP[spec.name]
            )
            continue
        kind, choices = _scalar(hint)
        result.add_argument(
            flag,
            type=kind,
            choices=choices,
            default=default,
            metavar=None if choices else spec.name.upper(),
            help=f"{HELP[spec.name]} (default: %(default)s)",
        )
    return result


def _scalar(hint: Any) -> tuple[Any, tuple[str, ...] | None]:
    """The argparse type and choices for a field's type hint."""
    args = [arg for arg in get_args(hint) if arg is not type(None)]
    if get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        hint = args[0]
    if get_origin(hint) is Literal:
        return str, tuple(get_args(hint))
    return hint, None


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _split_pair(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--extra takes KEY=VALUE, got {item!r}")
    return key, value
