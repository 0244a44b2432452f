"""Shared fixtures: small real data sets made once per test session.

Everything is real files in temporary folders: a synthetic ChestX-ray14 tree (exact NIH
layout, small images so that CPU tests stay fast) and TFRecord conversions of it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import bench  # noqa: F401  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)

REPO = Path(__file__).resolve().parent.parent

# Small enough for 2 CPU cores, large enough for several patients per split and for the
# common findings to appear in validation.
SYNTH_IMAGES = 240
SYNTH_SIZE = 64


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic ChestX-ray14 folder in the archive layout (images_001/images/...)."""
    from converters.synth import generate

    root = tmp_path_factory.mktemp("chestxray14")
    generate(root, images=SYNTH_IMAGES, size=SYNTH_SIZE, seed=7)
    return root


@pytest.fixture(scope="session")
def records_png(tmp_path_factory: pytest.TempPathFactory, synth_root: Path) -> Path:
    """A lossless PNG conversion of `synth_root`, several shards per split."""
    from converters.conversion import convert
    from converters.options import ConversionOptions

    out = tmp_path_factory.mktemp("records-png")
    convert(ConversionOptions(source=synth_root, out=out, encoding="png", shard_count=3, workers=1))
    return out


@pytest.fixture(scope="session")
def val_records(tmp_path_factory: pytest.TempPathFactory, synth_root: Path) -> Callable[..., Path]:
    """`val_records(encoding, compression="none", resize=None)`: the validation split of
    `synth_root` converted so, in two shards, made once per session for every test module
    that asks for the same conversion."""
    from converters.conversion import convert
    from converters.options import ConversionOptions

    made: dict[tuple[str, str, int | None], Path] = {}

    def conversion(encoding: str, compression: str = "none", resize: int | None = None) -> Path:
        key = (encoding, compression, resize)
        if key not in made:
            out = tmp_path_factory.mktemp(f"val-{encoding}-{compression}-{resize or 'full'}")
            convert(
                ConversionOptions(
                    source=synth_root,
                    out=out,
                    splits=("val",),
                    encoding=encoding,
                    compression=compression,
                    resize=resize,
                    shard_count=2,
                    workers=1,
                )
            )
            made[key] = out
        return made[key]

    return conversion


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """The environment for child processes: the repo importable, TF quiet."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["TF_USE_LEGACY_KERAS"] = "1"
    return env


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[object]:
    """A real one-node Slurm cluster (tests/slurm_cluster.py); skips, saying why, where the
    daemons cannot start. Every daemon is stopped at the end of the session."""
    from slurm_cluster import ClusterUnavailable, start

    # Not under pytest's private (0700) temp root: munged needs its socket's folders
    # reachable by the munge user.
    folder = Path(tempfile.mkdtemp(prefix="chexbench-slurm-"))
    try:
        cluster = start(folder)
    except ClusterUnavailable as error:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"no one-node Slurm cluster here: {error}")
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
