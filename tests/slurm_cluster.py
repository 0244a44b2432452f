"""A real one-node Slurm cluster on this machine, for tests (Slurm 22.05 and MUNGE, Debian).

`start(folder)` starts munged (its own key made by `mungekey -c`, owned by munge, mode 400,
and its own socket), slurmctld and slurmd (both named by `hostname -s`) from a minimal
slurm.conf in `folder`: linuxproc process tracking, no cgroup or task plugins, cons_tres
with the node's real CPU count, free ports, state and spool inside `folder`. It waits until
`sinfo` shows the node idle. Everything lives in `folder`, so it neither needs nor touches
a system Slurm, and two test sessions on one machine do not meet.

`ClusterUnavailable` says why the daemons could not start (not root, a missing program, a
daemon that died with its log); the fixture turns it into a skip with that reason.
`SlurmCluster.stop()` cancels every job and stops every daemon it started, by its pid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PROGRAMS = ("munged", "mungekey", "slurmctld", "slurmd", "sinfo", "srun", "sbatch", "scancel")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class ClusterUnavailable(RuntimeError):
    """The one-node cluster cannot run here; the message says why."""


@dataclass
class SlurmCluster:
    """A running one-node cluster: its folder, slurm.conf, node name and daemons."""

    folder: Path
    conf: Path
    node: str
    cpus: int
    daemons: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """`base` (default: this process's) with SLURM_CONF pointing at this cluster."""
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        return env

    def run(
        self, argv: Sequence[str], *, timeout: float = 60.0, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A Slurm client command against this cluster (output captured as text)."""
        return subprocess.run(
            list(argv),
            env=self.environ(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def node_state(self) -> str:
        done = self.run(["sinfo", "--noheader", "--Node", "--format=%T"], timeout=10)
        return done.stdout.strip() if done.returncode == 0 else f"sinfo failed: {done.stderr}"

    def wait_idle(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until the node is idle again (no job holds it)."""
        deadline = time.monotonic() + timeout_s
        state = ""
        while time.monotonic() < deadline:
            self._check_alive()
            state = self.node_state()
            if state == "idle":
                return
            time.sleep(0.3)
        raise ClusterUnavailable(
            f"node {self.node} not idle after {timeout_s:.0f} s (sinfo: {state!r}); "
            f"{self._logs()}"
        )

    def stop(self) -> None:
        """Cancel every job, then stop the daemons (SIGTERM, SIGKILL after a grace)."""
        if any(process.poll() is None for name, process in self.daemons if name == "slurmctld"):
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                self.run(["scancel", "--full", "--quiet", "--user", "root"], timeout=10)
        for _, process in reversed(self.daemons):
            if process.poll() is None:
                process.terminate()
        for _, process in reversed(self.daemons):
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
        self.daemons.clear()

    def _check_alive(self) -> None:
        for name, process in self.daemons:
            if process.poll() is not None:
                raise ClusterUnavailable(
                    f"{name} exited with status {process.returncode}; {self._logs()}"
                )

    def _logs(self) -> str:
        tails = []
        for name in ("munged", "slurmctld", "slurmd"):
            path = self.folder / f"{name}.out"
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()[-6:]
                tails.append(f"{path.name}: " + " | ".join(lines))
        return "; ".join(tails) or "no daemon logs"


def missing_reason() -> str | None:
    """Why the cluster cannot start here before trying, or None."""
    if os.geteuid() != 0:
        return "a one-node Slurm cluster needs root (slurmd runs jobs as their users)"
    absent = [name for name in PROGRAMS if shutil.which(name) is None]
    if absent:
        return (
            f"Slurm/MUNGE programs not installed: {', '.join(absent)} "
            "(scripts/setup.sh --dev installs slurmctld slurmd slurm-client munge)"
        )
    try:
        import pwd

        pwd.getpwnam("munge")
    except KeyError:
        return "there is no 'munge' user (the munge package creates it)"
    return None


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def slurm_conf(folder: Path, *, node: str, cpus: int, ports: Sequence[int]) -> str:
    """The minimal slurm.conf of the one-node cluster in `folder`."""
    lines = [
        "ClusterName=chexbench-test",
        f"SlurmctldHost={node}",
        f"SlurmctldPort={ports[0]}",
        f"SlurmdPort={ports[1]}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={folder / 'munge-run' / 'munge.socket'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "MpiDefault=none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "ReturnToService=2",
        "KillWait=5",
        f"StateSaveLocation={folder / 'state'}",
        f"SlurmdSpoolDir={folder / 'spool'}",
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
        f"SlurmdPidFile={folder / 'slurmd.pid'}",
        f"SlurmctldLogFile={folder / 'slurmctld.log'}",
        f"SlurmdLogFile={folder / 'slurmd.log'}",
        f"NodeName={node} CPUs={cpus} State=UNKNOWN",
        f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP",
    ]
    return "\n".join(lines) + "\n"


def start(folder: Path) -> SlurmCluster:
    """Start munged, slurmctld and slurmd in `folder` and wait for an idle node."""
    reason = missing_reason()
    if reason:
        raise ClusterUnavailable(reason)
    node = socket.gethostname().split(".")[0]  # what `hostname -s` prints
    cpus = os.cpu_count() or 1
    # munged checks its folders: the key's private to munge, the socket's reachable by all.
    folder.chmod(0o755)
    private, public = folder / "munge", folder / "munge-run"
    for path, mode in ((private, 0o700), (public, 0o755)):
        path.mkdir()
        shutil.chown(path, "munge", "munge")
        path.chmod(mode)
    (folder / "state").mkdir()
    (folder / "spool").mkdir()
    conf = folder / "slurm.conf"
    conf.write_text(slurm_conf(folder, node=node, cpus=cpus, ports=_free_ports(2)))
    cluster = SlurmCluster(folder=folder, conf=conf, node=node, cpus=cpus)
    key = private / "munge.key"
    made = subprocess.run(
        ["mungekey", "--create", f"--keyfile={key}"],
        user="munge",
        group="munge",
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        raise ClusterUnavailable(f"mungekey -c failed: {made.stderr.strip()}")
    key.chmod(0o400)
    munged = [
        "munged",
        "--foreground",
        f"--socket={public / 'munge.socket'}",
        f"--key-file={key}",
        f"--pid-file={private / 'munged.pid'}",
        f"--log-file={private / 'munged.log'}",
        f"--seed-file={private / 'munged.seed'}",
    ]
    try:
        _daemon(cluster, "munged", munged, user="munge")
        _wait_for(cluster, lambda: (public / "munge.socket").exists(), "munged's socket")
        _daemon(cluster, "slurmctld", ["slurmctld", "-D", "-i", "-f", str(conf)])
        _daemon(cluster, "slurmd", ["slurmd", "-D", "-f", str(conf), "-N", node])
        cluster.wait_idle()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _daemon(cluster: SlurmCluster, name: str, argv: list[str], user: str | None = None) -> None:
    with open(cluster.folder / f"{name}.out", "wb") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=cluster.environ(),
            user=user,
            group=user,
            start_new_session=True,  # Ctrl-C reaches pytest, which stops the daemons itself
        )
    cluster.daemons.append((name, process))


def _wait_for(cluster: SlurmCluster, ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        cluster._check_alive()
        if ready():
            return
        time.sleep(0.1)
    raise ClusterUnavailable(f"{what} did not appear in {START_TIMEOUT_S:.0f} s; {cluster._logs()}")
