"""`python -m bench.doctor`: is this machine ready to run the harness?

Prints Python, TensorFlow, the Keras in use (it must be tf_keras 2.x), Horovod and which of
Gloo, MPI and NCCL it was built with, NVML and the GPUs it sees, the CPU count, and the
launchers found. Exit 0 when everything required is there, 1 otherwise, with the command
that fixes each problem. A GPU is not required (CPU runs are valid, if slow).
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

SETUP = "scripts/setup.sh"
MIN_PYTHON = (3, 10)


@dataclass(frozen=True)
class Check:
    """One line of the report: what, what was found, and the fix when required and bad."""

    name: str
    ok: bool
    found: str
    required: bool = True
    fix: str | None = None

    def line(self) -> str:
        mark = "ok  " if self.ok else ("FAIL" if self.required else "--  ")
        text = f"[{mark}] {self.name:<12} {self.found}"
        if not self.ok and self.fix:
            text += f"\n         fix: {self.fix}"
        return text


def check_python() -> Check:
    version = platform.python_version()
    ok = sys.version_info[:2] >= MIN_PYTHON
    return Check(
        "python",
        ok,
        f"{version} ({sys.executable})",
        fix=f"use Python >= {'.'.join(map(str, MIN_PYTHON))}, then {SETUP}",
    )


def check_tensorflow() -> Check:
    try:
        import tensorflow as tf
    except ImportError as error:
        return Check("tensorflow", False, f"not importable: {error}", fix=SETUP)
    build = tf.sysconfig.get_build_info()
    cuda = build.get("cuda_version") or "none"
    return Check(
        "tensorflow",
        True,
        f"{tf.__version__} (built with CUDA {cuda}, cuDNN {build.get('cudnn_version')})",
    )


def check_keras() -> Check:
    """tf.keras must be tf_keras (Keras 2): Horovod breaks silently under Keras 3."""
    try:
        import tensorflow as tf
        import tf_keras
    except ImportError as error:
        return Check("keras", False, f"tf_keras missing: {error}", fix=SETUP)
    in_use = tf.keras.Model.__module__.split(".")[0]
    ok = in_use == "tf_keras" and tf_keras.__version__.startswith("2.")
    found = f"tf.keras is {in_use} {tf_keras.__version__}"
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        found += " (TF_USE_LEGACY_KERAS is not 1)"
    return Check(
        "keras",
        ok,
        found,
        fix=f"import bench before tensorflow (it sets TF_USE_LEGACY_KERAS=1); {SETUP}",
    )


def check_horovod() -> Check:
    try:
        horovod = importlib.import_module("horovod")
        hvd = importlib.import_module("horovod.tensorflow")
        built = {"gloo": hvd.gloo_built(), "mpi": hvd.mpi_built(), "nccl": hvd.nccl_built()}
    except Exception as error:  # ImportError, or the compiled ops failing to load
        return Check(
            "horovod",
            False,
            f"not usable: {type(error).__name__}: {error}",
            fix=f"{SETUP} (builds Horovod 0.28.1 against this TensorFlow)",
        )
    listing = ", ".join(f"{name} {'yes' if flag else 'no'}" for name, flag in built.items())
    ok = built["gloo"] or built["mpi"]
    return Check(
        "horovod", ok, f"{horovod.__version__}: {listing}", fix=f"rebuild with Gloo or MPI: {SETUP}"
    )


def check_nvml() -> Check:
    from bench.job.telemetry import nvml_inventory

    inventory = nvml_inventory()
    if not inventory["available"]:
        return Check(
            "nvml",
            False,
            f"{inventory['reason']} (CPU only: GPU telemetry will be " "null)",
            required=False,
            fix="on GPU nodes: install the NVIDIA driver; pip install nvidia-ml-py",
        )
    gpus = (
        "; ".join(
            f"{gpu['index']}: {gpu['name']}{' (GPM)' if gpu['gpm'] else ''}"
            for gpu in inventory["gpus"]
        )
        or "no GPUs"
    )
    return Check(
        "nvml",
        True,
        f"driver {inventory['driver']}, CUDA driver " f"{inventory['cuda_driver']}; {gpus}",
        required=False,
    )


def check_cpus() -> Check:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return Check("cpus", True, f"{os.cpu_count()} (usable by this process: {usable})")


def check_launchers() -> Check:
    bin_dir = Path(sys.executable).parent
    horovodrun = bin_dir / "horovodrun"
    found = {
        "horovodrun": str(horovodrun) if horovodrun.exists() else shutil.which("horovodrun"),
        "mpirun": shutil.which("mpirun"),
        "srun": shutil.which("srun"),
    }
    listing = ", ".join(f"{name} {path or 'missing'}" for name, path in found.items())
    mpi_version = _first_line([found["mpirun"], "--version"]) if found["mpirun"] else None
    if mpi_version:
        listing += f" ({mpi_version})"
    if found["srun"]:
        listing += f"; {_srun_mpi()}"
    ok = found["horovodrun"] is not None
    return Check(
        "launchers", ok, listing, fix=f"{SETUP} (installs OpenMPI and Horovod's horovodrun)"
    )


def _srun_mpi() -> str:
    """srun's MPI plugins: Horovod under srun needs pmix (docs/run.md, "Slurm")."""
    from bench.sweep.slurm import mpi_plugins

    try:
        plugins = mpi_plugins()
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"srun MPI plugins unknown ({str(error).strip().splitlines()[-1]})"
    pmix = "pmix" if "pmix" in plugins else "NO pmix: the srun launcher cannot start Horovod"
    return f"srun MPI plugins {', '.join(plugins) or 'none'} ({pmix})"


def _first_line(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout.strip().splitlines() or [None])[0]


CHECKS: tuple[Callable[[], Check], ...] = (
    check_python,
    check_tensorflow,
    check_keras,
    check_horovod,
    check_nvml,
    check_cpus,
    check_launchers,
)


def run_checks(checks: Sequence[Callable[[], Check]] = CHECKS) -> list[Check]:
    return [check() for check in checks]


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m bench.doctor", description=__doc__.split("\n\n")[0]
    ).parse_args(argv)
    checks = run_checks()
    for check in checks:
        print(check.line())
    failed = [check for check in checks if check.required and not check.ok]
    if failed:
        print(
            f"\n{len(failed)} required check(s) failed: "
            f"{', '.join(check.name for check in failed)}. Fix: {SETUP}",
            file=sys.stderr,
        )
        return 1
    print("\nready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
