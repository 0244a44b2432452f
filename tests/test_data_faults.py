"""Faults a hostile user met when reading prepared data (issue 14), reproduced as they met it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from bench import run
from bench.contract.results import find_results, load_result

TINY = ["--image-size", "32", "--batch-per-gpu", "2", "--telemetry-period-s", "0.2"]


@pytest.fixture(autouse=True)
def _one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHEXBENCH_ENGINE", "single")
    for name in ("CHEXBENCH_TEST_CRASH", "HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)


def _pipeline_run(records: Path, out: Path, *extra: str) -> int:
    return run.main(
        [
            *("--model", "resnet50", "--mode", "pipeline", "--data-format", "tfrecord"),
            *("--records-dir", str(records), "--pipeline", "tuned", "--split", "val"),
            *("--steps", "2", "--warmup-steps", "1", "--output-dir", str(out)),
            *extra,
            *TINY,
        ]
    )


# --- fault 5: the manifest's record count was trusted over the shard -----------------------


@pytest.mark.parametrize("change", [-1, +1])
def test_a_manifest_count_that_disagrees_with_the_shard_fails_the_run(
    records_png: Path, tmp_path: Path, change: int, capsys: pytest.CaptureFixture[str]
) -> None:
    records = shutil.copytree(records_png, tmp_path / "records")
    path = records / "manifest.json"
    document = json.loads(path.read_text())
    shard = document["splits"]["val"]["shards"][0]
    holds = shard["records"]
    shard["records"] += change
    document["splits"]["val"]["records"] += change
    path.write_text(json.dumps(document))

    out = tmp_path / "out"
    assert _pipeline_run(records, out, "--skip-bad") != 0
    [result_path] = find_results(out)
    message = load_result(result_path)["error"]["message"]
    assert shard["file"] in message
    assert f"holds {holds} records where its manifest lists {holds + change}" in message
    assert shard["file"] in capsys.readouterr().err


# --- fault 3 (data-cache half): two sweeps preparing one synthetic set ---------------------

PREPARE = """
import sys
from pathlib import Path
from bench.sweep.load import parse_sweep
from bench.sweep.prepare import ensure_synthetic
text = "name: a\\nbase: {synthetic: {images: 600, size: 128, seed: 4}, mode: pipeline}\\n"
sweep = parse_sweep(text, source="sweep.yaml", data_cache=Path(sys.argv[1]))
print(ensure_synthetic(sweep, progress=False))
"""


def test_two_sweeps_sharing_the_data_cache_prepare_one_set_in_turn(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    import subprocess
    import sys
    import time

    from PIL import Image

    from converters.chestxray import read_chestxray14

    cache = tmp_path / "cache"
    argv = [sys.executable, "-c", PREPARE, str(cache)]
    first = subprocess.Popen(
        argv, env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not list(cache.glob("synthetic-*/images_*/images/*.png")):  # half-made
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    second = subprocess.run(argv, env=subprocess_env, capture_output=True, text=True, timeout=300)
    first_out, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    assert second.returncode == 0, second.stderr
    assert "waiting for the synthetic data set" in second.stderr and "pid" in second.stderr
    folder = Path(first_out.strip())
    assert Path(second.stdout.strip()) == folder
    data = read_chestxray14(folder)
    assert data.summary.images_found == 600 and not data.summary.listed_missing
    for record in data.records:
        with Image.open(record.path) as image:
            image.verify()


# --- fault 11: bad data that stops a run was a 34-line traceback --------------------------


def test_bad_data_stopping_a_run_is_stated_plainly(
    synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from converters.chestxray import read_chestxray14

    root = shutil.copytree(synth_root, tmp_path / "data")
    val = read_chestxray14(root).split("val", val_fraction=0.3)
    bad = {str(record.path) for record in val[::2]}  # whichever the pipeline reads first
    for path in bad:
        Path(path).write_bytes(b"not a png")
    out = tmp_path / "out"
    code = run.main(
        [
            *("--model", "resnet50", "--mode", "pipeline", "--data-format", "raw"),
            *("--data-dir", str(root), "--pipeline", "tuned", "--split", "val"),
            *("--val-fraction", "0.3", "--steps", "2", "--warmup-steps", "1"),
            *("--output-dir", str(out)),
            *TINY,
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    found = re.match(
        r"bench\.run: bad data: (\S+\.png): could not be read or decoded as an image[.;]", last
    )
    assert found and found.group(1) in bad, last
    assert ". What to do: " in last and "skip_bad" in last
    assert "Traceback" in err and "InvalidArgumentError" in err  # kept, before the cause
    [result_path] = find_results(out)
    error = load_result(result_path)["error"]
    assert error["message"] == last.removeprefix("bench.run: ")
    assert "function_node" not in error["message"]
    assert "InvalidArgumentError" in error["log_tail"]
