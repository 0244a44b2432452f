#!/usr/bin/env bash
# Set up everything the harness needs on this machine, idempotently:
#   system packages (OpenMPI, a compiler, cmake; Chromium with --dev for the report tests),
#   a virtual environment in .venv with the pinned Python packages,
#   and Horovod built against the installed TensorFlow (skipped when one already works).
# A second run that finds everything in place takes a few seconds.
#
# Usage: scripts/setup.sh [--dev]
#   --dev   also install the test and lint tools, Chromium (used by the report tests) and
#           Slurm with MUNGE (slurmctld slurmd slurm-client munge: the cluster tests)
# Environment:
#   VENV=path          where the virtual environment goes (default: .venv in the repo)
#   PYTHON=python3     the interpreter that creates it
#   CHEXBENCH_SKIP_APT=1  never call apt-get (a cluster node without root, a vendor container)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${VENV:-$repo/.venv}
python=${PYTHON:-python3}
dev=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (expected --dev)" >&2; exit 2 ;;
  esac
done

say() { printf '[setup] %s\n' "$*" >&2; }
# pip warns about every package for the optional local mirrors some images configure; the
# warnings are noise here, real errors still show.
quiet_pip() { "$py" -m pip "$@" 2> >(grep -v "Location 'file:" >&2); }

# --- system packages -------------------------------------------------------------------
need_apt=()
command -v mpirun >/dev/null 2>&1 || need_apt+=(openmpi-bin)
[ -e /usr/include/x86_64-linux-gnu/openmpi/mpi.h ] || [ -e /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h ] \
  || command -v mpicxx >/dev/null 2>&1 || need_apt+=(libopenmpi-dev)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
if [ "$dev" = 1 ]; then
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
  # A real one-node Slurm cluster for the cluster tests (tests/slurm_cluster.py).
  command -v slurmctld >/dev/null 2>&1 || need_apt+=(slurmctld)
  command -v slurmd >/dev/null 2>&1 || need_apt+=(slurmd)
  command -v sbatch >/dev/null 2>&1 || need_apt+=(slurm-client)
  command -v munged >/dev/null 2>&1 || need_apt+=(munge)
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "${CHEXBENCH_SKIP_APT:-0}" = 1 ]; then
    say "missing system packages: ${need_apt[*]} (CHEXBENCH_SKIP_APT=1: not installing)"
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing system packages: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    say "missing system packages: ${need_apt[*]}; install them with your package manager" \
        "(Debian/Ubuntu: sudo apt-get install ${need_apt[*]})"
    exit 1
  fi
fi

# --- virtual environment and Python packages --------------------------------------------
if [ ! -x "$venv/bin/python" ]; then
  say "creating virtual environment $venv"
  "$python" -m venv "$venv"
fi
py="$venv/bin/python"
extras=""
[ "$dev" = 1 ] && extras="[dev]"
# Re-install only when pyproject.toml changed since the last successful install (a --dev
# install also serves a plain one).
stamp="$venv/.chexbench-installed"
[ "$dev" = 1 ] && stamp="$stamp-dev"
current() { [ -f "$1" ] && [ ! "$repo/pyproject.toml" -nt "$1" ]; }
if ! current "$stamp" && { [ "$dev" = 1 ] || ! current "$venv/.chexbench-installed-dev"; }; then
  say "installing Python packages (first time: TensorFlow is a large download)"
  quiet_pip install -q --upgrade pip
  quiet_pip install -q -e "$repo$extras"
  touch "$stamp"
fi

# --- Horovod --------------------------------------------------------------------------
"$py" "$repo/scripts/build_horovod.py"
say "ready: $venv"
