"""The synthetic ChestX-ray14: layout, determinism, prevalence, learnable marks, PNG sizes."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from converters import synth, synth_pixels, synth_plan
from converters.chestxray import read_chestxray14
from converters.labels import LABELS

NIH_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
    "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize("layout", ["archive", "flat"])
def test_layout_reads_back_with_the_reader(tmp_path: Path, layout: str) -> None:
    root = synth.generate(tmp_path / "set", images=60, size=32, seed=5, layout=layout)
    data = read_chestxray14(root)
    summary = data.summary

    assert summary.layout == layout
    assert summary.image_dirs == (12 if layout == "archive" else 1)
    assert (summary.rows, summary.records, summary.images_found) == (60, 60, 60)
    assert summary.bad_rows == () and summary.listed_missing == () and summary.unlisted == ()
    assert summary.in_neither_list == () and summary.in_both_lists == ()
    lines = (root / "Data_Entry_2017.csv").read_text().splitlines()
    assert lines[0] == NIH_HEADER
    assert all(line.endswith(",") and line.count(",") == 11 for line in lines[1:])
    for record in data.records:
        assert re.fullmatch(r"\d{8}_\d{3}\.png", record.filename)
        assert record.filename == f"{record.patient_id:08d}_{record.follow_up:03d}.png"
        assert record.path is not None
    with Image.open(data.records[0].path) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "L", (32, 32))
    follow_ups = Counter(record.patient_id for record in data.records)
    assert max(follow_ups.values()) >= 2  # several follow-ups per patient
    test_patients = {record.patient_id for record in data.split("test")}
    train_val_patients = {
        record.patient_id for record in data.records if record.filename in data.train_val
    }
    assert test_patients and not test_patients & train_val_patients
    assert data.split("train") and data.split("val")


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    first = _files(synth.generate(tmp_path / "a", images=24, size=48, seed=3, workers=1))
    # Two processes write the same bytes as one: pixels depend on (seed, image) only.
    second = _files(synth.generate(tmp_path / "b", images=24, size=48, seed=3, workers=2))
    other = _files(synth.generate(tmp_path / "c", images=24, size=48, seed=4, workers=1))

    assert first == second
    assert len(first) == 24 + 4  # images, CSV, two lists, synth.json
    pngs = [name for name in first if name.endswith(".png")]
    assert sum(first[name] != other.get(name) for name in pngs) >= len(pngs) // 2
    assert first["Data_Entry_2017.csv"] != other["Data_Entry_2017.csv"]


def test_generate_again_reuses_or_refuses(tmp_path: Path) -> None:
    out = tmp_path / "set"
    synth.generate(out, images=6, size=32, seed=1)
    stamp = (out / "synth.json").stat().st_mtime_ns
    synth.generate(out, images=6, size=32, seed=1)  # same parameters: nothing written
    assert (out / "synth.json").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="not empty"):
        synth.generate(out, images=8, size=32, seed=1)
    (out / "notes.txt").write_text("mine")
    synth.generate(out, images=8, size=32, seed=1, layout="flat", overwrite=True)
    assert read_chestxray14(out).summary.images_found == 8
    assert not list(out.glob("images_*")) and (out / "notes.txt").read_text() == "mine"


def test_command_line(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    out = tmp_path / "cli"
    argv = [sys.executable, "-m", "converters.synth", str(out), "--images", "5", "--size", "32"]
    done = subprocess.run(argv, env=subprocess_env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert len(list(out.glob("images_*/images/*.png"))) == 5
    again = subprocess.run(
        [*argv[:-1], "40"], env=subprocess_env, capture_output=True, text=True, check=False
    )
    assert again.returncode == 2 and "not empty" in again.stderr
    bad = subprocess.run(
        [*argv, "--layout", "nested"],
        env=subprocess_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2


def test_label_prevalence_matches_nih() -> None:
    labels = synth_plan.sample_labels(np.random.default_rng(0), 40_000)
    rates = labels.mean(axis=0)
    no_finding = float((labels.sum(axis=1) == 0).mean())

    assert abs(no_finding - 0.538) < 0.01
    for name, rate, target in zip(LABELS, rates, synth_plan.PREVALENCE, strict=True):
        # Within 4 standard errors (and 0.1 points for the rare ones).
        tolerance = max(4 * (target * (1 - target) / len(labels)) ** 0.5, 0.001)
        assert abs(rate - target) < tolerance, (name, rate, target)
    assert rates.sum() > 1 - no_finding + 0.15  # findings co-occur
    assert rates[LABELS.index("Infiltration")] == rates.max()
    assert rates[LABELS.index("Hernia")] == rates.min()


def test_plan_has_follow_ups_and_a_test_share_by_patient() -> None:
    plan = synth_plan.plan_dataset(images=5000, seed=2)
    per_patient = Counter(item.patient_id for item in plan)
    test_share = sum(item.test for item in plan) / len(plan)

    assert len(plan) == 5000 and len({item.filename for item in plan}) == 5000
    assert 2.5 < len(plan) / len(per_patient) < 5  # NIH: 3.6 images per patient
    assert max(per_patient.values()) >= 10 and min(per_patient.values()) == 1
    assert abs(test_share - synth_plan.TEST_SHARE) < 0.01
    for patient in per_patient:
        assert len({item.test for item in plan if item.patient_id == patient}) == 1
    assert synth_plan.plan_dataset(images=5000, seed=2) == plan


def test_marks_are_label_specific(tmp_path: Path) -> None:
    """Marks are the only difference strength makes, present exactly where findings are,
    and each image's mark matches its own finding's pattern better than any other."""
    size = 64
    plan = synth_plan.plan_dataset(images=250, seed=9)
    checked = Counter()
    for item in plan:
        marked = synth_pixels.render_image(item, size=size, seed=9).astype(np.float32)
        plain = synth_pixels.render_image(item, size=size, seed=9, mark_strength=0.0)
        difference = marked - plain
        if not any(item.labels):
            assert not difference.any(), item.filename
            continue
        assert np.abs(difference).max() >= 3, item.filename
        if sum(item.labels) != 1:
            continue
        label = item.labels.index(1)
        scores = [_best_match(difference, synth_pixels.mark_pattern(k, size)) for k in range(14)]
        assert int(np.argmax(scores)) == label, (item.filename, LABELS[label], scores)
        checked[label] += 1
    assert len(checked) >= 8  # most findings appeared alone at least once


@pytest.fixture(scope="module")
def rendered_128() -> tuple[list[synth_plan.SynthImage], list[Image.Image]]:
    """300 planned images rendered at 128 px, made once for the downsizing tests."""
    plan = synth_plan.plan_dataset(images=300, seed=4)
    return plan, [
        Image.fromarray(synth_pixels.render_image(item, size=128, seed=4)) for item in plan
    ]


@pytest.mark.parametrize(("size", "blur"), [(64, 9), (32, 5)])
def test_marks_survive_downsizing_in_whole_images(
    rendered_128: tuple[list[synth_plan.SynthImage], list[Image.Image]], size: int, blur: int
) -> None:
    """Images made at 128 px and downsized to 64 or 32 px, anatomy and noise included:
    the matched filter of a common finding's pattern ranks positives above negatives,
    so the labels are learnable at the resolutions the tests train at."""
    plan, rendered = rendered_128
    images = [
        _high_pass(
            np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), np.float32), blur
        )
        for image in rendered
    ]
    for name in ("Atelectasis", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumothorax"):
        label = LABELS.index(name)
        template = _centre(synth_pixels.mark_pattern(label, size))
        scores = np.array([_best_match(image, template) for image in images])
        positive = np.array([item.labels[label] == 1 for item in plan])
        assert _auc(positive, scores) > 0.75, name


@pytest.mark.slow
def test_full_size_png_bytes_match_nih(tmp_path: Path) -> None:
    """1024 px images compress like NIH's (350-450 KB each); prints the mean."""
    root = synth.generate(tmp_path / "full", images=6, seed=0, layout="flat")
    sizes = [path.stat().st_size for path in (root / "images").glob("*.png")]
    mean_kb = sum(sizes) / len(sizes) / 1024
    print(
        f"\n1024px synthetic PNG: mean {mean_kb:.0f} KB, min {min(sizes) / 1024:.0f} KB, "
        f"max {max(sizes) / 1024:.0f} KB over {len(sizes)} images"
    )
    assert len(sizes) == 6
    assert 350 <= mean_kb <= 450
    assert all(330 * 1024 <= size <= 470 * 1024 for size in sizes)


def _centre(template: np.ndarray) -> np.ndarray:
    """The middle half of a mark (its flat, fully visible part)."""
    quarter = template.shape[0] // 4
    return template[quarter:-quarter, quarter:-quarter]


def _best_match(image: np.ndarray, template: np.ndarray) -> float:
    """Max over positions of the correlation of `image` with the zero-mean, unit-energy
    `template` (circular, by FFT: cheap, and the marks sit away from the borders)."""
    kernel = template - template.mean()
    kernel = kernel / np.sqrt((kernel**2).sum())
    padded = np.zeros_like(image, dtype=np.float64)
    padded[: kernel.shape[0], : kernel.shape[1]] = kernel
    response = np.fft.irfft2(np.fft.rfft2(image) * np.conj(np.fft.rfft2(padded)), s=image.shape)
    return float(response.max())


def _high_pass(image: np.ndarray, width: int = 9) -> np.ndarray:
    """The image minus a box-blurred copy (summed-area table): takes away large shapes."""
    padded = np.pad(image, width // 2, mode="edge").cumsum(axis=0).cumsum(axis=1)
    table = np.pad(padded, ((1, 0), (1, 0)))
    box = (
        table[width:, width:]
        - table[:-width, width:]
        - table[width:, :-width]
        + table[:-width, :-width]
    )
    return image - box / (width * width)


def _auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Rank AUC: the chance a positive scores above a negative (ties count half)."""
    pos, neg = scores[positive], scores[~positive]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))
