"""The model, optimizer, metrics and timing helpers, in this process: no launches."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from bench.input.preprocess import to_model_input
from bench.job import fit, model, timing
from bench.job.engine import SingleProcess, launched_rank, launched_ranks


@pytest.mark.parametrize(
    ("labels", "scores", "expected"),
    [
        ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 1.0),
        ([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1], 0.0),
        ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], 0.5),  # ties count half
        ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.75),  # sklearn's documented example
        ([1, 0, 1, 0, 1], [0.9, 0.9, 0.3, 0.2, 0.1], 2.5 / 6),  # 6 pairs, one tie
    ],
)
def test_roc_auc_known_values(labels, scores, expected) -> None:
    assert fit.roc_auc(np.array(labels), np.array(scores)) == pytest.approx(expected)


def test_roc_auc_undefined_for_one_class() -> None:
    assert fit.roc_auc(np.array([0, 0, 0]), np.array([0.1, 0.2, 0.3])) is None
    assert fit.roc_auc(np.array([1, 1]), np.array([0.1, 0.2])) is None


def test_per_class_auc_lists_undefined_classes() -> None:
    rng = np.random.default_rng(0)
    labels = np.zeros((20, 14), dtype=np.float32)
    labels[:10, 0] = 1  # Atelectasis: both classes present
    labels[:, 1] = 1  # Cardiomegaly: positives only
    scores = rng.random((20, 14))
    scores[:10, 0] += 1.0  # perfectly separated
    result = fit.per_class_auc(labels, scores)
    assert result["per_class"]["Atelectasis"] == 1.0
    assert result["per_class"]["Cardiomegaly"] is None
    assert "Cardiomegaly" in result["undefined"] and "Hernia" in result["undefined"]
    assert result["classes_defined"] == 1 and result["mean"] == 1.0


def test_plateau_reduces_by_ten_after_patience() -> None:
    plateau = fit.Plateau(patience=1)
    rate = plateau.update(0.5, 1e-3)
    assert rate == 1e-3
    rate = plateau.update(0.4, rate)  # improving: unchanged
    assert rate == 1e-3
    rate = plateau.update(0.41, rate)  # no improvement for 1 epoch: x0.1
    assert rate == pytest.approx(1e-4)
    assert plateau.update(0.3, rate) == pytest.approx(1e-4)


def test_learning_rate_warmup_is_linear() -> None:
    assert model.learning_rate_at(0, base=0.001, target=0.004, warmup_steps=3) == 0.001
    assert model.learning_rate_at(2, base=0.001, target=0.004, warmup_steps=3) == pytest.approx(
        0.003
    )
    assert model.learning_rate_at(3, base=0.001, target=0.004, warmup_steps=3) == 0.004
    assert model.scaled_learning_rate(0.001, 4, True) == 0.004
    assert model.scaled_learning_rate(0.001, 4, False) == 0.001


def test_weights_never_downloaded(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(model.WeightsError, match="never downloads"):
        model.resolve_weights("resnet50", "imagenet")
    cached = tmp_path / "models" / model.IMAGENET_NOTOP_FILES["resnet50"]
    cached.parent.mkdir()
    cached.write_bytes(b"")
    assert model.resolve_weights("resnet50", "imagenet") == str(cached)
    assert model.resolve_weights("resnet50", None) is None
    with pytest.raises(model.WeightsError, match="does not exist"):
        model.resolve_weights("densenet121", str(tmp_path / "absent.h5"))


@pytest.mark.parametrize(
    ("name", "precision", "layers_at_least"),
    [("densenet121", "mixed_bfloat16", 400), ("resnet50", "fp32", 170)],
)
def test_chexnet_shape_and_output_dtype(name: str, precision: str, layers_at_least: int) -> None:
    try:
        built = model.build_model(name, 32, precision=precision)
    finally:
        model.set_precision("fp32")
    assert built.input_shape == (None, 32, 32, 1)
    assert built.inputs[0].dtype.name == "uint8"  # what the pipelines deliver
    assert built.output_shape == (None, 14)
    assert len(built.layers) >= layers_at_least
    assert built.layers[-1].dtype_policy.compute_dtype == "float32"  # sigmoid in float32
    normalised = built.get_layer("imagenet_input").output
    assert normalised.shape.as_list() == [None, 32, 32, 3]
    assert normalised.dtype.name == model.INPUT_DTYPES[precision]
    out = built(np.zeros((1, 32, 32, 1), dtype=np.uint8), training=False)
    assert out.dtype.name == "float32"
    assert np.all((out.numpy() > 0) & (out.numpy() < 1))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_model_input_is_imagenet_normalised_gray_in_three_channels(dtype: str) -> None:
    gray = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    got = tf.cast(to_model_input(tf.constant(gray), dtype), tf.float32).numpy()
    assert got.shape == (1, 16, 16, 3)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = (gray.astype(np.float64) / 255.0 - mean) / std  # the textbook formula
    tolerance = {"float32": 1e-5, "float16": 5e-3, "bfloat16": 3e-2}[dtype]
    np.testing.assert_allclose(got, expected, atol=tolerance)


def test_percentile_and_throughput() -> None:
    assert timing.percentile([], 0.5) is None
    assert timing.percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert timing.percentile([1.0, 2.0], 0.9) == pytest.approx(1.9)
    per_rank = [
        {"step_s": [0.1, 0.2], "measured_s": 0.3},
        {"step_s": [0.3, 0.1], "measured_s": 0.4},
    ]
    section = timing.throughput_section(per_rank, batch_per_rank=8)
    assert section["images_per_sec"] == pytest.approx(2 * 8 * 2 / 0.4)
    assert section["images_per_sec_per_gpu"] == pytest.approx(section["images_per_sec"] / 2)
    assert section["images_per_step"] == 16
    assert section["step_p50_s"] == pytest.approx(0.15)
    assert timing.throughput_section([{"step_s": [], "measured_s": None}], batch_per_rank=8) is None


def test_time_steps_separates_warmup() -> None:
    calls = []
    times = timing.time_steps(lambda: calls.append(1), steps=3, warmup_steps=2)
    assert len(calls) == 5
    assert len(times.warmup_step_s) == 2 and len(times.step_s) == 3
    assert times.first_step_at <= times.measured_start <= times.measured_end
    record = times.to_dict()
    assert record["startup_s"] > 0 and record["measured_s"] >= sum(times.step_s)


def test_engine_single_and_launcher_environment() -> None:
    engine = SingleProcess()
    assert engine.allgather_object({"a": 1}) == [{"a": 1}]
    assert engine.allreduce_mean(2) == 2.0
    assert launched_ranks({"OMPI_COMM_WORLD_SIZE": "4"}) == 4
    assert launched_ranks({}) == 1
    assert launched_rank({"HOROVOD_RANK": "3"}) == 3 and launched_rank({}) == 0
