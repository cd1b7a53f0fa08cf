#!/usr/bin/env bash
# Proves the GPU install paths with the product's own commands on a GPU machine that has no docker
# and no network, from a wheelhouse made by ./setup/download_wheels.sh DIR --gpu-cu13 --tests.
#   benchmarks/install_proof.sh WHEELHOUSE local      the README's --local --gpu command in a fresh .venv,
#                                                     twice (first and second start), wall time each
#   benchmarks/install_proof.sh WHEELHOUSE tests      pytest -m gpu in that .venv
#   benchmarks/install_proof.sh WHEELHOUSE container  setup/setup_playbook.sh as uid 1001 against a
#                                                     stand-in for the RAPIDS image (that .venv less the
#                                                     container set), playbook read-only, twice
# Prints a table last; logs go to $OUT (or /tmp/install-proof).
set -uo pipefail
WH=${1:?usage: install_proof.sh WHEELHOUSE local|tests|container}
STAGE=${2:?usage: install_proof.sh WHEELHOUSE local|tests|container}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG=${OUT:-/tmp/install-proof}
mkdir -p "$LOG"
cd "$ROOT" || exit 1
rows=()

timed() { # name, log, command...: runs it, keeps rc and wall seconds
  local name=$1 log=$2 t0 rc
  shift 2
  t0=$EPOCHREALTIME
  "$@" > "$log" 2>&1
  rc=$?
  rows+=("$(awk -v a="$t0" -v b="$EPOCHREALTIME" -v n="$name" -v r="$rc" 'BEGIN { printf "%-40s rc=%-3s %8.1f s", n, r, b - a }')")
  return "$rc"
}

run_summary() { # the newest run folder under $1: status, backend, GPU
  local run
  run=$(find "$1" -maxdepth 1 -name 'run-*' -type d | sort | tail -n1)
  [ -n "$run" ] || { echo "no run folder in $1"; return; }
  python3 - "$run" <<'PY'
import json, pathlib, sys
run = pathlib.Path(sys.argv[1])
prov = json.loads((run / "provenance.json").read_text())
size = sum(p.stat().st_size for p in run.rglob("*") if p.is_file()) / 2**20
v = prov.get("versions", {})
rsc = v.get("rapids-singlecell-cu13") or v.get("rapids-singlecell-cu12")
print(f"{run.name}: {(run / 'STATUS').read_text().split()[0]}, backend {prov.get('backend')},"
      f" gpu {prov.get('gpu')}, rapids-singlecell {rsc}, {len(list(run.rglob('*')))} files, {size:.0f} MiB")
PY
}

case "$STAGE" in
  local)
    rm -rf .venv results-proof cache
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$LOG/gpu.txt"
    timed "first start (install + demo run)" "$LOG/start1.log" \
      ./setup/start_playbook.sh --local --gpu --wheelhouse "$WH" --headless --out results-proof
    rows+=("  $(run_summary results-proof)")
    timed "second start (demo run)" "$LOG/start2.log" \
      ./setup/start_playbook.sh --local --gpu --wheelhouse "$WH" --headless --out results-proof
    rows+=("  $(run_summary results-proof)")
    rows+=("  installs in the second start: $(grep -c "installing the pinned requirements" "$LOG/start2.log")")
    ;;
  tests)
    .venv/bin/python -m pip install -q --no-index --find-links "$WH" -r setup/requirements-test.txt
    timed "pytest -m gpu" "$LOG/pytest-gpu.log" .venv/bin/python -m pytest -m gpu -q -p no:cacheprovider
    rows+=("  $(tail -n1 "$LOG/pytest-gpu.log")")
    ;;
  container)
    S=/tmp/container-proof
    rm -rf "$S" && mkdir -p "$S/playbook"
    cp -r setup src scRNA_analysis_preprocessing.ipynb pyproject.toml "$S/playbook/"
    chmod -R a-w "$S/playbook"
    # the stand-in image: the fresh .venv without what the container set adds
    .venv/bin/python -m pip uninstall -q -y scplaybook rapids-singlecell-cu13 scanpy anndata harmonypy igraph \
      leidenalg papermill docrep scikit-misc scverse-misc legacy-api-wrap session-info2 texttable natsort
    .venv/bin/python -m pip list --format=freeze > "$LOG/image-before.txt"
    install -d -o 1001 -g 1001 "$S/results" "$S/envs" "$S/envs/home" "$S/cache" "$S/data"
    for d in "$ROOT" "$WH"; do # let uid 1001 reach the stand-in and the wheelhouse
      while [ "$d" != / ]; do chmod o+x "$d"; d=$(dirname "$d"); done
    done
    as1001() {
      env -i PATH=/usr/bin:/bin HOME="$S/envs/home" PLAYBOOK_DIR="$S/playbook" PLAYBOOK_RESULTS="$S/results" \
        PLAYBOOK_ENVS="$S/envs" PLAYBOOK_IMAGE_PYTHON="$ROOT/.venv/bin/python" PLAYBOOK_CUDA=13 \
        PLAYBOOK_IMAGE=nvcr.io/nvidia/rapidsai/notebooks:26.10-cuda13-py3.13 PLAYBOOK_WHEELHOUSE="$WH" \
        CUPY_CACHE_DIR="$S/cache/cupy" NUMBA_CACHE_DIR="$S/cache/numba" SCPLAYBOOK_DATA="$S/data" \
        python3 -c 'import os, sys; os.setgroups([]); os.setgid(1001); os.setuid(1001); os.execvp(sys.argv[1], sys.argv[1:])' \
        bash "$S/playbook/setup/setup_playbook.sh" --headless
    }
    timed "container setup, first start (uid 1001)" "$LOG/container1.log" as1001
    rows+=("  $(run_summary "$S/results")")
    timed "container setup, second start" "$LOG/container2.log" as1001
    rows+=("  $(run_summary "$S/results")")
    rows+=("  second start: $(grep -o 'nothing to install' "$LOG/container2.log" | head -n1)")
    .venv/bin/python -m pip list --format=freeze > "$LOG/image-after.txt"
    if cmp -s "$LOG/image-before.txt" "$LOG/image-after.txt"; then rows+=("  stand-in image packages unchanged"); else rows+=("  stand-in image packages CHANGED"); fi
    rows+=("  files not owned by uid 1001 in results: $(find "$S/results" ! -uid 1001 | wc -l)")
    ;;
  *) echo "unknown stage $STAGE" >&2; exit 2 ;;
esac
printf '%s\n' "${rows[@]}"
