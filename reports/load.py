"""Find and read what a sweep left behind: result files, summary.json, sweep.yaml, conversions,
storage_probe.json.

A results folder is either one sweep's folder (`<results>/<sweep-name>/`, holding sweep.yaml,
plan.json and summary.json) or any folder with result files somewhere below it. A folder
that holds several sweep folders yields one `ResultsSet` per sweep. Everything here reads
files only; nothing imports TensorFlow, Horovod or NVML.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.contract.results import ResultSchemaError, find_results, load_result

SWEEP_MARKERS = ("summary.json", "sweep.yaml", "plan.json")
STORAGE_PROBE = "storage_probe.json"


class ReportInputError(ValueError):
    """No results, or a file the report cannot read; the message names the folder or file."""


@dataclass(frozen=True)
class Run:
    """One result file and its parsed, validated content."""

    path: Path
    result: dict[str, Any]


@dataclass(frozen=True)
class Unreadable:
    """A result file the report could not read, and why (listed in the report's failures)."""

    path: Path
    reason: str


@dataclass(frozen=True)
class ResultsSet:
    """The results of one sweep (or one loose folder), labelled for side-by-side reports."""

    root: Path
    label: str
    sweep_name: str | None
    sweep_yaml: str | None
    summary: dict[str, Any] | None
    conversions: tuple[dict[str, Any], ...]
    runs: tuple[Run, ...]
    unreadable: tuple[Unreadable, ...] = ()
    storage_probe: dict[str, Any] | None = None  # storage_probe.json (bench.measure)


def load_results_sets(paths: Sequence[Path]) -> list[ResultsSet]:
    """Every results set under `paths`, labelled uniquely; raises ReportInputError."""
    roots: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise ReportInputError(f"{path}: no such results folder")
        roots.extend(_sweep_roots(path))
    loaded = [_load_set(root) for root in roots]
    sets = [results for results in loaded if results.runs]
    if not sets:
        names = ", ".join(str(path) for path in paths)
        unreadable = [entry for results in loaded for entry in results.unreadable]
        if unreadable:
            raise ReportInputError(
                f"{names}: no readable result file; "
                + "; ".join(f"{entry.path}: {entry.reason}" for entry in unreadable)
            )
        raise ReportInputError(f"{names}: no result files (result-*.json) found")
    # A sweep folder whose every result is unreadable still has them listed, in the first set.
    orphans = [entry for results in loaded if not results.runs for entry in results.unreadable]
    if orphans:
        sets[0] = replace(sets[0], unreadable=sets[0].unreadable + tuple(orphans))
    return _unique_labels(sets)


def unreadable_files(sets: Sequence[ResultsSet]) -> list[Unreadable]:
    """Every result file left out of the report because it could not be read."""
    return [entry for results in sets for entry in results.unreadable]


def _sweep_roots(path: Path) -> list[Path]:
    """The path itself if it is a sweep folder or holds no sweep folder, else its sweeps."""
    if _is_sweep(path):
        return [path]
    children = sorted(child for child in path.iterdir() if child.is_dir() and _is_sweep(child))
    if not children:
        return [path]
    loose = [
        result
        for result in find_results(path)
        if not any(child in result.parents for child in children)
    ]
    # Results outside every sweep folder still count, as a set of their own.
    return [*children, path] if loose else children


def _is_sweep(path: Path) -> bool:
    return any((path / marker).is_file() for marker in SWEEP_MARKERS)


def _load_set(root: Path) -> ResultsSet:
    summary = _read_json(root / "summary.json") if (root / "summary.json").is_file() else None
    sweep_yaml = _read_text(root / "sweep.yaml")
    nested = (
        []
        if _is_sweep(root)
        else [child for child in root.iterdir() if child.is_dir() and _is_sweep(child)]
    )
    runs: list[Run] = []
    unreadable: list[Unreadable] = []
    for path in find_results(root):
        if any(child in path.parents for child in nested):
            continue
        try:
            runs.append(Run(path=path, result=_load_run(path)))
        except ReportInputError as error:
            # One bad file must not hide every other result: it is listed, not fatal.
            reason = str(error).removeprefix(f"{path}: ").removeprefix(f"{path}")
            unreadable.append(Unreadable(path=path, reason=reason.strip(" :") or str(error)))
    conversions = tuple(
        _read_conversion(path) for path in sorted((root / "conversions").glob("*.json"))
    )
    sweep_name = _sweep_name(summary, tuple(runs))
    probe_path = root / STORAGE_PROBE
    storage_probe = _read_json(probe_path) if probe_path.is_file() else None
    if storage_probe is not None and not isinstance(storage_probe, dict):
        raise ReportInputError(f"{probe_path}: a storage probe record is a JSON object")
    return ResultsSet(
        root=root,
        label=sweep_name or root.name,
        sweep_name=sweep_name,
        sweep_yaml=sweep_yaml,
        summary=summary,
        conversions=conversions,
        runs=tuple(runs),
        unreadable=tuple(unreadable),
        storage_probe=storage_probe,
    )


def _load_run(path: Path) -> dict[str, Any]:
    try:
        return load_result(path)
    except (ResultSchemaError, OSError, UnicodeDecodeError) as error:
        message = str(error) if str(path) in str(error) else f"{path}: {error}"
        raise ReportInputError(message) from error


def _sweep_name(summary: dict[str, Any] | None, runs: tuple[Run, ...]) -> str | None:
    if summary and isinstance(summary.get("name"), str):
        return summary["name"]
    names = sorted({run.result["sweep"] for run in runs if run.result.get("sweep")})
    return names[0] if len(names) == 1 else None


def _read_conversion(path: Path) -> dict[str, Any]:
    document = _read_json(path)
    if not isinstance(document, dict):
        raise ReportInputError(f"{path}: a conversion record is a JSON object")
    for key in ("name", "wall_seconds"):
        if key not in document:
            raise ReportInputError(f"{path}: conversion record has no key {key!r}")
    return document | {"_path": str(path)}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ReportInputError(f"{path}: not valid JSON ({error})") from error
    except OSError as error:
        raise ReportInputError(f"{path}: cannot read ({error.strerror})") from error


def _read_text(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ReportInputError(f"{path}: cannot read ({error})") from error


def _unique_labels(sets: list[ResultsSet]) -> list[ResultsSet]:
    """Label by sweep name; where two sets share one, add the folder (then the host)."""
    counts: dict[str, int] = {}
    for results in sets:
        counts[results.label] = counts.get(results.label, 0) + 1
    relabelled = []
    seen: set[str] = set()
    for results in sets:
        label = results.label
        if counts[label] > 1:
            label = f"{label} ({results.root.parent.name or results.root})"
            if label in seen:
                label = f"{label} [{_first_host(results) or len(seen)}]"
        seen.add(label)
        relabelled.append(_with_label(results, label))
    return relabelled


def _first_host(results: ResultsSet) -> str | None:
    for run in results.runs:
        hosts = (run.result.get("environment") or {}).get("hosts")
        if hosts:
            return str(hosts[0])
    return None


def _with_label(results: ResultsSet, label: str) -> ResultsSet:
    return replace(results, label=label)
