"""The measuring modes every rank runs: synthetic, train and pipeline (fit: `fit_mode`).

Each returns this rank's `RankOutcome`; `bench.job.main` gathers them to rank 0.
Test-only hooks (environment): CHEXBENCH_TEST_WEIGHTS_DIR=D makes every rank write
D/weights-rank<R>.json (its trainable weights' checksum) after the run;
CHEXBENCH_TEST_CRASH=RANK:STEP makes that rank exit abruptly before that step.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.contract.config import RunConfig
from bench.job import timing
from bench.job.inputs import (
    InputError,
    check_enough,
    dataset_description,
    first_batch_iterator,
    make_source,
    rank_dataset,
)


def crash_hook(rank: int) -> Callable[[int], None]:
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


def dump_weights(trainer: Any, rank: int) -> None:
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


@dataclass
class RankOutcome:
    """One rank's share of the result: gathered to rank 0 afterwards."""

    times: timing.StepTimes
    details: dict[str, Any] | None = None
    dataset: dict[str, Any] | None = None
    losses: list[float] | None = None
    trainer: Any = None
    images_per_sec_sum: float | None = None  # pipeline mode: ranks' own rates, summed


def make_rank_trainer(config: RunConfig, engine: Any) -> Any:
    import tensorflow as tf

    from bench.job.model import WeightsError, make_trainer, scaled_learning_rate

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


def lr_warmup_steps(config: RunConfig, images: int, global_batch: int) -> int:
    if not config.scale_lr or config.lr_warmup_epochs <= 0:
        return 0
    return config.lr_warmup_epochs * max(1, images // global_batch)


def timed_training(
    config: RunConfig,
    engine: Any,
    trainer: Any,
    batches: Iterator[tuple[Any, Any]],
    *,
    images_in_split: int,
) -> tuple[timing.StepTimes, list[float]]:
    from bench.job.model import learning_rate_at

    crash = crash_hook(engine.rank)
    global_batch = config.batch_per_gpu * engine.size
    warmup_lr_steps = lr_warmup_steps(config, images_in_split, global_batch)
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


def run_synthetic(config: RunConfig, engine: Any, device: str) -> RankOutcome:
    import tensorflow as tf

    trainer = make_rank_trainer(config, engine)
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

    times, losses = timed_training(config, engine, trainer, batches(), images_in_split=0)
    times.time_to_first_batch_s = created_s
    return RankOutcome(
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


def run_train(config: RunConfig, engine: Any, device: str) -> RankOutcome:
    from bench.input.pipelines import skipped_count

    source = make_source(config, config.split)
    check_enough(source, config.batch_per_gpu * engine.size)
    trainer = make_rank_trainer(config, engine)
    dataset = rank_dataset(config, engine, source, training=True)
    batches, first_batch_s = first_batch_iterator(dataset)
    times, losses = timed_training(
        config, engine, trainer, batches, images_in_split=source.num_examples
    )
    times.time_to_first_batch_s = first_batch_s
    return RankOutcome(
        times=times,
        losses=losses,
        trainer=trainer,
        dataset=dataset_description(config, source, local_ranks=engine.local_size),
        # None unless skip_bad: without it a bad example fails the run instead.
        details={"skipped_examples": skipped_count(dataset)},
    )


def run_pipeline(config: RunConfig, engine: Any, device: str) -> RankOutcome:
    from bench.measure.probe import probe

    source = make_source(config, config.split)
    check_enough(source, config.batch_per_gpu * engine.size)
    dataset = rank_dataset(config, engine, source, training=True)
    crash_hook(engine.rank)(0)
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
    return RankOutcome(
        times=times,
        dataset=dataset_description(config, source, local_ranks=engine.local_size),
        details={"probe": measured},
        images_per_sec_sum=float(measured["images_per_sec"]),
    )
