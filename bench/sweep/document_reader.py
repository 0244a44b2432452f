"""The problem log behind sweep validation: each problem with the file, line and key it is
about, and the generic readers (a mapping, a number, a list of strings, NAME: value pairs)
that report a wrong type instead of raising.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.sweep.schema import KeyPath, dotted, suggest
from bench.sweep.setting_values import is_int, is_number


class DocumentReader:
    """Reads parts of a sweep document, appending every problem it finds to `problems`."""

    def __init__(self, source: str, locations: Mapping[KeyPath, str], problems: list[str]) -> None:
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

    def mapping(self, document: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = document.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem((key,), f"must be a mapping, got {type(value).__name__}")
            return {}
        return value

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
        valid = is_int(value) if integer else is_number(value)
        if not valid or value < minimum:
            kind = "an integer" if integer else "a number"
            self.problem((*path, key), f"must be {kind} of at least {minimum}, got {value!r}")
            return default
        return value
