"""Sweep validation faults a hostile user met (issue 14), reproduced as they met them."""

from __future__ import annotations

import io
import sys
from pathlib import Path

from bench.sweep import SweepOptions, run

# --- fault 8: problems reported in two passes ---------------------------------------------


def test_sweep_validation_lists_every_problem_in_one_run(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "name: typos\n"
        f"worker: [{sys.executable}, -c, 'pass']\n"
        "launcher: {kind: local}\n"
        "repeat: 2\n"  # unknown key (repeats)
        "base: {synthetic: {images: 40, size: 32}, mode: pipeline, data_format: tfrecord,"
        " pipeline: tunned}\n"  # a bad value
        "conversions: {small: {encoding: png}}\n"
        "axes: {conversion: [smal], gpus: [4]}\n"  # no such conversion; more GPUs than slots
    )
    out, err = io.StringIO(), io.StringIO()
    env = {**subprocess_env, "CHEXBENCH_DATA": str(tmp_path / "cache")}
    code = run(
        SweepOptions(sweep_file=sweep, results=tmp_path / "r"), environ=env, out=out, err=err
    )
    assert code == 2
    text = err.getvalue()
    assert f"{sweep}:4: repeat: unknown key" in text
    assert f"{sweep}:5: base.pipeline" in text and "tunned" in text
    assert "no conversion named 'smal'" in text and f"{sweep}:7" in text
    assert "gpus 4 is more than 1 process(es)" in text
    assert "4 problems in the sweep" in text, text
    assert not (tmp_path / "r").exists()


# --- fault 7 (the sweep's half): a rank's error line cut off by the launcher's traceback ---


def test_the_failure_log_tail_keeps_the_ranks_error_lines(tmp_path: Path) -> None:
    from bench.sweep.execute import LOG_TAIL_CHARS, log_tail

    log = tmp_path / "run-0.log"
    launcher = "".join(
        f'  File "/venv/lib/horovod/runner/launch.py", line {n}, in run_controller\n'
        for n in range(200)
    )
    log.write_text(
        "[1,0]<stdout>:bench.run: rank 0 of 2: building the dataset\n"
        "[1,0]<stderr>:bench.run: rank 0 crashing before step 0 (test hook)\n"
        "Traceback (most recent call last):\n"
        + launcher
        + "RuntimeError: Horovod detected that one or more processes exited with non-zero "
        "status\n"
    )
    assert log.stat().st_size > 3 * LOG_TAIL_CHARS
    tail = log_tail(log)
    first, dots = tail.splitlines()[:2]
    assert first == "[1,0]<stderr>:bench.run: rank 0 crashing before step 0 (test hook)"
    assert dots == "..."
    assert tail.endswith("exited with non-zero status\n")
    assert "building the dataset" not in tail  # only the lines that explain the failure
