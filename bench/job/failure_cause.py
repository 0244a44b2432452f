"""A run-time failure's cause, said plainly: what went wrong, where, and what to do.

The bad-data guard (bench.guard) fails a run through a TensorFlow assertion, so its
message arrives wrapped in an InvalidArgumentError with function-node prefixes and op
suffixes, at the end of a long traceback. `plain_cause` recovers the guard's own words
(`bad data: <file> (record N): <why>`) and adds what to do; the traceback stays in the log.
"""

from __future__ import annotations

import re

_BAD_DATA = re.compile(r"assertion failed: \[bad data:\](?P<rest>.*)")
_PART = re.compile(r"\[([^\[\]]*)\]")
_SKIP_HINT = "(set skip_bad"
_RECORD = re.compile(r"\(record \d+\)")


def plain_cause(error: BaseException) -> str | None:
    """`bad data: ...; what to do` for a guard failure, else None (no plain cause known)."""
    text = str(getattr(error, "message", None) or error)
    found = _BAD_DATA.search(text)
    if found is None:
        return None
    rest = found.group("rest").split("\n")[0].split(" [[")[0]
    parts = [
        part.strip()
        for part in _PART.findall(rest)
        if part.strip() and not part.strip().startswith(_SKIP_HINT)
    ]
    where = " ".join(parts).replace(" ; skipped:", "; skipped:") or "an example"
    if _RECORD.search(where):
        advice = (
            "check the conversion with python -m converters.verify <records dir>, convert "
            "again, or set skip_bad: true (bench.run --skip-bad) to skip such records and "
            "count them"
        )
    else:
        advice = (
            "replace or remove the file, or set skip_bad: true (bench.run --skip-bad) to "
            "skip such images and count them"
        )
    return f"bad data: {where}. What to do: {advice}"
