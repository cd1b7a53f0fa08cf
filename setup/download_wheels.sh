#!/usr/bin/env bash
# On a machine WITH internet: download every wheel the playbook needs into DIR, for an offline Linux
# machine, then copy DIR there and give it to the launcher with --wheelhouse DIR.
#   --cpu (default) / --gpu-cu12 / --gpu-cu13   for ./setup/start_playbook.sh --local [--gpu]
#                                               (Python 3.12 unless --python X.Y: match the target's)
#   --container-cu12 / --container-cu13         for the RAPIDS container (its Python, 3.13): only what
#                                               the image lacks
#   --arm                                       aarch64 (DGX Spark, Grace) instead of x86-64
#   --tests                                     also the test tools (pytest, ruff, shellcheck)
# Binary wheels only; the resolution is the one tests/test_install.py checks (setup/wheelhouse.py).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=setup/lib.sh
source "$ROOT/setup/lib.sh"
DIR=${1:?usage: download_wheels.sh DIR [--cpu|--gpu-cu12|--gpu-cu13|--container-cu12|--container-cu13] [--python X.Y] [--arm] [--tests]}
shift
args=(download "$DIR" --set cpu)
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) args+=(--set cpu) ;;
    --gpu-cu12 | --gpu-cu13 | --container-cu12 | --container-cu13) args+=(--set "${1#--}") ;;
    --python) args+=(--python "${2:?--python needs a version, e.g. 3.12}"); shift ;;
    --arm) args+=(--arch aarch64) ;;
    --tests) args+=(--tests) ;;
    *) die "unknown option $1" ;;
  esac
  shift
done
py=$(find_python) || { python_missing_help; exit 2; }
mkdir -p "$DIR"
say "resolving and downloading (binary wheels only) into $DIR ..."
"$py" "$ROOT/setup/wheelhouse.py" "${args[@]}" > "$DIR/wheelhouse.json" || die "the wheelhouse could not be made (above: what pip said)"
say "wheels for the playbook are in $DIR ($(find "$DIR" -name '*.whl' | wc -l) files; what they are: $DIR/wheelhouse.json)"
