#!/usr/bin/env bash
# Shared helpers of the playbook's shell scripts (sourced, not run).

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit "${EXIT_CODE:-2}"; }

# Print a Python >= 3.12 interpreter: $PLAYBOOK_PYTHON, python3.13/3.12/python3 on PATH, or pyenv's.
find_python() {
  local c
  for c in "${PLAYBOOK_PYTHON:-}" python3.13 python3.12 python3 \
    "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python3; do
    [ -n "$c" ] || continue
    command -v "$c" >/dev/null 2>&1 || [ -x "$c" ] || continue
    if "$c" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      command -v "$c" 2>/dev/null || echo "$c"
      return 0
    fi
  done
  return 1
}

python_missing_help() {
  cat >&2 <<'MSG'
error: no Python 3.12 or newer was found (rapids-singlecell and scanpy need it).
Install one, then run this again, for example:
  Debian/Ubuntu:  sudo apt install python3.12 python3.12-venv
  conda/mamba:    mamba create -n py312 python=3.12 && mamba activate py312
  pyenv:          pyenv install 3.12 && pyenv shell 3.12
  HPC modules:    module load python/3.12
Or point PLAYBOOK_PYTHON at an interpreter: PLAYBOOK_PYTHON=/path/to/python3.12 ./setup/start_playbook.sh --local
MSG
}

# Create (once) the virtual environment $1 and install requirement file $2 (+ the package) into it.
# A stamp file skips the install when nothing changed. $3: optional wheelhouse folder (no network).
ensure_venv() {
  local venv=$1 req=$2 wheelhouse=${3:-} root py stamp want
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  if [ ! -x "$venv/bin/python" ]; then
    py=$(find_python) || { python_missing_help; exit 2; }
    say "creating a virtual environment in $venv with $py"
    if ! "$py" -m venv "$venv" 2>/dev/null; then
      # Debian/Ubuntu ship venv without ensurepip unless python3.X-venv is installed: pip from the
      # wheelhouse serves instead (a pip wheel runs as a zip)
      local pipwheel
      pipwheel=$(find "${wheelhouse:-/nonexistent}" -maxdepth 1 -name 'pip-*.whl' 2>/dev/null | head -n1 || true)
      [ -n "$pipwheel" ] || die "could not create $venv: $py has no ensurepip (install it: e.g. sudo apt install python3.12-venv)"
      rm -rf "$venv"
      "$py" -m venv --without-pip "$venv" || die "could not create $venv with $py"
      "$venv/bin/python" "$pipwheel/pip" install -q --no-index "$pipwheel" || die "could not install $pipwheel into $venv"
    fi
  fi
  stamp="$venv/.playbook-installed"
  want=$(cat "$root"/setup/requirements-*.txt "$root/pyproject.toml" | cksum | cut -d' ' -f1)-$req
  if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return 0; fi
  local args=(-q --disable-pip-version-check)
  if [ -n "$wheelhouse" ]; then
    [ -d "$wheelhouse" ] || die "--wheelhouse $wheelhouse is not a folder (build one with setup/download_wheels.sh)"
    args+=(--no-index --find-links "$wheelhouse")
  fi
  say "installing the pinned requirements ($req) into $venv ..."
  "$venv/bin/python" -m pip install "${args[@]}" -r "$root/setup/$req" || die "installing $req failed (network? use --wheelhouse DIR offline)"
  "$venv/bin/python" -m pip install "${args[@]}" --no-deps -e "$root" || die "installing the scplaybook package failed"
  "$venv/bin/python" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (playbook)" >/dev/null
  echo "$want" > "$stamp"
}
