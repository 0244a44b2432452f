"""`bench.run` end to end in this process (one rank, no launcher): modes, result files, bad
input (exit 2) and run-time failures (exit 1, a failed result).

`main(argv)` runs here rather than in a subprocess so that TensorFlow is imported once;
the Horovod launches are in test_horovod.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import run
from bench.contract.results import find_results, load_result

TINY = ["--image-size", "32", "--batch-per-gpu", "2", "--telemetry-period-s", "0.2"]


@pytest.fixture(autouse=True)
def _one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHEXBENCH_ENGINE", "single")
    for name in (
        "CHEXBENCH_TEST_CRASH",
        "CHEXBENCH_TEST_WEIGHTS_DIR",
        "HOROVOD_SIZE",
        "OMPI_COMM_WORLD_SIZE",
        "SLURM_NTASKS",
        "PMI_SIZE",
    ):
        monkeypatch.delenv(name, raising=False)


def _result(directory: Path) -> dict:
    found = find_results(directory)
    assert len(found) == 1, f"expected exactly one result file, found {found}"
    return load_result(found[0])


def test_train_mode_resnet_tfrecord_mixed_float16(tmp_path: Path, records_png: Path) -> None:
    out = tmp_path / "out"
    code = run.main(
        [
            "--model",
            "resnet50",
            "--mode",
            "train",
            "--data-format",
            "tfrecord",
            "--records-dir",
            str(records_png),
            "--pipeline",
            "tuned",
            "--precision",
            "mixed_float16",
            "--steps",
            "2",
            "--warmup-steps",
            "1",
            "--output-dir",
            str(out),
            "--extra",
            "conversion=png-full",
            "--skip-bad",
            *TINY,
        ]
    )
    assert code == 0
    result = _result(out)
    assert result["status"] == "ok" and result["error"] is None
    # skip_bad on, good records: the count is recorded, and it is zero (not missing).
    assert result["details"]["skipped_examples"] == 0
    cell = result["cell"]
    assert cell == {
        "model": "resnet50",
        "mode": "train",
        "data_format": "tfrecord",
        "encoding": "png",
        "pipeline": "tuned",
        "engine": "single",
        "gpus": 1,
        "nodes": 1,
        "device": "cpu",
        "batch_per_gpu": 2,
        "global_batch": 2,
        "precision": "mixed_float16",
        "image_size": 32,
        "xla": False,
        "steps": 2,
        "warmup_steps": 1,
        "epochs": None,
        "conversion": "png-full",
        "page_cache": "warm",
    }
    assert result["dataset"]["records_dir"] == str(records_png)
    assert result["dataset"]["page_cache"]["after"]["fraction"] == pytest.approx(1.0)
    assert result["dataset"]["images"] > 0 and result["dataset"]["split"] == "train"
    assert result["config"]["records_dir"] == str(records_png)
    timing = result["timing"]
    assert [len(s) for s in timing["step_s"]] == [2] and [
        len(s) for s in timing["warmup_step_s"]
    ] == [1]
    # The warm-up step (tracing) is excluded and kept.
    assert timing["warmup_step_s"][0][0] > max(timing["step_s"][0])
    assert timing["time_to_first_batch_s"] > 0 and timing["startup_s"] > 0
    throughput = result["throughput"]
    assert throughput["images_per_sec"] == pytest.approx(2 * 2 / timing["measured_s"][0])
    assert throughput["step_p50_s"] <= throughput["step_p90_s"] <= throughput["step_p99_s"]
    losses = result["details"]["loss"]["per_rank"][0]
    assert len(losses) == 3 and all(loss > 0 for loss in losses)
    telemetry = result["telemetry"]
    assert telemetry["gpu"] is None and "NVML" in telemetry["gpu_unavailable"]
    start, end = telemetry["measured_window_s"]
    assert end - start == pytest.approx(timing["measured_s"][0], rel=0.05, abs=0.05)
    environment = result["environment"]
    assert environment["tensorflow"].startswith("2.") and environment["keras"].startswith("2.")
    assert environment["hosts"] and environment["cpu_count"] >= 1
    assert environment["engine"] == "single"


def test_synthetic_mode_resnet50_bfloat16_reads_nothing(tmp_path: Path) -> None:
    """What the model consumes: no data read, input settings null in the cell, and no page
    cache state even when one is asked for (there are no data files to warm or evict).

    ResNet50: DenseNet121's training step is traced by tests/test_fit_smoke.py (its
    bfloat16 forward pass by tests/test_model.py); a second DenseNet trace here would cost
    half a minute of CPU for no behaviour of its own.
    """
    out = tmp_path / "out"
    argv = ["--model", "resnet50", "--mode", "synthetic", "--precision", "mixed_bfloat16"]
    argv += ["--steps", "2", "--warmup-steps", "1", "--page-cache", "cold"]
    argv += ["--output-dir", str(out), *TINY]
    assert run.main(argv) == 0
    result = _result(out)
    cell = result["cell"]
    assert (cell["model"], cell["mode"], cell["precision"]) == (
        "resnet50",
        "synthetic",
        "mixed_bfloat16",
    )
    assert cell["data_format"] is None and cell["pipeline"] is None and cell["encoding"] is None
    assert cell["page_cache"] is None
    assert result["dataset"] is None
    timing = result["timing"]
    assert [len(s) for s in timing["warmup_step_s"]] == [1]
    assert result["throughput"]["images_per_sec"] == pytest.approx(2 * 2 / timing["measured_s"][0])
    assert "synthetic" in result["details"]


def test_pipeline_mode_raw_naive(tmp_path: Path, synth_root: Path) -> None:
    out = tmp_path / "out"
    code = run.main(
        [
            "--mode",
            "pipeline",
            "--data-format",
            "raw",
            "--data-dir",
            str(synth_root),
            "--pipeline",
            "naive",
            "--steps",
            "5",
            "--warmup-steps",
            "2",
            "--output-dir",
            str(out),
            *TINY,
        ]
    )
    assert code == 0
    result = _result(out)
    assert result["cell"]["encoding"] == "png" and result["cell"]["pipeline"] == "naive"
    probe = result["details"]["probe"]
    assert len(probe) == 1 and len(probe[0]["batch_s"]) == 5
    assert result["throughput"]["images_per_sec"] == pytest.approx(probe[0]["images_per_sec"])
    assert result["timing"]["step_s"] == [probe[0]["batch_s"]]
    assert result["dataset"]["source"] == "raw"


def _bad_input_cases(tmp_path: Path, synth_root: Path, records_png: Path) -> dict:
    from converters.conversion import convert
    from converters.options import ConversionOptions

    empty = tmp_path / "empty"
    empty.mkdir()
    small = tmp_path / "records-16px"
    convert(
        ConversionOptions(
            source=synth_root,
            out=small,
            encoding="png",
            resize=16,
            splits=("val",),
            shard_count=1,
            workers=1,
        )
    )
    return {
        "missing data dir": (
            ["--mode", "train", "--data-format", "raw", "--data-dir", str(tmp_path / "nowhere")],
            "no such folder",
        ),
        "no data dir": (["--mode", "train", "--data-format", "raw"], "--data-dir is required"),
        "no manifest": (
            ["--mode", "train", "--data-format", "tfrecord", "--records-dir", str(empty)],
            "manifest.json",
        ),
        "stored smaller": (
            [
                "--mode",
                "pipeline",
                "--data-format",
                "tfrecord",
                "--records-dir",
                str(small),
                "--split",
                "val",
            ],
            "smaller than",
        ),
        "split not converted": (
            [
                "--mode",
                "pipeline",
                "--data-format",
                "tfrecord",
                "--records-dir",
                str(small),
                "--image-size",
                "16",
            ],
            "no split 'train'",
        ),
        "wrong encoding": (
            [
                "--mode",
                "pipeline",
                "--data-format",
                "tfrecord",
                "--records-dir",
                str(records_png),
                "--extra",
                "encoding=jpeg",
            ],
            "expects 'jpeg'",
        ),
        "global batch mismatch": (
            ["--mode", "synthetic", "--extra", "global_batch=6"],
            "6 per GPU",
        ),
        "fewer images than a batch": (
            [
                "--mode",
                "pipeline",
                "--data-format",
                "raw",
                "--data-dir",
                str(synth_root),
                "--batch-per-gpu",
                "1000",
            ],
            "fewer than one global batch",
        ),
        "imagenet not cached": (
            ["--mode", "synthetic", "--weights", "imagenet"],
            "never downloads",
        ),
        "weights file missing": (
            ["--mode", "synthetic", "--weights", str(tmp_path / "w.h5")],
            "does not exist",
        ),
    }


def test_bad_input_exits_2_with_the_reason(
    tmp_path: Path,
    synth_root: Path,
    records_png: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    for name, (argv, reason) in _bad_input_cases(tmp_path, synth_root, records_png).items():
        out = tmp_path / name.replace(" ", "-")
        # Later flags win: each case overrides the tiny defaults where it needs to.
        code = run.main([*TINY, *argv, "--output-dir", str(out)])
        captured = capsys.readouterr()
        assert code == 2, name
        assert reason in captured.err, (name, captured.err)
        result = _result(out)
        assert result["status"] == "failed" and result["error"]["exit_code"] == 2, name
        assert reason in result["error"]["message"], name


def test_unknown_model_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        run.main(["--model", "vgg16"])
    assert exited.value.code == 2
    assert "vgg16" in capsys.readouterr().err


def test_run_time_failure_writes_a_failed_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A weights file that exists but is not HDF5 fails while the model is built."""
    weights = tmp_path / "corrupt.weights.h5"
    weights.write_bytes(b"not an HDF5 file")
    out = tmp_path / "out"
    code = run.main(
        [
            "--mode",
            "synthetic",
            "--model",
            "resnet50",
            "--weights",
            str(weights),
            "--steps",
            "1",
            "--warmup-steps",
            "0",
            "--output-dir",
            str(out),
            *TINY,
        ]
    )
    assert code == 1
    result = _result(out)
    assert result["status"] == "failed" and result["error"]["exit_code"] == 1
    assert result["throughput"] is None and result["timing"] is None
    assert "Traceback" in result["error"]["log_tail"]
    assert result["cell"]["mode"] == "synthetic" and result["cell"]["engine"] == "single"
    assert "Traceback" in capsys.readouterr().err
