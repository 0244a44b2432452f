"""The synthetic set's metadata: patients with follow-ups, labels at NIH's prevalence, demographics,
the test split by patient and the image folders; written as NIH's CSV and split lists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converters.chestxray_layout import TEST_LIST, TRAIN_VAL_LIST
from converters.labels import NUM_LABELS, decode_labels

ARCHIVE_FOLDERS = 12
CSV_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
    "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)
# Positives per finding in NIH's 112,120 images (LABELS order) and the share of images
# with no finding at all; findings co-occur, so the rates sum to more than 1 - 0.54.
PREVALENCE: tuple[float, ...] = (
    0.103, 0.025, 0.119, 0.177, 0.052, 0.056, 0.013,
    0.047, 0.042, 0.021, 0.022, 0.015, 0.030, 0.002,
)  # fmt: skip
NO_FINDING_RATE = 0.538
TEST_SHARE = 0.22


IMAGES_PER_PATIENT_MEAN = 3.6  # NIH: 112,120 images of 30,805 patients


@dataclass(frozen=True)
class SynthImage:
    """One planned image: its CSV row and where its file goes."""

    index: int
    filename: str
    folder: str  # relative to the root, e.g. "images_003/images"
    patient_id: int
    follow_up: int
    labels: tuple[int, ...]
    age: int
    gender: str
    view: str
    test: bool


def sample_labels(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` multi-hot label rows (uint8 [count, 14]) with NIH's prevalence.

    An image has no finding with probability NO_FINDING_RATE; otherwise each finding is
    drawn independently at rate `scale * prevalence`, redrawn until at least one is set.
    `scale` is solved so that every finding's overall rate equals its prevalence.
    """
    rates = np.asarray(PREVALENCE) * _finding_scale()
    labels = np.zeros((count, NUM_LABELS), dtype=np.uint8)
    abnormal = np.flatnonzero(rng.random(count) >= NO_FINDING_RATE)
    pending = abnormal
    while pending.size:
        draws = (rng.random((pending.size, NUM_LABELS)) < rates).astype(np.uint8)
        labels[pending] = draws
        pending = pending[draws.sum(axis=1) == 0]
    return labels


def _finding_scale() -> float:
    """s with s*p_k / P(any finding | abnormal) = p_k / (1 - NO_FINDING_RATE), by bisection."""
    prevalence = np.asarray(PREVALENCE)
    abnormal = 1.0 - NO_FINDING_RATE

    def excess(scale: float) -> float:
        return 1.0 - float(np.prod(1.0 - scale * prevalence)) - abnormal * scale

    low, high = 1e-6, (1.0 - 1e-9) / prevalence.max()
    for _ in range(80):
        middle = (low + high) / 2
        low, high = (middle, high) if excess(middle) > 0 else (low, middle)
    return (low + high) / 2


def plan_dataset(*, images: int, seed: int, layout: str = "archive") -> list[SynthImage]:
    """The CSV rows: patients with several follow-ups, labels, demographics, split, folder."""
    rng = np.random.default_rng([seed, 0])
    per_patient: list[int] = []
    while sum(per_patient) < images:
        # Geometric: many patients with one image, a few with many, like NIH.
        per_patient.append(int(min(rng.geometric(1.0 / IMAGES_PER_PATIENT_MEAN), 40)))
    per_patient[-1] -= sum(per_patient) - images
    test_patients = _test_patients(rng, per_patient)
    labels = sample_labels(rng, images)
    per_folder = math.ceil(images / ARCHIVE_FOLDERS)
    plan: list[SynthImage] = []
    for patient_index, count in enumerate(per_patient):
        patient_id = patient_index + 1
        age = int(rng.integers(1, 95))
        gender = "M" if rng.random() < 0.56 else "F"
        for follow_up in range(count):
            index = len(plan)
            folder = (
                "images" if layout == "flat" else f"images_{index // per_folder + 1:03d}/images"
            )
            plan.append(
                SynthImage(
                    index=index,
                    filename=f"{patient_id:08d}_{follow_up:03d}.png",
                    folder=folder,
                    patient_id=patient_id,
                    follow_up=follow_up,
                    labels=tuple(int(bit) for bit in labels[index]),
                    age=min(age + follow_up // 4, 99),
                    gender=gender,
                    view="PA" if rng.random() < 0.6 else "AP",
                    test=patient_index in test_patients,
                )
            )
    return plan


def _test_patients(rng: np.random.Generator, per_patient: list[int]) -> set[int]:
    """Patients (by index) for the test list: shuffled, taken until ~22% of the images."""
    order = rng.permutation(len(per_patient))
    target = TEST_SHARE * sum(per_patient)
    chosen: set[int] = set()
    taken = 0
    for patient in order[:-1]:  # at least one patient stays in train_val
        if taken + per_patient[patient] / 2 > target:
            break
        chosen.add(int(patient))
        taken += per_patient[patient]
    return chosen


def write_csv(path: Path, plan: list[SynthImage], size: int) -> None:
    # NIH lists the original detector size and spacing; ours are the size written, and
    # the spacing that keeps NIH's ~36 cm field of view.
    spacing = f"{0.143 * 2500 / size:.3f}"
    lines = [CSV_HEADER]
    for item in plan:
        lines.append(
            f"{item.filename},{decode_labels(item.labels)},{item.follow_up},{item.patient_id},"
            f"{item.age},{item.gender},{item.view},{size},{size},{spacing},{spacing},"
        )
    path.write_text("\n".join(lines) + "\n")


def write_lists(out: Path, plan: list[SynthImage]) -> None:
    # NIH's lists are sorted by file name.
    test = sorted(item.filename for item in plan if item.test)
    train_val = sorted(item.filename for item in plan if not item.test)
    (out / TEST_LIST).write_text("".join(f"{name}\n" for name in test))
    (out / TRAIN_VAL_LIST).write_text("".join(f"{name}\n" for name in train_val))
