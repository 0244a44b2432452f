"""The input: `sources` (raw files, TFRecords) -> `guard` (bad data named, never silent)
-> `preprocess` (decode, resize, flip) -> `pipelines` (naive or tuned tf.data); and
`service` (a tf.data service pool: dispatcher and workers as processes, `service_server`
one of them, `service_usage` their CPU from their logs, `service_job` reading through it).
Imports nothing from the sweep or the job.
"""
