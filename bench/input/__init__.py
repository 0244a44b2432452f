"""The input: `sources` (raw files, TFRecords) -> `guard` (bad data named, never silent)
-> `preprocess` (decode, resize, flip) -> `pipelines` (naive or tuned tf.data, which can
also be built for tf.data service workers: bench.service), and `page_cache` (what of the
data is in memory: measured, warmed, evicted). Imports nothing from the sweep or the job.
"""
