"""The ChestX-ray14 label contract: 14 findings, multi-hot, in this fixed order.

"No Finding" is all zeros. Every tool (converter, pipelines, reports) uses this order.
"""

from __future__ import annotations

LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
NO_FINDING = "No Finding"
NUM_LABELS = len(LABELS)
_INDEX = {name: position for position, name in enumerate(LABELS)}


class UnknownLabelError(ValueError):
    """A finding string outside the 14 labels and "No Finding"."""

    def __init__(self, label: str, where: str) -> None:
        known = ", ".join((*LABELS, NO_FINDING))
        super().__init__(f"{where}: unknown label {label!r} (known: {known})")
        self.label = label
        self.where = where


def encode_labels(finding_labels: str, *, where: str = "labels") -> tuple[int, ...]:
    """Turn NIH's `Finding Labels` text ("Effusion|Mass", "No Finding") into multi-hot.

    `where` names the file and row for the error message.
    """
    vector = [0] * NUM_LABELS
    for raw in finding_labels.split("|"):
        name = raw.strip()
        if name == NO_FINDING:
            continue
        if name not in _INDEX:
            raise UnknownLabelError(name, where)
        vector[_INDEX[name]] = 1
    return tuple(vector)


def decode_labels(vector: tuple[int, ...] | list[int]) -> str:
    """The inverse of `encode_labels`: multi-hot back to NIH's text form."""
    if len(vector) != NUM_LABELS:
        raise ValueError(f"a label vector has {NUM_LABELS} entries, got {len(vector)}")
    names = [name for name, bit in zip(LABELS, vector, strict=True) if bit]
    return "|".join(names) if names else NO_FINDING
