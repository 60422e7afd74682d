#!/usr/bin/env bash
# Quickstart on a fresh machine: makes .venv, installs the pinned stack, runs the demo on noisy digits
# (the embedded dataset) and prints the clean oracle, CE and the robust methods side by side.
#   ./scripts/quickstart.sh [robust-paddle demo args]   e.g. ./scripts/quickstart.sh -o train.epochs=20
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}" ./scripts/install.sh "dev,text" >/dev/null
exec "${VENV:-.venv}/bin/robust-paddle" demo "$@"
