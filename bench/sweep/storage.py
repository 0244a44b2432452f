"""The sweep's storage probe stage: once per sweep, before the cells, on the data folder.

It runs `python -m bench.measure.storage_probe` as a child process (the sweep launches the
measuring code, it does not import it) on the sweep's data folder and the first conversion
the pending cells read, with their split and tf.data parallelism, and keeps the record in
`<sweep results>/storage_probe.json` for the report. The probe is a context figure: when it
fails the sweep warns and goes on. `--resume` keeps an existing record; `--no-storage-probe`
skips the stage.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from bench.sweep.plan import Cell, needs_records
from bench.sweep.prepare import DATA
from bench.sweep.schema import Sweep

RECORD_NAME = "storage_probe.json"
TIMEOUT_S = 900.0


def probe_command(
    sweep: Sweep, cells: Sequence[Cell], failures: Mapping[str, str], out: Path
) -> list[str] | None:
    """The probe's argv, or None when no pending cell reads data that could be prepared."""
    readers = [cell for cell in cells if cell.settings["mode"] != "synthetic"]
    if not readers or DATA in failures:
        return None
    data_dir = sweep.data_dir()
    conversions = sorted(
        {c.conversion for c in readers if needs_records(c) and c.conversion not in failures}
    )
    first = readers[0].settings
    argv = [sys.executable, "-m", "bench.measure.storage_probe", "--out", str(out)]
    if data_dir is not None and Path(data_dir).is_dir():
        argv += ["--data-dir", str(data_dir)]
    if conversions:
        argv += ["--records-dir", str(sweep.records_dir(conversions[0]))]
    if "--data-dir" not in argv and "--records-dir" not in argv:
        return None
    argv += ["--split", str(first["split"]), "--seed", str(first["seed"])]
    if first.get("parallel_calls"):
        argv += ["--parallelism", str(first["parallel_calls"])]
    if first.get("cycle_length"):
        argv += ["--shard-parallelism", str(first["cycle_length"])]
    return argv


def run_storage_probe(
    sweep: Sweep,
    cells: Sequence[Cell],
    failures: Mapping[str, str],
    sweep_dir: Path,
    *,
    env: Mapping[str, str],
    resume: bool,
    err: TextIO,
) -> Path | None:
    """Run the probe once; the record's path, or None (skipped or failed, with a warning)."""
    out = sweep_dir / RECORD_NAME
    if resume and out.is_file():
        print(f"storage probe: kept {out}", file=err)
        return out
    argv = probe_command(sweep, cells, failures, out)
    if argv is None:
        return None
    print("storage probe: reading a sample of the data cold, then warm", file=err)
    try:
        done = subprocess.run(
            argv,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        print(f"warning: storage probe not run: {error}", file=err)
        return None
    for line in done.stdout.splitlines():
        print(f"storage probe: {line}", file=err)
    if done.returncode != 0 or not out.is_file():
        tail = done.stderr.strip().splitlines()[-3:]
        print(
            f"warning: storage probe failed (exit {done.returncode}): {' / '.join(tail)}",
            file=err,
        )
        return None
    return out
