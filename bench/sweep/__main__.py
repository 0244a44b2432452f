"""`python -m bench.sweep [SWEEP.yaml]`: plan, check, prepare, run every cell, report."""

import sys

from bench.sweep.driver import main

sys.exit(main())
