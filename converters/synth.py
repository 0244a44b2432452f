"""A synthetic ChestX-ray14 with NIH's exact layout, realistic PNG sizes and learnable labels.

    python -m converters.synth OUT --images N [--size 1024] [--seed 0] [--layout archive|flat]
                               [--workers N] [--mark-strength S] [--overwrite]

Writes `Data_Entry_2017.csv` (the original 2017 header, a trailing comma on every line),
`train_val_list.txt`, `test_list.txt` (about 22% of the images, by patient) and 8-bit
grayscale PNGs named `PPPPPPPP_FFF.png` under `images_001/images/` ... `images_012/images/`
(archive) or `images/` (flat), plus `synth.json` (the parameters; written last, so its
presence means the set is complete).

Pixels: smooth chest-like anatomy (dark lungs, ribs, mediastinum, spine, clavicles) plus
film noise, tuned so that 1024x1024 images compress to about 350-450 KB like NIH's. Each
finding adds a label-specific pattern (a grating, checkerboard or rings of its
own orientation and scale, sized relative to the image) at a random place, so that a
network trained at 64 px learns the labels: this is how tests prove labels travel through
the pipelines. Same seed, same bytes; the pixels of an image depend only on (seed, image),
never on the number of workers.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image

from converters.chestxray import CSV_NAMES, TEST_LIST, TRAIN_VAL_LIST
from converters.labels import NUM_LABELS, decode_labels

SYNTH_VERSION = 1
PARAMS_NAME = "synth.json"
LAYOUTS: tuple[str, ...] = ("archive", "flat")
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
# Pixel model. Noise amplitude sets the PNG size (pure noise compresses badly, smooth
# images too well); 1.2 grey levels lands 1024 px images near 400 KB, NIH's mean.
NOISE_SIGMA = 1.2
ANATOMY_MAX_SIZE = 256  # anatomy is drawn at most this large, then upsampled (it is smooth)
DEFAULT_MARK_STRENGTH = 1.0
# Grey levels at strength 1: a quarter of the anatomy's ~120-level contrast, the least that
# DenseNet121 from scratch at 64 px learns within a few epochs on a few hundred images.
MARK_AMPLITUDE = 32.0
MARK_RADIUS = 0.28  # of the image side; survives downsizing to 32 px
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


@dataclass(frozen=True)
class SynthParams:
    """Everything the pixels and files depend on; stored as synth.json."""

    images: int
    size: int
    seed: int
    layout: str
    mark_strength: float
    version: int = SYNTH_VERSION


def generate(
    out: Path,
    *,
    images: int,
    size: int = 1024,
    seed: int = 0,
    layout: str = "archive",
    workers: int | None = None,
    progress: bool = False,
    mark_strength: float = DEFAULT_MARK_STRENGTH,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic ChestX-ray14 into `out` and return `out`.

    When `out` already holds a complete set made with the same parameters, nothing is
    written (a second call is instant). A non-empty `out` otherwise is an error unless
    `overwrite`, which removes only what this generator writes.
    """
    params = SynthParams(
        images=images, size=size, seed=seed, layout=layout, mark_strength=mark_strength
    )
    _check_params(params)
    out = Path(out)
    if _already_generated(out, params):
        return out
    _prepare_folder(out, overwrite=overwrite)
    plan = plan_dataset(images=images, seed=seed, layout=layout)
    for folder in sorted({item.folder for item in plan}):
        (out / folder).mkdir(parents=True, exist_ok=True)
    _write_pngs(out, plan, params, workers=workers, progress=progress)
    _write_csv(out / CSV_NAMES[0], plan, size)
    _write_lists(out, plan)
    # Last: its presence says the set is complete.
    (out / PARAMS_NAME).write_text(json.dumps(asdict(params), indent=2) + "\n")
    return out


# --- metadata ------------------------------------------------------------------------------


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


def _write_csv(path: Path, plan: list[SynthImage], size: int) -> None:
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


def _write_lists(out: Path, plan: list[SynthImage]) -> None:
    # NIH's lists are sorted by file name.
    test = sorted(item.filename for item in plan if item.test)
    train_val = sorted(item.filename for item in plan if not item.test)
    (out / TEST_LIST).write_text("".join(f"{name}\n" for name in test))
    (out / TRAIN_VAL_LIST).write_text("".join(f"{name}\n" for name in train_val))


# --- pixels --------------------------------------------------------------------------------

# One pattern per finding: (kind, angle in degrees, period as a fraction of the image side).
# The seven common findings share one fine scale and the seven rare ones a coarse scale, so
# that a network that learns the common marks early does not learn, by the way, to score
# rare marks down (rare findings' negatives are full of common marks).
MARK_PATTERNS: tuple[tuple[str, float, float], ...] = (
    ("grating", 135.0, 1 / 10),  # Atelectasis
    ("grating", 45.0, 1 / 5),  # Cardiomegaly
    ("grating", 45.0, 1 / 10),  # Effusion
    ("checker", 0.0, 1 / 10),  # Infiltration
    ("grating", 0.0, 1 / 10),  # Mass
    ("ring", 0.0, 1 / 10),  # Nodule
    ("checker", 45.0, 1 / 5),  # Pneumonia
    ("grating", 90.0, 1 / 10),  # Pneumothorax
    ("checker", 45.0, 1 / 10),  # Consolidation
    ("grating", 135.0, 1 / 5),  # Edema
    ("grating", 0.0, 1 / 5),  # Emphysema
    ("checker", 0.0, 1 / 5),  # Fibrosis
    ("ring", 0.0, 1 / 5),  # Pleural_Thickening
    ("grating", 90.0, 1 / 5),  # Hernia
)


@functools.lru_cache(maxsize=64)
def mark_pattern(label: int, size: int) -> np.ndarray:
    """The finding's mark as float32 [d, d], peak amplitude 1, windowed to a disc.

    Its diameter and period are fractions of `size`, so the mark looks the same at any
    resolution down to 32 px. Cached, hence read-only.
    """
    kind, angle, period = MARK_PATTERNS[label]
    radius = max(MARK_RADIUS * size, 2.0)
    half = math.ceil(radius)
    axis = np.arange(-half, half + 1, dtype=np.float32)
    y, x = np.meshgrid(axis, axis, indexing="ij")
    distance = np.sqrt(x * x + y * y) / radius
    # Flat inside 60% of the radius, a cosine taper outside: no hard edge to key on.
    taper = np.clip((distance - 0.6) / 0.4, 0.0, 1.0)
    window = np.where(distance < 1.0, np.cos(taper * (math.pi / 2)) ** 2, 0.0)
    theta = math.radians(angle)
    along = (x * math.cos(theta) + y * math.sin(theta)) / size
    across = (-x * math.sin(theta) + y * math.cos(theta)) / size
    if kind == "grating":
        pattern = np.cos(2 * math.pi * along / period)
    elif kind == "checker":
        pattern = np.cos(2 * math.pi * along / period) * np.cos(2 * math.pi * across / period)
        pattern = pattern / max(float(np.abs(pattern).max()), 1e-6)
    else:  # ring
        pattern = np.cos(2 * math.pi * distance * radius / size / period)
    mark = (pattern * window).astype(np.float32)
    mark.flags.writeable = False
    return mark


def render_image(
    item: SynthImage, *, size: int, seed: int, mark_strength: float = DEFAULT_MARK_STRENGTH
) -> np.ndarray:
    """The image's pixels, uint8 [size, size]. Anatomy depends on (seed, patient), noise and
    mark places on (seed, image); marking changes nothing else, so strength 0 gives the
    same image without marks."""
    anatomy_rng = np.random.default_rng([seed, 1, item.patient_id])
    image_rng = np.random.default_rng([seed, 2, item.index])
    small = min(size, ANATOMY_MAX_SIZE)
    anatomy = _anatomy(anatomy_rng, small, tilt=float(image_rng.normal(0.0, 0.02)))
    if small != size:
        anatomy = np.asarray(
            Image.fromarray(anatomy, mode="F").resize((size, size), Image.Resampling.BILINEAR)
        )
    # Film noise varies between exposures, and so do NIH's file sizes.
    sigma = NOISE_SIGMA * float(image_rng.uniform(0.6, 1.4))
    pixels = anatomy + image_rng.standard_normal((size, size), dtype=np.float32) * sigma
    places = _mark_places(image_rng, item.labels, size)
    if mark_strength:
        for label, (row, column) in places:
            _add_mark(
                pixels, mark_pattern(label, size), row, column, MARK_AMPLITUDE * mark_strength
            )
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _mark_places(
    rng: np.random.Generator, labels: Sequence[int], size: int
) -> list[tuple[int, tuple[int, int]]]:
    """A centre for each finding's mark inside the chest, apart from the others if possible."""
    places: list[tuple[int, tuple[int, int]]] = []
    for label in (position for position, bit in enumerate(labels) if bit):
        for _ in range(20):
            centre = rng.uniform(0.3, 0.7, size=2) * size
            if all(math.dist(centre, other) > MARK_RADIUS * size for _, other in places):
                break
        places.append((label, (int(centre[0]), int(centre[1]))))
    return places


def _add_mark(
    pixels: np.ndarray, mark: np.ndarray, row: int, column: int, amplitude: float
) -> None:
    half = mark.shape[0] // 2
    top, left = row - half, column - half
    rows = slice(max(top, 0), min(top + mark.shape[0], pixels.shape[0]))
    columns = slice(max(left, 0), min(left + mark.shape[1], pixels.shape[1]))
    pixels[rows, columns] += (
        amplitude
        * mark[rows.start - top : rows.stop - top, columns.start - left : columns.stop - left]
    )


def _smooth_inside(value: np.ndarray, edge: float) -> np.ndarray:
    """1 inside (value < 1), 0 outside, with a soft edge: a smooth region mask."""
    # Clipped: far outside, exp would overflow float32 (the mask is 0 there anyway).
    return 1.0 / (1.0 + np.exp(np.minimum((value - 1.0) / edge, 60.0)))


def _anatomy(rng: np.random.Generator, n: int, *, tilt: float) -> np.ndarray:
    """A frontal chest radiograph's large shapes in grey levels (float32 [n, n])."""
    jitter = rng.normal(0.0, 1.0, size=12)
    axis = np.linspace(-1.0, 1.0, n, dtype=np.float32)
    y, x = np.meshgrid(axis, axis, indexing="ij")
    x = x + tilt * y
    edge = 0.02
    # Body: soft tissue bright against the dark air around it.
    body = _smooth_inside((x / (0.93 + 0.03 * jitter[0])) ** 2 + ((y - 0.15) / 1.25) ** 2, 0.03)
    image = 18.0 + 120.0 * body + 8.0 * (y + 1.0)
    # Lungs: air is dark; narrower at the apex, cut by the diaphragm's domes below.
    lung_half_width = 0.34 + 0.02 * jitter[1]
    lung_centre_y = -0.05 + 0.03 * jitter[2]
    lungs = np.zeros_like(x)
    for side in (-1.0, 1.0):
        centre_x = side * (0.42 + 0.02 * jitter[3])
        width = lung_half_width * (0.75 + 0.25 * np.clip((y + 0.7) / 0.6, 0.0, 1.0))
        shape = ((x - centre_x) / width) ** 2 + (
            (y - lung_centre_y) / (0.68 + 0.03 * jitter[4])
        ) ** 2
        dome = 0.58 + 0.03 * jitter[5] - 0.6 * (x - centre_x) ** 2 + (0.04 if side > 0 else 0.0)
        lungs = np.maximum(lungs, _smooth_inside(shape, edge) * _smooth_inside(y / dome, edge))
    image -= (78.0 + 6.0 * jitter[6]) * lungs
    # Heart and mediastinum: dense, over the lower middle, more to the patient's left.
    heart = _smooth_inside(
        ((x - 0.10 - 0.03 * jitter[7]) / (0.26 + 0.02 * jitter[8])) ** 2 + ((y - 0.30) / 0.30) ** 2,
        0.06,
    )
    mediastinum = _smooth_inside((x / 0.13) ** 2 + ((y + 0.2) / 0.6) ** 2, 0.08)
    image += 55.0 * np.maximum(heart, mediastinum) * (0.4 + 0.6 * lungs)
    # Spine down the middle.
    image += 25.0 * np.exp(-((x / 0.06) ** 2)) * body
    # Ribs: curved bands over the chest, brighter where they cross the dark lungs.
    rib_phase = (y - (0.35 + 0.03 * jitter[9]) * x * x + 0.1 * np.abs(x)) * (4.2 + 0.2 * jitter[10])
    ribs = (0.5 + 0.5 * np.cos(2 * np.pi * rib_phase)) ** 4
    thorax = _smooth_inside((x / 0.85) ** 2 + ((y + 0.05) / 0.72) ** 2, 0.05)
    image += 26.0 * ribs * thorax * (0.3 + 0.7 * lungs)
    # Clavicles: two bright bars across the top.
    for side in (-1.0, 1.0):
        along = side * x
        bar = np.abs(y + 0.72 + 0.03 * jitter[11] - 0.18 * (along - 0.35) ** 2) / 0.035
        image += 30.0 * _smooth_inside(bar, 0.15) * _smooth_inside(np.abs(along - 0.4) / 0.38, 0.05)
    return image.astype(np.float32)


# --- writing -------------------------------------------------------------------------------


def _render_and_save(task: tuple[SynthImage, Path, int, int, float]) -> int:
    item, path, size, seed, mark_strength = task
    pixels = render_image(item, size=size, seed=seed, mark_strength=mark_strength)
    # A fixed compression level and no time stamp: same pixels, same bytes.
    Image.fromarray(pixels, mode="L").save(path, format="PNG", compress_level=6)
    return path.stat().st_size


def _write_pngs(
    out: Path,
    plan: list[SynthImage],
    params: SynthParams,
    *,
    workers: int | None,
    progress: bool,
) -> None:
    tasks = [
        (item, out / item.folder / item.filename, params.size, params.seed, params.mark_strength)
        for item in plan
    ]
    count = _worker_count(workers, len(plan), params.size)
    bar = _progress_bar(len(tasks), enabled=progress)
    try:
        if count == 1:
            for task in tasks:
                _render_and_save(task)
                bar.update(1)
            return
        # spawn, not fork: the caller may have TensorFlow's threads running.
        with ProcessPoolExecutor(count, mp_context=get_context("spawn")) as pool:
            for _ in pool.map(_render_and_save, tasks, chunksize=8):
                bar.update(1)
    finally:
        bar.close()


def _worker_count(workers: int | None, images: int, size: int) -> int:
    if workers is not None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        return workers
    # Starting processes costs about a second; small jobs run faster in this one.
    if images * size * size < 40 * 1024 * 1024:
        return 1
    return max(1, min(os.cpu_count() or 1, images // 8))


def _progress_bar(total: int, *, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="synth", file=sys.stderr, disable=not enabled)


def _check_params(params: SynthParams) -> None:
    if params.images < 1:
        raise ValueError(f"images must be at least 1, got {params.images}")
    if params.size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {params.size}")
    if params.layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {params.layout!r}")
    if params.mark_strength < 0:
        raise ValueError(f"mark_strength must be >= 0, got {params.mark_strength}")


def _already_generated(out: Path, params: SynthParams) -> bool:
    marker = out / PARAMS_NAME
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()) == asdict(params)
    except (OSError, ValueError):
        return False


def _generated_paths(out: Path) -> Iterator[Path]:
    """What this generator writes into a folder (and nothing else)."""
    for name in (*CSV_NAMES[:1], TRAIN_VAL_LIST, TEST_LIST, PARAMS_NAME):
        if (out / name).exists():
            yield out / name
    if (out / "images").is_dir():
        yield out / "images"
    yield from sorted(out.glob("images_[0-9][0-9][0-9]"))


def _prepare_folder(out: Path, *, overwrite: bool) -> None:
    import shutil

    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(
                f"{out}: folder is not empty and holds no synthetic set made with these "
                "parameters; choose an empty folder or pass --overwrite"
            )
        for path in _generated_paths(out):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)


# --- command line --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m converters.synth",
        description="Write a synthetic ChestX-ray14 with NIH's exact layout.",
    )
    parser.add_argument("out", type=Path, help="folder to write (created; must be empty)")
    parser.add_argument("--images", type=int, required=True, help="number of images")
    parser.add_argument("--size", type=int, default=1024, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="archive",
        help="archive: images_001/images/...; flat: images/",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="processes (default: all cores for large sets)"
    )
    parser.add_argument(
        "--mark-strength",
        type=float,
        default=DEFAULT_MARK_STRENGTH,
        help="scale of the label marks (0: no marks, labels unlearnable)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a previous synthetic set in OUT"
    )
    args = parser.parse_args(argv)
    try:
        generate(
            args.out,
            images=args.images,
            size=args.size,
            seed=args.seed,
            layout=args.layout,
            workers=args.workers,
            progress=True,
            mark_strength=args.mark_strength,
            overwrite=args.overwrite,
        )
    except ValueError as error:
        print(f"converters.synth: {error}", file=sys.stderr)
        return 2
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
