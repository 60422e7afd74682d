#!/usr/bin/env bash
# Screenshot of the label-review page (robust-paddle review) taken with headless Chromium (docs/review.png).
#   scripts/screenshot_review.sh [RUN_DIR] [OUT.png]
# RUN_DIR: a run folder with label_issues.csv; without one, a short noisy-digits run (40% symmetric noise,
# GCE) is trained into a temporary folder first and a few decisions are made through the page's API, so the
# picture shows reviewed and open cards.
# Env: VENV=.venv  CHROMIUM=chromium  EPOCHS=10  WAIT_MS=8000 (virtual time for the page's script)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
OUT="${2:-docs/review.png}"
CHROMIUM="${CHROMIUM:-chromium}"
EPOCHS="${EPOCHS:-10}"
WAIT_MS="${WAIT_MS:-8000}"
[ -x "$VENV/bin/python" ] || { echo "screenshot_review.sh: no $VENV/bin/python; run scripts/install.sh first" >&2; exit 2; }
command -v "$CHROMIUM" >/dev/null 2>&1 || { echo "screenshot_review.sh: '$CHROMIUM' not found; apt-get install chromium" >&2; exit 2; }
PY="$(cd "$VENV" && pwd)/bin/python"
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

RUN="${1:-}"
if [ -z "$RUN" ]; then
  RUN="$WORK/run"
  "$PY" -m robust_paddle.cli -q train -c configs/quickstart.yaml -o output_dir="$RUN" -o train.epochs="$EPOCHS" \
    -o train.progress=false -o train.visualdl=false
fi
"$PY" -m robust_paddle.cli -q review --run "$RUN" --port 0 --reviewer screenshot >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
URL=""
for _ in $(seq 1 120); do
  URL="$(grep -o 'http://[0-9.]*:[0-9]*' "$WORK/server.log" | head -n1 || true)"
  [ -n "$URL" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.5
done
[ -n "$URL" ] || { echo "screenshot_review.sh: the review server did not start" >&2; cat "$WORK/server.log" >&2; exit 1; }
if [ -z "${1:-}" ]; then  # a few decisions so the picture shows every state
  "$PY" - "$URL" <<'PY'
import json, sys, urllib.request
base = sys.argv[1]
items = json.load(urllib.request.urlopen(base + "/api/items?per_page=4"))["items"]
for item, body in zip(items, ({"action": "change", "label": None}, {"action": "keep"}, {"action": "unsure"})):
    body = dict(body, index=item["index"])
    if body.get("action") == "change":
        body["label"] = item["suggested_label"]
    req = urllib.request.Request(base + "/api/decision", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
PY
fi
"$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars \
  --virtual-time-budget="$WAIT_MS" --window-size=1280,900 --screenshot="$OUT" "$URL/" >/dev/null 2>&1
echo "wrote $OUT"
