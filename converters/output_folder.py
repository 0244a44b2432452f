"""OUT before a conversion: what a conversion leaves there, and refusing, clearing or keeping it
as --overwrite / --resume say.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from converters import features
from converters.manifest import manifest_path
from converters.options import ConversionOptions
from converters.shards import JOURNAL_DIR, PARTIAL_SUFFIX

_SHARD_FILE = re.compile(r"[A-Za-z0-9_]+-\d{5}-of-\d{5}\.tfrecord")


class OutputExistsError(ValueError):
    """OUT already holds a conversion and neither --overwrite nor --resume was given."""


def conversion_leftovers(out: Path) -> list[Path]:
    """Files in `out` that a conversion writes: manifest, shards, partial shards, journal."""
    if not out.is_dir():
        return []
    found = []
    for entry in sorted(out.iterdir()):
        name = entry.name
        if (
            name == features.MANIFEST_NAME
            or name == JOURNAL_DIR
            or _SHARD_FILE.fullmatch(name)
            or (name.startswith(".") and name.endswith(PARTIAL_SUFFIX))
        ):
            found.append(entry)
    return found


def prepare_output(options: ConversionOptions, planned_files: set[str]) -> None:
    """Refuse, clear or keep what `out` holds, as --overwrite / --resume say.

    The old manifest goes first, so that a crash from here on never leaves a manifest that
    vouches for shards being rewritten.
    """
    out = options.out
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    leftovers = conversion_leftovers(out)
    if leftovers and not (options.overwrite or options.resume):
        names = ", ".join(path.name for path in leftovers[:4])
        more = f" and {len(leftovers) - 4} more" if len(leftovers) > 4 else ""
        raise OutputExistsError(
            f"{out}: already holds a conversion ({names}{more}); pass --resume to finish it "
            "or --overwrite to replace it"
        )
    out.mkdir(parents=True, exist_ok=True)
    manifest_path(out).unlink(missing_ok=True)
    for path in leftovers:
        keep = options.resume and (path.name in planned_files or path.name == JOURNAL_DIR)
        if keep or path.name == features.MANIFEST_NAME:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
