"""The storage probe's table: how fast the data folder gives raw files and shards, cold.

It reads `storage_probe.json` (written once per sweep by bench.measure.storage_probe):
bytes only, nothing decoded, so it bounds what the storage can supply, whatever the CPUs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reports.format import NA, Table, fmt_pct, fmt_ratio, is_missing
from reports.load import ResultsSet

KINDS = (("raw", "raw files"), ("tfrecord", "TFRecord shards"))


def storage_table(sets: Sequence[ResultsSet]) -> Table:
    title = "Storage probe: raw files against shards, cold and warm"
    intro = (
        "Once per sweep, on the sweep host: a sample of the raw image files (whole-file "
        "reads) and of the shards (8 MiB sequential reads), shuffled, read with the "
        "pipeline's parallelism, first with their pages evicted from the page cache "
        "(cold), then again (warm). Bytes only, nothing decoded: what the file system can "
        "supply. MB = 10^6 bytes. Where raw cold is far below shards cold, the file "
        "system, not the CPUs, decides raw files against TFRecords."
    )
    probed = [(results, results.storage_probe) for results in sets if results.storage_probe]
    if not probed:
        return Table(
            "storage",
            title,
            intro,
            missing="no storage_probe.json (the sweep ran with --no-storage-probe, or "
            "before the probe existed)",
        )
    several = len(sets) > 1
    rows = []
    notes = []
    for results, record in probed:
        for kind, name in KINDS:
            read = record.get(kind)
            if read is None:
                continue
            mount = (record.get("mounts") or {}).get("data_dir" if kind == "raw" else "records_dir")
            rows.append(
                (
                    *((results.label,) if several else ()),
                    name,
                    f"{read['files']:,}",
                    f"{read['bytes'] / 1e6:,.1f}",
                    str(read["parallelism"]),
                    _rate(read["cold"], "mb_per_sec"),
                    _rate(read["cold"], "files_per_sec"),
                    _rate(read["warm"], "mb_per_sec"),
                    _rate(read["warm"], "files_per_sec"),
                    fmt_pct(read["cold"].get("resident_at_start")),
                    _where(mount),
                )
            )
        ratio = record.get("raw_over_tfrecord_cold_mb_per_sec")
        if not is_missing(ratio):
            prefix = f"{results.label}: " if several else ""
            notes.append(f"{prefix}raw files / shards, cold MB/s: {fmt_ratio(ratio)}.")
    notes.append(
        "One pass each: no interval; rerun the sweep (or python -m "
        "bench.measure.storage_probe) to see the spread. Resident at start n/a: the "
        "kernel hides the cache state of files this user neither owns nor may write."
    )
    headers = (
        *(("Results",) if several else ()),
        "Read",
        "Files",
        "MB",
        "Parallel",
        "Cold MB/s",
        "Cold files/s",
        "Warm MB/s",
        "Warm files/s",
        "Resident at cold start",
        "File system",
    )
    numeric = (*((False,) if several else ()), False, *(True,) * 8, False)
    return Table("storage", title, intro, headers, tuple(rows), numeric, tuple(notes))


def _rate(figures: dict[str, Any], key: str) -> str:
    value = figures.get(key)
    return NA if is_missing(value) else f"{value:,.1f}"


def _where(mount: dict[str, Any] | None) -> str:
    if not mount:
        return NA
    return f"{mount['fs_type']} ({mount['source']} on {mount['mount_point']})"
