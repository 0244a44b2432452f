"""Fit mode on every rank: the poster's recipe (epochs, validation AUC, best checkpoint).

The loop itself is `bench.job.fit.run_fit`; this module wires it to the rank's data,
trainer and engine, and records the window of the measured training steps as observed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from bench.contract.config import RunConfig
from bench.job import timing
from bench.job.inputs import (
    check_enough,
    dataset_description,
    first_batch_iterator,
    make_source,
    rank_dataset,
)
from bench.job.modes import RankOutcome, crash_hook, lr_warmup_steps, make_rank_trainer


def run_fit_mode(config: RunConfig, engine: Any, device: str, *, run_id: str) -> RankOutcome:
    import numpy as np

    from bench.input.pipelines import skipped_count
    from bench.job import fit

    train_source = make_source(config, "train")
    val_source = make_source(config, "val")
    global_batch = config.batch_per_gpu * engine.size
    check_enough(train_source, global_batch)
    trainer = make_rank_trainer(config, engine)
    train_data = rank_dataset(config, engine, train_source, training=True)
    batches, first_batch_s = first_batch_iterator(train_data)

    def validation_batches(epoch: int) -> Iterator[tuple[Any, Any]]:
        return iter(rank_dataset(config, engine, val_source, training=False, epoch=epoch))

    checkpoint = fit.checkpoint_path(config.output_dir, config.repeat, run_id)

    def save_best(epoch: int) -> str | None:
        if engine.rank != fit.CHECKPOINT_RANK:  # one writer; every rank holds the same weights
            return None
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        trainer.model.save_weights(str(checkpoint))
        return str(checkpoint)

    plan = fit.FitPlan(
        epochs=config.epochs,
        steps_per_epoch=max(1, train_source.num_examples // global_batch),
        warmup_steps=config.warmup_steps,
        lr_warmup_steps=lr_warmup_steps(config, train_source.num_examples, global_batch),
        base_learning_rate=config.learning_rate,
        target_learning_rate=trainer.learning_rate,
        early_stop_patience=config.early_stop_patience,
    )
    crash = crash_hook(engine.rank)
    step_counter = iter(range(10**12))
    first_step_at: list[float] = []
    # Observed wall clock: the start of the first measured step, the end of the last one
    # (the report cuts telemetry with it), and the time between epochs inside that window
    # (validation, checkpoint), which throughput does not count as training.
    window: list[float] = []
    paused_s = [0.0]

    def step(images: Any, labels: Any) -> float:
        index = next(step_counter)
        crash(index)
        now = time.time()
        if not first_step_at:
            first_step_at.append(now)
        if index == plan.warmup_steps:
            window[:] = [now, now]
        elif window and index % plan.steps_per_epoch == 0:
            paused_s[0] += now - window[1]
        loss = trainer.step(images, labels)
        if window:
            window[1] = time.time()
        return loss

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
    if window:
        times.measured_start, times.measured_end = window
        times.paused_s = paused_s[0]
    details["fit"]["validation_dataset"] = dataset_description(
        config, val_source, local_ranks=engine.local_size
    )
    details["fit"]["skipped_train_examples"] = skipped_count(train_data)
    details["fit"]["wall_s"] = time.time() - started
    return RankOutcome(
        times=times,
        details=details,
        losses=None,
        trainer=trainer,
        dataset=dataset_description(config, train_source, local_ranks=engine.local_size),
    )
