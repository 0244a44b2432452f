"""scripts/setup.sh, the first half of both README commands: idempotent and quick again.

Runs the real script against the virtual environment running these tests, in both modes,
after CI's own `scripts/setup.sh --dev` has set it up: nothing may be reinstalled, and the
Horovod check must pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENV = Path(sys.prefix)


@pytest.mark.parametrize("flags", [[], ["--dev"]], ids=["plain", "dev"])
def test_setup_again_reinstalls_nothing_and_checks_horovod(flags: list[str]) -> None:
    stamp = VENV / ".chexbench-installed-dev"
    if not stamp.exists() or (REPO / "pyproject.toml").stat().st_mtime > stamp.stat().st_mtime:
        pytest.skip("this environment's set-up is not current: run scripts/setup.sh --dev")
    env = dict(os.environ, VENV=str(VENV), CHEXBENCH_SKIP_APT="1")
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "setup.sh"), *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "installing Python packages" not in done.stderr
    assert "not rebuilding" in done.stderr and "[X] TensorFlow" in done.stderr
    assert f"ready: {VENV}" in done.stderr
