"""Sweep files: schema, validation with file/key/line, and `plan(sweep) -> list[Cell]`.

A sweep file (YAML) has these top-level keys (see docs/sweeps.md for the reference):

    name, description, base, axes, include, exclude, conversions, launcher, timeout_s,
    repeats, worker

`base` holds settings for every cell: any RunConfig field, `gpus`, `nodes`, `conversion`,
and the data: `data_dir` (a ChestX-ray14 folder) or `synthetic: {images, size, seed}`.
`axes` maps the same keys to lists; the cells are their Cartesian product. `exclude`
entries (partial cells, a list value matching any of its items) remove matching cells of
the product; each `include` entry adds an extra sub-grid: its own values fixed, every axis
it does not name expanded as usual. Included cells are not subject to `exclude`.

Loading and checking (`load_sweep`, `check`) report every problem at once, each naming the
file, line and key; `plan` is pure: the same sweep gives the same cells with the same ids.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import os
import re
import shutil
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from bench import launchers
from bench.config import ConfigError, RunConfig
from bench.launchers import LauncherSpec
from converters.features import COMPRESSIONS, ENCODINGS

TOP_KEYS = (
    "name",
    "description",
    "base",
    "axes",
    "include",
    "exclude",
    "conversions",
    "launcher",
    "timeout_s",
    "repeats",
    "worker",
)
# RunConfig fields the sweep sets itself, never the sweep file.
RUNNER_FIELDS = ("output_dir", "sweep", "cell_id", "repeat", "extra", "records_dir")
CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name not in RUNNER_FIELDS)
CELL_KEYS = (*CONFIG_KEYS, "gpus", "nodes", "conversion")
DEFAULTS: dict[str, Any] = {
    **{f.name: f.default for f in dataclasses.fields(RunConfig) if f.name in CONFIG_KEYS},
    "gpus": 1,
    "nodes": 1,
    "conversion": None,
}
# Settings that cannot change what a synthetic-mode cell measures (no input pipeline).
SYNTHETIC_IGNORES = (
    "data_format",
    "pipeline",
    "conversion",
    "split",
    "val_fraction",
    "parallel_calls",
    "cycle_length",
    "shuffle_buffer",
    "prefetch",
    "cache",
    "private_threads",
    "skip_bad",
)
MINIMUM = {
    "batch_per_gpu": 1,
    "image_size": 1,
    "steps": 1,
    "epochs": 1,
    "gpus": 1,
    "nodes": 1,
    "warmup_steps": 0,
    "lr_warmup_epochs": 0,
    "early_stop_patience": 1,
    "parallel_calls": 1,
    "cycle_length": 1,
    "shuffle_buffer": 1,
    "prefetch": 0,
    "private_threads": 1,
    "seed": 0,
}
SYNTHETIC_KEYS = {"images": 240, "size": 64, "seed": 0, "layout": "archive"}
CONVERSION_KEYS = (
    "encoding",
    "quality",
    "resize",
    "compression",
    "shard_count",
    "target_shard_mb",
    "splits",
    "workers",
    "val_fraction",
    "seed",
)
LAUNCHER_KEYS = (
    "kind",
    "hosts",
    "slots_per_host",
    "hostfile",
    "controller",
    "extra_args",
    "env",
    "forward",
    "mca",
    "gpus_per_task",
    "kill_grace_s",
)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
PRECISION_TAGS = {"fp32": "fp32", "mixed_float16": "fp16", "mixed_bfloat16": "bf16"}

KeyPath = tuple[str | int, ...]


class SweepError(ValueError):
    """Every problem found in a sweep file, each naming the file, line and key."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        super().__init__(
            f"{count} problem{'s' if count != 1 else ''} in the sweep:\n  "
            + "\n  ".join(self.problems)
        )


@dataclass(frozen=True)
class SyntheticSpec:
    """A synthetic ChestX-ray14 folder made on first use (converters.synth.generate)."""

    images: int = 240
    size: int = 64
    seed: int = 0
    layout: str = "archive"

    def folder_name(self) -> str:
        return f"synthetic-{self.images}x{self.size}-seed{self.seed}-{self.layout}"


@dataclass(frozen=True)
class ConversionSpec:
    """One named TFRecord conversion (converters.tfrecord.ConversionOptions' settings)."""

    name: str
    encoding: str = "png"
    quality: int = 95
    resize: int | None = None
    compression: str = "none"
    shard_count: int | None = None
    target_shard_mb: float = 150.0
    splits: tuple[str, ...] = ("train", "val", "test")
    workers: int | None = None
    val_fraction: float = 0.1
    seed: int = 0

    def options(self) -> dict[str, Any]:
        """The settings that define the records (workers only changes the speed)."""
        values = dataclasses.asdict(self)
        values.pop("name")
        values.pop("workers")
        values["splits"] = list(self.splits)
        return values


@dataclass(frozen=True)
class Sweep:
    """A loaded, schema-checked sweep file."""

    name: str
    source: str
    document: Mapping[str, Any]
    base: Mapping[str, Any]
    axes: Mapping[str, tuple[Any, ...]]
    include: tuple[Mapping[str, tuple[Any, ...]], ...]
    exclude: tuple[Mapping[str, tuple[Any, ...]], ...]
    synthetic: SyntheticSpec | None
    conversions: Mapping[str, ConversionSpec]
    launcher: LauncherSpec
    timeout_s: float
    repeats: int
    worker: tuple[str, ...]
    data_cache: Path
    locations: Mapping[KeyPath, str]

    def where(self, path: KeyPath) -> str:
        """`file:line: key.path` for messages; the closest located parent if unlocated."""
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.locations:
                return f"{self.locations[path[:cut]]}: {dotted(path)}"
        return f"{self.source}: {dotted(path)}"

    def data_dir(self) -> Path | None:
        if self.synthetic is not None:
            return self.data_cache / self.synthetic.folder_name()
        value = self.base.get("data_dir")
        return Path(value) if value is not None else None

    def records_dir(self, conversion: str) -> Path:
        """Where a conversion of this sweep's data lives: keyed by source and options."""
        spec = self.conversions[conversion]
        source = self.data_dir()
        key = json.dumps({"source": str(source), **spec.options()}, sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:10]
        stem = source.name if source is not None else "data"
        return self.data_cache / "records" / f"{stem}-{conversion}-{digest}"


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

    @property
    def folder(self) -> str:
        return f"{self.id}-{self.slug}"

    def describe(self) -> dict[str, Any]:
        """The JSON-able cell for plan.json and failure results."""
        return {
            "cell_id": self.id,
            "slug": self.slug,
            "folder": self.folder,
            **{key: _jsonable(value) for key, value in self.settings.items()},
            "data_dir": _jsonable(self.config.data_dir),
            "records_dir": _jsonable(self.config.records_dir),
            "launcher": self.launcher.kind,
            "repeats": self.repeats,
            "timeout_s": self.timeout_s,
        }


# ---------------------------------------------------------------- loading


def load_sweep(
    path: Path,
    *,
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    data_cache: Path | None = None,
) -> Sweep:
    """Read, override (`key.path=value`), expand `${VAR}` and schema-check a sweep file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SweepError([f"{path}: cannot read the sweep file ({error.strerror})"]) from error
    return parse_sweep(
        text, source=str(path), overrides=overrides, environ=environ, data_cache=data_cache
    )


def parse_sweep(
    text: str,
    *,
    source: str = "<sweep>",
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    data_cache: Path | None = None,
) -> Sweep:
    environ = os.environ if environ is None else environ
    document, locations = _compose(text, source)
    problems: list[str] = []
    for override in overrides:
        problems += _apply_override(document, locations, override)
    document = _expand(document, (), environ, locations, source, problems)
    reader = _Reader(source, locations, problems)
    sweep = reader.sweep(document, _data_cache(data_cache, environ))
    if problems:
        raise SweepError(problems)
    assert sweep is not None
    return sweep


def default_data_cache(environ: Mapping[str, str] | None = None) -> Path:
    """$CHEXBENCH_DATA, else the repository's data/ folder (ignored by git)."""
    environ = os.environ if environ is None else environ
    if environ.get("CHEXBENCH_DATA"):
        return Path(environ["CHEXBENCH_DATA"]).absolute()
    return Path(__file__).resolve().parent.parent / "data"


def _data_cache(data_cache: Path | None, environ: Mapping[str, str]) -> Path:
    return data_cache.absolute() if data_cache is not None else default_data_cache(environ)


def _compose(text: str, source: str) -> tuple[dict[str, Any], dict[KeyPath, str]]:
    """The document and the `file:line` of every key and list item in it."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        document = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise SweepError([f"{source}{line}: not valid YAML ({error.problem})"]) from error
    finally:
        loader.dispose()
    if not isinstance(document, dict):
        raise SweepError([f"{source}:1: a sweep file is a mapping with at least 'name'"])
    locations: dict[KeyPath, str] = {}
    _locate(node, (), source, locations)
    return document, locations


def _locate(node: yaml.Node, path: KeyPath, source: str, out: dict[KeyPath, str]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*path, str(key_node.value))
            out[child] = f"{source}:{key_node.start_mark.line + 1}"
            _locate(value_node, child, source, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            out[(*path, index)] = f"{source}:{item.start_mark.line + 1}"
            _locate(item, (*path, index), source, out)


def _apply_override(
    document: dict[str, Any], locations: dict[KeyPath, str], override: str
) -> list[str]:
    """`--set base.data_dir=/data` (the value is YAML: `--set axes.gpus=[1,2]`)."""
    dotted_key, sep, text = override.partition("=")
    if not sep or not dotted_key:
        return [f"--set {override}: expected KEY.PATH=VALUE"]
    keys = dotted_key.split(".")
    target = document
    for key in keys[:-1]:
        if target.get(key) is None:  # absent, or an empty section (`base:`)
            target[key] = {}
        target = target[key]
        if not isinstance(target, dict):
            return [f"--set {override}: {key} is not a mapping"]
    try:
        target[keys[-1]] = yaml.safe_load(text)
    except yaml.YAMLError as error:
        return [f"--set {override}: value is not valid YAML ({error})"]
    path = tuple(keys)
    for located in [p for p in locations if p[: len(path)] == path]:
        del locations[located]
    locations[path] = f"--set {dotted_key}"
    return []


def _expand(
    value: Any,
    path: KeyPath,
    environ: Mapping[str, str],
    locations: Mapping[KeyPath, str],
    source: str,
    problems: list[str],
) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string."""
    if isinstance(value, dict):
        return {
            k: _expand(v, (*path, k), environ, locations, source, problems)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _expand(v, (*path, i), environ, locations, source, problems)
            for i, v in enumerate(value)
        ]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        where = locations.get(path, source)
        problems.append(
            f"{where}: {dotted(path)}: environment variable {name} is not set "
            f"(set it, or write ${{{name}:-default}})"
        )
        return match.group(0)

    return ENV_PATTERN.sub(substitute, value)


class _Reader:
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

    def sweep(self, document: dict[str, Any], data_cache: Path) -> Sweep | None:
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
        self.cell_values(base, ("base",), allow_lists=False)
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
        if self.problems:
            return None
        return Sweep(
            name=name,
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
            for index, item in enumerate(items):
                where = (*path, key, index) if isinstance(value, list) else (*path, key)
                message = check_value(key, item)
                if message:
                    self.problem(where, message)
            checked[key] = list(items)
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
        if kind not in launchers.KINDS:
            self.problem((*path, "kind"), _not_one_of(kind, launchers.KINDS))
        controller = value.get("controller", "gloo")
        if controller not in launchers.CONTROLLERS:
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
        return LauncherSpec(**settings)

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
                hosts.append(launchers.parse_host(str(item), slots))
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

    def worker(self, value: Any) -> tuple[str, ...]:
        if value is None:
            return launchers.default_worker()
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


def suggest(word: str, choices: Sequence[str]) -> str:
    """`; did you mean 'x'?` for the closest valid name, or nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def dotted(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


# ---------------------------------------------------------------- planning


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


def cell_hash(identity: Mapping[str, Any]) -> str:
    """A short id stable across runs and Python versions: sha256 of canonical JSON."""
    canonical = json.dumps(
        {k: _jsonable(v) for k, v in identity.items()},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:10]


def cell_slug(settings: Mapping[str, Any]) -> str:
    """densenet121-tfrecord-png64-tuned-train-g2-b8-fp32-64px: readable, not unique."""
    parts = [settings["model"]]
    if settings["mode"] == "synthetic":
        parts.append("synthetic")
    else:
        parts.append(settings["data_format"])
        if settings["data_format"] == "tfrecord" and settings["conversion"]:
            parts.append(settings["conversion"])
        parts += [settings["pipeline"], settings["mode"]]
    parts.append(f"g{settings['gpus']}")
    if settings["nodes"] > 1:
        parts.append(f"n{settings['nodes']}")
    parts += [
        f"b{settings['batch_per_gpu']}",
        PRECISION_TAGS.get(settings["precision"], str(settings["precision"])),
        f"{settings['image_size']}px",
    ]
    if settings["xla"]:
        parts.append("xla")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", "-".join(str(part) for part in parts))


# ---------------------------------------------------------------- checks needing the world


def check(
    sweep: Sweep,
    cells: Sequence[Cell],
    *,
    environ: Mapping[str, str] | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Every reason some cell cannot run: launcher capacity, data, conversions, config."""
    environ = os.environ if environ is None else environ
    problems: dict[str, None] = {}  # ordered set: one line per distinct problem
    for cell in cells:
        for problem in _cell_problems(sweep, cell, environ, dry_run):
            problems.setdefault(problem)
    problems.update(dict.fromkeys(_data_problems(sweep, cells)))
    problems.update(dict.fromkeys(_launcher_problems(sweep, environ, dry_run)))
    return list(problems)


def _cell_problems(
    sweep: Sweep, cell: Cell, environ: Mapping[str, str], dry_run: bool
) -> list[str]:
    problems = []
    if cell.problem:
        where = sweep.where(cell.origins.get("mode", ("base",)))
        problems.append(f"{where}: cell {cell.slug}: {cell.problem}")
    uses_records = needs_records(cell)
    if uses_records and cell.conversion is None:
        names = ", ".join(sweep.conversions) or "none defined under conversions:"
        where = sweep.where(cell.origins.get("data_format", ("base",)))
        problems.append(f"{where}: tfrecord cells need a `conversion` (defined: {names})")
    elif uses_records and cell.conversion not in sweep.conversions:
        where = sweep.where(cell.origins.get("conversion", ("base",)))
        problems.append(
            f"{where}: no conversion named {cell.conversion!r} under conversions:"
            f"{suggest(str(cell.conversion), tuple(sweep.conversions))}"
        )
    available = launchers.capacity(cell.launcher, environ, nodes=cell.nodes)
    if available.processes is None:
        return problems
    if cell.gpus > available.processes:
        where = sweep.where(cell.origins.get("gpus", ("base",)))
        problems.append(
            f"{where}: gpus {cell.gpus} is more than {available.processes} "
            f"process(es): {available.source} on {cell.nodes} node(s)"
        )
    if available.nodes is not None and cell.nodes > available.nodes:
        where = sweep.where(cell.origins.get("nodes", ("base",)))
        problems.append(
            f"{where}: nodes {cell.nodes} is more than {available.nodes}: {available.source}"
        )
    if cell.nodes > cell.gpus:
        where = sweep.where(cell.origins.get("nodes", ("base",)))
        problems.append(f"{where}: nodes {cell.nodes} is more than gpus {cell.gpus}")
    return problems


def needs_records(cell: Cell) -> bool:
    """Whether the cell reads TFRecords (synthetic mode reads nothing)."""
    return cell.settings["mode"] != "synthetic" and cell.settings["data_format"] == "tfrecord"


def _data_problems(sweep: Sweep, cells: Sequence[Cell]) -> list[str]:
    needs_data = any(cell.settings["mode"] != "synthetic" for cell in cells)
    if not needs_data or sweep.synthetic is not None:
        return []
    data_dir = sweep.data_dir()
    if data_dir is None:
        return [
            f"{sweep.source}: base.data_dir: missing; cells that read data need a "
            f"ChestX-ray14 folder (base.data_dir, --set base.data_dir=PATH) or "
            f"base.synthetic"
        ]
    if not data_dir.is_dir():
        return [
            f"{sweep.where(('base', 'data_dir'))}: {data_dir} does not exist or is not a "
            f"folder (override with --set base.data_dir=PATH)"
        ]
    return []


def _launcher_problems(sweep: Sweep, environ: Mapping[str, str], dry_run: bool) -> list[str]:
    spec = sweep.launcher
    where = sweep.where(("launcher", "kind"))
    if spec.kind == "srun" and "SLURM_JOB_ID" not in environ and not dry_run:
        return [
            f"{where}: srun runs inside a Slurm allocation (salloc/sbatch); "
            f"SLURM_JOB_ID is unset"
        ]
    if spec.kind in ("mpirun", "srun") and not dry_run and shutil.which(spec.kind) is None:
        return [f"{where}: {spec.kind} is not on PATH"]
    if spec.hostfile is not None and not spec.hostfile.is_file():
        return [f"{sweep.where(('launcher', 'hostfile'))}: {spec.hostfile} does not exist"]
    return []
