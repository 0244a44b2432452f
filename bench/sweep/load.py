"""Loading a sweep file: YAML with the line of every key, `--set` overrides, `${VAR}`.

The document then goes to `bench.sweep.validate`, which reports every problem at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from bench.sweep.schema import ENV_PATTERN, KeyPath, Sweep, SweepError, dotted
from bench.sweep.validate import Reader


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
    reader = Reader(source, locations, problems)
    sweep = reader.sweep(document, _data_cache(data_cache, environ))
    if problems:
        raise SweepError(problems, partial=sweep)
    return sweep


def default_data_cache(environ: Mapping[str, str] | None = None) -> Path:
    """$CHEXBENCH_DATA, else the repository's data/ folder (ignored by git)."""
    environ = os.environ if environ is None else environ
    if environ.get("CHEXBENCH_DATA"):
        return Path(environ["CHEXBENCH_DATA"]).absolute()
    return Path(__file__).resolve().parents[2] / "data"


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
