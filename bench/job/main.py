"""One benchmark job: `python -m bench.run <RunConfig flags>` on every rank.

    python -m bench.run --model resnet50 --mode synthetic --batch-per-gpu 64 --steps 50
    horovodrun -np 4 -H localhost:4 python -m bench.run --mode train --data-format tfrecord \
        --records-dir /data/records --output-dir results/adhoc

Modes: synthetic (the model on random tensors resident on the device), pipeline (the input
pipeline alone, probed on every rank), train (both: the measurement), fit (epochs with
validation and AUC). Rank 0 writes exactly one result file (bench.contract.results) into
--output-dir. Exit codes: 0 ok, 1 the run failed (a result with status "failed" says why),
2 bad arguments or input (the reason on stderr).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.contract import results
from bench.contract.config import RunConfig
from bench.job.cache_state import residency_at_end, set_cache_state, storage_environment
from bench.job.failure_cause import plain_cause
from bench.job.fit_mode import run_fit_mode
from bench.job.inputs import DATA_MODES, InputError, check_inputs, reading_through
from bench.job.modes import RankOutcome, dump_weights, run_pipeline, run_synthetic, run_train
from bench.job.record import assemble, failure

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def execute(config: RunConfig, engine: Any, device: str, *, run_id: str) -> RankOutcome:
    if config.mode == "synthetic":
        return run_synthetic(config, engine, device)
    if config.mode == "pipeline":
        return run_pipeline(config, engine, device)
    if config.mode == "train":
        return run_train(config, engine, device)
    return run_fit_mode(config, engine, device, run_id=run_id)


def run_rank(
    config: RunConfig,
    engine: Any,
    device: str,
    *,
    run_id: str,
    started_at: str,
    on_service_death: Callable[[str], None] | None = None,
) -> dict[str, Any] | None:
    """Every rank runs this; rank 0 returns the result document, the others None.

    With input_workers, the job reads through an input-service pool: the sweep's, or one
    rank 0 starts here and stops after every rank is done (the gathers below wait)."""
    from bench.job.service import job_service

    log_dir = Path(config.output_dir) / f"service-r{config.repeat}-{run_id}"
    with job_service(
        workers=config.input_workers if config.mode in DATA_MODES else 0,
        target=config.input_service,
        log_dir=Path(config.input_service_dir or log_dir),
        run_id=run_id,
        engine=engine,
        cores_each=config.input_worker_cores,
        on_death=on_service_death,
    ) as service:
        with reading_through(service):
            result = _run_rank(config, engine, device, run_id=run_id, started_at=started_at)
        if result is not None and service is not None:
            window = (result.get("telemetry") or {}).get("measured_window_s")
            result["input_service"] = service.describe(tuple(window) if window else None)
        return result


def _run_rank(
    config: RunConfig, engine: Any, device: str, *, run_id: str, started_at: str
) -> dict[str, Any] | None:
    from bench.job import environment as environment_capture
    from bench.job.rank_gpus import telemetry_for_rank

    try:  # every node's data files warmed or evicted before anything reads them
        cache_record, cache_files = set_cache_state(config, engine)
    except (OSError, ValueError, KeyError) as error:
        raise InputError(f"page cache ({config.page_cache}): {error}") from error
    # Every rank samples its own GPU (by UUID), local rank 0 also the host.
    telemetry = telemetry_for_rank(
        rank=engine.rank,
        local_rank=engine.local_rank,
        device=device,
        period_s=config.telemetry_period_s,
    )
    with telemetry as sampling:
        outcome = execute(config, engine, device, run_id=run_id)
    if outcome.trainer is not None:
        dump_weights(outcome.trainer, engine.rank)
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
    result = assemble(config, engine, device, outcome, telemetry_nodes, environment, base)
    if result["dataset"] is not None and cache_record is not None:
        result["dataset"]["page_cache"] = residency_at_end(cache_record, cache_files)
    result["environment"]["storage"] = storage_environment(config)
    return result


def _write(config: RunConfig, result: dict[str, Any]) -> Path:
    path = results.write_result(Path(config.output_dir), result)
    print(f"bench.run: {result['status']}: {path}", file=sys.stderr)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    config = RunConfig.from_argv(list(sys.argv[1:] if argv is None else argv))  # exits 2
    run_id, started_at = results.new_run_id(), results.utc_now()
    from bench.job.engine import EngineError, launched_rank, launched_ranks, make_engine, pin_gpu

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

    def service_died(message: str) -> None:
        # A rank blocked on a dead worker never returns: fail the run from the watcher.
        print(f"bench.run: error: {message}", file=sys.stderr, flush=True)
        _write_failure(
            config, run_id, started_at, message, EXIT_FAILED, engine.size, engine.name, message
        )
        os._exit(EXIT_FAILED)

    try:
        result = run_rank(
            config,
            engine,
            device,
            run_id=run_id,
            started_at=started_at,
            on_service_death=service_died,
        )
    except InputError as error:
        print(f"bench.run: error: {error}", file=sys.stderr)
        if engine.rank == 0:
            _write_failure(
                config, run_id, started_at, str(error), EXIT_BAD_INPUT, engine.size, engine.name
            )
        return EXIT_BAD_INPUT
    except Exception as error:  # a run-time failure becomes a result, not a lost run
        tail = traceback.format_exc()
        print(tail, file=sys.stderr)  # the traceback stays in the log
        cause = plain_cause(error)
        if engine.rank == 0:
            _write_failure(
                config,
                run_id,
                started_at,
                cause or f"{type(error).__name__}: {error}",
                EXIT_FAILED,
                engine.size,
                engine.name,
                tail,
            )
        if cause is not None:  # the last line a user reads says what happened
            print(f"bench.run: {cause}", file=sys.stderr)
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
            failure(
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
