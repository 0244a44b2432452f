"""What a TFRecord conversion is asked to make: the options of `python -m converters.tfrecord`,
checked before anything is read or written.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from converters import features

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True, kw_only=True)
class ConversionOptions:
    """What to convert and how; see `python -m converters.tfrecord --help`."""

    source: Path
    out: Path
    splits: tuple[str, ...] = SPLITS
    encoding: str = "png"
    quality: int = 95
    resize: int | None = None
    compression: str = "none"
    shard_count: int | None = None
    target_shard_mb: float = 150.0
    workers: int | None = None
    seed: int = 0
    val_fraction: float = 0.1
    limit: int | None = None
    resume: bool = False
    overwrite: bool = False
    strict: bool = False
    progress: bool = False

    def __post_init__(self) -> None:
        # Accept str paths and list splits from callers; store the canonical types.
        object.__setattr__(self, "source", Path(self.source))
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "splits", tuple(self.splits))

    def validate(self) -> None:
        """Raise ValueError naming the first bad option."""
        checks = [
            (
                self.encoding in features.ENCODINGS,
                f"encoding must be one of "
                f"{', '.join(features.ENCODINGS)}, got {self.encoding!r}",
            ),
            (
                self.compression in features.COMPRESSIONS,
                f"compression must be one of "
                f"{', '.join(features.COMPRESSIONS)}, got {self.compression!r}",
            ),
            (1 <= self.quality <= 100, f"quality must be 1..100, got {self.quality}"),
            (self.resize is None or self.resize >= 1, f"resize must be >= 1, got {self.resize}"),
            (
                self.shard_count is None or self.shard_count >= 1,
                f"shard count must be >= 1, got {self.shard_count}",
            ),
            (self.target_shard_mb > 0, f"target shard MB must be > 0, got {self.target_shard_mb}"),
            (
                self.workers is None or self.workers >= 1,
                f"workers must be >= 1, got {self.workers}",
            ),
            (
                0.0 <= self.val_fraction < 1.0,
                f"val fraction must be in [0, 1), got {self.val_fraction}",
            ),
            (self.limit is None or self.limit >= 1, f"limit must be >= 1, got {self.limit}"),
            (not (self.resume and self.overwrite), "give --resume or --overwrite, not both"),
            (bool(self.splits), "no splits requested"),
        ]
        checks += [
            (split in SPLITS, f"unknown split {split!r} (expected {', '.join(SPLITS)} " "or all)")
            for split in self.splits
        ]
        checks.append((len(set(self.splits)) == len(self.splits), "a split is named twice"))
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["source"] = str(self.source)
        data["out"] = str(self.out)
        data["splits"] = list(self.splits)
        del data["progress"]  # how it was shown, not what was made
        return data
