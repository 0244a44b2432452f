"""The synthetic set's pixels: smooth chest-like anatomy plus film noise, tuned to NIH's PNG sizes,
and a label-specific mark per finding so that a network learns the labels. The pixels of an
image depend only on (seed, image).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from converters.synth_plan import SynthImage

# Pixel model. Noise amplitude sets the PNG size (pure noise compresses badly, smooth
# images too well); 1.2 grey levels lands 1024 px images near 400 KB, NIH's mean.
NOISE_SIGMA = 1.2
ANATOMY_MAX_SIZE = 256  # anatomy is drawn at most this large, then upsampled (it is smooth)
DEFAULT_MARK_STRENGTH = 1.0
# Grey levels at strength 1: a quarter of the anatomy's ~120-level contrast, the least that
# DenseNet121 from scratch at 64 px learns within a few epochs on a few hundred images.
MARK_AMPLITUDE = 32.0
MARK_RADIUS = 0.28  # of the image side; survives downsizing to 32 px


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
