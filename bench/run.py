"""One benchmark job: `python -m bench.run <RunConfig flags>` on every rank.

    python -m bench.run --model resnet50 --mode synthetic --batch-per-gpu 64 --steps 50
    horovodrun -np 4 -H localhost:4 python -m bench.run --mode train --data-format tfrecord \
        --records-dir /data/records --output-dir results/adhoc

Modes: synthetic (the model on random tensors resident on the device), pipeline (the input
pipeline alone, probed on every rank), train (both: the measurement), fit (epochs with
validation and AUC). Rank 0 writes exactly one result file (bench.results) into
--output-dir. Exit codes: 0 ok, 1 the run failed (a result with status "failed" says why),
2 bad arguments or input (the reason on stderr).

Test-only hooks (environment): CHEXBENCH_TEST_WEIGHTS_DIR=D makes every rank write
D/weights-rank<R>.json (its trainable weights' checksum) after the run;
CHEXBENCH_TEST_CRASH=RANK:STEP makes that rank exit abruptly before that step.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bench  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from bench import results, timing
from bench.config import RunConfig

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
# Data-reading modes: the split to read and whether it needs a "val" split too.
DATA_MODES = ("pipeline", "train", "fit")


class InputError(ValueError):
    """Bad configuration or input data: exit 2, the message says what and where."""


@dataclass(frozen=True)
class Job:
    """What every rank knows at the start."""

    config: RunConfig
    rank: int
    size: int
    run_id: str
    started_at: str


# -- input checks (no TensorFlow needed) ---------------------------------------------------
def check_inputs(config: RunConfig, *, ranks: int) -> dict[str, Any] | None:
    """Reject what cannot work before anything heavy starts; returns the manifest summary."""
    if "global_batch" in config.extra:
        wanted = config.extra["global_batch"]
        if not wanted.isdigit() or int(wanted) % ranks:
            raise InputError(f"global batch {wanted} does not divide over {ranks} rank(s)")
        if int(wanted) // ranks != config.batch_per_gpu:
            raise InputError(
                f"global batch {wanted} over {ranks} rank(s) is "
                f"{int(wanted) // ranks} per GPU, but --batch-per-gpu is "
                f"{config.batch_per_gpu}"
            )
    if config.mode not in DATA_MODES:
        return None
    if config.data_format == "raw":
        _check_raw(config)
        return None
    return _check_records(config)


def _splits_needed(config: RunConfig) -> tuple[str, ...]:
    return ("train", "val") if config.mode == "fit" else (config.split,)


def _check_raw(config: RunConfig) -> None:
    if config.data_dir is None:
        raise InputError(f"--data-dir is required for --data-format raw in mode {config.mode}")
    if not Path(config.data_dir).is_dir():
        raise InputError(f"--data-dir {config.data_dir}: no such folder")


def _check_records(config: RunConfig) -> dict[str, Any]:
    from converters.features import ENCODINGS, FORMAT_VERSION
    from converters.manifest import ManifestError, load_manifest

    if config.records_dir is None:
        raise InputError(
            f"--records-dir is required for --data-format tfrecord in mode " f"{config.mode}"
        )
    if not Path(config.records_dir).is_dir():
        raise InputError(f"--records-dir {config.records_dir}: no such folder")
    try:
        manifest = load_manifest(Path(config.records_dir))
    except ManifestError as error:
        raise InputError(str(error)) from error
    where = f"{Path(config.records_dir) / 'manifest.json'}"
    if manifest.format_version != FORMAT_VERSION:
        raise InputError(
            f"{where}: format_version {manifest.format_version}, this harness "
            f"reads {FORMAT_VERSION}; convert again"
        )
    if manifest.encoding not in ENCODINGS:
        raise InputError(f"{where}: encoding {manifest.encoding!r} is not one of {ENCODINGS}")
    expected = config.extra.get("encoding")
    if expected is not None and expected != manifest.encoding:
        raise InputError(
            f"{where}: encoding {manifest.encoding!r}, but the cell expects " f"{expected!r}"
        )
    if manifest.image_size is not None and manifest.image_size < config.image_size:
        raise InputError(
            f"{where}: images stored at {manifest.image_size} px, smaller than "
            f"--image-size {config.image_size}: the pipeline would upscale them"
        )
    for split in _splits_needed(config):
        if split not in manifest.splits:
            raise InputError(f"{where}: no split {split!r} (has: {', '.join(manifest.splits)})")
        if manifest.record_count(split) == 0:
            raise InputError(f"{where}: split {split!r} has no records")
    return {"encoding": manifest.encoding, "image_size": manifest.image_size}


# -- the cell -------------------------------------------------------------------------------
def cell_of(
    config: RunConfig,
    *,
    engine_name: str,
    ranks: int,
    nodes: int,
    device: str,
    encoding: str | None,
) -> dict[str, Any]:
    synthetic = config.mode == "synthetic"
    return {
        "model": config.model,
        "mode": config.mode,
        "data_format": None if synthetic else config.data_format,
        "encoding": None if synthetic else encoding,
        "pipeline": None if synthetic else config.pipeline,
        "engine": engine_name,
        "gpus": ranks,
        "nodes": nodes,
        "device": device,
        "batch_per_gpu": config.batch_per_gpu,
        "global_batch": config.batch_per_gpu * ranks,
        "precision": config.precision,
        "image_size": config.image_size,
        "xla": config.xla,
        "steps": config.steps,
        "warmup_steps": config.warmup_steps,
        "epochs": config.epochs if config.mode == "fit" else None,
        "conversion": config.extra.get("conversion"),
    }


def config_dict(config: RunConfig) -> dict[str, Any]:
    return {
        key: str(value) if isinstance(value, Path) else value
        for key, value in dataclasses.asdict(config).items()
    }


# -- test hooks ----------------------------------------------------------------------------
def _crash_hook(rank: int) -> Callable[[int], None]:
    """CHEXBENCH_TEST_CRASH=RANK:STEP: that rank dies abruptly before that step (tests)."""
    spec = os.environ.get("CHEXBENCH_TEST_CRASH")
    if not spec:
        return lambda step: None
    crash_rank, _, crash_step = spec.partition(":")

    def maybe_crash(step: int) -> None:
        if rank == int(crash_rank) and step == int(crash_step or 0):
            print(
                f"bench.run: rank {rank} crashing before step {step} (test hook)",
                file=sys.stderr,
                flush=True,
            )
            os._exit(3)

    return maybe_crash


def _dump_weights(trainer: Any, rank: int) -> None:
    directory = os.environ.get("CHEXBENCH_TEST_WEIGHTS_DIR")
    if not directory:
        return
    import numpy as np

    variables = trainer.model.trainable_variables
    document = {
        "rank": rank,
        "checksum": float(sum(np.sum(v.numpy().astype(np.float64)) for v in variables)),
        "abs_checksum": float(sum(np.sum(np.abs(v.numpy().astype(np.float64))) for v in variables)),
        "first_kernel": variables[0].numpy().ravel()[:16].astype(float).tolist(),
        "last_bias": variables[-1].numpy().ravel().astype(float).tolist(),
    }
    Path(directory).mkdir(parents=True, exist_ok=True)
    (Path(directory) / f"weights-rank{rank}.json").write_text(json.dumps(document))


# -- modes ---------------------------------------------------------------------------------
@dataclass
class Outcome:
    """One rank's share of the result: gathered to rank 0 afterwards."""

    times: timing.StepTimes
    details: dict[str, Any] | None = None
    dataset: dict[str, Any] | None = None
    losses: list[float] | None = None
    trainer: Any = None
    images_per_sec_sum: float | None = None  # pipeline mode: ranks' own rates, summed


def _pipeline_options(config: RunConfig, *, training: bool) -> Any:
    from bench.pipelines import PipelineOptions

    return PipelineOptions(
        kind=config.pipeline,
        image_size=config.image_size,
        batch_size=config.batch_per_gpu,
        training=training,
        parallel_calls=config.parallel_calls,
        cycle_length=config.cycle_length,
        shuffle_buffer=config.shuffle_buffer,
        prefetch=config.prefetch,
        cache=config.cache,
        private_threads=config.private_threads,
        seed=config.seed,
        skip_bad=config.skip_bad,
    )


def _rank_dataset(
    config: RunConfig, engine: Any, source: Any, *, training: bool, epoch: int = 0
) -> Any:
    """This rank's share of `source` through the configured pipeline."""
    from bench.pipelines import build_dataset

    return build_dataset(
        source,
        _pipeline_options(config, training=training),
        worker_index=engine.rank,
        num_workers=engine.size,
        epoch=epoch,
    )


def make_source(config: RunConfig, split: str) -> Any:
    from bench.pipelines import raw_source, tfrecord_source

    try:
        if config.data_format == "raw":
            return raw_source(
                Path(config.data_dir), split, val_fraction=config.val_fraction, seed=config.seed
            )
        return tfrecord_source(Path(config.records_dir), split)
    except (ValueError, FileNotFoundError, KeyError) as error:
        raise InputError(str(error)) from error


def _check_enough(source: Any, global_batch: int) -> None:
    if source.num_examples < global_batch:
        raise InputError(
            f"split {source.split!r} holds {source.num_examples} images, fewer than one "
            f"global batch ({global_batch}); lower --batch-per-gpu or use more data"
        )


def _make_trainer(config: RunConfig, engine: Any) -> Any:
    import tensorflow as tf

    from bench.model import WeightsError, make_trainer, scaled_learning_rate

    tf.random.set_seed(config.seed)
    try:
        return make_trainer(
            model_name=config.model,
            image_size=config.image_size,
            precision=config.precision,
            xla=config.xla,
            learning_rate=scaled_learning_rate(config.learning_rate, engine.size, config.scale_lr),
            weights=config.weights,
            engine=engine,
        )
    except WeightsError as error:
        raise InputError(str(error)) from error


def _lr_warmup_steps(config: RunConfig, images: int, global_batch: int) -> int:
    if not config.scale_lr or config.lr_warmup_epochs <= 0:
        return 0
    return config.lr_warmup_epochs * max(1, images // global_batch)


def _timed_training(
    config: RunConfig,
    engine: Any,
    trainer: Any,
    batches: Iterator[tuple[Any, Any]],
    *,
    images_in_split: int,
) -> tuple[timing.StepTimes, list[float]]:
    from bench.model import learning_rate_at

    crash = _crash_hook(engine.rank)
    global_batch = config.batch_per_gpu * engine.size
    warmup_lr_steps = _lr_warmup_steps(config, images_in_split, global_batch)
    target = trainer.learning_rate
    losses: list[float] = []
    counter = iter(range(config.warmup_steps + config.steps))

    def step() -> None:
        index = next(counter)
        crash(index)
        if index <= warmup_lr_steps and warmup_lr_steps:
            trainer.set_learning_rate(
                learning_rate_at(
                    index, base=config.learning_rate, target=target, warmup_steps=warmup_lr_steps
                )
            )
        images, labels = next(batches)
        losses.append(trainer.step(images, labels))

    times = timing.time_steps(step, steps=config.steps, warmup_steps=config.warmup_steps)
    return times, losses


def run_synthetic(config: RunConfig, engine: Any, device: str) -> Outcome:
    import tensorflow as tf

    trainer = _make_trainer(config, engine)
    began = time.perf_counter()
    # Created once, resident on the device: what the model consumes, nothing to read.
    with tf.device("/GPU:0" if device == "gpu" else "/CPU:0"):
        generator = tf.random.Generator.from_seed(config.seed + 1000 * engine.rank)
        # What the pipelines deliver: uint8 gray; the model's first layer does the rest.
        shape = (config.batch_per_gpu, config.image_size, config.image_size, 1)
        images = generator.uniform(shape, maxval=256, dtype=tf.int32)
        images = tf.cast(images, tf.uint8)
        labels = tf.cast(generator.uniform((config.batch_per_gpu, 14)) < 0.2, tf.float32)
        images, labels = tf.identity(images), tf.identity(labels)
    created_s = time.perf_counter() - began

    def batches() -> Iterator[tuple[Any, Any]]:
        while True:
            yield images, labels

    times, losses = _timed_training(config, engine, trainer, batches(), images_in_split=0)
    times.time_to_first_batch_s = created_s
    return Outcome(
        times=times,
        losses=losses,
        trainer=trainer,
        details={
            "synthetic": {
                "inputs": "uniform random uint8 gray images and Bernoulli(0.2)"
                " labels, created once on the device"
            }
        },
    )


def _first_batch_iterator(dataset: Any) -> tuple[Iterator[tuple[Any, Any]], float]:
    """The dataset's iterator with its first batch already read, and how long that took."""
    began = time.perf_counter()
    iterator = iter(dataset)
    first = next(iterator)
    elapsed = time.perf_counter() - began

    def chained() -> Iterator[tuple[Any, Any]]:
        yield first
        yield from iterator

    return chained(), elapsed


def run_train(config: RunConfig, engine: Any, device: str) -> Outcome:
    from bench.pipelines import skipped_count

    source = make_source(config, config.split)
    _check_enough(source, config.batch_per_gpu * engine.size)
    trainer = _make_trainer(config, engine)
    dataset = _rank_dataset(config, engine, source, training=True)
    batches, first_batch_s = _first_batch_iterator(dataset)
    times, losses = _timed_training(
        config, engine, trainer, batches, images_in_split=source.num_examples
    )
    times.time_to_first_batch_s = first_batch_s
    return Outcome(
        times=times,
        losses=losses,
        trainer=trainer,
        dataset=dict(source.description),
        # None unless skip_bad: without it a bad example fails the run instead.
        details={"skipped_examples": skipped_count(dataset)},
    )


def run_pipeline(config: RunConfig, engine: Any, device: str) -> Outcome:
    from bench.probe import probe

    source = make_source(config, config.split)
    _check_enough(source, config.batch_per_gpu * engine.size)
    dataset = _rank_dataset(config, engine, source, training=True)
    _crash_hook(engine.rank)(0)
    started_at = time.time()
    began = time.perf_counter()
    measured = probe(
        dataset,
        batch_size=config.batch_per_gpu,
        batches=config.steps,
        warmup_batches=config.warmup_steps,
    ).to_dict()
    ended_at = started_at + (time.perf_counter() - began)
    warmup = [float(value) for value in measured["warmup_batch_s"]]
    steps = [float(value) for value in measured["batch_s"]]
    times = timing.StepTimes(
        warmup_step_s=warmup,
        step_s=steps,
        # The probe times batches back to back: its measured window follows its warm-up.
        measured_start=ended_at - sum(steps),
        measured_end=ended_at,
        first_step_at=started_at,
        time_to_first_batch_s=measured["time_to_first_batch_s"],
    )
    return Outcome(
        times=times,
        dataset=dict(source.description),
        details={"probe": measured},
        images_per_sec_sum=float(measured["images_per_sec"]),
    )


def run_fit_mode(config: RunConfig, engine: Any, device: str, *, run_id: str) -> Outcome:
    import numpy as np

    from bench import fit
    from bench.pipelines import skipped_count

    train_source = make_source(config, "train")
    val_source = make_source(config, "val")
    global_batch = config.batch_per_gpu * engine.size
    _check_enough(train_source, global_batch)
    trainer = _make_trainer(config, engine)
    train_data = _rank_dataset(config, engine, train_source, training=True)
    batches, first_batch_s = _first_batch_iterator(train_data)

    def validation_batches(epoch: int) -> Iterator[tuple[Any, Any]]:
        return iter(_rank_dataset(config, engine, val_source, training=False, epoch=epoch))

    checkpoint = fit.checkpoint_path(config.output_dir, config.repeat, run_id)

    def save_best(epoch: int) -> str | None:
        if engine.rank != 0:
            return None
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        trainer.model.save_weights(str(checkpoint))
        return str(checkpoint)

    plan = fit.FitPlan(
        epochs=config.epochs,
        steps_per_epoch=max(1, train_source.num_examples // global_batch),
        warmup_steps=config.warmup_steps,
        lr_warmup_steps=_lr_warmup_steps(config, train_source.num_examples, global_batch),
        base_learning_rate=config.learning_rate,
        target_learning_rate=trainer.learning_rate,
        early_stop_patience=config.early_stop_patience,
    )
    crash = _crash_hook(engine.rank)
    step_counter = iter(range(10**12))
    first_step_at: list[float] = []

    def step(images: Any, labels: Any) -> float:
        index = next(step_counter)
        crash(index)
        if not first_step_at:
            first_step_at.append(time.time())
        return trainer.step(images, labels)

    started = time.time()
    state, details = fit.run_fit(
        plan,
        train_batches=batches,
        validation_batches=validation_batches,
        step=step,
        predict=lambda images: np.asarray(trainer.predict_step(images)),
        set_learning_rate=trainer.set_learning_rate,
        gather=engine.allgather_object,
        save_best=save_best,
    )
    times = timing.StepTimes(
        warmup_step_s=state.warmup_step_s,
        step_s=state.step_s,
        first_step_at=first_step_at[0] if first_step_at else None,
        time_to_first_batch_s=first_batch_s,
    )
    # Training steps only (validation excluded): throughput counts the training work.
    times.measured_start = started
    times.measured_end = started + sum(state.step_s)
    details["fit"]["validation_dataset"] = dict(val_source.description)
    details["fit"]["skipped_train_examples"] = skipped_count(train_data)
    details["fit"]["wall_s"] = time.time() - started
    return Outcome(
        times=times,
        details=details,
        losses=None,
        trainer=trainer,
        dataset=dict(train_source.description),
    )


# -- the job -------------------------------------------------------------------------------
def execute(config: RunConfig, engine: Any, device: str, *, run_id: str) -> Outcome:
    if config.mode == "synthetic":
        return run_synthetic(config, engine, device)
    if config.mode == "pipeline":
        return run_pipeline(config, engine, device)
    if config.mode == "train":
        return run_train(config, engine, device)
    return run_fit_mode(config, engine, device, run_id=run_id)


def assemble(
    config: RunConfig,
    engine: Any,
    device: str,
    outcome: Outcome,
    telemetry_nodes: Sequence[Any],
    environment: dict[str, Any],
    base: dict[str, Any],
) -> dict[str, Any]:
    """Rank 0: the result document from what every rank sent."""
    from bench import telemetry

    per_rank = base["per_rank"]
    window = timing.measured_window(per_rank)
    throughput = timing.throughput_section(per_rank, batch_per_rank=config.batch_per_gpu)
    if config.mode == "pipeline" and throughput is not None:
        # The probe on each rank is independent: the job supplies the sum of their rates.
        throughput["images_per_sec"] = base["pipeline_rate_sum"]
        throughput["images_per_sec_per_gpu"] = base["pipeline_rate_sum"] / engine.size
        throughput["aggregation"] = "sum of the ranks' own probe rates"
    details = dict(outcome.details or {})
    if base["losses"] is not None:
        details["loss"] = {
            "per_rank": base["losses"],
            "final_mean": _final_mean_loss(base["losses"]),
        }
    encoding = (outcome.dataset or {}).get("encoding")
    return results.empty_result(
        sweep=config.sweep,
        cell_id=config.cell_id,
        repeat=config.repeat,
        run_id=base["run_id"],
        started_at=base["started_at"],
        finished_at=results.utc_now(),
        status="ok",
        error=None,
        cell=cell_of(
            config,
            engine_name=engine.name,
            ranks=engine.size,
            nodes=environment["nodes"],
            device=device,
            encoding=encoding,
        ),
        config=config_dict(config),
        environment=environment,
        dataset=outcome.dataset,
        timing=timing.timing_section(per_rank),
        throughput=throughput,
        telemetry=telemetry.combine(
            telemetry_nodes, period_s=config.telemetry_period_s, measured_window_s=window
        ),
        details=details or None,
    )


def _final_mean_loss(losses: Sequence[Sequence[float]]) -> float | None:
    finals = [rank[-1] for rank in losses if rank]
    return sum(finals) / len(finals) if finals else None


def run_job(
    config: RunConfig, engine: Any, device: str, *, run_id: str, started_at: str
) -> dict[str, Any] | None:
    """Every rank runs this; rank 0 returns the result document, the others None."""
    from bench import environment as environment_capture
    from bench.engine import local_gpu_indices
    from bench.telemetry import Telemetry

    with Telemetry(
        enabled=engine.local_rank == 0,
        period_s=config.telemetry_period_s,
        gpu_indices=local_gpu_indices(engine) if device == "gpu" else None,
    ) as sampling:
        outcome = execute(config, engine, device, run_id=run_id)
    if outcome.trainer is not None:
        _dump_weights(outcome.trainer, engine.rank)
    per_rank = engine.allgather_object(outcome.times.to_dict())
    losses = engine.allgather_object(outcome.losses)
    rate_sum = sum(engine.allgather_object(outcome.images_per_sec_sum or 0.0))
    if config.mode == "pipeline":  # every rank probed its own share: keep them all
        probes = engine.allgather_object((outcome.details or {}).get("probe"))
        outcome.details = {"probe": probes}
    telemetry_nodes = engine.allgather_object(sampling.node_samples())
    environment = environment_capture.capture(engine)
    if engine.rank != 0:
        return None
    base = {
        "per_rank": per_rank,
        "losses": losses if outcome.losses is not None else None,
        "run_id": run_id,
        "started_at": started_at,
        "pipeline_rate_sum": rate_sum,
    }
    return assemble(config, engine, device, outcome, telemetry_nodes, environment, base)


def _failure(
    config: RunConfig,
    *,
    run_id: str,
    started_at: str,
    message: str,
    exit_code: int,
    log_tail: str,
    engine_name: str | None,
    ranks: int,
) -> dict:
    cell = cell_of(
        config,
        engine_name=engine_name or "unknown",
        ranks=ranks,
        nodes=None,
        device=None,
        encoding=None,
    )
    return results.failure_result(
        status="failed",
        message=message,
        cell=cell,
        exit_code=exit_code,
        log_tail=log_tail,
        sweep=config.sweep,
        cell_id=config.cell_id,
        repeat=config.repeat,
        run_id=run_id,
        started_at=started_at,
        config=config_dict(config),
    )


def _write(config: RunConfig, result: dict[str, Any]) -> Path:
    path = results.write_result(Path(config.output_dir), result)
    print(f"bench.run: {result['status']}: {path}", file=sys.stderr)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    config = RunConfig.from_argv(list(sys.argv[1:] if argv is None else argv))  # exits 2
    run_id, started_at = results.new_run_id(), results.utc_now()
    from bench.engine import EngineError, launched_rank, launched_ranks, make_engine, pin_gpu

    ranks = launched_ranks()
    try:
        check_inputs(config, ranks=ranks)
        engine = make_engine()
        device = pin_gpu(engine)
    except (InputError, EngineError) as error:
        print(f"bench.run: error: {error}", file=sys.stderr)
        if launched_rank() == 0:
            _write_failure(config, run_id, started_at, str(error), EXIT_BAD_INPUT, ranks)
        return EXIT_BAD_INPUT
    # Every rank must agree on the run's identity: rank 0's.
    run_id, started_at = engine.broadcast_object((run_id, started_at))
    try:
        result = run_job(config, engine, device, run_id=run_id, started_at=started_at)
    except InputError as error:
        print(f"bench.run: error: {error}", file=sys.stderr)
        if engine.rank == 0:
            _write_failure(
                config, run_id, started_at, str(error), EXIT_BAD_INPUT, engine.size, engine.name
            )
        return EXIT_BAD_INPUT
    except Exception as error:  # a run-time failure becomes a result, not a lost run
        tail = traceback.format_exc()
        print(tail, file=sys.stderr)
        if engine.rank == 0:
            _write_failure(
                config,
                run_id,
                started_at,
                f"{type(error).__name__}: {error}",
                EXIT_FAILED,
                engine.size,
                engine.name,
                tail,
            )
        return EXIT_FAILED
    if result is not None:
        _write(config, result)
    return EXIT_OK


def _write_failure(
    config: RunConfig,
    run_id: str,
    started_at: str,
    message: str,
    exit_code: int,
    ranks: int,
    engine_name: str | None = None,
    log_tail: str = "",
) -> None:
    try:
        _write(
            config,
            _failure(
                config,
                run_id=run_id,
                started_at=started_at,
                message=message,
                exit_code=exit_code,
                log_tail=log_tail or message,
                engine_name=engine_name,
                ranks=ranks,
            ),
        )
    except OSError as error:
        print(f"bench.run: could not write the failure result: {error}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
