"""The pipeline bound (bench.measure.bound): its stage timers, and that its candidates do the
pipelines' own work (a bound computed from less work would not bound them)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bench.contract.noise import CV_REPEATS_NOISY, cv
from bench.input.pipelines import PipelineOptions, build_dataset, raw_source, tfrecord_source
from bench.measure import bound

IMAGE_SIZE = 32


@pytest.fixture(scope="module")
def resized_records(val_records: Callable[..., Path]) -> dict[str, Path]:
    """48 px records of `synth_root` in each encoding (the pipelines resize them to 32)."""
    return {encoding: val_records(encoding, resize=48) for encoding in ("png", "jpeg", "raw")}


def test_stage_timers_on_a_tiny_set_return_positive_costs(
    synth_root: Path, records_png: Path, resized_records: dict[str, Path]
) -> None:
    sources = {
        "raw files": raw_source(synth_root, "val"),
        "png records": tfrecord_source(records_png, "val"),
        **{f"{e} records 48": tfrecord_source(p, "val") for e, p in resized_records.items()},
    }
    for name, source in sources.items():
        times = bound.time_stages(source, image_size=IMAGE_SIZE, sample=6, passes=2)
        figures = bound.bound_figures(times, core_count=2)
        costs = figures["stage_cpu_s_per_image"]
        expected = {"read", "decode", "resize", "flip", "batch"}
        if source.format == "tfrecord":
            expected.add("parse")
        for stage in expected:
            assert costs[stage] > 0, (name, stage, costs)
            assert figures["stage_implementation"][stage] in times.candidates[stage], name
        if source.format == "raw":
            assert costs["parse"] == 0 and figures["stage_implementation"]["parse"].startswith(
                "none"
            )
        if source.encoding == "raw":
            assert figures["stage_implementation"]["decode"] == "numpy.frombuffer"
        assert figures["bound_images_per_sec"] == pytest.approx(
            2 / figures["bound_cpu_s_per_image"]
        )
        # The per-image chain was timed too, and the bound takes the cheaper of the two.
        chains = times.candidates[bound.CHAIN]  # one per decoder
        assert len(chains) == len(times.candidates["decode"]), name
        assert all(cost > 0 for cost in chains.values()), name
        assert figures["bound_cpu_s_per_image"] <= figures["stages_cpu_s_per_image"], name


def test_the_bound_counts_every_stage_once_flip_at_half_and_batch_not() -> None:
    times = bound.StageTimes()
    for stage, cost in {"read": 1e-4, "parse": 2e-4, "decode": 3e-3, "resize": 5e-4}.items():
        times.record(stage, "slow", cost * 2)
        times.record(stage, "fast", cost)
    times.record("flip", "fast", 2e-4)
    times.record("batch", "fast", 1e-3)
    times.record("decode", "fast", 4e-3)  # a slower pass never replaces a faster one
    figures = bound.bound_figures(times, core_count=4)
    cpu_s = 1e-4 + 2e-4 + 3e-3 + 5e-4 + 2e-4 / 2
    assert figures["bound_cpu_s_per_image"] == pytest.approx(cpu_s)
    assert figures["bound_images_per_sec"] == pytest.approx(4 / cpu_s)
    assert figures["stage_implementation"]["decode"] == "fast"
    assert figures["bound_work"] == bound.STAGED
    # decode, resize and flip run one image at a time: cheaper than their sum, it is the bound
    core = 3e-3 + 5e-4 + 2e-4 / 2
    times.record(bound.CHAIN, "per image", core * 0.9)
    figures = bound.bound_figures(times, core_count=4)
    assert figures["bound_cpu_s_per_image"] == pytest.approx(1e-4 + 2e-4 + core * 0.9)
    assert figures["bound_work"] == "per image" and figures["stages_cpu_s_per_image"] == cpu_s
    times.candidates[bound.CHAIN]["per image"] = core * 1.1  # dearer: the stages' sum stays
    assert bound.bound_figures(times, core_count=4)["bound_cpu_s_per_image"] == cpu_s


def test_the_chain_does_the_stages_work_one_image_at_a_time(synth_root: Path) -> None:
    raw = raw_source(synth_root, "val")
    payloads = bound._read_files([Path(path) for path in raw.files[:4]])
    decode = bound._decode_candidates("png")[0]
    resize, flip = bound._resize_candidates(IMAGE_SIZE)[0], bound._flip_candidates()[0]
    chain = bound._chain([decode, resize], flip=flip)
    staged = resize.run(decode.run(payloads))
    outputs = chain.run(payloads)
    for index, (image, reference) in enumerate(zip(outputs, staged, strict=True)):
        expected = reference[:, ::-1] if index % 2 else reference  # every other one flipped
        np.testing.assert_array_equal(image, expected)
    assert decode.name in chain.name and flip.name in chain.name


def test_resize_candidates_compute_the_pipelines_resize(synth_root: Path) -> None:
    """Every resize the bound may pick does what the pipelines do, within a gray level."""
    raw = raw_source(synth_root, "val")
    options = PipelineOptions(kind="naive", image_size=IMAGE_SIZE, batch_size=8, training=False)
    piped = np.concatenate([images.numpy() for images, _ in build_dataset(raw, options)])
    originals = bound._decode_candidates("png")[0].run(
        bound._read_files([Path(path) for path in raw.files])
    )
    candidates = bound._resize_candidates(IMAGE_SIZE)
    if importlib.util.find_spec("cv2") is not None:  # installed: it must be a candidate
        assert any(c.name.startswith("OpenCV") for c in candidates)
    for candidate in candidates:
        resized = np.stack(candidate.run(originals))
        difference = np.abs(resized.astype(int) - piped[..., 0].astype(int))
        assert difference.max() <= 1, candidate.name


@pytest.mark.parametrize("encoding", ["png", "jpeg"])
def test_decode_candidates_agree_with_tensorflow(
    encoding: str, resized_records: dict[str, Path]
) -> None:
    source = tfrecord_source(resized_records[encoding], "val")
    records = bound._read_shard(source.compression).run([Path(source.files[0])])[:8]
    parsers = bound._parse_candidates()
    payloads = parsers[0].run(records)
    for parser in parsers[1:]:
        assert parser.run(records) == payloads, parser.name
    import tensorflow as tf

    decoders = bound._decode_candidates(encoding)
    assert decoders[0].name == f"tf.io.decode_{encoding}"  # the pipelines' own op is one
    # TensorFlow's JPEG decoder has two IDCTs (its default is the fast one); a candidate
    # must match one of them.
    references = [np.stack(decoders[0].run(payloads)).astype(int)]
    if encoding == "jpeg":
        accurate = [
            tf.io.decode_jpeg(p, channels=1, dct_method="INTEGER_ACCURATE").numpy()[..., 0]
            for p in payloads
        ]
        references.append(np.stack(accurate).astype(int))
    assert references[0].shape == (8, 48, 48)
    if encoding == "jpeg" and importlib.util.find_spec("simplejpeg") is not None:
        assert any(d.name.endswith("fastdct") for d in decoders)  # TF's own IDCT, faster
    for decoder in decoders[1:]:
        decoded = np.stack(decoder.run(payloads)).astype(int)
        best = min(np.abs(decoded - reference).max() for reference in references)
        assert best <= 1, decoder.name


def test_the_benchmark_writes_every_figure_the_issue_names(tmp_path: Path) -> None:
    """`python -m bench.pipeline_benchmark --json FILE` on one small format: per format the
    rates, the bound, the ratio, the per-stage costs and the decoder, as numbers."""
    import json
    import subprocess
    import sys

    out = tmp_path / "figures.json"
    argv = [
        sys.executable,
        "-m",
        "bench.pipeline_benchmark",
        "--work-dir",
        str(tmp_path / "work"),
        "--images",
        "30",
        "--source-size",
        "64",
        "--image-size",
        "32",
        "--batch-size",
        "4",
        "--batches",
        "3",
        "--seconds",
        "0.3",  # long enough for the decode workers to report CPU within the window
        "--warmup-batches",
        "1",
        "--rounds",
        "2",
        "--formats",
        "raw-256",
        "--json",
        str(out),
    ]
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=repo)
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["format"] == "TFRecord raw uint8 256px"
    for key in (
        "naive_images_per_sec",
        "tuned_images_per_sec",
        "tuned_threads_images_per_sec",
        "tuned_tensorflow_images_per_sec",
        "bound_images_per_sec",
    ):
        assert row[key] > 0, key
    assert row["tuned_over_bound"] == pytest.approx(
        row["tuned_images_per_sec"] / row["bound_images_per_sec"]
    )
    # The reader alone on every core, beside the bound: what tf.data adds to the reading.
    assert row["reader_alone_images_per_sec"] > 0
    assert row["tuned_over_reader_alone"] == pytest.approx(
        row["tuned_images_per_sec"] / row["reader_alone_images_per_sec"]
    )
    # Each round's own bound is kept; the bound takes every stage's fastest timing of all
    # rounds, so it is at least each round's.
    round_bounds = row["bound_images_per_sec_rounds"]
    assert len(round_bounds) == 2 and all(rate > 0 for rate in round_bounds)
    assert row["bound_images_per_sec"] >= max(round_bounds) * (1 - 1e-9)
    # The bound's spread over rounds is the run's noise flag, by the report's rule.
    assert row["bound_cv_rounds"] == pytest.approx(cv(round_bounds))
    assert row["noisy"] is (row["bound_cv_rounds"] > CV_REPEATS_NOISY)
    assert "bound CV (rounds)" in done.stdout
    assert ("NOISY: " in done.stdout) is row["noisy"]
    assert row["tuned_over_round_bound"] == pytest.approx(
        [
            tuned["images_per_sec"] / rate
            for tuned, rate in zip(row["rounds"]["tuned"], round_bounds, strict=True)
        ]
    )
    assert set(row["stage_cpu_s_per_image"]) == set(bound.STAGES)
    assert all(cost >= 0 for cost in row["stage_cpu_s_per_image"].values())
    # The bound is the stages' sum or a per-image chain, whichever is cheaper, and says so.
    assert row["bound_cpu_s_per_image"] <= row["stages_cpu_s_per_image"]
    assert row["bound_work"] == bound.STAGED or row["bound_work"].startswith("per image: ")
    # The probe's rate runs from stall to stall, over a window inside the measured one.
    for tuned in row["rounds"]["tuned"]:
        assert 0 < tuned["rate_s"] <= tuned["measured_s"] and tuned["rate_window"]
    assert row["tuned_decoder"].startswith("host per batch in ")
    assert "decode processes: OpenCV" in row["tuned_decoder"]
    # The decode workers' CPU is the pipeline's: counted, so the bound's CPU stays below.
    for tuned in row["rounds"]["tuned"]:
        assert tuned["worker_cpu_pct"] > 0
        assert tuned["process_cpu_pct"] > tuned["worker_cpu_pct"]
    assert "TFRecord raw uint8 256px" in done.stdout and "tuned / bound" in done.stdout
    assert "tuned / reader alone" in done.stdout
    # Core scaling, per round: the reader on the bound's sample on every core against one
    # core x cores (those this process may use, as the benchmark's default).
    scaling = row["rounds"]["core scaling"]
    assert len(row["core_scaling_rounds"]) == len(scaling) == 2
    for round_, ratio in zip(scaling, row["core_scaling_rounds"], strict=True):
        if ratio is None:  # one core here: nothing to scale
            assert round_["why"] == "one core"
            continue
        assert round_["one_core_images_per_sec"] > 0 and 0 < ratio < 1.5
        assert ratio == pytest.approx(
            round_["every_core_images_per_sec"]
            / (bound.cores() * round_["one_core_images_per_sec"])
        )
    assert "core scaling (rounds)" in done.stdout


def test_stage_timing_waits_until_no_other_thread_of_the_process_is_at_work() -> None:
    """The bound's costs are the whole process's CPU: timing waits out a thread still at
    work (as a just-measured pipeline filling its buffers would be)."""
    import threading
    import time

    busy_until = time.perf_counter() + 0.4

    def spin() -> None:
        while time.perf_counter() < busy_until:
            pass

    worker = threading.Thread(target=spin)
    worker.start()
    waited = bound.wait_until_quiet(limit_s=5.0)
    worker.join()
    assert 0.3 <= waited < 2.0
    assert bound.wait_until_quiet(limit_s=5.0, collect=False) < 0.3  # none at work: no wait
