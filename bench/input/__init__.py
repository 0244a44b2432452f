"""The input: `sources` (raw files, TFRecords) -> `guard` (bad data named, never silent)
-> `preprocess` (decode, resize, flip) -> `pipelines` (naive or tuned tf.data). Imports
nothing from the sweep or the job.
"""
