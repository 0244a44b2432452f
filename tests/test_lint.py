"""The code base stays ruff-clean (lint and format), as CI would otherwise let slip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RUFF = Path(sys.executable).parent / "ruff"


@pytest.mark.parametrize("argv", [["check", "."], ["format", "--check", "."]], ids=str)
def test_ruff_is_clean(argv: list[str]) -> None:
    if not RUFF.exists():
        pytest.skip(f"ruff is not installed next to {sys.executable} (scripts/setup.sh --dev)")
    done = subprocess.run([str(RUFF), *argv], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
