#!/usr/bin/env bash
# Runs INSIDE the RAPIDS container (or Apptainer image): installs the pinned requirements on top of
# the image's RAPIDS, then serves JupyterLab on the playbook or, with --headless, runs it.
set -euo pipefail
PLAYBOOK=${PLAYBOOK_DIR:-/home/rapids/playbook}
RESULTS=${PLAYBOOK_RESULTS:-/home/rapids/results}
# the notebook copy users edit lives on the host too (results/workspace), so edits survive the container
WORK=${PLAYBOOK_WORK:-$RESULTS/workspace}
args=()
[ -z "${PLAYBOOK_WHEELHOUSE:-}" ] || args+=(--no-index --find-links "$PLAYBOOK_WHEELHOUSE")

python -m pip install -q "${args[@]}" -r "$PLAYBOOK/setup/requirements-container.txt"
python -m pip install -q "${args[@]}" --no-deps "$PLAYBOOK"
mkdir -p "$WORK"
cp -n "$PLAYBOOK/scRNA_analysis_preprocessing.ipynb" "$WORK/" 2>/dev/null || true
export SCPLAYBOOK_RESULTS="$RESULTS" SCPLAYBOOK_NOTEBOOK="$WORK/scRNA_analysis_preprocessing.ipynb"
cd "$WORK"
if [ "${1:-}" = "--headless" ]; then
  shift
  exec python -m scplaybook run --out "$RESULTS" "$@"
fi
: "${JUPYTER_TOKEN:?the launcher passes JUPYTER_TOKEN; refusing to serve JupyterLab without a token}"
extra=()
[ "$(id -u)" != 0 ] || extra+=(--allow-root)
exec jupyter lab "${extra[@]}" --no-browser --ip=0.0.0.0 --port="${PLAYBOOK_PORT:-8888}" --ServerApp.root_dir="$WORK" \
  --ServerApp.port_retries=0
