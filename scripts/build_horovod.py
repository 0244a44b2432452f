"""Build and install Horovod 0.28.1 against the TensorFlow installed in this interpreter.

Does nothing when an installed Horovod already loads its TensorFlow ops (vendor
containers ship one). Otherwise builds a wheel from the release's source distribution
with Gloo and MPI (and NCCL when a GPU and the NCCL headers are present), caches the wheel
per TensorFlow version and feature set, installs it, and prints `horovodrun --check-build`.

Horovod 0.28.1 builds unmodified against TensorFlow up to 2.18; from 2.19 on
`horovod/tensorflow/xla_mpi_ops.cc` needs XLA headers TensorFlow no longer ships, so for
those versions the one line that compiles it is removed from the CMake file.

Exit codes: 0 ready, 1 the build or the check failed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HOROVOD_VERSION = "0.28.1"
XLA_SOURCE_LINE = (
    'list(APPEND TF_SOURCES "${PROJECT_SOURCE_DIR}/horovod/tensorflow/xla_mpi_ops.cc")'
)
CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chexbench"


def say(message: str) -> None:
    print(f"[build_horovod] {message}", file=sys.stderr, flush=True)


def horovod_loads() -> str | None:
    """Horovod's version when `horovod.tensorflow` imports and its compiled ops load."""
    probe = (
        "import os; os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3');"
        "import horovod, horovod.tensorflow as hvd; hvd.gloo_built(); print(horovod.__version__)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def tensorflow_version() -> str:
    import importlib.metadata

    for name in ("tensorflow", "tensorflow-cpu", "tf-nightly"):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    say("TensorFlow is not installed in this environment; install it first")
    sys.exit(1)


def needs_xla_fix(tf_version: str) -> bool:
    major, minor = (int(part) for part in tf_version.split(".")[:2])
    return (major, minor) >= (2, 19)


def nccl_wanted() -> bool:
    """NCCL only where a GPU answers and NCCL's header can be found."""
    if os.environ.get("HOROVOD_GPU_OPERATIONS"):
        return os.environ["HOROVOD_GPU_OPERATIONS"] == "NCCL"
    if shutil.which("nvidia-smi") is None:
        return False
    if subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode != 0:
        return False
    nccl_home = os.environ.get("HOROVOD_NCCL_HOME", "")
    candidates = [Path(nccl_home) / "include" / "nccl.h", Path("/usr/include/nccl.h")]
    return any(path.exists() for path in candidates)


def build_env(with_nccl: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HOROVOD_WITH_TENSORFLOW="1",
        HOROVOD_WITHOUT_PYTORCH="1",
        HOROVOD_WITHOUT_MXNET="1",
        HOROVOD_WITH_GLOO="1",
        HOROVOD_WITH_MPI="1",
        MAKEFLAGS=env.get("MAKEFLAGS", f"-j{os.cpu_count() or 2}"),
    )
    if with_nccl:
        env["HOROVOD_GPU_OPERATIONS"] = "NCCL"
    else:
        env.pop("HOROVOD_GPU_OPERATIONS", None)
    return env


def cache_dir(tf_version: str, with_nccl: bool) -> Path:
    key = f"{HOROVOD_VERSION}-py{sys.version_info[0]}{sys.version_info[1]}-tf{tf_version}"
    key += "-nccl" if with_nccl else "-cpu"
    return CACHE_ROOT / "horovod-wheels" / key


def build_wheel(tf_version: str, with_nccl: bool, out_dir: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="horovod-build-") as work:
        work_dir = Path(work)
        say(f"downloading the Horovod {HOROVOD_VERSION} source distribution")
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"horovod=={HOROVOD_VERSION}",
                "-d",
                str(work_dir),
            ]
        )
        sdist = next(work_dir.glob("horovod-*.tar.gz"))
        with tarfile.open(sdist) as archive:
            archive.extractall(work_dir, filter="data")
        source = work_dir / f"horovod-{HOROVOD_VERSION}"
        if needs_xla_fix(tf_version):
            patch_out_xla(source / "horovod" / "tensorflow" / "CMakeLists.txt")
        say(
            f"building Horovod against TensorFlow {tf_version} "
            f"(Gloo, MPI{', NCCL' if with_nccl else ''}); takes a few minutes"
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "--no-cache-dir",
                "-w",
                str(out_dir),
                str(source),
            ],
            env=build_env(with_nccl),
        )
    return next(out_dir.glob("horovod-*.whl"))


def patch_out_xla(cmake_file: Path) -> None:
    text = cmake_file.read_text()
    if XLA_SOURCE_LINE not in text:
        say(f"expected line not found in {cmake_file}; building unpatched")
        return
    cmake_file.write_text(text.replace(XLA_SOURCE_LINE + "\n", ""))
    say("TensorFlow >= 2.19: removed xla_mpi_ops.cc from the build (XLA headers are gone)")


def run(argv: list[str], env: dict[str, str] | None = None) -> None:
    done = subprocess.run(argv, env=env)
    if done.returncode != 0:
        say(f"FAILED ({done.returncode}): {' '.join(argv)}")
        sys.exit(1)


def check_build() -> None:
    horovodrun = Path(sys.executable).parent / "horovodrun"
    done = subprocess.run([str(horovodrun), "--check-build"], capture_output=True, text=True)
    print(done.stdout.strip(), file=sys.stderr)
    if done.returncode != 0 or "[X] TensorFlow" not in done.stdout:
        say(f"horovodrun --check-build failed:\n{done.stderr}")
        sys.exit(1)


def main() -> int:
    installed = horovod_loads()
    if installed:
        say(f"Horovod {installed} already loads its TensorFlow ops: not rebuilding")
    else:
        tf_version = tensorflow_version()
        with_nccl = nccl_wanted()
        wheels = cache_dir(tf_version, with_nccl)
        cached = sorted(wheels.glob("horovod-*.whl")) if wheels.exists() else []
        if cached:
            say(f"installing the cached wheel {cached[-1]}")
            wheel = cached[-1]
        else:
            wheel = build_wheel(tf_version, with_nccl, wheels)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()[:12]
        say(f"installing {wheel.name} (sha256 {digest}...)")
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--force-reinstall",
                str(wheel),
            ]
        )
        if not horovod_loads():
            say("Horovod installed but its TensorFlow ops do not load")
            return 1
        say("Horovod installed; its TensorFlow ops load")
    check_build()
    return 0


if __name__ == "__main__":
    sys.exit(main())
