"""`python -m bench.run`: the per-rank job; the code is in bench/job/ (start at main.py)."""

import sys

from bench.job.main import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
