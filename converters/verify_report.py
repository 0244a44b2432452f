"""What `converters.verify` found: each problem with its shard and record, and the report that
names the first bad shard and record first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

_SHOWN_PROBLEMS = 20


@dataclass(frozen=True)
class Problem:
    """One thing wrong: where (shard file, record index) and what."""

    shard: str | None
    record: int | None
    message: str

    def __str__(self) -> str:
        where = self.shard or "conversion"
        if self.record is not None:
            where += f": record {self.record}"
        return f"{where}: {self.message}"


@dataclass
class VerifyReport:
    """What was checked and every problem found, in shard order."""

    directory: Path
    shards_checked: int = 0
    records_read: int = 0
    images_decoded: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def first_failure(self) -> str:
        """The first bad shard, its first bad record, and what is wrong with that shard."""
        shard = self.problems[0].shard
        in_shard = [problem for problem in self.problems if problem.shard == shard]
        records = [problem.record for problem in in_shard if problem.record is not None]
        where = (shard or "conversion") + (f": record {records[0]}" if records else "")
        return f"{where}: " + "; ".join(problem.message for problem in in_shard)

    def lines(self) -> list[str]:
        counts = (
            f"{self.shards_checked} shard(s), {self.records_read} record(s) read, "
            f"{self.images_decoded} image(s) decoded"
        )
        if self.ok:
            return [f"OK: {self.directory}: {counts}"]
        lines = [
            f"FAILED: {self.first_failure()}",
            f"  {self.directory}: {counts}, {len(self.problems)} problem(s):",
        ]
        lines += [f"  - {problem}" for problem in self.problems[:_SHOWN_PROBLEMS]]
        if len(self.problems) > _SHOWN_PROBLEMS:
            lines.append(f"  ... and {len(self.problems) - _SHOWN_PROBLEMS} more")
        return lines
