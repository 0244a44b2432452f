"""The sweep runner end to end: real processes, real files, real signals.

Most tests point the sweep's `worker:` at a tiny script (below) that parses the RunConfig
argv like bench.run, then succeeds, crashes, hangs or ignores SIGTERM as told by the
FAKE_BEHAVIOUR variable (batch_per_gpu → behaviour): the runner does not care what the
command is. The last tests run the real `bench.run` through `local` and `horovodrun -np 2`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.contract import results
from bench.sweep import SweepOptions, parse_args, run
from bench.sweep.jobs import result_cell
from bench.sweep.load import load_sweep
from bench.sweep.plan import plan

REPO = Path(__file__).resolve().parent.parent

FAKE_WORKER = """
import json, os, signal, sys, time
from pathlib import Path
import bench
from bench.contract import results
from bench.contract.config import RunConfig

config = RunConfig.from_argv(sys.argv[1:])
behaviour = json.loads(os.environ.get("FAKE_BEHAVIOUR", "{}")).get(
    str(config.batch_per_gpu), "ok")
out = Path(config.output_dir)
out.mkdir(parents=True, exist_ok=True)
(out / f"pid-{config.repeat}").write_text(str(os.getpid()))
rank = os.environ.get("HOROVOD_RANK", "0")
(out / f"pid-{config.repeat}-rank{rank}").write_text(str(os.getpid()))
print("fake worker", behaviour, "records", config.records_dir, flush=True)
if behaviour == "crash":
    print("Traceback (most recent call last):\\nRuntimeError: boom", file=sys.stderr)
    sys.exit(3)
if behaviour == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if behaviour in ("hang", "stubborn"):
    time.sleep(600)
if config.records_dir is not None:
    assert (config.records_dir / "manifest.json").is_file(), "records not prepared"
document = results.empty_result(
    status="ok", sweep=config.sweep, cell_id=config.cell_id, repeat=config.repeat,
    cell={"model": config.model, "batch_per_gpu": config.batch_per_gpu},
    config=None, throughput={"images_per_sec": 10.0 * config.batch_per_gpu},
    finished_at=results.utc_now())
results.write_result(out, document)
"""


@pytest.fixture
def fake_worker(tmp_path: Path) -> Path:
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER)
    return script


def write_sweep(tmp_path: Path, worker: Path, body: str, name: str = "fake") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nworker: [{sys.executable}, {worker}]\n"
        "launcher: {kind: local, kill_grace_s: 1}\n" + body
    )
    return path


def run_sweep(options: SweepOptions, env: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(options, environ=env, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def cell_dirs(sweep_dir: Path) -> dict[int, Path]:
    """batch_per_gpu → the cell's folder (the slug holds -b<batch>-)."""
    found = {}
    for folder in sweep_dir.iterdir():
        if folder.is_dir() and "-b" in folder.name:
            found[int(folder.name.split("-b")[1].split("-")[0])] = folder
    return found


def statuses(folder: Path) -> list[str]:
    return [results.load_result(p)["status"] for p in results.find_results(folder)]


def process_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return True
    return state == "Z"


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


@pytest.fixture
def env(subprocess_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**subprocess_env, "CHEXBENCH_DATA": str(tmp_path / "cache")}


def test_crash_and_hang_are_recorded_and_never_stop_the_sweep(
    tmp_path: Path, fake_worker: Path, env: dict[str, str]
) -> None:
    # 3 s: the fake job that succeeds takes a tenth of that; the hung ones wait it out.
    sweep = write_sweep(
        tmp_path,
        fake_worker,
        "base: {mode: synthetic}\ntimeout_s: 3\nrepeats: 1\n"
        "axes: {batch_per_gpu: [1, 2, 3, 4, 5]}\n",
    )
    env["FAKE_BEHAVIOUR"] = json.dumps({"2": "crash", "3": "hang", "4": "stubborn"})
    options = SweepOptions(sweep_file=sweep, results=tmp_path / "results", report=False)
    started = time.monotonic()
    code, out, err = run_sweep(options, env)
    assert code == 1, err
    assert time.monotonic() - started < 60
    sweep_dir = tmp_path / "results" / "fake"
    cells = cell_dirs(sweep_dir)
    assert statuses(cells[1]) == statuses(cells[5]) == ["ok"]
    crash = results.load_result(results.find_results(cells[2])[0])
    assert crash["status"] == "failed" and crash["error"]["exit_code"] == 3
    assert "RuntimeError: boom" in crash["error"]["log_tail"]
    assert crash["cell"]["batch_per_gpu"] == 2 and crash["cell_id"] in cells[2].name
    for batch in (3, 4):  # a sleeper, and one that ignores SIGTERM (needs SIGKILL)
        hung = results.load_result(results.find_results(cells[batch])[0])
        assert hung["status"] == "timeout", hung["error"]
        assert "timed out after 3 s" in hung["error"]["message"]
        assert process_gone(int((cells[batch] / "pid-0").read_text()))
    assert all((cells[b] / "run-0.log").is_file() for b in cells)
    assert "fake worker crash" in (cells[2] / "run-0.log").read_text()
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert summary["counts"] == {"ok": 2, "failed": 1, "timeout": 2}
    assert [c["status"] for c in summary["cells"]] == ["ok", "failed", "timeout", "timeout", "ok"]
    assert "[5/5]" in err and "ETA" in err
    assert "1 failed, 2 ok, 2 timeout" in out
    plan = json.loads((sweep_dir / "plan.json").read_text())
    assert len(plan["cells"]) == 5 and plan["cells"][0]["command"][1] == str(fake_worker)
    assert (sweep_dir / "sweep.yaml").read_text().count("batch_per_gpu") == 1


def start_sweep(
    sweep: Path, results_dir: Path, env: dict[str, str], *extra: str
) -> subprocess.Popen[str]:
    argv = [
        sys.executable,
        "-m",
        "bench.sweep",
        str(sweep),
        "--results",
        str(results_dir),
        "--no-report",
        *extra,
    ]
    return subprocess.Popen(
        argv,
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A sweep run from a terminal gets Ctrl-C; pytest itself may have been started in
        # the background (SIGINT ignored, which children inherit and Python respects).
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("kill", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_killed_sweep_keeps_finished_results_and_resume_completes_the_rest(
    kill: signal.Signals, tmp_path: Path, fake_worker: Path, env: dict[str, str]
) -> None:
    sweep = write_sweep(
        tmp_path,
        fake_worker,
        "base: {mode: synthetic}\ntimeout_s: 60\nrepeats: 2\n" "axes: {batch_per_gpu: [1, 2, 3]}\n",
    )
    results_dir = tmp_path / "results"
    env["FAKE_BEHAVIOUR"] = json.dumps({"2": "hang"})
    process = start_sweep(sweep, results_dir, env)
    sweep_dir = results_dir / "fake"
    wait_for(lambda: (next(sweep_dir.glob("*-b2-*"), sweep_dir) / "pid-0").is_file())
    hung_pid = int((next(sweep_dir.glob("*-b2-*")) / "pid-0").read_text())
    rival = start_sweep(sweep, results_dir, env, "--resume")  # one sweep per folder at a time
    assert rival.wait(timeout=60) == 2 and "another sweep" in rival.communicate()[1]
    process.send_signal(kill)
    _, stderr = process.communicate(timeout=60)
    wait_for(lambda: process_gone(hung_pid), timeout=20)  # the running cell died with it
    if kill == signal.SIGINT:
        assert process.returncode == 130, stderr
        assert "interrupted" in stderr
        summary = json.loads((sweep_dir / "summary.json").read_text())
        assert summary["interrupted"] is True
    cells = cell_dirs(sweep_dir)
    # Repeats interleave (1, 2, 3, 1, 2, 3): only repeat 0 of the first cell had finished.
    assert statuses(cells[1]) == ["ok"]
    assert statuses(cells[2]) == []  # an interrupted run is not a failure: nothing written
    assert 3 not in cells

    # Without --resume the folder is refused; with it only the missing repeats run.
    refused = start_sweep(sweep, results_dir, env)
    assert refused.wait(timeout=60) == 2
    env["FAKE_BEHAVIOUR"] = "{}"
    first_results = set(results.find_results(cells[1]))
    resumed = start_sweep(sweep, results_dir, env, "--resume")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    cells = cell_dirs(sweep_dir)
    assert first_results <= set(results.find_results(cells[1]))  # kept, not rerun
    assert statuses(cells[1]) == statuses(cells[2]) == statuses(cells[3]) == ["ok", "ok"]
    assert "[5/5]" in err  # 6 repeats planned, 1 done
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert summary["counts"] == {"ok": 3} and summary["interrupted"] is False


def test_resume_reruns_failed_repeats_only(
    tmp_path: Path, fake_worker: Path, env: dict[str, str]
) -> None:
    sweep = write_sweep(
        tmp_path, fake_worker, "base: {mode: synthetic}\n" "axes: {batch_per_gpu: [1, 2]}\n"
    )
    options = SweepOptions(sweep_file=sweep, results=tmp_path / "r", report=False)
    env["FAKE_BEHAVIOUR"] = json.dumps({"2": "crash"})
    assert run_sweep(options, env)[0] == 1
    env["FAKE_BEHAVIOUR"] = "{}"
    code, out, err = run_sweep(dataclasses.replace(options, resume=True), env)
    assert code == 0, err
    cells = cell_dirs(tmp_path / "r" / "fake")
    assert statuses(cells[1]) == ["ok"]
    assert sorted(statuses(cells[2])) == ["failed", "ok"]  # the failure stays on record
    log = (cells[2] / "run-0.log").read_text()
    assert log.count("# chexbench runner") == 2  # both attempts, appended
    assert "[1/1]" in err
    code, _, err = run_sweep(dataclasses.replace(options, resume=True), env)
    assert code == 0 and "nothing to run" in err


def test_dry_run_prints_every_command_and_writes_nothing(
    tmp_path: Path, env: dict[str, str]
) -> None:
    (tmp_path / "cxr").mkdir()
    expected = {
        # 24 throughput cells and 16 fit cells (2 models x 2 formats x 1, 2, 4, 8 GPUs).
        "chexnet-poster": (40, "mpirun -np 8 --host node1:4,node2:4"),
        "modern-gpus": (36, "srun --ntasks 8 --nodes 1"),
        "default": (11, "horovodrun -np 2 -H localhost:2 --gloo"),
    }
    for name, (count, launch) in expected.items():
        argv = [
            str(REPO / "sweeps" / f"{name}.yaml"),
            "--dry-run",
            "--results",
            str(tmp_path / "results"),
        ]
        if name != "default":
            argv += ["--set", f"base.data_dir={tmp_path / 'cxr'}"]
        code, out, err = run_sweep(parse_args(argv), env)
        assert code == 0, err
        assert out.count("\n    ") == count  # one command per cell
        assert f"[{count}/{count}]" in out and launch in out
    assert not (tmp_path / "results").exists()
    assert not (tmp_path / "cache").exists()


def test_bad_sweep_exits_2_before_anything_runs(
    tmp_path: Path, fake_worker: Path, env: dict[str, str]
) -> None:
    sweep = write_sweep(
        tmp_path,
        fake_worker,
        "axes:\n  model: [densnet121]\n  gpus: [1]\n" "include:\n  - {gpus: 2, mode: synthetic}\n",
    )
    code, out, err = run_sweep(SweepOptions(sweep_file=sweep, results=tmp_path / "r"), env)
    assert code == 2
    assert "did you mean 'densenet121'?" in err and f"{sweep}:5" in err
    assert not (tmp_path / "r").exists()
    code, _, err = run_sweep(
        parse_args(
            [str(sweep), "--set", "axes.model=[resnet50]", "--results", str(tmp_path / "r")]
        ),
        env,
    )
    assert code == 2 and "gpus 2 is more than 1" in err and "did you mean" not in err


def test_only_and_filters_select_cells(
    tmp_path: Path, fake_worker: Path, env: dict[str, str]
) -> None:
    sweep = write_sweep(
        tmp_path,
        fake_worker,
        "base: {mode: synthetic}\n"
        "axes: {batch_per_gpu: [1, 2, 3], model: [resnet50, densenet121]}\n",
    )
    argv = [str(sweep), "--results", str(tmp_path / "r"), "--no-report"]
    code, _, err = run_sweep(
        parse_args([*argv, "--only", "resnet50-*-b2-*", "--only", "*-b3-*", "--model", "resnet50"]),
        env,
    )
    assert code == 0, err
    folders = sorted(
        p.name.split("-", 1)[1] for p in (tmp_path / "r" / "fake").iterdir() if p.is_dir()
    )
    assert folders == ["resnet50-synthetic-g1-b2-fp32-224px", "resnet50-synthetic-g1-b3-fp32-224px"]
    code, _, err = run_sweep(parse_args([*argv, "--only", "nothing-matches"]), env)
    assert code == 2 and "no cell" in err


def test_conversions_are_made_once_recorded_and_reused(
    tmp_path: Path, fake_worker: Path, env: dict[str, str]
) -> None:
    body = (
        "base: {synthetic: {images: 40, size: 32, seed: 1}, mode: pipeline,"
        " data_format: tfrecord, image_size: 32}\n"
        "conversions: {small: {encoding: png, shard_count: 2, workers: 1}}\n"
        "axes: {conversion: [small], batch_per_gpu: [1, 2]}\n"
    )
    first = write_sweep(tmp_path, fake_worker, body, name="first")
    second = write_sweep(tmp_path, fake_worker, body, name="second")
    options = SweepOptions(sweep_file=first, results=tmp_path / "r", report=False, progress=False)
    code, _, err = run_sweep(options, env)
    assert code == 0, err
    record = json.loads((tmp_path / "r" / "first" / "conversions" / "small.json").read_text())
    assert record["schema_version"] == 1 and record["name"] == "small"
    assert record["reused"] is False and record["images"] > 0
    assert record["wall_seconds"] > 0 and record["bytes_out"] > 0
    assert record["encoding"] == "png" and record["compression"] == "none"
    records_dir = Path(record["records_dir"])
    assert records_dir.parent == tmp_path / "cache" / "records"
    manifest_time = (records_dir / "manifest.json").stat().st_mtime
    code, _, err = run_sweep(dataclasses.replace(options, sweep_file=second), env)
    assert code == 0, err
    reused = json.loads((tmp_path / "r" / "second" / "conversions" / "small.json").read_text())
    assert reused["reused"] is True and reused["records_dir"] == record["records_dir"]
    assert reused["wall_seconds"] == record["wall_seconds"]  # the original cost
    assert (records_dir / "manifest.json").stat().st_mtime == manifest_time
    result = results.load_result(results.find_results(tmp_path / "r" / "second")[0])
    assert result["status"] == "ok"


def test_a_conversion_that_fails_fails_its_cells_only(
    tmp_path: Path, fake_worker: Path, env: dict[str, str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    body = (
        f"base: {{data_dir: {empty}, data_format: tfrecord, conversion: c}}\n"
        "conversions: {c: {encoding: png, workers: 1}}\n"
        "axes: {mode: [synthetic, pipeline]}\n"
    )
    sweep = write_sweep(tmp_path, fake_worker, body)
    options = SweepOptions(sweep_file=sweep, results=tmp_path / "r", report=False, progress=False)
    code, _, err = run_sweep(options, env)
    assert code == 1
    assert "conversions.c: converting" in err
    summary = json.loads((tmp_path / "r" / "fake" / "summary.json").read_text())
    by_mode = {cell["mode"]: cell for cell in summary["cells"]}
    assert by_mode["synthetic"]["status"] == "ok"
    assert by_mode["pipeline"]["status"] == "failed"
    failed = results.load_result(
        tmp_path / "r" / "fake" / by_mode["pipeline"]["repeats"][0]["result"]
    )
    assert failed["error"]["message"].startswith("not run: conversions.c: converting")
    assert not (tmp_path / "r" / "fake" / "conversions" / "c.json").exists()


@pytest.mark.slow
@pytest.mark.horovod
def test_interrupt_stops_every_horovodrun_rank_even_one_ignoring_sigterm(
    tmp_path: Path, fake_worker: Path, env: dict[str, str]
) -> None:
    """horovodrun puts each rank in a process group of its own: the runner stops them all."""
    sweep = tmp_path / "hvd.yaml"
    sweep.write_text(
        f"name: hvd\nworker: [{sys.executable}, {fake_worker}]\ntimeout_s: 600\n"
        "launcher: {kind: horovodrun, hosts: [localhost:2], kill_grace_s: 2}\n"
        "base: {mode: synthetic, gpus: 2, batch_per_gpu: 4}\n"
    )
    env["FAKE_BEHAVIOUR"] = json.dumps({"4": "stubborn"})
    process = start_sweep(sweep, tmp_path / "r", env)
    sweep_dir = tmp_path / "r" / "hvd"
    wait_for(lambda: len(list(sweep_dir.glob("*/pid-0-rank*"))) == 2, timeout=240)
    ranks = [int(path.read_text()) for path in sweep_dir.glob("*/pid-0-rank*")]
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    wait_for(lambda: all(process_gone(pid) for pid in ranks), timeout=10)
    assert results.find_results(sweep_dir) == []


# ---------------------------------------------------------------- the real worker


def real_sweep(tmp_path: Path, name: str, launcher: str, body: str, data: Path) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nlauncher: {launcher}\ntimeout_s: 240\n"
        f"base: {{data_dir: {data}, image_size: 32, batch_per_gpu: 4, steps: 3,"
        f" warmup_steps: 1, shuffle_buffer: 16}}\n"
        "conversions: {png: {encoding: png, shard_count: 2, workers: 1}}\n" + body
    )
    return path


@pytest.mark.slow
@pytest.mark.horovod
def test_real_sweep_through_local_and_horovodrun(
    tmp_path: Path, synth_root: Path, env: dict[str, str]
) -> None:
    """bench.run for real: raw files through `local`, TFRecords through horovodrun -np 2.

    Pipeline mode keeps it to TF start-up plus a few batches (tracing DenseNet's
    Horovod gradient step takes minutes on 2 busy cores); the model modes are the same
    argv with another --mode.
    """
    local = real_sweep(
        tmp_path,
        "real-local",
        "{kind: local}",
        "axes: {mode: [pipeline], data_format: [raw]}\n",
        synth_root,
    )
    horovod = real_sweep(
        tmp_path,
        "real-horovod",
        "{kind: horovodrun, hosts: [localhost:2], controller: gloo}",
        "axes: {mode: [pipeline], data_format: [tfrecord], conversion: [png], gpus: [2]}\n",
        synth_root,
    )
    found = {}
    for path in (local, horovod):
        options = SweepOptions(
            sweep_file=path, results=tmp_path / "r", report=False, progress=False
        )
        code, out, err = run_sweep(options, env)
        sweep_dir = tmp_path / "r" / path.stem
        logs = "\n".join(p.read_text()[-3000:] for p in sweep_dir.glob("*/run-0.log"))
        assert code == 0, err + logs
        (found[path.stem],) = [results.load_result(p) for p in results.find_results(sweep_dir)]
        assert found[path.stem]["status"] == "ok"
        summary = json.loads((sweep_dir / "summary.json").read_text())
        assert summary["counts"] == {"ok": 1}
    raw, records = found["real-local"], found["real-horovod"]
    assert raw["cell"]["gpus"] == 1 and raw["cell"]["data_format"] == "raw"
    # What the runner writes for a job that died has the worker's cell keys and values.
    (cell,) = plan(load_sweep(local, environ=env), results_dir=tmp_path / "r")
    expected = result_cell(cell, env)
    assert set(raw["cell"]) <= set(expected)
    assert {key: expected[key] for key in raw["cell"] if key != "device"} == {
        key: value for key, value in raw["cell"].items() if key != "device"
    }
    assert records["cell"]["engine"] == "horovod" and records["cell"]["gpus"] == 2
    assert records["cell"]["data_format"] == "tfrecord"
    assert records["config"]["extra"] == {"conversion": "png"}
    assert records["dataset"]["records_dir"] == records["config"]["records_dir"]
    conversion = json.loads(
        (tmp_path / "r" / "real-horovod" / "conversions" / "png.json").read_text()
    )
    assert conversion["records_dir"] == records["config"]["records_dir"]
