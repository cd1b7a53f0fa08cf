#!/usr/bin/env bash
# On a machine WITH internet: download every wheel the playbook needs into DIR, for a Linux x86-64
# (or --arm for aarch64) target with Python 3.12. Copy DIR to the offline machine and run
#   ./setup/start_playbook.sh --local [--gpu] --wheelhouse DIR
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=setup/lib.sh
source "$ROOT/setup/lib.sh"
DIR=${1:?usage: download_wheels.sh DIR [--gpu-cu12|--gpu-cu13] [--arm]}
shift
REQS=(-r "$ROOT/setup/requirements-cpu.txt") PLAT=manylinux_2_28_x86_64
for a in "$@"; do
  case "$a" in
    --gpu-cu12) REQS=(-r "$ROOT/setup/requirements-gpu-cu12.txt") ;;
    --gpu-cu13) REQS=(-r "$ROOT/setup/requirements-gpu-cu13.txt") ;;
    --arm) PLAT=manylinux_2_28_aarch64 ;;
    *) die "unknown option $a" ;;
  esac
done
py=$(find_python) || { python_missing_help; exit 2; }
mkdir -p "$DIR"
"$py" -m pip download -d "$DIR" "${REQS[@]}" pip setuptools wheel hatchling \
  --only-binary=:all: --python-version 3.12 --platform "$PLAT" --platform manylinux2014_"${PLAT##*_2_28_}"
"$py" -m pip download -d "$DIR" --no-deps hatchling editables
say "wheels for the playbook are in $DIR ($(find "$DIR" -name '*.whl' | wc -l) files)"
