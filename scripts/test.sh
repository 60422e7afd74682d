#!/usr/bin/env bash
# The test command: makes the venv, installs the pinned stack with every extra the tests use, runs pytest.
#   ./scripts/test.sh [pytest args]                     Paddle 2.6.2 in .venv
#   PADDLE_VERSION=3 ./scripts/test.sh [pytest args]    Paddle 3.x (constraints.txt + requirements/paddle3.txt) in .venv3
#   e.g. ./scripts/test.sh tests/test_config.py -x
set -euo pipefail
cd "$(dirname "$0")/.."
PADDLE_VERSION="${PADDLE_VERSION:-2}"
case "$PADDLE_VERSION" in
  2) VENV="${VENV:-.venv}" ;;
  3) VENV="${VENV:-.venv3}" ;;
  *) echo "scripts/test.sh: PADDLE_VERSION must be 2 or 3, got '$PADDLE_VERSION'" >&2; exit 2 ;;
esac
PADDLE_VERSION="$PADDLE_VERSION" VENV="$VENV" ./scripts/install.sh "dev,slim,export,serve,quality,text" >/dev/null
PY="$VENV/bin/python"
"$PY" -m ruff check robust_paddle tests benchmarks scripts
exec "$PY" -m pytest -q "$@"
