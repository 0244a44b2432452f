"""The job: what every rank runs (`python -m bench.run`).

`main` (arguments, exit codes, failure results) -> `inputs` (checks and the rank's
dataset) -> `modes` (synthetic, pipeline, train; `fit` for the training recipe) on an
`engine` (Horovod or one process) with the CheXNet `model`, timed by `timing`, watched by
`telemetry`, described by `environment` -> `record` (the result document).
"""
