"""Planning: `plan(sweep) -> list[Cell]`, pure. The same sweep gives the same cells and ids.

The axes' Cartesian product, less `exclude`, plus each `include` sub-grid; a cell's id is a
stable hash of the settings that differ from the defaults (`bench.contract.cell`).
"""

from __future__ import annotations

import itertools
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.contract.cell import cell_hash, cell_slug, jsonable
from bench.contract.config import ConfigError, RunConfig
from bench.sweep.schema import (
    CONFIG_KEYS,
    DEFAULTS,
    SYNTHETIC_IGNORES,
    InputServiceSpec,
    KeyPath,
    LauncherSpec,
    Sweep,
)


@dataclass(frozen=True)
class Cell:
    """One planned job: its measured settings, its RunConfig, how to launch it."""

    id: str
    slug: str
    settings: Mapping[str, Any]
    config: RunConfig
    gpus: int
    nodes: int
    conversion: str | None
    launcher: LauncherSpec
    worker: tuple[str, ...]
    timeout_s: float
    repeats: int
    # Where each setting came from in the sweep file (for error messages).
    origins: Mapping[str, KeyPath]
    # How the images are stored: the conversion's encoding, "png" for raw files, None for
    # synthetic mode (result["cell"]["encoding"]).
    encoding: str | None = None
    # Why RunConfig rejects these settings (reported by check()), or None.
    problem: str | None = None
    # Where input-service workers run (cells with input_workers > 0).
    input_service: InputServiceSpec = field(default_factory=InputServiceSpec)

    @property
    def folder(self) -> str:
        return f"{self.id}-{self.slug}"

    def describe(self) -> dict[str, Any]:
        """The JSON-able cell for plan.json and failure results."""
        return {
            "cell_id": self.id,
            "slug": self.slug,
            "folder": self.folder,
            **{key: jsonable(value) for key, value in self.settings.items()},
            "data_dir": jsonable(self.config.data_dir),
            "records_dir": jsonable(self.config.records_dir),
            "launcher": self.launcher.kind,
            "repeats": self.repeats,
            "timeout_s": self.timeout_s,
        }


def plan(sweep: Sweep, *, results_dir: Path = Path("results")) -> list[Cell]:
    """Every cell of the sweep, in grid order, duplicates (same id) dropped. Pure."""
    cells: dict[str, Cell] = {}
    combos = [c for c in _grid(sweep.axes, ("axes",)) if not _excluded(c, sweep.exclude)]
    for index, entry in enumerate(sweep.include):
        combos += _grid({**sweep.axes, **entry}, ("include", index), fixed=tuple(entry))
    for combo in combos:
        cell = _cell(sweep, combo, results_dir)
        cells.setdefault(cell.id, cell)
    return list(cells.values())


Combo = dict[str, tuple[Any, KeyPath]]


def _grid(
    axes: Mapping[str, tuple[Any, ...]], origin: KeyPath, fixed: tuple[str, ...] = ()
) -> list[Combo]:
    """The Cartesian product of the axes: each value with the path it came from."""
    keys = list(axes)
    combos = []
    for values in itertools.product(*(range(len(axes[key])) for key in keys)):
        combo: Combo = {}
        for key, index in zip(keys, values, strict=True):
            path = (*origin, key) if key in fixed else ("axes", key)
            combo[key] = (axes[key][index], (*path, index) if len(axes[key]) > 1 else path)
        combos.append(combo)
    return combos


def _excluded(combo: Combo, rules: Sequence[Mapping[str, tuple[Any, ...]]]) -> bool:
    return any(
        all(key in combo and combo[key][0] in values for key, values in rule.items())
        for rule in rules
    )


def _cell(sweep: Sweep, combo: Combo, results_dir: Path) -> Cell:
    origins: dict[str, KeyPath] = {key: ("base", key) for key in sweep.base}
    origins.update({key: path for key, (_, path) in combo.items()})
    settings = {**DEFAULTS, **sweep.base, **{key: value for key, (value, _) in combo.items()}}
    settings = normalise(settings)
    identity = {
        key: value
        for key, value in settings.items()
        if key != "data_dir" and value != DEFAULTS[key]
    }
    cell_id = cell_hash(identity)
    slug = cell_slug(settings)
    conversion = settings["conversion"]
    data_dir = sweep.data_dir()
    records_dir = sweep.records_dir(conversion) if conversion in sweep.conversions else None
    config_values = {key: settings[key] for key in CONFIG_KEYS}
    config_values["data_dir"] = data_dir
    problem = None
    try:
        config = RunConfig(
            **config_values,
            records_dir=records_dir,
            output_dir=results_dir / sweep.name / f"{cell_id}-{slug}",
            sweep=sweep.name,
            cell_id=cell_id,
            extra={"conversion": conversion} if conversion else {},
        )
    except (ConfigError, TypeError) as error:
        config, problem = RunConfig(), str(error)
    return Cell(
        id=cell_id,
        slug=slug,
        settings=types.MappingProxyType(settings),
        config=config,
        gpus=settings["gpus"],
        nodes=settings["nodes"],
        conversion=conversion,
        launcher=sweep.launcher,
        worker=sweep.worker,
        timeout_s=sweep.timeout_s,
        repeats=sweep.repeats,
        origins=types.MappingProxyType(origins),
        encoding=_encoding(sweep, settings),
        problem=problem,
        input_service=sweep.input_service,
    )


def _encoding(sweep: Sweep, settings: Mapping[str, Any]) -> str | None:
    if settings["mode"] == "synthetic":
        return None
    if settings["data_format"] == "raw":
        return "png"
    spec = sweep.conversions.get(settings["conversion"])
    return spec.encoding if spec is not None else None


def normalise(settings: dict[str, Any]) -> dict[str, Any]:
    """Reset the settings a cell's mode and format ignore, so that duplicates share an id."""
    result = dict(settings)
    if result["mode"] == "synthetic":
        for key in SYNTHETIC_IGNORES:
            result[key] = DEFAULTS[key]
    if result["data_format"] == "raw":
        result["conversion"] = None
    return result


def needs_records(cell: Cell) -> bool:
    """Whether the cell reads TFRecords (synthetic mode reads nothing)."""
    return cell.settings["mode"] != "synthetic" and cell.settings["data_format"] == "tfrecord"
