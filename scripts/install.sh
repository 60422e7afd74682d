#!/usr/bin/env bash
# The one install path: every environment (tests, quickstart, CI, the Docker image) installs the
# package with the pinned constraints of its Paddle line, so versions cannot drift between them.
#   scripts/install.sh [EXTRAS]     EXTRAS default: dev   (e.g. "dev,slim,export,serve")
# Env: PADDLE_VERSION=2  2 -> requirements/constraints.txt  (paddlepaddle 2.6.2, paddle2onnx 1.x)
#                        3 -> requirements/constraints.txt with the pins of requirements/paddle3.txt in place
#                             of the same packages' (paddlepaddle 3.3.1, paddle2onnx 2.x)
#                        the ernie extra (PaddleNLP) adds the pins of requirements/ernie.txt the same way
#                        (Paddle 2.6 line only)
#      PRINT_CONSTRAINTS=1  print the constraints of that PADDLE_VERSION (and extras) and exit
#      VENV=.venv   folder of the virtual environment (default .venv, .venv3 with PADDLE_VERSION=3);
#                   VENV=none installs into the current python
#      PYTHON=...   interpreter used to create the venv (default: first python3 >= 3.10)
#      PADDLE=cpu   cpu -> paddlepaddle, gpu -> paddlepaddle-gpu (2.6.2 only: PyPI has no 3.x GPU wheel),
#                   none -> keep the Paddle already installed (e.g. the base image's)
#      OPENCV=headless  replace opencv-python (which PaddleSlim declares and which needs libGL) by
#                   opencv-python-headless, the same cv2 without GUI libraries (the Docker image uses this)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-dev}"
PADDLE_VERSION="${PADDLE_VERSION:-2}"
PADDLE="${PADDLE:-cpu}"
OPENCV="${OPENCV:-}"

# constraints.txt less the packages the override file $1 (requirements/paddle3.txt, requirements/ernie.txt)
# pins, then that file (names compared as pip does: case-insensitive, with -, _ and . alike)
merged_constraints() {
  awk 'function name(s) { sub(/[ \t;=<>!~\[].*/, "", s); s = tolower(s); gsub(/[-_.]+/, "-", s); return s }
       FNR == NR { if ($0 !~ /^[ \t]*(#|$)/) over[name($0)] = 1; next }
       $0 ~ /^[ \t]*(#|$)/ || !(name($0) in over)' "$1" requirements/constraints.txt
  cat "$1"
}

case "$PADDLE_VERSION" in
  2) CONSTRAINTS=requirements/constraints.txt; VENV="${VENV:-.venv}" ;;
  3) CONSTRAINTS="$(mktemp "${TMPDIR:-/tmp}/constraints-paddle3.XXXXXX")"
     trap 'rm -f "$CONSTRAINTS"' EXIT
     merged_constraints requirements/paddle3.txt >"$CONSTRAINTS"
     VENV="${VENV:-.venv3}" ;;
  *) echo "scripts/install.sh: PADDLE_VERSION must be 2 or 3, got '$PADDLE_VERSION'" >&2; exit 2 ;;
esac
case ",$EXTRAS," in
  *,ernie,*)
    if [ "$PADDLE_VERSION" != 2 ]; then
      echo "scripts/install.sh: the ernie extra is pinned for PADDLE_VERSION=2 (PaddleNLP 2.8.1) only" >&2; exit 2
    fi
    CONSTRAINTS="$(mktemp "${TMPDIR:-/tmp}/constraints-ernie.XXXXXX")"
    trap 'rm -f "$CONSTRAINTS"' EXIT
    merged_constraints requirements/ernie.txt >"$CONSTRAINTS" ;;
esac
if [ "${PRINT_CONSTRAINTS:-}" = 1 ]; then
  cat "$CONSTRAINTS"
  exit 0
fi
case "$PADDLE" in
  cpu|gpu) EXTRAS="${PADDLE},${EXTRAS}" ;;
  none) ;;
  *) echo "scripts/install.sh: PADDLE must be cpu, gpu or none, got '$PADDLE'" >&2; exit 2 ;;
esac
if [ "$PADDLE" = gpu ] && [ "$PADDLE_VERSION" = 3 ]; then
  echo "scripts/install.sh: PyPI has no paddlepaddle-gpu 3.x wheel; use PADDLE=none on a Paddle 3 GPU base image" \
       "(e.g. paddlepaddle/paddle:3.0.0-gpu-cuda11.8-cudnn8.9-trt8.6) or PADDLE_VERSION=2" >&2
  exit 2
fi
case "$OPENCV" in
  ""|headless) ;;
  *) echo "scripts/install.sh: OPENCV must be empty or headless, got '$OPENCV'" >&2; exit 2 ;;
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

PIP=("$PY" -m pip install --no-cache-dir --disable-pip-version-check)
"${PIP[@]}" -c "$CONSTRAINTS" -e ".[${EXTRAS}]"
if [ "$OPENCV" = headless ] && "$PY" -m pip show opencv-python >/dev/null 2>&1; then
  # both wheels install the same cv2 package: remove the GUI build first, then add the headless one
  "$PY" -m pip uninstall -y opencv-python
  "${PIP[@]}" -c "$CONSTRAINTS" opencv-python-headless
fi
echo "installed robust_paddle[${EXTRAS}] (Paddle line ${PADDLE_VERSION}) into $("$PY" -c 'import sys; print(sys.prefix)')"
