#!/usr/bin/env bash
# The test command: makes .venv, installs the pinned stack with every extra the tests use, runs pytest.
#   ./scripts/test.sh [pytest args]      e.g. ./scripts/test.sh tests/test_config.py -x
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}" ./scripts/install.sh "dev,slim,export,serve,quality,text" >/dev/null
PY="${VENV:-.venv}/bin/python"
"$PY" -m ruff check robust_paddle tests benchmarks scripts
exec "$PY" -m pytest -q "$@"
