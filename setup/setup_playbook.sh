#!/usr/bin/env bash
# Runs INSIDE the RAPIDS container (docker or Apptainer). Adds what the notebook needs beyond the image
# (requirements-container-cuXX.txt) once, into a folder on the host keyed by image and requirements,
# binary wheels only, holding every package the image brings at the image's own version; a later start
# installs nothing. Then serves JupyterLab on the playbook or, with --headless, runs it.
# Never writes into the image or the playbook folder (both may be read-only).
set -euo pipefail
PLAYBOOK=${PLAYBOOK_DIR:-/home/rapids/playbook}
RESULTS=${PLAYBOOK_RESULTS:-/home/rapids/results}
ENVS=${PLAYBOOK_ENVS:-/home/rapids/envs}
PY=${PLAYBOOK_IMAGE_PYTHON:-python}
IMAGE=${PLAYBOOK_IMAGE:-unknown-image}
# the notebook copy users edit lives on the host too (results/workspace), so edits survive the container
WORK=${PLAYBOOK_WORK:-$RESULTS/workspace}
say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 2; }

cuda=${PLAYBOOK_CUDA:-${CUDA_VERSION:-13}}
cuda=${cuda%%.*}
req="$PLAYBOOK/setup/requirements-container-cu$cuda.txt"
[ -f "$req" ] || die "no requirements for CUDA $cuda in this image ($req); the playbook supports CUDA 12 and 13"
"$PY" -c 'import sys' 2>/dev/null || die "no python in the image ($PY)"
key=$({ echo "$IMAGE"; "$PY" -VV; cat "$PLAYBOOK/setup/requirements-container.txt" "$req"; } | cksum | cut -d' ' -f1)
tag=$(printf '%s' "${IMAGE##*/}" | tr -c 'A-Za-z0-9._-' '_')
prefix="$ENVS/$tag-$key"

use_prefix() {
  local sites
  sites=$(cat "$prefix/.pythonpath")
  export PYTHONPATH="$PLAYBOOK/src:$sites${PYTHONPATH:+:$PYTHONPATH}"
  export PATH="$prefix/bin:$PATH"
}

install_requirements() {
  local args=(-q --disable-pip-version-check --no-warn-script-location --only-binary=:all:)
  say "adding the playbook's requirements to the image, once, into $prefix ..."
  rm -rf "$prefix"
  mkdir -p "$prefix/wheels" || die "cannot write $ENVS (the launcher mounts it from the host's cache/ folder)"
  # Every package the image brings, at its version: pip may add packages, never change these.
  "$PY" -m pip list --format=freeze --disable-pip-version-check 2>/dev/null | grep '==' > "$prefix/image-packages.txt"
  if [ -n "${PLAYBOOK_WHEELHOUSE:-}" ]; then
    args+=(--no-index --find-links "$PLAYBOOK_WHEELHOUSE")
  else
    # pure-Python packages published only as source (requirements-source-only.txt): built into
    # wheels (no compiler; the build's setuptools lives in a temporary folder, not the image)
    "$PY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$prefix/wheels" \
      -r "$PLAYBOOK/setup/requirements-source-only.txt" \
      || die "could not build the pure-Python wheels of requirements-source-only.txt (network?); offline, use --wheelhouse DIR"
    args+=(--find-links "$prefix/wheels")
  fi
  "$PY" -m pip install "${args[@]}" --prefix "$prefix" -c "$prefix/image-packages.txt" -r "$req" \
    || die "installing $req into $prefix failed: above, what pip said (network? offline, use --wheelhouse DIR made by setup/download_wheels.sh --container-cu$cuda)"
  # where pip put them (lib/ or lib64/, site- or dist-packages, by the image's Python)
  find "$prefix" -maxdepth 5 -type d \( -name site-packages -o -name dist-packages \) | paste -sd: - > "$prefix/.pythonpath"
  use_prefix
  local after
  after=$("$PY" -m pip list --format=freeze --disable-pip-version-check 2>/dev/null)
  if ! diff <(sort "$prefix/image-packages.txt") <(grep -Fxf "$prefix/image-packages.txt" <<<"$after" | sort) >/dev/null; then
    die "installing the requirements changed packages the image brings; $prefix was left for inspection"
  fi
  "$PY" -VV > "$prefix/.installed"
  say "installed into $prefix; later starts reuse it"
}

if [ -f "$prefix/.installed" ]; then
  say "using the playbook's requirements installed earlier in $prefix (nothing to install)"
  use_prefix
else
  install_requirements
fi

mkdir -p "$WORK"
cp -n "$PLAYBOOK/scRNA_analysis_preprocessing.ipynb" "$WORK/" 2>/dev/null || true
chmod u+w "$WORK/scRNA_analysis_preprocessing.ipynb" 2>/dev/null || true
export SCPLAYBOOK_RESULTS="$RESULTS" SCPLAYBOOK_NOTEBOOK="$WORK/scRNA_analysis_preprocessing.ipynb"
cd "$WORK"
if [ "${1:-}" = "--headless" ]; then
  shift
  exec "$PY" -m scplaybook run --out "$RESULTS" "$@"
fi
: "${JUPYTER_TOKEN:?the launcher passes JUPYTER_TOKEN; refusing to serve JupyterLab without a token}"
extra=()
[ "$(id -u)" != 0 ] || extra+=(--allow-root)
# docker: 0.0.0.0 inside the container, published on the host's loopback by the launcher;
# Apptainer shares the host's network, so the launcher passes 127.0.0.1 unless --public.
exec "$PY" -m jupyter lab "${extra[@]}" --no-browser --ip="${PLAYBOOK_IP:-0.0.0.0}" --port="${PLAYBOOK_PORT:-8888}" \
  --ServerApp.root_dir="$WORK" --ServerApp.port_retries=0
