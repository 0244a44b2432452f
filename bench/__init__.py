"""The CheXNet benchmark harness: everything that runs on the GPU nodes.

TF_USE_LEGACY_KERAS=1 must be set before TensorFlow is first imported, so it is set here,
in the package every entry point passes through. Since TF 2.16 `tf.keras` is Keras 3, and
under Keras 3 Horovod's DistributedGradientTape fails ('Variable' object has no attribute
'ref') while DistributedOptimizer with model.fit runs but never averages gradients: ranks
silently diverge. With the legacy flag `tf.keras` is `tf_keras` (Keras 2), which Horovod
0.28.1 supports.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# CUDA then numbers GPUs as NVML does (PCI bus order), so that telemetry finds the GPU a
# rank uses from its CUDA_VISIBLE_DEVICES ordinal (bench/job/rank_gpus.py).
os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
