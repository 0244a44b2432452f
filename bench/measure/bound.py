"""The pipeline bound: the images/s no correct input pipeline can beat on this machine.

Per format, the work every image needs whatever the pipeline: read its bytes (from the
page cache), parse the record (TFRecords), decode, resize to the model's size, and mirror
half of them (the random flip). Each stage is timed on its own, single-threaded, in a
tight loop over a sample of the images already in memory, with every implementation
available here (TensorFlow's own ops, PIL, OpenCV, simplejpeg, numpy; per image, and
TensorFlow's per-batch ops divided by the batch), and the fastest is kept. Costs are CPU
seconds of this process (all its threads), the minimum over several passes (the pass
least disturbed by other work on a shared machine). Then

    bound images/s = cores / (read + parse + min(decode + resize + flip / 2, chain))

that is every core doing nothing but that work, with no scheduling, batching or framework
cost at all; a measured pipeline above its bound means the bound is wrong. `chain` is each
decoder, the fastest resize and flip run one image at a time (every other image flipped), as
a pipeline runs them: a decoded 1024 px image is then resized while still in cache, where 32
of them timed apart (32 MB) are not (measured for full-size PNG: 0.95-1.0x the stages' sum;
TensorFlow's own pipeline spent 0.96x it). `batch` (stacking images into a batch) is timed
and reported but left out of the bound: a pipeline can write each image into its batch.

Resize candidates compute the pipelines' arithmetic (bilinear, half-pixel centres, no
antialiasing, rounded to uint8); tests check each against bench.input.preprocess within a gray
level. TFRecords are read with converters.records (CRCs checked, as TensorFlow's reader
checks them) and parsed with protobuf's or TensorFlow's parser, by the feature names of
converters.features.
"""

from __future__ import annotations

import gc
import io
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters import features
from converters.records import read_records

STAGES = ("read", "parse", "decode", "resize", "flip", "batch")
IN_BOUND = {"read": 1.0, "parse": 1.0, "decode": 1.0, "resize": 1.0, "flip": 0.5, "batch": 0.0}
SAMPLE = 32  # images per timing pass
PASSES = 3
CHAIN = "chain"  # decode, resize and flip one image at a time: not a stage of its own
STAGED = "the stages' sum (each timed apart)"


@dataclass(frozen=True)
class Candidate:
    """One implementation of a stage: `run(inputs)` processes them all, returns outputs."""

    name: str
    run: Callable[[list[Any]], list[Any]]


@dataclass
class StageTimes:
    """CPU seconds per image of each candidate of each stage (minimum over passes)."""

    candidates: dict[str, dict[str, float]] = field(default_factory=dict)

    def record(self, stage: str, name: str, seconds_per_image: float) -> None:
        known = self.candidates.setdefault(stage, {}).get(name)
        if known is None or seconds_per_image < known:
            self.candidates[stage][name] = seconds_per_image

    def fastest(self, stage: str) -> tuple[str, float]:
        found = self.candidates.get(stage) or {"none (no work)": 0.0}
        name = min(found, key=found.__getitem__)
        return name, found[name]

    def merge(self, other: StageTimes) -> None:
        for stage, found in other.candidates.items():
            for name, cost in found.items():
                self.record(stage, name, cost)


def cores() -> int:
    """The cores this process may run on (its affinity), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def bound_figures(times: StageTimes, *, core_count: int | None = None) -> dict[str, Any]:
    """The bound and its attribution, from the fastest candidate of each stage."""
    count = core_count or cores()
    per_stage = {stage: times.fastest(stage) for stage in STAGES}
    staged = sum(IN_BOUND[stage] * cost for stage, (_, cost) in per_stage.items())
    cpu_s, work = staged, STAGED
    if CHAIN in times.candidates:
        per_image = sum(per_stage[stage][1] for stage in ("read", "parse"))
        chain = per_image + times.fastest(CHAIN)[1]
        cpu_s, work = (chain, times.fastest(CHAIN)[0]) if chain < staged else (staged, STAGED)
    return {
        "bound_images_per_sec": count / cpu_s if cpu_s > 0 else None,
        "bound_cpu_s_per_image": cpu_s,
        "bound_work": work,
        "stages_cpu_s_per_image": staged,
        "cores": count,
        "stage_cpu_s_per_image": {stage: cost for stage, (_, cost) in per_stage.items()},
        "stage_implementation": {stage: name for stage, (name, _) in per_stage.items()},
        "stage_weight_in_bound": dict(IN_BOUND),
        "candidates_cpu_s_per_image": times.candidates,
        "unit": "images/s; stage costs in CPU seconds per image",
    }


def time_stages(
    source: Any,
    *,
    image_size: int,
    sample: int = SAMPLE,
    passes: int = PASSES,
    times: StageTimes | None = None,
) -> StageTimes:
    """Time every candidate of every stage on the first `sample` images of `source` (a
    bench.sources.Source), `passes` times each; the results go into `times` (or a new one)."""
    times = times or StageTimes()
    wait_until_quiet()
    if source.format == "tfrecord":
        shard = Path(source.files[0])
        _time(
            times, "read", [_read_shard(source.compression)], [shard], per=source.record_counts[0]
        )
        records = read_records(shard, compression=source.compression)[:sample]
        encoded = _time(times, "parse", _parse_candidates(), records, passes=passes)
        encoding = source.encoding
    else:
        paths = [Path(path) for path in source.files[:sample]]
        encoded = _time(times, "read", [Candidate("Path.read_bytes", _read_files)], paths)
        encoding = source.encoding or "png"
    if encoding == "raw":
        decoders = [_raw_candidate((source.stored_size, source.stored_size))]
    else:
        decoders = _decode_candidates(encoding)
    gray = _time(times, "decode", decoders, encoded, passes=passes)
    resizers: list[Candidate] = []
    resized = gray
    if gray[0].shape != (image_size, image_size):
        resizers = _resize_candidates(image_size)
        resized = _time(times, "resize", resizers, gray, passes=passes)
    flips = _flip_candidates()
    _time(times, "flip", flips, resized, passes=passes)
    _time(times, "batch", [Candidate("numpy.stack", _stack)], resized, passes=passes)
    # Every decoder (their costs differ once a decoded image stays in cache), with the
    # fastest resize and flip.
    resize = [_fastest(times, "resize", resizers)] if resizers else []
    flip = _fastest(times, "flip", flips)
    chains = [_chain([decoder, *resize], flip=flip) for decoder in decoders]
    _time(times, CHAIN, chains, encoded, passes=passes)
    return times


def _fastest(times: StageTimes, stage: str, candidates: Sequence[Candidate]) -> Candidate:
    name = times.fastest(stage)[0]
    return next(candidate for candidate in candidates if candidate.name == name)


def _chain(steps: list[Candidate], *, flip: Candidate) -> Candidate:
    """`steps` run one image at a time, then `flip` on every other image."""

    def run(payloads: list[Any]) -> list[Any]:
        outputs = []
        for index, payload in enumerate(payloads):
            image = [payload]
            for step in steps:
                image = step.run(image)
            outputs.append(flip.run(image)[0] if index % 2 else image[0])
        return outputs

    names = " -> ".join(step.name for step in (*steps, flip))
    return Candidate(f"per image: {names} (every other image)", run)


def _time(
    times: StageTimes,
    stage: str,
    candidates: Sequence[Candidate],
    inputs: list[Any],
    *,
    passes: int = PASSES,
    per: int | None = None,
) -> list[Any]:
    """Warm each candidate up once, then time `passes` passes; return the first one's
    outputs (every candidate computes the same thing, to within a gray level)."""
    outputs: list[Any] | None = None
    for candidate in candidates:
        wait_until_quiet(collect=False)  # time_stages collected already
        try:
            result = candidate.run(inputs)  # warm-up: imports, page cache, lazy inits
        except Exception:  # an implementation that cannot do this input is no candidate
            continue
        outputs = result if outputs is None else outputs
        images = per or len(inputs)
        for _ in range(passes):
            began = time.process_time()
            candidate.run(inputs)
            times.record(stage, candidate.name, (time.process_time() - began) / images)
    if outputs is None:
        raise RuntimeError(f"no implementation of stage {stage!r} could process the images")
    return outputs


QUIET_CPU_SHARE = 0.05  # of one core: the process counts as quiet below it
QUIET_WINDOW_S = 0.05
QUIET_LIMIT_S = 10.0


def wait_until_quiet(limit_s: float = QUIET_LIMIT_S, *, collect: bool = True) -> float:
    """Wait until this process spends under QUIET_CPU_SHARE of a core while this thread
    sleeps (no other thread of it at work), at most `limit_s`; the seconds waited.

    Why: stage costs are the whole process's CPU, so that a multi-threaded op is not
    flattered; a tf.data pipeline measured just before in this process, still filling its
    buffers, was charged to the bound's stages (decode 1.6x its cost, the bound below the
    pipelines it bounds). With `collect`, unreachable garbage such as a dropped iterator is
    collected first (~0.3 s with TensorFlow loaded).
    """
    began = time.perf_counter()
    if collect:
        gc.collect()
    while time.perf_counter() - began < limit_s:
        cpu = time.process_time()
        time.sleep(QUIET_WINDOW_S)
        if time.process_time() - cpu < QUIET_CPU_SHARE * QUIET_WINDOW_S:
            break
    return time.perf_counter() - began


def _read_files(paths: list[Path]) -> list[bytes]:
    return [path.read_bytes() for path in paths]


def _read_shard(compression: str) -> Candidate:
    def run(paths: list[Path]) -> list[bytes]:
        return [record for path in paths for record in read_records(path, compression=compression)]

    return Candidate("converters.records.read_records", run)


def _parse_candidates() -> list[Candidate]:
    """The encoded image of each serialized tf.train.Example."""
    found: list[Candidate] = []
    try:
        from tensorflow.core.example import example_pb2

        def protobuf(records: list[bytes]) -> list[bytes]:
            parse = example_pb2.Example.FromString
            key = features.IMAGE_ENCODED
            return [parse(record).features.feature[key].bytes_list.value[0] for record in records]

        found.append(Candidate("protobuf Example.FromString", protobuf))
    except ImportError:
        pass
    import tensorflow as tf

    spec = {features.IMAGE_ENCODED: tf.io.FixedLenFeature([], tf.string)}

    def batched(records: list[bytes]) -> list[bytes]:
        parsed = tf.io.parse_example(tf.constant(records), spec)[features.IMAGE_ENCODED]
        return list(parsed.numpy())

    found.append(Candidate("tf.io.parse_example (per batch)", batched))
    return found


def _raw_candidate(shape: tuple[int, int]) -> Candidate:
    def run(payloads: list[bytes]) -> list[np.ndarray]:
        return [np.frombuffer(payload, np.uint8).reshape(shape) for payload in payloads]

    return Candidate("numpy.frombuffer", run)


def _decode_candidates(encoding: str) -> list[Candidate]:
    """Decoders to one gray channel: TensorFlow's op, PIL, and where installed OpenCV and
    (JPEG) simplejpeg. TensorFlow decodes JPEG with the fast integer IDCT by default, the
    others with the accurate one (within ~9 gray levels of each other); both count, as
    either is a correct decoder."""
    import tensorflow as tf
    from PIL import Image

    decode_op = tf.io.decode_jpeg if encoding == "jpeg" else tf.io.decode_png

    def tensorflow(payloads: list[bytes]) -> list[np.ndarray]:
        return [decode_op(payload, channels=1).numpy()[..., 0] for payload in payloads]

    def pil(payloads: list[bytes]) -> list[np.ndarray]:
        decoded = []
        for payload in payloads:
            with Image.open(io.BytesIO(payload)) as image:
                gray = image if image.mode == "L" else image.convert("L")
                decoded.append(np.asarray(gray))
        return decoded

    found = [
        Candidate(f"tf.io.decode_{encoding}", tensorflow),
        Candidate("PIL", pil),
    ]
    try:
        import cv2

        def opencv(payloads: list[bytes]) -> list[np.ndarray]:
            flag = cv2.IMREAD_GRAYSCALE
            return [cv2.imdecode(np.frombuffer(p, np.uint8), flag) for p in payloads]

        found.append(Candidate(f"OpenCV {cv2.__version__} imdecode", opencv))
    except ImportError:
        pass
    if encoding == "jpeg":
        try:
            import simplejpeg

            def turbo(payloads: list[bytes], fast: bool = False) -> list[np.ndarray]:
                decode = simplejpeg.decode_jpeg
                return [decode(p, colorspace="GRAY", fastdct=fast)[..., 0] for p in payloads]

            def turbo_fast(payloads: list[bytes]) -> list[np.ndarray]:
                return turbo(payloads, fast=True)

            version = simplejpeg.__version__
            found.append(Candidate(f"simplejpeg {version}", turbo))
            # The fast integer IDCT: TensorFlow's default, the pipelines' own arithmetic.
            found.append(Candidate(f"simplejpeg {version} fastdct", turbo_fast))
        except ImportError:
            pass
    return found


def _resize_candidates(image_size: int) -> list[Candidate]:
    """Bilinear, half-pixel centres, no antialiasing, uint8: the pipelines' arithmetic."""
    import tensorflow as tf
    from PIL import Image

    from bench.input.preprocess import resize, resize_batch

    size = (image_size, image_size)

    def tensorflow(images: list[np.ndarray]) -> list[np.ndarray]:
        return [resize(image[..., None], image_size).numpy()[..., 0] for image in images]

    def tensorflow_batch(images: list[np.ndarray]) -> list[np.ndarray]:
        batch = tf.constant(np.stack(images)[..., None])
        return list(resize_batch(batch, image_size).numpy()[..., 0])

    def pil_affine(images: list[np.ndarray]) -> list[np.ndarray]:
        resized = []
        for image in images:
            height, width = image.shape
            scale = (width / image_size, 0.0, 0.0, 0.0, height / image_size, 0.0)
            affine, bilinear = Image.Transform.AFFINE, Image.Resampling.BILINEAR
            picture = Image.fromarray(image).transform(size, affine, scale, bilinear)
            resized.append(np.asarray(picture))
        return resized

    found = [
        Candidate("bench.input.preprocess.resize (TF, per image)", tensorflow),
        Candidate("bench.input.preprocess.resize_batch (TF, per batch)", tensorflow_batch),
        Candidate("PIL affine bilinear", pil_affine),
    ]
    try:
        import cv2

        def opencv(images: list[np.ndarray]) -> list[np.ndarray]:
            return [cv2.resize(image, size, interpolation=cv2.INTER_LINEAR) for image in images]

        found.append(Candidate(f"OpenCV {cv2.__version__} resize INTER_LINEAR", opencv))
    except ImportError:
        pass
    return found


def _flip_candidates() -> list[Candidate]:
    """Mirror every image (the bound counts half: half the images are flipped)."""

    def numpy_flip(images: list[np.ndarray]) -> list[np.ndarray]:
        return [np.ascontiguousarray(image[:, ::-1]) for image in images]

    found = [Candidate("numpy reversed copy", numpy_flip)]
    try:
        import cv2

        def opencv(images: list[np.ndarray]) -> list[np.ndarray]:
            return [cv2.flip(image, 1) for image in images]

        found.append(Candidate(f"OpenCV {cv2.__version__} flip", opencv))
    except ImportError:
        pass
    return found


def _stack(images: list[np.ndarray]) -> list[np.ndarray]:
    return [np.stack(images)]
