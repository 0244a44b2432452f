"""The rule for each value a sweep may give: a cell setting (typed as RunConfig types it), a
conversion option; each returns why a value is wrong, or None.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from typing import Any, Literal, get_args, get_origin

from bench.contract.config import RunConfig
from bench.sweep.schema import DEFAULTS, MINIMUM, suggest
from converters.features import COMPRESSIONS, ENCODINGS


def check_value(key: str, value: Any) -> str | None:
    """Why `value` cannot be the setting `key`, or None when it can."""
    if key == "gpus" or key == "nodes":
        return check_int(key, value, MINIMUM[key])
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
        return None if value in choices else not_one_of(value, choices)
    if hint is bool:
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if hint is int:
        return check_int(key, value, MINIMUM.get(key))
    if hint is float:
        if not is_number(value):
            return f"must be a number, got {value!r}"
        return None
    if not isinstance(value, str) or not value:
        return f"must be a non-empty string, got {value!r}"
    return None


def check_int(key: str, value: Any, minimum: int | None) -> str | None:
    if not is_int(value):
        return f"must be an integer, got {value!r}"
    if minimum is not None and value < minimum:
        return f"must be at least {minimum}, got {value}"
    return None


def check_conversion_value(key: str, value: Any) -> str | None:
    if key == "encoding" and value not in ENCODINGS:
        return not_one_of(value, ENCODINGS)
    if key == "compression" and value not in COMPRESSIONS:
        return not_one_of(value, COMPRESSIONS)
    if key in ("resize", "shard_count", "workers") and value is not None:
        return check_int(key, value, 1)
    if key == "quality":
        return check_int(key, value, 1)
    if key == "target_shard_mb" and (not is_number(value) or value <= 0):
        return f"must be a positive number, got {value!r}"
    if key == "splits" and (
        not isinstance(value, list)
        or not value
        or any(s not in ("train", "val", "test") for s in value)
    ):
        return f"must be a list of train, val, test; got {value!r}"
    return None


CONFIG_HINTS = typing.get_type_hints(RunConfig)


def not_one_of(value: Any, choices: Sequence[str]) -> str:
    return f"must be one of {', '.join(choices)}; got {value!r}{suggest(str(value), choices)}"


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
