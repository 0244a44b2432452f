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
