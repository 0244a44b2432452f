"""`python -m bench.pipeline_benchmark`: the code is in bench/measure/pipeline_benchmark.py."""

import sys

from bench.measure.pipeline_benchmark import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
