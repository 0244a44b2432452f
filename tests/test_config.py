"""RunConfig: the argv round trip the sweep and the worker rely on, and its validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.contract.config import ConfigError, RunConfig


@pytest.mark.parametrize(
    "config",
    [
        RunConfig(),
        RunConfig(model="resnet50", mode="synthetic", precision="mixed_bfloat16", xla=True),
        RunConfig(
            data_format="tfrecord",
            records_dir=Path("/data/records png"),
            pipeline="naive",
            batch_per_gpu=8,
            image_size=64,
            cache=True,
            parallel_calls=4,
            early_stop_patience=3,
            weights="imagenet",
            extra={"conversion": "png-256", "note": "a=b"},
            cell_id="abc123",
            sweep="default",
            repeat=2,
        ),
    ],
)
def test_argv_round_trip_rebuilds_the_same_config(config: RunConfig) -> None:
    assert RunConfig.from_argv(config.to_argv()) == config


def test_argv_is_a_list_of_strings_with_negated_booleans() -> None:
    argv = RunConfig(xla=False, cache=True).to_argv()
    assert all(isinstance(item, str) for item in argv)
    assert "--no-xla" in argv and "--cache" in argv


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--model", "densnet121"], "--model"),
        (["--batch-per-gpu", "0"], "batch_per_gpu"),
        (["--steps", "many"], "--steps"),
        (["--extra", "no-equals-sign"], "--extra"),
    ],
)
def test_bad_values_exit_2_naming_the_setting(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        RunConfig.from_argv(argv)
    assert stopped.value.code == 2
    assert named in capsys.readouterr().err


def test_constructor_rejects_unknown_choices() -> None:
    with pytest.raises(ConfigError, match="precision"):
        RunConfig(precision="fp8")  # type: ignore[arg-type]
