"""Tools that measure the input on its own: `probe` (a pipeline's rate), `ceiling` (the
per-format bound), `pipeline_benchmark` (`python -m bench.pipeline_benchmark`),
`storage_probe` (cold and warm read rates of raw files and shards, once per sweep).
"""
