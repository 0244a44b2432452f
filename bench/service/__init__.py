"""The input-service pool: TensorFlow's tf.data service dispatcher and workers as processes.

`pool` starts, watches and stops them (argv lists, logs kept; `config` is its shape and
errors, `server_process` one started server), `server` is one of them
(`python -m bench.service.server`), `usage` derives each worker's CPU over a window from
its log. Used by the sweep (a pool per cell) and by the job (bench.job.service: its own
pool, and reading through one). No TensorFlow at import; imports no other stage.
"""
