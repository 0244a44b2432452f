"""A real one-node Slurm cluster (tests/slurm_cluster.py): it starts, runs tasks, stops."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from slurm_cluster import ClusterUnavailable, start


def test_cluster_runs_two_tasks(slurm_cluster) -> None:
    assert slurm_cluster.node_state() == "idle"
    done = slurm_cluster.run(["srun", "--ntasks", "2", "hostname", "-s"], timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [slurm_cluster.node, slurm_cluster.node]


def test_cluster_offers_pmi_plugins(slurm_cluster) -> None:
    done = slurm_cluster.run(["srun", "--mpi=list"], timeout=30)
    listing = done.stdout + done.stderr
    assert "pmi2" in listing and "pmix" in listing, listing


def test_stop_ends_every_daemon() -> None:
    folder = Path(tempfile.mkdtemp(prefix="chexbench-slurm-"))
    try:
        cluster = start(folder)
    except ClusterUnavailable as error:
        pytest.skip(f"no one-node Slurm cluster here: {error}")
    processes = [process for _, process in cluster.daemons]
    assert [name for name, _ in cluster.daemons] == ["munged", "slurmctld", "slurmd"]
    assert all(process.poll() is None for process in processes)
    cluster.stop()
    assert all(process.poll() is not None for process in processes)
    # Nothing answers on that cluster any more.
    done = cluster.run(["sinfo", "--noheader"], timeout=30)
    assert done.returncode != 0
    shutil.rmtree(folder, ignore_errors=True)


def test_a_machine_without_slurm_is_told_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import slurm_cluster

    monkeypatch.setattr(slurm_cluster, "PROGRAMS", ("munged", "no-such-slurmd"))
    reason = slurm_cluster.missing_reason()
    if reason and "root" in reason:
        pytest.skip(reason)
    assert reason is not None and "no-such-slurmd" in reason and "setup.sh --dev" in reason
    with pytest.raises(ClusterUnavailable, match="no-such-slurmd"):
        start(tmp_path)


def test_doctor_lists_sruns_mpi_plugins(slurm_cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.doctor import check_launchers

    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    line = check_launchers().line()
    assert "srun MPI plugins pmix" in line and "(pmix)" in line, line
