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

The parts: converters.synth_plan (the CSV rows and split lists), converters.synth_pixels
(anatomy, noise and marks); this module writes the folder and is the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from PIL import Image

from converters.chestxray_layout import CSV_NAMES, TEST_LIST, TRAIN_VAL_LIST
from converters.synth_pixels import DEFAULT_MARK_STRENGTH, render_image
from converters.synth_plan import SynthImage, plan_dataset, write_csv, write_lists

SYNTH_VERSION = 1
PARAMS_NAME = "synth.json"
LAYOUTS: tuple[str, ...] = ("archive", "flat")


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
    write_csv(out / CSV_NAMES[0], plan, size)
    write_lists(out, plan)
    # Last: its presence says the set is complete.
    (out / PARAMS_NAME).write_text(json.dumps(asdict(params), indent=2) + "\n")
    return out


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


def _progress_bar(total: int, *, enabled: bool) -> Any:
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
