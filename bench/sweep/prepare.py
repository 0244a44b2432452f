"""Prepare the data cells read: the synthetic data set on first use, TFRecord conversions.

Both live in the data cache (`$CHEXBENCH_DATA`, default `<repo>/data`), not in a results
folder, so that several sweeps share them:

    <cache>/synthetic-<images>x<size>-seed<seed>-<layout>/     converters.synth.generate
    <cache>/records/<source>-<conversion>-<hash>/              converters.tfrecord.convert

The hash covers the source folder and every option that changes the records, so a changed
option converts into a new folder and never mixes with old shards. A conversion is reused
when its manifest exists and agrees with the sweep's options; each sweep records the cost in
`<sweep results>/conversions/<name>.json` (the report's "pays for itself after N epochs").
Preparing either is exclusive (a lock file beside the folder naming host and pid): a second
sweep waits, saying for whom, then reuses what the first one made.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from bench.contract.results import utc_now, write_json_atomic
from bench.sweep.plan import Cell, needs_records
from bench.sweep.schema import ConversionSpec, Sweep
from converters.lock import exclusive

CONVERSION_SCHEMA_VERSION = 1
DATA = "the data set"  # the failure key of base.synthetic's generation


class PrepareError(RuntimeError):
    """Data that could not be made or reused; the message names the folder and the reason."""


def ensure_synthetic(sweep: Sweep, *, progress: bool = True) -> Path:
    """The sweep's synthetic ChestX-ray14 folder, generated on first use (instant after)."""
    from converters.synth import generate

    spec = sweep.synthetic
    if spec is None:
        raise PrepareError(f"{sweep.source}: the sweep has no base.synthetic data set")
    folder = sweep.data_cache / spec.folder_name()
    try:
        # One preparer at a time (sweeps share the cache): a second waits, then finds the set
        # complete and reuses it. overwrite: only this generator writes into the cache folder;
        # a half-made set from an interrupted run is replaced.
        with exclusive(_lock_path(folder), what=f"the synthetic data set {folder}"):
            return generate(
                folder,
                images=spec.images,
                size=spec.size,
                seed=spec.seed,
                layout=spec.layout,
                progress=progress,
                overwrite=True,
            )
    except (OSError, ValueError) as error:
        raise PrepareError(f"{folder}: cannot generate the synthetic data set: {error}") from error


def ensure_conversion(
    sweep: Sweep, name: str, sweep_dir: Path, *, progress: bool = True
) -> dict[str, Any]:
    """Convert (or reuse) the named conversion and record its cost in the sweep's folder."""
    spec = sweep.conversions[name]
    out = sweep.records_dir(name)
    source = sweep.data_dir()
    if source is None:
        raise PrepareError(f"conversions.{name}: needs base.data_dir or base.synthetic")
    record_path = sweep_dir / "conversions" / f"{name}.json"
    # Exclusive across sweeps, so that "reused" is true for every sweep but the one that paid.
    with exclusive(_lock_path(out), what=f"conversion {name} in {out}"):
        manifest, reused = _reuse_or_convert(spec, source, out, progress=progress)
    record = conversion_record(name, manifest, reused=reused)
    previous = _read_record(record_path)
    # A resumed sweep keeps the record of the conversion it paid for itself.
    if previous is None or previous.get("records_dir") != record["records_dir"]:
        write_json_atomic(record_path, record)
        return record
    return previous


def _lock_path(folder: Path) -> Path:
    """Beside the folder, not in it: the converter holds its own lock inside OUT."""
    return folder.with_name(f".{folder.name}.lock")


def _reuse_or_convert(
    spec: ConversionSpec, source: Path, out: Path, *, progress: bool
) -> tuple[Any, bool]:
    from converters.manifest import ManifestError, load_manifest

    if (out / "manifest.json").is_file():
        try:
            manifest = load_manifest(out)
        except ManifestError as error:
            raise PrepareError(f"{out}: cannot reuse the conversion: {error}") from error
        differences = manifest_differences(manifest, spec)
        if differences:
            raise PrepareError(
                f"{out}: the conversion there differs from conversions."
                f"{spec.name} ({'; '.join(differences)}); delete the folder to "
                f"convert again"
            )
        return manifest, True
    return _convert(spec, source, out, progress=progress), False


def _convert(spec: ConversionSpec, source: Path, out: Path, *, progress: bool) -> Any:
    from converters.conversion import convert
    from converters.options import ConversionOptions

    options = ConversionOptions(
        source=source,
        out=out,
        splits=spec.splits,
        encoding=spec.encoding,
        quality=spec.quality,
        resize=spec.resize,
        compression=spec.compression,
        shard_count=spec.shard_count,
        target_shard_mb=spec.target_shard_mb,
        workers=spec.workers,
        seed=spec.seed,
        val_fraction=spec.val_fraction,
        resume=True,
        progress=progress,
    )
    started = time.monotonic()
    try:
        return convert(options)
    except Exception as error:  # the converter's own errors name the file; keep them whole
        elapsed = time.monotonic() - started
        raise PrepareError(
            f"conversions.{spec.name}: converting {source} into {out} failed "
            f"after {elapsed:.1f} s: {error}"
        ) from error


def manifest_differences(manifest: Any, spec: ConversionSpec) -> list[str]:
    """What an existing conversion does differently from the sweep's options."""
    differences = []
    if manifest.encoding != spec.encoding:
        differences.append(f"encoding {manifest.encoding}, wanted {spec.encoding}")
    if manifest.compression != spec.compression:
        differences.append(f"compression {manifest.compression}, wanted {spec.compression}")
    if manifest.image_size != spec.resize:
        differences.append(f"image size {manifest.image_size}, wanted resize {spec.resize}")
    missing = [split for split in spec.splits if split not in manifest.splits]
    if missing:
        differences.append(f"split(s) {', '.join(missing)} missing")
    return differences


def conversion_record(name: str, manifest: Any, *, reused: bool) -> dict[str, Any]:
    """conversions/<name>.json: what preparing the records cost (from the manifest)."""
    stats: Mapping[str, Any] = manifest.stats or {}
    return {
        "schema_version": CONVERSION_SCHEMA_VERSION,
        "name": name,
        "records_dir": str(manifest.directory),
        "encoding": manifest.encoding,
        "resize": manifest.image_size,
        "compression": manifest.compression,
        "images": stats.get("images"),
        "wall_seconds": stats.get("wall_seconds"),
        "images_per_sec": stats.get("images_per_sec"),
        "bytes_in": stats.get("bytes_in"),
        "bytes_out": stats.get("bytes_out"),
        "reused": reused,
        "created_at": utc_now(),
    }


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


# ---------------------------------------------------------------- the stage


def prepare_data(
    sweep: Sweep, cells: Sequence[Cell], sweep_dir: Path, *, progress: bool, err: TextIO
) -> dict[str, str]:
    """Make the data the pending cells read; what failed (DATA or a conversion) → why."""
    if sweep.synthetic is not None:
        print(f"data: synthetic set in {sweep.data_dir()}", file=err)
        try:
            ensure_synthetic(sweep, progress=progress)
        except PrepareError as error:
            print(f"error: {error}", file=err)
            return {DATA: str(error)}
    failures: dict[str, str] = {}
    for name in sorted({cell.conversion for cell in cells if needs_records(cell)}):
        started = time.monotonic()
        print(f"conversion {name}: {sweep.records_dir(name)}", file=err)
        existed = (sweep.records_dir(name) / "manifest.json").is_file()
        try:
            record = ensure_conversion(sweep, name, sweep_dir, progress=progress)
        except PrepareError as error:
            print(f"error: {error}", file=err)
            failures[name] = str(error)
            continue
        how = "reused" if existed else "converted"
        print(
            f"conversion {name}: {how} ({record['images']} images, "
            f"{time.monotonic() - started:.1f} s)",
            file=err,
        )
    return failures


def unprepared(cell: Cell, failures: Mapping[str, str]) -> str | None:
    """Why the data this cell reads could not be prepared, or None."""
    if cell.settings["mode"] == "synthetic":
        return None
    if DATA in failures:
        return failures[DATA]
    return failures.get(cell.conversion) if needs_records(cell) else None
