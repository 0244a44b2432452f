"""The page-cache state a cell asks for (`--page-cache warm|cold`), set before it reads.

On every node, local rank 0 lists the files the cell will read (bench.input.page_cache:
the raw images of its splits, or its shards) and warms them (reads each once) or evicts
them (`posix_fadvise(DONTNEED)` per file; the whole cache too with `--drop-caches` as
root); every rank waits for it (an allgather, which is also the barrier). The record goes
into the result's `dataset.page_cache`: what was done, residency before and after (= at
the start of the job), and at the end of the run. Synthetic mode reads nothing: no record.
"""

from __future__ import annotations

import socket
from typing import Any

from bench.input import page_cache

DATA_MODES = ("pipeline", "train", "fit")


def data_files(config: Any) -> list[str]:
    """The files this cell reads; [] for a mode that reads none."""
    if config.mode not in DATA_MODES:
        return []
    splits = ("train", "val") if config.mode == "fit" else (config.split,)
    return page_cache.cell_files(
        data_format=config.data_format,
        splits=splits,
        data_dir=config.data_dir,
        records_dir=config.records_dir,
        val_fraction=config.val_fraction,
        seed=config.seed,
    )


def set_cache_state(config: Any, engine: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """Collective: warm or evict on each node.

    Returns, on rank 0, its record (with every host's under `hosts` when there are
    several) and the files; on other ranks (None, []).
    """
    if config.mode not in DATA_MODES:
        return None, []
    record, files = None, []
    if engine.local_rank == 0:
        files = data_files(config)
        record = page_cache.prepare(files, config.page_cache, drop_all=config.drop_caches)
        record["host"] = socket.gethostname()
    hosts = [item for item in engine.allgather_object(record) if item is not None]
    if engine.rank != 0:
        return None, []
    mine = dict(hosts[0])
    if len(hosts) > 1:
        mine["hosts"] = hosts
    return mine, files


def residency_at_end(record: dict[str, Any] | None, files: list[str]) -> dict[str, Any] | None:
    """Rank 0: the record with `at_end` (residency of the files after the run) added."""
    if record is None:
        return None
    return {**record, "at_end": page_cache.residency(files).to_dict()}


def storage_environment(config: Any) -> dict[str, Any]:
    """File system type and mount source of the data and records folders."""
    return page_cache.storage_facts(
        {"data_dir": config.data_dir, "records_dir": config.records_dir}
    )
