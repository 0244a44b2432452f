"""Rank 0's result document: the cell, the timing, the throughput, the telemetry.

`assemble` builds it from what every rank sent; `failure` from what is known when a run
could not finish. Both record the cell through `bench.contract.cell.cell_record`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bench.contract import results
from bench.contract.cell import cell_record
from bench.contract.config import RunConfig, config_dict
from bench.job import timing

if TYPE_CHECKING:
    from bench.job.modes import RankOutcome


def cell_of(
    config: RunConfig,
    *,
    engine_name: str,
    ranks: int,
    nodes: int | None,
    device: str | None,
    encoding: str | None,
) -> dict[str, Any]:
    """result["cell"] from the job's side: what it ran and what it observed."""
    settings = {**config_dict(config), "conversion": config.extra.get("conversion")}
    return cell_record(
        settings, gpus=ranks, nodes=nodes, engine=engine_name, device=device, encoding=encoding
    )


def assemble(
    config: RunConfig,
    engine: Any,
    device: str,
    outcome: RankOutcome,
    telemetry_nodes: Sequence[Any],
    environment: dict[str, Any],
    base: dict[str, Any],
) -> dict[str, Any]:
    """Rank 0: the result document from what every rank sent."""
    from bench.job import telemetry

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


def failure(
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
