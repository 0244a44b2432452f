"""The sweep with an input-service pool per cell: started before the job, its address passed
on, stopped after the job whatever happened (ok, failure, timeout, a dead worker, Ctrl-C).

The fast tests use a fake worker (the runner does not care what the job is) against a real
dispatcher and real workers; the slow one runs the real bench.run with 0 and 2 workers in
pipeline mode and with 2 in train mode.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bench.contract import results
from bench.service.config import ServiceConfig
from bench.service.usage import read_events
from bench.sweep import SweepOptions, run
from bench.sweep.execute import Job, run_job
from bench.sweep.load import load_sweep
from bench.sweep.plan import plan

FAKE_WORKER = """
import json, os, signal, sys, time
from pathlib import Path
import bench
from bench.contract import results
from bench.contract.config import RunConfig

config = RunConfig.from_argv(sys.argv[1:])
behaviour = json.loads(os.environ["FAKE_BEHAVIOUR"]).get(str(config.batch_per_gpu), "ok")
out = Path(config.output_dir)
out.mkdir(parents=True, exist_ok=True)
(out / "service.txt").write_text(f"{config.input_service} {config.input_service_dir}")
if behaviour == "crash":
    sys.exit(3)
if behaviour == "kill-worker":  # a service worker dies under the job, which then blocks
    manifest = json.loads((config.input_service_dir / "service.json").read_text())
    log = Path(manifest["workers"][0]["log"]).read_text()
    ready = [line for line in log.splitlines() if '"ready"' in line][0]
    os.kill(json.loads(ready.split(" ", 1)[1])["pid"], signal.SIGKILL)
    time.sleep(600)
if behaviour == "hang":
    time.sleep(600)
document = results.empty_result(
    status="ok", sweep=config.sweep, cell_id=config.cell_id, repeat=config.repeat,
    cell={"model": config.model, "batch_per_gpu": config.batch_per_gpu},
    config=None, throughput={"images_per_sec": 1.0}, finished_at=results.utc_now())
results.write_result(out, document)
"""


def _server_pids(log_dir: Path) -> list[int]:
    """Every server the pool started, by the pid in its ready line."""
    pids = []
    for log in sorted(log_dir.glob("*.log")):
        ready, _, _ = read_events(log)
        if ready is not None:
            pids.append(int(ready["pid"]))
    return pids


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def _cells(sweep_dir: Path) -> dict[int, Path]:
    return {
        int(folder.name.split("-b")[1].split("-")[0]): folder
        for folder in sweep_dir.iterdir()
        if folder.is_dir() and "-b" in folder.name
    }


def test_the_pool_is_up_for_the_job_and_gone_after_ok_failure_timeout_and_a_dead_worker(
    tmp_path: Path, synth_root: Path, subprocess_env: dict[str, str]
) -> None:
    worker = tmp_path / "fake_worker.py"
    worker.write_text(FAKE_WORKER)
    sweep = tmp_path / "served.yaml"
    sweep.write_text(
        f"name: served\nworker: [{sys.executable}, {worker}]\n"
        # The timeout starts once the pool is up; the fake job takes a fraction of a second.
        "launcher: {kind: local, kill_grace_s: 1}\ntimeout_s: 6\n"
        f"base: {{mode: pipeline, data_format: raw, data_dir: {synth_root}, input_workers: 1}}\n"
        "axes: {batch_per_gpu: [1, 2, 3, 4]}\n"
    )
    env = {
        **subprocess_env,
        "CHEXBENCH_DATA": str(tmp_path / "cache"),
        "FAKE_BEHAVIOUR": json.dumps({"2": "crash", "3": "hang", "4": "kill-worker"}),
    }
    options = SweepOptions(sweep_file=sweep, results=tmp_path / "r", report=False, progress=False)
    code = run(options, environ=env, out=io.StringIO(), err=io.StringIO())
    assert code == 1  # some cells failed
    cells = _cells(tmp_path / "r" / "served")
    found = {}
    for batch, folder in cells.items():
        (path,) = results.find_results(folder)
        found[batch] = results.load_result(path)
        log_dir = folder / "service-r0"
        target, service_dir = (folder / "service.txt").read_text().split()
        assert target.startswith("grpc://localhost:") and Path(service_dir) == log_dir
        pids = _server_pids(log_dir)
        assert len(pids) == 2, batch  # dispatcher + 1 worker were up for the job
        assert not _alive(pids), f"cell b{batch}: servers left running"
    assert found[1]["status"] == "ok"
    assert found[2]["status"] == "failed"
    assert found[3]["status"] == "timeout"
    died = found[4]
    assert died["status"] == "failed"
    message = died["error"]["message"]
    assert "tf.data service worker 0" in message and "killed by SIGKILL" in message
    assert "worker-0.log" in message and '"event": "ready"' in died["error"]["log_tail"]


def test_cells_without_workers_or_reading_nothing_get_no_pool(
    tmp_path: Path, synth_root: Path
) -> None:
    sweep = tmp_path / "plain.yaml"
    sweep.write_text(
        "name: plain\nlauncher: {kind: local}\n"
        f"base: {{data_format: raw, data_dir: {synth_root}}}\n"
        "axes: {mode: [synthetic, pipeline], input_workers: [0, 2]}\n"
        "input_service: {hosts: [cpu-a, cpu-b], base_port: 6100, dispatcher_host: train-0}\n"
        'demand: {"H100 ResNet50 bf16": 2912}\n'
    )
    from bench.sweep.jobs import service_config

    loaded = load_sweep(sweep, environ={"CHEXBENCH_DATA": str(tmp_path / "c")})
    assert loaded.demand == {"H100 ResNet50 bf16": 2912.0}
    cells = plan(loaded, results_dir=tmp_path / "r")
    # synthetic ignores input_workers: one synthetic cell, two pipeline cells
    assert sorted((c.settings["mode"], c.config.input_workers) for c in cells) == [
        ("pipeline", 0),
        ("pipeline", 2),
        ("synthetic", 0),
    ]
    configs = {c.config.input_workers: service_config(c, tmp_path, None) for c in cells}
    assert configs[0] is None
    served = configs[2]
    assert served is not None and served.workers == 2
    assert served.hosts == ("cpu-a", "cpu-b") and served.base_port == 6100
    # The default cells keep their ids: input_workers 0 is the default.
    assert [c.id for c in cells if c.config.input_workers == 0 and c.settings["mode"] == "pipeline"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nlauncher: {kind: local}\n"
        "base: {mode: synthetic, input_workers: -1}\n"
        "input_service: {hosts: [a], portt: 3}\ndemand: {x: 0}\n"
    )
    with pytest.raises(Exception) as error:
        load_sweep(bad, environ={"CHEXBENCH_DATA": str(tmp_path / "c")})
    text = str(error.value)
    for expected in ("input_workers", "portt", "base_port", "demand.x"):
        assert expected in text, text


def test_an_interrupted_job_leaves_no_server(tmp_path: Path, subprocess_env: dict) -> None:
    service = ServiceConfig(workers=1, log_dir=tmp_path / "service", stop_grace_s=5)
    job = Job(
        cell_id="c",
        slug="s",
        repeat=0,
        directory=tmp_path / "cell",
        argv=(sys.executable, "-c", "import time; time.sleep(600)"),
        timeout_s=300,
        kill_grace_s=1,
        env=subprocess_env,
        service=service,
    )

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        # The pool takes seconds to start; interrupt once the job itself is running.
        def arm() -> None:
            deadline = time.monotonic() + 120
            while "input service" not in _text(job.log_path) and time.monotonic() < deadline:
                time.sleep(0.2)
            signal.setitimer(signal.ITIMER_REAL, 1.0)

        import threading

        threading.Thread(target=arm, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            run_job(job)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    pids = _server_pids(service.log_dir)
    assert len(pids) == 2 and not _alive(pids)
    assert results.find_results(job.directory) == []  # an interrupt is not a failure


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


@pytest.mark.slow
def test_real_sweep_with_0_and_2_local_workers_in_pipeline_and_2_in_train_mode(
    tmp_path: Path, synth_root: Path, subprocess_env: dict[str, str]
) -> None:
    sweep = tmp_path / "served-real.yaml"
    sweep.write_text(
        "name: served-real\nlauncher: {kind: local}\ntimeout_s: 400\n"
        f"base: {{model: resnet50, data_format: raw, data_dir: {synth_root}, image_size: 32,"
        " batch_per_gpu: 4, steps: 4, warmup_steps: 1, shuffle_buffer: 16}\n"
        "axes: {mode: [pipeline, train], input_workers: [0, 2]}\n"
        # Training without a pool is bench.run's plain train mode (test_run.py); here one
        # cell without workers (pipeline) shows such a cell gets no pool.
        "exclude: [{mode: train, input_workers: 0}]\n"
    )
    env = {**subprocess_env, "CHEXBENCH_DATA": str(tmp_path / "cache")}
    options = SweepOptions(sweep_file=sweep, results=tmp_path / "r", report=False, progress=False)
    err = io.StringIO()
    code = run(options, environ=env, out=io.StringIO(), err=err)
    sweep_dir = tmp_path / "r" / "served-real"
    logs = "\n".join(p.read_text()[-3000:] for p in sweep_dir.glob("*/run-0.log"))
    assert code == 0, err.getvalue() + logs
    found = [results.load_result(p) for p in results.find_results(sweep_dir)]
    assert sorted((r["cell"]["mode"], r["cell"].get("input_workers", 0)) for r in found) == [
        ("pipeline", 0),
        ("pipeline", 2),
        ("train", 2),
    ]
    for result in found:
        assert result["status"] == "ok"
        served = result.get("input_service")
        if result["cell"].get("input_workers"):
            assert served["workers"] == 2 and served["started_by"] == "sweep"
            assert served["where"] == "local"
            for worker in served["per_worker"]:
                assert worker["cores"] >= 1
                assert worker["cpu_s"] is not None and worker["cpu_s"] >= 0
            assert served["worker_cpu_s"] is not None
        else:
            assert served is None
    for log_dir in sweep_dir.glob("*/service-r0"):
        pids = _server_pids(log_dir)
        assert len(pids) == 3 and not _alive(pids)


def _bench_run(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.run", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_bench_run_alone_starts_its_own_pool_and_fails_when_a_worker_dies(
    tmp_path: Path, synth_root: Path, subprocess_env: dict[str, str]
) -> None:
    common = ["--mode", "pipeline", "--data-format", "raw", "--data-dir", str(synth_root)]
    common += ["--image-size", "32", "--batch-per-gpu", "4", "--input-workers", "1"]
    ok = _bench_run([*common, "--steps", "5", "--output-dir", str(tmp_path / "ok")], subprocess_env)
    out, _ = ok.communicate(timeout=300)
    assert ok.returncode == 0, out
    (path,) = results.find_results(tmp_path / "ok")
    served = results.load_result(path)["input_service"]
    assert served["started_by"] == "job" and served["workers"] == 1
    (log_dir,) = (tmp_path / "ok").glob("service-r0-*")
    assert len(_server_pids(log_dir)) == 2 and not _alive(_server_pids(log_dir))

    endless = [*common, "--steps", "10000000", "--output-dir", str(tmp_path / "dies")]
    job = _bench_run(endless, subprocess_env)
    try:
        deadline = time.monotonic() + 240
        while not list((tmp_path / "dies").glob("service-r0-*/service.json")):
            assert time.monotonic() < deadline and job.poll() is None, "the pool never came up"
            time.sleep(0.5)
        (log_dir,) = (tmp_path / "dies").glob("service-r0-*")
        ready, _, _ = read_events(log_dir / "worker-0.log")
        assert ready is not None
        time.sleep(3)  # the job is reading by now
        psutil.Process(int(ready["pid"])).kill()
        out, _ = job.communicate(timeout=120)
    finally:
        job.kill()
    assert job.returncode == 1, out
    (path,) = results.find_results(tmp_path / "dies")
    failed = results.load_result(path)
    assert failed["status"] == "failed"
    assert "worker 0" in failed["error"]["message"] and "killed by SIGKILL" in out
    assert not _alive(_server_pids(log_dir))
