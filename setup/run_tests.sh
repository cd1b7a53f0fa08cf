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
if [ ! -x "$VENV/bin/pytest" ] || [ ! -x "$VENV/bin/ruff" ] || [ ! -x "$VENV/bin/shellcheck" ]; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r setup/requirements-test.txt
fi
export MPLBACKEND=Agg PATH="$VENV/bin:$PATH"
echo "== ruff (package, tests, notebook)"
ruff check src tests benchmarks setup scRNA_analysis_preprocessing.ipynb
ruff format --check src tests benchmarks setup scRNA_analysis_preprocessing.ipynb
echo "== shellcheck"
shellcheck -x setup/*.sh benchmarks/*.sh .ci/run
echo "== pytest"
status=0
python -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi
exit "$status"
