"""What `--resume` may finish: only the conversion OUT already holds, made with the same options.

The options that decide a conversion's bytes are written at its start
(`.journal/options.json`) and in its manifest; `--resume` with any of them different is
refused (`ResumeMismatchError`, exit 2) with the options named, instead of silently replacing
the conversion. How the run is shown or scheduled (workers, progress, --strict) may differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from converters.manifest import write_json_atomic

OPTIONS_FILE = "options.json"
# ConversionOptions fields that decide what is written, with their command-line names.
IDENTITY_OPTIONS: dict[str, str] = {
    "source": "SRC",
    "splits": "--splits",
    "encoding": "--encoding",
    "quality": "--quality",
    "resize": "--resize",
    "compression": "--compression",
    "shard_count": "--shard-count",
    "target_shard_mb": "--target-shard-mb",
    "seed": "--seed",
    "val_fraction": "--val-fraction",
    "limit": "--limit",
}


class ResumeMismatchError(ValueError):
    """--resume over a conversion made with different options (exit 2)."""


def _comparable(options: dict[str, Any]) -> dict[str, Any]:
    values = {key: options.get(key) for key in IDENTITY_OPTIONS}
    if values["source"] is not None:
        values["source"] = str(Path(values["source"]).resolve())
    if values["splits"] is not None:
        values["splits"] = list(values["splits"])
    if values["encoding"] != "jpeg":
        values["quality"] = None  # only jpeg uses it
    if values["shard_count"] is not None:
        values["target_shard_mb"] = None  # an explicit count overrides the size target
    return values


def differing_options(previous: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """`--name: <in OUT> in OUT, <given> now` for every identity option that differs."""
    old, new = _comparable(previous), _comparable(wanted)
    return [
        f"{IDENTITY_OPTIONS[key]}: {_shown(old[key])} in OUT, {_shown(new[key])} now"
        for key in IDENTITY_OPTIONS
        if old[key] != new[key]
    ]


def _shown(value: Any) -> str:
    if value is None:
        return "not given"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


def recorded_options(out: Path, journal_dir: str, manifest: dict[str, Any] | None) -> Any:
    """The options OUT's conversion was made with: its manifest's, else its start record."""
    if manifest is not None and isinstance(manifest.get("options"), dict):
        return manifest["options"]
    try:
        return json.loads((out / journal_dir / OPTIONS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # nothing recorded (an older converter): the shards' plan hashes decide


def check_resume(out: Path, journal_dir: str, manifest: Any, wanted: dict[str, Any]) -> None:
    """Raise ResumeMismatchError when OUT holds a conversion made with other options."""
    previous = recorded_options(out, journal_dir, manifest)
    if not isinstance(previous, dict):
        return
    differences = differing_options(previous, wanted)
    if differences:
        raise ResumeMismatchError(
            f"{out}: --resume only finishes the conversion it holds, and these options differ: "
            + "; ".join(differences)
            + " (rerun with the same options, or pass --overwrite instead of --resume to "
            "replace it)"
        )


def record_options(out: Path, journal_dir: str, options: dict[str, Any]) -> None:
    """Write the options at a conversion's start, for a later --resume to compare."""
    (out / journal_dir).mkdir(exist_ok=True)
    write_json_atomic(out / journal_dir / OPTIONS_FILE, options)
