"""Validating a loaded sweep document: every problem at once, each with file, line and key.

`Reader(...).sweep(document, data_cache)` turns the document into a `Sweep`, appending a
message per problem; `check_value(key, value)` is the rule for one cell setting.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from bench.contract.config import RunConfig
from bench.sweep.schema import (
    CELL_KEYS,
    CONVERSION_KEYS,
    DEFAULTS,
    INPUT_SERVICE_KEYS,
    LAUNCHER_CONTROLLERS,
    LAUNCHER_KEYS,
    LAUNCHER_KINDS,
    MINIMUM,
    NAME_PATTERN,
    SLURM_KEYS,
    SYNTHETIC_KEYS,
    TOP_KEYS,
    BatchSpec,
    ConversionSpec,
    InputServiceSpec,
    KeyPath,
    LauncherSpec,
    Sweep,
    SyntheticSpec,
    default_worker,
    dotted,
    parse_host,
    suggest,
)
from bench.sweep.slurm import parse_time_limit
from converters.features import COMPRESSIONS, ENCODINGS


class Reader:
    """Turns the document into a Sweep, appending every problem it finds."""

    def __init__(self, source: str, locations: Mapping[KeyPath, str], problems: list[str]):
        self.source = source
        self.locations = locations
        self.problems = problems

    def problem(self, path: KeyPath, message: str) -> None:
        where = next(
            (
                self.locations[path[:cut]]
                for cut in range(len(path), -1, -1)
                if path[:cut] in self.locations
            ),
            self.source,
        )
        self.problems.append(f"{where}: {dotted(path)}: {message}")

    def unknown_keys(
        self, mapping: Mapping[str, Any], allowed: Sequence[str], path: KeyPath
    ) -> None:
        for key in mapping:
            if key not in allowed:
                self.problem((*path, key), f"unknown key{suggest(str(key), allowed)}")

    def sweep(self, document: dict[str, Any], data_cache: Path) -> Sweep:
        """The sweep as read; where problems were found (self.problems), a partial one made
        of the valid settings, for the checks that need a plan."""
        self.unknown_keys(document, TOP_KEYS, ())
        name = document.get("name")
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            self.problem(("name",), f"needs a name of letters, digits, '-', '_', '.'; got {name!r}")
        base = dict(self.mapping(document, "base"))
        synthetic = self.synthetic(base.pop("synthetic", None))
        if synthetic is not None and base.get("data_dir") is not None:
            self.problem(("base", "synthetic"), "give either data_dir or synthetic, not both")
        if base.get("data_dir") is not None and isinstance(base["data_dir"], str):
            base["data_dir"] = str(Path(base["data_dir"]).expanduser().absolute())
        # Only the valid settings: with problems, the sweep is still planned and checked
        # (capacity, conversions, data) so that one run reports every problem.
        base = {key: values[0] for key, values in self.cell_values(base, ("base",), False).items()}
        axes = {
            key: tuple(values)
            for key, values in self.cell_values(
                self.mapping(document, "axes"), ("axes",), True
            ).items()
        }
        include = tuple(self.rules(document, "include"))
        exclude = tuple(self.rules(document, "exclude"))
        conversions = self.conversions(self.mapping(document, "conversions"))
        launcher = self.launcher(self.mapping(document, "launcher"))
        timeout_s = self.number(document, "timeout_s", 3600.0, minimum=1)
        repeats = int(self.number(document, "repeats", 1, minimum=1, integer=True))
        worker = self.worker(document.get("worker"))
        batch = self.slurm(self.mapping(document, "slurm"))
        fit_target_auc = self.target(document.get("fit_target_auc"))
        input_service = self.input_service(self.mapping(document, "input_service"))
        demand = self.demand(self.mapping(document, "demand"))
        # With problems the sweep is still returned (as SweepError.partial), from its valid
        # settings, so that planning and checks can add theirs to the same report.
        return Sweep(
            name=name if isinstance(name, str) else "unnamed",
            source=self.source,
            document=document,
            base=base,
            axes=axes,
            include=include,
            exclude=exclude,
            synthetic=synthetic,
            conversions=conversions,
            launcher=launcher,
            timeout_s=timeout_s,
            repeats=repeats,
            worker=worker,
            data_cache=data_cache,
            locations=dict(self.locations),
            slurm=batch,
            fit_target_auc=fit_target_auc,
            input_service=input_service,
            demand=demand,
        )

    def mapping(self, document: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = document.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem((key,), f"must be a mapping, got {type(value).__name__}")
            return {}
        return value

    def cell_values(
        self, values: Mapping[str, Any], path: KeyPath, allow_lists: bool
    ) -> dict[str, list[Any]]:
        """Check each cell setting; with allow_lists a scalar reads as a one-item list."""
        self.unknown_keys(values, (*CELL_KEYS, *(() if allow_lists else ("synthetic",))), path)
        checked: dict[str, list[Any]] = {}
        for key, value in values.items():
            if key not in CELL_KEYS:
                continue
            items = value if allow_lists and isinstance(value, list) else [value]
            if allow_lists and isinstance(value, list) and not value:
                self.problem((*path, key), "an empty list gives no cells")
            valid = []
            for index, item in enumerate(items):
                where = (*path, key, index) if isinstance(value, list) else (*path, key)
                message = check_value(key, item)
                if message:
                    self.problem(where, message)
                else:
                    valid.append(item)
            if valid:  # a bad value is reported above and left out of what is planned
                checked[key] = valid
        return checked

    def rules(self, document: Mapping[str, Any], key: str) -> list[dict[str, tuple[Any, ...]]]:
        value = document.get(key) or []
        if not isinstance(value, list):
            self.problem((key,), "must be a list of partial cells")
            return []
        rules = []
        for index, entry in enumerate(value):
            if not isinstance(entry, dict) or not entry:
                self.problem((key, index), "must be a non-empty mapping of cell settings")
                continue
            checked = self.cell_values(entry, (key, index), allow_lists=True)
            rules.append({name: tuple(items) for name, items in checked.items()})
        return rules

    def synthetic(self, value: Any) -> SyntheticSpec | None:
        if value is None:
            return None
        path: KeyPath = ("base", "synthetic")
        if value is True:
            value = {}
        if not isinstance(value, dict):
            self.problem(path, "must be a mapping {images, size, seed}")
            return None
        self.unknown_keys(value, tuple(SYNTHETIC_KEYS), path)
        values = {**SYNTHETIC_KEYS, **{k: v for k, v in value.items() if k in SYNTHETIC_KEYS}}
        for key in ("images", "size", "seed"):
            message = _check_int(key, values[key], 0 if key == "seed" else 1)
            if message:
                self.problem((*path, key), message)
        if values["layout"] not in ("archive", "flat"):
            self.problem((*path, "layout"), _not_one_of(values["layout"], ("archive", "flat")))
        return SyntheticSpec(**values)

    def conversions(self, value: Mapping[str, Any]) -> dict[str, ConversionSpec]:
        specs = {}
        for name, settings in value.items():
            path: KeyPath = ("conversions", name)
            if not NAME_PATTERN.match(str(name)):
                self.problem(path, "a conversion name is letters, digits, '-', '_', '.'")
            settings = settings or {}
            if not isinstance(settings, dict):
                self.problem(path, "must be a mapping of conversion options")
                continue
            self.unknown_keys(settings, CONVERSION_KEYS, path)
            known = {k: v for k, v in settings.items() if k in CONVERSION_KEYS}
            for key, item in known.items():
                message = _check_conversion_value(key, item)
                if message:
                    self.problem((*path, key), message)
            if "splits" in known and isinstance(known["splits"], list):
                known["splits"] = tuple(known["splits"])
            specs[str(name)] = ConversionSpec(name=str(name), **known)
        return specs

    def launcher(self, value: Mapping[str, Any]) -> LauncherSpec:
        path: KeyPath = ("launcher",)
        self.unknown_keys(value, LAUNCHER_KEYS, path)
        kind = value.get("kind", "local")
        if kind not in LAUNCHER_KINDS:
            self.problem((*path, "kind"), _not_one_of(kind, LAUNCHER_KINDS))
        controller = value.get("controller", "gloo")
        if controller not in LAUNCHER_CONTROLLERS:
            self.problem((*path, "controller"), f"must be gloo or mpi; got {controller!r}")
        slots = value.get("slots_per_host", 1)
        if not _is_int(slots) or slots < 1:
            self.problem((*path, "slots_per_host"), f"must be a positive integer, got {slots!r}")
            slots = 1
        settings: dict[str, Any] = {"kind": kind, "controller": controller}
        settings["hosts"] = self.hosts(value.get("hosts"), slots)
        if value.get("hostfile") is not None:
            settings["hostfile"] = Path(str(value["hostfile"])).expanduser().absolute()
        for key in ("extra_args", "forward"):
            if key in value:
                settings[key] = tuple(self.strings(value[key], (*path, key)))
        for key in ("env", "mca"):
            if key in value:
                settings[key] = self.pairs(value[key], (*path, key))
        if "gpus_per_task" in value:
            gpus = value["gpus_per_task"]
            if gpus is not None and (not _is_int(gpus) or gpus < 1):
                self.problem((*path, "gpus_per_task"), "must be a positive integer or null")
            settings["gpus_per_task"] = gpus
        if "kill_grace_s" in value:
            settings["kill_grace_s"] = self.number(
                value, "kill_grace_s", 10.0, minimum=0, path=path
            )
        if "mpi" in value:
            mpi = value["mpi"]
            if mpi is not None and not (isinstance(mpi, str) and NAME_PATTERN.match(mpi)):
                self.problem((*path, "mpi"), f"must be an srun MPI plugin or null, got {mpi!r}")
            settings["mpi"] = mpi
        return LauncherSpec(**settings)

    def slurm(self, value: Mapping[str, Any]) -> BatchSpec:
        """The `slurm:` section (for --submit)."""
        path: KeyPath = ("slurm",)
        self.unknown_keys(value, SLURM_KEYS, path)
        settings: dict[str, Any] = {}
        if value.get("time_limit") is not None:
            try:
                settings["time_limit_min"] = parse_time_limit(value["time_limit"])
            except ValueError as error:
                self.problem((*path, "time_limit"), str(error))
        for key in ("partition", "account", "qos", "job_name"):
            if value.get(key) is not None:
                if not isinstance(value[key], str) or not value[key].strip():
                    self.problem((*path, key), f"must be a non-empty string, got {value[key]!r}")
                else:
                    settings[key] = value[key]
        if "directives" in value:
            directives = self.strings(value["directives"], (*path, "directives"))
            for index, directive in enumerate(directives):
                if not directive.startswith("-"):
                    self.problem(
                        (*path, "directives", index),
                        f"must be an sbatch option (--name=value), got {directive!r}",
                    )
            settings["directives"] = tuple(directives)
        return BatchSpec(**settings)

    def hosts(self, value: Any, slots: int) -> tuple[tuple[str, int], ...]:
        if value is None:
            return (("localhost", slots),)
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            self.problem(("launcher", "hosts"), "must be a list of host or host:slots")
            return (("localhost", slots),)
        hosts = []
        for index, item in enumerate(items):
            try:
                hosts.append(parse_host(str(item), slots))
            except ValueError as error:
                self.problem(("launcher", "hosts", index), str(error))
        return tuple(hosts)

    def strings(self, value: Any, path: KeyPath) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
            self.problem(path, "must be a list of strings")
            return []
        return [str(v) for v in value]

    def pairs(self, value: Any, path: KeyPath) -> tuple[tuple[str, str], ...]:
        if not isinstance(value, dict):
            self.problem(path, "must be a mapping NAME: value")
            return ()
        return tuple((str(k), "" if v is None else str(v)) for k, v in value.items())

    def number(
        self,
        document: Mapping[str, Any],
        key: str,
        default: float,
        *,
        minimum: float,
        integer: bool = False,
        path: KeyPath = (),
    ) -> float:
        value = document.get(key, default)
        valid = _is_int(value) if integer else _is_number(value)
        if not valid or value < minimum:
            kind = "an integer" if integer else "a number"
            self.problem((*path, key), f"must be {kind} of at least {minimum}, got {value!r}")
            return default
        return value

    def input_service(self, value: Mapping[str, Any]) -> InputServiceSpec:
        path: KeyPath = ("input_service",)
        self.unknown_keys(value, INPUT_SERVICE_KEYS, path)
        settings: dict[str, Any] = {}
        if value.get("hosts") is not None:
            hosts = value["hosts"]
            items = hosts.split(",") if isinstance(hosts, str) else hosts
            settings["hosts"] = tuple(self.strings(items, (*path, "hosts")))
        if value.get("dispatcher_host") is not None:
            settings["dispatcher_host"] = str(value["dispatcher_host"])
        if value.get("base_port") is not None:
            port = value["base_port"]
            if not _is_int(port) or not 1024 <= port <= 65000:
                self.problem((*path, "base_port"), f"must be a port in 1024..65000, got {port!r}")
            settings["base_port"] = port
        if settings.get("hosts") and "base_port" not in settings:
            self.problem((*path, "base_port"), "workers on other hosts need fixed ports")
        if "start_timeout_s" in value:
            settings["start_timeout_s"] = self.number(
                value, "start_timeout_s", 120.0, minimum=1, path=path
            )
        if "remote_command" in value:
            settings["remote_command"] = tuple(
                self.strings(value["remote_command"], (*path, "remote_command"))
            )
        return InputServiceSpec(**settings)

    def demand(self, value: Mapping[str, Any]) -> dict[str, float]:
        """{name: images/s one GPU consumes}: reference rates for the capacity report."""
        rates = {}
        for name, rate in value.items():
            if isinstance(rate, bool) or not _is_number(rate) or rate <= 0:
                self.problem(("demand", name), f"must be a positive images/s, got {rate!r}")
                continue
            rates[str(name)] = float(rate)
        return rates

    def target(self, value: Any) -> float | None:
        """`fit_target_auc`: a mean AUC in (0, 1], or absent."""
        if value is None:
            return None
        if not _is_number(value) or not 0 < value <= 1:
            self.problem(("fit_target_auc",), f"must be a mean AUC in (0, 1], got {value!r}")
            return None
        return float(value)

    def worker(self, value: Any) -> tuple[str, ...]:
        if value is None:
            return default_worker()
        if isinstance(value, str):
            value = [value]
        words = self.strings(value, ("worker",))
        if not words:
            self.problem(("worker",), "must be a non-empty list: the command every rank runs")
        return tuple(words)


def check_value(key: str, value: Any) -> str | None:
    """Why `value` cannot be the setting `key`, or None when it can."""
    if key == "gpus" or key == "nodes":
        return _check_int(key, value, MINIMUM[key])
    if key == "conversion":
        return None if value is None or isinstance(value, str) else "must be a conversion name"
    hint = CONFIG_HINTS[key]
    optional = type(None) in get_args(hint)
    if value is None:
        return None if optional else f"cannot be null (default {DEFAULTS[key]!r})"
    args = [arg for arg in get_args(hint) if arg is not type(None)]
    if get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        hint = args[0]
    if get_origin(hint) is Literal:
        choices = tuple(get_args(hint))
        return None if value in choices else _not_one_of(value, choices)
    if hint is bool:
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if hint is int:
        return _check_int(key, value, MINIMUM.get(key))
    if hint is float:
        if not _is_number(value):
            return f"must be a number, got {value!r}"
        return None
    if not isinstance(value, str) or not value:
        return f"must be a non-empty string, got {value!r}"
    return None


def _check_int(key: str, value: Any, minimum: int | None) -> str | None:
    if not _is_int(value):
        return f"must be an integer, got {value!r}"
    if minimum is not None and value < minimum:
        return f"must be at least {minimum}, got {value}"
    return None


def _check_conversion_value(key: str, value: Any) -> str | None:
    if key == "encoding" and value not in ENCODINGS:
        return _not_one_of(value, ENCODINGS)
    if key == "compression" and value not in COMPRESSIONS:
        return _not_one_of(value, COMPRESSIONS)
    if key in ("resize", "shard_count", "workers") and value is not None:
        return _check_int(key, value, 1)
    if key == "quality":
        return _check_int(key, value, 1)
    if key == "target_shard_mb" and (not _is_number(value) or value <= 0):
        return f"must be a positive number, got {value!r}"
    if key == "splits" and (
        not isinstance(value, list)
        or not value
        or any(s not in ("train", "val", "test") for s in value)
    ):
        return f"must be a list of train, val, test; got {value!r}"
    return None


CONFIG_HINTS = typing.get_type_hints(RunConfig)


def _not_one_of(value: Any, choices: Sequence[str]) -> str:
    return f"must be one of {', '.join(choices)}; got {value!r}{suggest(str(value), choices)}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
