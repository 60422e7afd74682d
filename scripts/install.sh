#!/usr/bin/env bash
# The one install path: every environment (tests, quickstart, CI, the Docker image) installs the
# package with requirements/constraints.txt, so versions cannot drift between them.
#   scripts/install.sh [EXTRAS]     EXTRAS default: dev   (e.g. "dev,slim,export,serve")
# Env: VENV=.venv   folder of the virtual environment; VENV=none installs into the current python
#      PYTHON=...   interpreter used to create the venv (default: first python3 >= 3.10)
#      PADDLE=cpu   cpu -> paddlepaddle==2.6.2, gpu -> paddlepaddle-gpu==2.6.2 (CUDA 11.8 build),
#                   none -> keep the Paddle already installed (e.g. the base image's)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-dev}"
VENV="${VENV:-.venv}"
PADDLE="${PADDLE:-cpu}"

case "$PADDLE" in
  cpu|gpu) EXTRAS="${PADDLE},${EXTRAS}" ;;
  none) ;;
  *) echo "scripts/install.sh: PADDLE must be cpu, gpu or none, got '$PADDLE'" >&2; exit 2 ;;
esac

pick_python() {
  for py in "${PYTHON:-}" python3 python3.12 python3.11 python3.10; do
    [ -n "$py" ] || continue
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
      echo "$py"; return 0
    fi
  done
  echo "robust_paddle needs Python >= 3.10; none found (set PYTHON=...)" >&2; return 1
}

if [ "$VENV" = "none" ]; then
  PY="$(pick_python)"
else
  [ -x "$VENV/bin/python" ] || "$(pick_python)" -m venv "$VENV"
  PY="$VENV/bin/python"
fi

"$PY" -m pip install --no-cache-dir --disable-pip-version-check -c requirements/constraints.txt -e ".[${EXTRAS}]"
echo "installed robust_paddle[${EXTRAS}] into $("$PY" -c 'import sys; print(sys.prefix)')"
