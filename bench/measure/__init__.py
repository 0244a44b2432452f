"""Tools that measure the input on its own: `probe` (a pipeline's rate), `bound` (the
per-format bound no correct pipeline can beat), `sustained` (the tuned pipeline's reader
alone on every core, beside the bound), `pipeline_benchmark`
(`python -m bench.pipeline_benchmark`), `storage_probe` (cold and warm read rates of raw
files and shards, once per sweep).
"""
