"""Published figures the report puts beside ours, with their source.

CheXNet's per-class AUROC on ChestX-ray14: Rajpurkar, Irvin, Zhu et al., "CheXNet:
Radiologist-Level Pneumonia Detection on Chest X-Rays with Deep Learning",
arXiv:1711.05225v3 (25 Dec 2017), Table 2, column "CheXNet (ours)". Their figures are on
their own test split (20% of the patients, a random patient-wise split), DenseNet121 from
ImageNet weights at 224 px; the paper prints no mean, the mean of the 14 is 0.841.
"""

from __future__ import annotations

from converters.labels import LABELS

CHEXNET_SOURCE = (
    "Rajpurkar et al. 2017, CheXNet, arXiv:1711.05225v3, Table 2 (their test split, "
    "DenseNet121 from ImageNet weights, 224 px)"
)
CHEXNET_AUROC: dict[str, float] = {
    "Atelectasis": 0.8094,
    "Cardiomegaly": 0.9248,
    "Effusion": 0.8638,
    "Infiltration": 0.7345,
    "Mass": 0.8676,
    "Nodule": 0.7802,
    "Pneumonia": 0.7680,
    "Pneumothorax": 0.8887,
    "Consolidation": 0.7901,
    "Edema": 0.8878,
    "Emphysema": 0.9371,
    "Fibrosis": 0.8047,
    "Pleural_Thickening": 0.8062,
    "Hernia": 0.9164,
}
assert tuple(CHEXNET_AUROC) == LABELS  # the label contract's order
CHEXNET_MEAN_AUROC = sum(CHEXNET_AUROC.values()) / len(CHEXNET_AUROC)  # 0.8414
