#!/usr/bin/env bash
# Screenshot of the VisualDL dashboard over finished runs, taken with headless Chromium (docs/visualdl.png).
#   scripts/screenshot_visualdl.sh [LOGDIR] [OUT.png]
# LOGDIR: a folder of runs (e.g. output/); without one, two short noisy-digits runs (CE and GCE, 40%
# symmetric noise, runs "ce" and "gce") are trained into a temporary folder first, so the dashboard
# compares them side by side.
# Env: VENV=.venv          the environment with robust-paddle and visualdl (scripts/install.sh)
#      CHROMIUM=chromium   the browser; INSTALL_CHROMIUM=1 lets the script `apt-get install chromium` when it
#                          is missing (nothing is installed otherwise)
#      EPOCHS=15           epochs of the two demo runs
#      PAGES="scalar histogram"  dashboard pages to capture: the first to OUT.png, the others to
#                          OUT_<page>.png (docs/visualdl.png, docs/visualdl_histogram.png)
#      WAIT_MS=20000       virtual time Chromium gives the page's scripts before each capture
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
OUT="${2:-docs/visualdl.png}"
CHROMIUM="${CHROMIUM:-chromium}"
EPOCHS="${EPOCHS:-15}"
PAGES="${PAGES:-scalar histogram}"
WAIT_MS="${WAIT_MS:-20000}"
[ -x "$VENV/bin/python" ] || { echo "screenshot_visualdl.sh: no $VENV/bin/python; run scripts/install.sh first" >&2; exit 2; }
VENV="$(cd "$VENV" && pwd)"
PY="$VENV/bin/python"

if ! command -v "$CHROMIUM" >/dev/null 2>&1; then
  if [ "${INSTALL_CHROMIUM:-0}" = 1 ]; then
    apt-get update && apt-get install -y --no-install-recommends chromium fonts-dejavu-core
  else
    echo "screenshot_visualdl.sh: '$CHROMIUM' not found; install Debian's chromium (apt-get install chromium)," \
         "set CHROMIUM=/path/to/chrome, or rerun with INSTALL_CHROMIUM=1" >&2
    exit 2
  fi
fi

WORK="$(mktemp -d)"
VDL_PID=""
cleanup() {
  if [ -n "$VDL_PID" ]; then kill "$VDL_PID" 2>/dev/null || true; wait "$VDL_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

LOGDIR="${1:-}"
if [ -z "$LOGDIR" ]; then
  LOGDIR="$WORK/output"
  for loss in ce gce; do
    "$VENV/bin/robust-paddle" -q train -c configs/quickstart.yaml -o "train.epochs=$EPOCHS" -o "loss.name=$loss" \
      -o "loss.params={}" -o train.progress=false -o "train.hooks=[{name: sample_stats}]" \
      -o "output_dir=$LOGDIR/$loss" >/dev/null
  done
fi
[ -d "$LOGDIR" ] || { echo "screenshot_visualdl.sh: no folder $LOGDIR" >&2; exit 2; }

PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
# started from LOGDIR's parent with a relative --logdir, so runs are named "output/<run>/vdl", not by long paths
(cd "$(dirname "$LOGDIR")" && exec "$VENV/bin/visualdl" --logdir "$(basename "$LOGDIR")" --host 127.0.0.1 \
  --port "$PORT" --disable-telemetry --language en) >"$WORK/visualdl.log" 2>&1 &
VDL_PID=$!
for _ in $(seq 1 120); do
  if "$PY" -c "import sys, urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:$PORT/alive', timeout=2).status != 204)" \
       2>/dev/null; then
    break
  fi
  kill -0 "$VDL_PID" 2>/dev/null || { cat "$WORK/visualdl.log" >&2; echo "visualdl exited" >&2; exit 1; }
  sleep 0.5
done

mkdir -p "$(dirname "$OUT")"
first=1
for page in $PAGES; do
  if [ "$first" = 1 ]; then png="$OUT"; first=0; else png="${OUT%.png}_${page//\//_}.png"; fi
  rm -f "$png"
  # SwiftShader renders the WebGL histogram charts without a GPU; a fresh profile per capture
  "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$(mktemp -d -p "$WORK")" --hide-scrollbars \
    --use-angle=swiftshader --enable-unsafe-swiftshader --window-size=1400,900 \
    --virtual-time-budget="$WAIT_MS" --screenshot="$png" "http://127.0.0.1:$PORT/app/$page" \
    2>"$WORK/chromium.log" || { cat "$WORK/chromium.log" >&2; exit 1; }
  [ -s "$png" ] || { cat "$WORK/chromium.log" >&2; echo "no screenshot written for $page" >&2; exit 1; }
  echo "wrote $png (VisualDL $page page over $LOGDIR)"
done
