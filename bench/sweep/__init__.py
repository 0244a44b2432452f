"""The sweep side: `python -m bench.sweep`, one line of stages called from `driver.run`:

load (`load`, `validate`, `schema`) -> plan (`plan`) -> check (`checks`) -> prepare data
(`prepare`) -> execute cells (`jobs`, `launchers`, `execute`) -> summarise (`summary`) ->
report (`python -m reports`). `cli` parses arguments; `lock` keeps one sweep per folder.
"""

from bench.sweep.cli import SweepOptions, parse_args
from bench.sweep.driver import main, run

__all__ = ["SweepOptions", "main", "parse_args", "run"]
