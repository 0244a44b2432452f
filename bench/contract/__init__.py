"""The contract every side imports: `RunConfig` (config), the result file (results), the
cell as results record it (cell). No TensorFlow, Horovod or NVML here: reports use it too.
"""
