"""`python -m bench.doctor` on this machine, and with a required piece missing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench import doctor


def test_doctor_reports_this_machine_ready(repo_root, subprocess_env) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.doctor"],
        cwd=repo_root,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout
    assert "tf.keras is tf_keras 2." in lines
    assert "0.28.1: gloo yes, mpi yes" in lines
    assert "[ok  ] tensorflow   2.18" in lines
    assert "nvml" in lines and "cpus" in lines and "mpirun" in lines
    assert lines.rstrip().endswith("ready")


def test_doctor_fails_with_the_fix_when_horovod_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "horovod", None)  # import horovod now raises ImportError
    monkeypatch.setitem(sys.modules, "horovod.tensorflow", None)
    assert doctor.main([]) == 1
    captured = capsys.readouterr()
    assert "[FAIL] horovod" in captured.out
    assert "fix: scripts/setup.sh" in captured.out
    assert "required check(s) failed: horovod" in captured.err


def test_nvml_is_optional_but_explained() -> None:
    check = doctor.check_nvml()
    assert check.required is False
    if not check.ok:
        assert "NVML" in check.found and "null" in check.found
