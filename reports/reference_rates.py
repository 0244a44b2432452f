"""Reference figures shipped with the harness, each labelled with where it comes from.

Measured on one H100 host with 16 CPU cores, PyTorch standing in for the model (the
design notes' table; not measured by this harness). Demand is what one GPU consumes in
images/s; decode cost is CPU core-seconds per image, from what 16 cores decode per second.
They let a report say how many cores per GPU an input needs on today's GPUs even when the
sweep ran on a laptop: the sweep's own pipeline-mode cells give the measured cost, these
give the demand (or a cost to set beside the measured one).
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = "reference: one H100 host, 16 cores, PyTorch standing in for the model"
HOST_CORES = 16


@dataclass(frozen=True)
class ReferenceDemand:
    name: str
    images_per_sec_per_gpu: float


@dataclass(frozen=True)
class ReferenceCost:
    """CPU core-seconds per image: HOST_CORES / images per second (low..high: the range)."""

    name: str
    images_per_sec: float  # what HOST_CORES cores decode, typical
    images_per_sec_low: float
    images_per_sec_high: float

    @property
    def cpu_s_per_image(self) -> float:
        return HOST_CORES / self.images_per_sec

    @property
    def cpu_s_per_image_range(self) -> tuple[float, float]:
        return HOST_CORES / self.images_per_sec_high, HOST_CORES / self.images_per_sec_low


# GPU consumes, 224 px: fp32 / TF32 / bf16 b64 / bf16 b256 / compiled bf16 b256.
DEMAND: tuple[ReferenceDemand, ...] = (
    ReferenceDemand("H100 ResNet50 fp32", 879),
    ReferenceDemand("H100 ResNet50 TF32", 1695),
    ReferenceDemand("H100 ResNet50 bf16 b64", 2912),
    ReferenceDemand("H100 ResNet50 bf16 b256", 3961),
    ReferenceDemand("H100 ResNet50 compiled bf16 b256", 5524),
    ReferenceDemand("H100 DenseNet121 fp32", 810),
    ReferenceDemand("H100 DenseNet121 TF32", 1144),
    ReferenceDemand("H100 DenseNet121 bf16 b64", 1217),
    ReferenceDemand("H100 DenseNet121 bf16 b256", 2514),
    ReferenceDemand("H100 DenseNet121 compiled bf16 b256", 3440),
)

# What a report's table shows by default (the figure spans them all): the bounds per model
# and the common bf16 batch-64 case.
HEADLINE = (
    "H100 ResNet50 fp32",
    "H100 ResNet50 bf16 b64",
    "H100 ResNet50 compiled bf16 b256",
    "H100 DenseNet121 fp32",
    "H100 DenseNet121 compiled bf16 b256",
)

# 16 cores decode (+ resize) per second.
COST: tuple[ReferenceCost, ...] = (
    ReferenceCost("full-size 1024 px PNG (raw NIH files), decode + resize", 1000, 1000, 1000),
    ReferenceCost("256 px PNG, decode", 10000, 9000, 11000),
    ReferenceCost("256 px JPEG, decode", 20500, 18000, 23000),
)
