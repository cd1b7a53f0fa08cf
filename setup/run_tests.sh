#!/usr/bin/env bash
# Run the playbook's checks and tests on the CPU: lint (ruff, shellcheck), then pytest.
# Creates .venv (Python >= 3.12) with the pinned requirements the first time.
# Extra arguments go to pytest, e.g. ./setup/run_tests.sh -m "not slow".
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=setup/lib.sh
source "$ROOT/setup/lib.sh"
cd "$ROOT"
VENV=${PLAYBOOK_VENV:-$ROOT/.venv}
ensure_venv "$VENV" requirements-cpu.txt "${PLAYBOOK_WHEELHOUSE:-}"
if [ ! -x "$VENV/bin/pytest" ] || [ ! -x "$VENV/bin/ruff" ] || [ ! -x "$VENV/bin/shellcheck" ] \
  || ! "$VENV/bin/python" -c "import xdist" 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r setup/requirements-test.txt
fi
export MPLBACKEND=Agg PATH="$VENV/bin:$PATH"
echo "== ruff (package, tests, notebook)"
ruff check src tests benchmarks setup scRNA_analysis_preprocessing.ipynb
ruff format --check src tests benchmarks setup scRNA_analysis_preprocessing.ipynb
echo "== shellcheck"
shellcheck -x setup/*.sh benchmarks/*.sh .ci/run
echo "== pytest"
# test files in parallel (pytest-xdist, one file to a worker at a time, so that a file's fixtures run
# once): the slowest tests mostly wait on a subprocess or on the package index. One worker per core,
# at most 4; PYTEST_WORKERS=0 runs everything in this process (e.g. to debug with pdb).
workers=${PYTEST_WORKERS:-$(python -c "import os; n = min(4, os.cpu_count() or 1); print(n if n > 1 else 0)")}
status=0
python -m pytest -n "$workers" --dist loadfile "$@" || status=$?
if [ "$status" -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi
exit "$status"
