#!/usr/bin/env bash
# Image smoke test without a Docker daemon: builds the CPU image with podman/buildah from a local Debian base
# (mmdebstrap, standing in for python:3.11-slim) and exercises it the way docs/docker.md tells users to:
#   demo, a 2-epoch train into a mounted /output (file owner checked), export, serve (/health, /predict),
#   visualdl (/app/api/runs, /app/scalar with no Accept-Language header), SIGTERM to each (exit within 10 s,
#   train leaves a checkpoint that resumes), an unwritable /output (one line, exit 2), USER_UID=0 refused,
#   and podman-compose config + up for train and visualdl (ports on 127.0.0.1 only).
# Called by .ci/run. Where podman/buildah cannot be installed it prints why it skipped and exits 0.
#   scripts/docker_smoke.sh
# Env: SMOKE_DIR   work folder (default /var/tmp/robust-paddle-smoke): image store, base rootfs, outputs;
#                  kept between runs so the base layer and the pip layer are cached
#      SMOKE_KEEP=1  keep the containers' output folder for inspection
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
SMOKE_DIR="${SMOKE_DIR:-/var/tmp/robust-paddle-smoke}"
IMAGE=robust-paddle:smoke-cpu
BASE=docker.io/library/python:3.11-slim
SMOKE_UID=1000
T0=$SECONDS

say() { echo "docker_smoke [$((SECONDS - T0))s]: $*"; }
skip() { echo "docker_smoke: SKIPPED: $*"; exit 0; }
fail() { echo "docker_smoke: FAILED: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------- tools
TOOLS=(podman buildah mmdebstrap runc curl)
missing=()
for t in "${TOOLS[@]}"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    skip "needs ${missing[*]} (apt-get as root installs them: buildah podman runc catatonit mmdebstrap uidmap slirp4netns fuse-overlayfs curl)"
  fi
  say "installing ${missing[*]} with apt-get"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah podman runc catatonit \
          mmdebstrap uidmap slirp4netns fuse-overlayfs curl; } >"/tmp/docker_smoke_apt.$$.log" 2>&1; then
    tail -5 "/tmp/docker_smoke_apt.$$.log"
    skip "apt-get could not install podman/buildah (log above)"
  fi
fi
if [ "$(id -u)" != 0 ]; then
  skip "runs as root only (the image store and chroot builds of this recipe need it)"
fi
mkdir -p "$SMOKE_DIR"
# podman-compose from PyPI, pinned in the constraints, in a venv of its own
if [ ! -x "$SMOKE_DIR/compose-venv/bin/podman-compose" ]; then
  python3 -m venv "$SMOKE_DIR/compose-venv"
  "$SMOKE_DIR/compose-venv/bin/python" -m pip install -q -c requirements/constraints.txt podman-compose \
    || skip "podman-compose could not be installed from PyPI"
fi
COMPOSE="$SMOKE_DIR/compose-venv/bin/podman-compose"

# ------------------------------------------------------------------------------------ container config
# runc (crun refuses hybrid cgroup layouts), ulimits within the host's hard limits, a store of our own.
HARD_NOFILE="$(ulimit -Hn)"
[ "$HARD_NOFILE" = unlimited ] && HARD_NOFILE=1048576
cat >"$SMOKE_DIR/containers.conf" <<EOF
[engine]
runtime = "runc"
[containers]
default_ulimits = ["nofile=${HARD_NOFILE}:${HARD_NOFILE}", "nproc=32768:32768"]
EOF
cat >"$SMOKE_DIR/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$SMOKE_DIR/storage"
runroot = "$SMOKE_DIR/run"
EOF
export CONTAINERS_CONF="$SMOKE_DIR/containers.conf" CONTAINERS_STORAGE_CONF="$SMOKE_DIR/storage.conf"
podman info >/dev/null 2>&1 || {
  sed -i 's/driver = "overlay"/driver = "vfs"/' "$SMOKE_DIR/storage.conf"
  podman info >/dev/null 2>&1 || skip "podman cannot start here: $(podman info 2>&1 | tail -1)"
}
# the host's CA bundle, lent read-only to build and run steps where outgoing TLS is intercepted
CA=/etc/ssl/certs/ca-certificates.crt
CA_MOUNT=()
[ -f "$CA" ] && CA_MOUNT=(-v "$CA:$CA:ro")

CONTAINERS=()
cleanup() {
  for c in "${CONTAINERS[@]}"; do podman rm -f "$c" >/dev/null 2>&1 || true; done
  if [ -n "${COMPOSE_DIR:-}" ] && [ -d "$COMPOSE_DIR" ]; then
    (cd "$COMPOSE_DIR" && "$COMPOSE" -f docker-compose.yml -f docker-compose.cpu.yml down -t 2 >/dev/null 2>&1) || true
  fi
  [ "${SMOKE_KEEP:-0}" = 1 ] || rm -rf "$SMOKE_DIR/out" "$SMOKE_DIR/ro" "${COMPOSE_DIR:-/nonexistent}"
}
trap cleanup EXIT

# builds interrupted earlier leave working containers behind in this (our own) store
buildah rm --all >/dev/null 2>&1 || true

# ------------------------------------------------------------------------------------------ base image
if ! podman image exists "$BASE"; then
  # The apt mirror this machine is configured with (never a hard-coded host).
  MIRROR="$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
  [ -n "$MIRROR" ] || MIRROR="$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
  [ -n "$MIRROR" ] || skip "no Debian mirror configured in /etc/apt/sources.list(.d) for mmdebstrap"
  say "building the base image $BASE with mmdebstrap (bookworm, python3)"
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
    --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED; rm -rf "$1"/var/lib/apt/lists/*' \
    bookworm "$SMOKE_DIR/rootfs.tar" "$MIRROR"
  ctr="$(buildah from scratch)"
  buildah add "$ctr" "$SMOKE_DIR/rootfs.tar" / >/dev/null
  buildah config --env LANG=C.UTF-8 --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd python3 "$ctr"
  buildah commit --quiet --format docker "$ctr" "$BASE" >/dev/null
  buildah rm "$ctr" >/dev/null
  rm -f "$SMOKE_DIR/rootfs.tar"
fi

# ---------------------------------------------------------------------------------------------- build
say "building $IMAGE (CPU, the image's default Paddle line)"
build() {
  podman build --isolation chroot --format docker --layers --pull=never "${CA_MOUNT[@]}" \
    --build-arg BASE_IMAGE=python:3.11-slim --build-arg PADDLE=cpu "$@" .
}
build -q -t "$IMAGE" --build-arg USER_UID="$SMOKE_UID" >"$SMOKE_DIR/build.log" 2>&1 || { tail -30 "$SMOKE_DIR/build.log"; fail "image build"; }
size_gb="$(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.2f", $1/1e9}')"
say "built; $size_gb GB"
# the size the docs state is the size it is (within 10%)
for doc in docs/docker.md README.md; do
  doc_gb="$(grep -oE 'CPU image: about [0-9.]+ GB' "$doc" | head -1 | grep -oE '[0-9.]+' || true)"
  [ -n "$doc_gb" ] || fail "$doc states no 'CPU image: about N GB'"
  awk -v m="$size_gb" -v d="$doc_gb" 'BEGIN { exit !((m - d) / m < 0.1 && (d - m) / m < 0.1) }' \
    || fail "$doc says the CPU image is about $doc_gb GB; it is $size_gb GB"
done
# no libGL (opencv-python-headless): cv2 imports without it
podman run --rm --entrypoint sh "$IMAGE" -c 'python3 -c "import cv2" && ! ldconfig -p | grep -q "libGL\.so"' \
  || fail "the image needs or ships libGL"
paddle_version="$(podman run --rm --entrypoint python3 "$IMAGE" -c 'import robust_paddle, paddle; print(paddle.__version__)' 2>/dev/null | tail -1)"
say "Paddle in the image: $paddle_version"
# USER_UID=0 is refused (only the last step re-runs: apt and pip are cached above it)
if build -q -t robust-paddle:smoke-uid0 --build-arg USER_UID=0 >"$SMOKE_DIR/uid0.log" 2>&1; then
  podman rmi -f robust-paddle:smoke-uid0 >/dev/null 2>&1 || true
  fail "a build with USER_UID=0 succeeded; it must be refused"
fi
grep -q "USER_UID must be a uid > 0" "$SMOKE_DIR/uid0.log" || { tail -5 "$SMOKE_DIR/uid0.log"; fail "USER_UID=0 build failed without the message"; }
say "USER_UID=0 refused"

OUT="$SMOKE_DIR/out"
rm -rf "$OUT" && mkdir -p "$OUT" && chown "$SMOKE_UID:$SMOKE_UID" "$OUT"
PRUN=(podman run --rm -v "$OUT:/output" "$IMAGE")

# --------------------------------------------------------------------------------------------- demo
say "demo --methods ce,gce"
"${PRUN[@]}" demo --methods ce,gce -o train.epochs=3 --out /output/demo >"$SMOKE_DIR/demo.log" 2>&1 \
  || { tail -20 "$SMOKE_DIR/demo.log"; fail "demo"; }
grep -Eq '^gce +[0-9.]+' "$SMOKE_DIR/demo.log" || { tail -20 "$SMOKE_DIR/demo.log"; fail "demo printed no gce row"; }

# ------------------------------------------------------------------------------------------- train
say "train, 2 epochs, into the mounted /output"
"${PRUN[@]}" train -c configs/quickstart.yaml -o train.epochs=2 -o output_dir=/output/q >"$SMOKE_DIR/train.log" 2>&1 \
  || { tail -20 "$SMOKE_DIR/train.log"; fail "train"; }
[ -f "$OUT/q/checkpoints/latest.pdckpt" ] || fail "train wrote no checkpoint"
owner="$(stat -c %u "$OUT/q/metrics.json")"
[ "$owner" = "$SMOKE_UID" ] || fail "files written to /output are owned by uid $owner, expected $SMOKE_UID"

# unwritable /output: one line, exit 2, nothing trained
mkdir -p "$SMOKE_DIR/ro" && chmod 755 "$SMOKE_DIR/ro" && chown 0:0 "$SMOKE_DIR/ro"
set +e
podman run --rm -v "$SMOKE_DIR/ro:/output" "$IMAGE" train -c configs/quickstart.yaml -o output_dir=/output/x \
  >"$SMOKE_DIR/ro.out" 2>"$SMOKE_DIR/ro.err"
rc=$?
set -e
[ "$rc" = 2 ] && [ "$(wc -l <"$SMOKE_DIR/ro.err")" = 1 ] && grep -q "not writable" "$SMOKE_DIR/ro.err" \
  || { cat "$SMOKE_DIR/ro.err" | tail -5; fail "unwritable /output: exit $rc, expected one line and exit 2"; }
say "unwritable /output: $(cat "$SMOKE_DIR/ro.err")"

# --------------------------------------------------------------------------------------- SIGTERM
# $1 = container; sends SIGTERM to its PID 1 (no --init: the image must handle it) and waits up to 10 s
sigterm_within_10s() {
  local name="$1" t rc
  t=$SECONDS
  podman kill --signal TERM "$name" >/dev/null
  rc="$(timeout 15 podman wait "$name" 2>/dev/null || echo timeout)"
  [ "$rc" != timeout ] && [ $((SECONDS - t)) -le 10 ] || fail "$name did not stop within 10 s of SIGTERM"
  [ "$rc" != 137 ] || fail "$name was killed (exit 137) instead of stopping on SIGTERM"
  say "$name stopped $((SECONDS - t)) s after SIGTERM (exit $rc)"
}
wait_for() {  # $1 = seconds, $2... = command that succeeds when ready
  local limit=$1; shift
  local t=$SECONDS
  until "$@" >/dev/null 2>&1; do
    [ $((SECONDS - t)) -lt "$limit" ] || return 1
    sleep 1
  done
}
say "train stopped by SIGTERM leaves a checkpoint that resumes"
podman run -d --name rp-smoke-train -v "$OUT:/output" "$IMAGE" train -c configs/quickstart.yaml \
  -o train.epochs=500 -o output_dir=/output/sig >/dev/null
CONTAINERS+=(rp-smoke-train)
wait_for 240 test -f "$OUT/sig/checkpoints/latest.pdckpt" || { podman logs rp-smoke-train | tail; fail "no checkpoint within 240 s"; }
sleep 2
sigterm_within_10s rp-smoke-train
# resume to one epoch more than the checkpoint holds: it must train on from it
done_epochs="$(podman run --rm -v "$OUT:/output" --entrypoint python3 "$IMAGE" -c \
  "import robust_paddle.engine.checkpoint as c; print(c.load_checkpoint('/output/sig/checkpoints/latest.pdckpt')['epoch'])" \
  2>/dev/null | tail -1)"
[ -n "$done_epochs" ] || fail "the SIGTERM'd run's checkpoint does not load"
"${PRUN[@]}" train --resume /output/sig -o train.epochs=$((done_epochs + 1)) >"$SMOKE_DIR/resume.log" 2>&1 && rc=0 || rc=$?
[ "$rc" = 0 ] && grep -q "resumed /output/sig.* at epoch" "$SMOKE_DIR/resume.log" \
  || { tail -5 "$SMOKE_DIR/resume.log"; fail "resume from the SIGTERM'd run (exit $rc)"; }
say "$(grep -o "resumed /output/sig.* at epoch [0-9]*" "$SMOKE_DIR/resume.log"), finished with exit 0"

# ------------------------------------------------------------------------------------ export + serve
say "export"
"${PRUN[@]}" export -c /output/q/config.yaml --checkpoint /output/q --out /output/q/export >"$SMOKE_DIR/export.log" 2>&1 \
  || { tail -20 "$SMOKE_DIR/export.log"; fail "export"; }
say "serve on 127.0.0.1"
podman run -d --name rp-smoke-serve -p 127.0.0.1:18080:8080 -v "$OUT:/output:ro" "$IMAGE" \
  serve --model /output/q/export --host 0.0.0.0 --port 8080 >/dev/null
CONTAINERS+=(rp-smoke-serve)
wait_for 120 curl -fsS http://127.0.0.1:18080/health || { podman logs rp-smoke-serve | tail; fail "serve /health"; }
body="$(python3 -c 'import json; print(json.dumps({"inputs": [[[[0.0] * 8] * 8]]}))')"
pred="$(curl -fsS -H 'Content-Type: application/json' -d "$body" http://127.0.0.1:18080/predict)" \
  || fail "serve /predict"
echo "$pred" | grep -q '"predictions"' || fail "serve /predict answered: $pred"
sigterm_within_10s rp-smoke-serve

# ---------------------------------------------------------------------------------------- visualdl
say "visualdl (--language en), no Accept-Language header"
podman run -d --init --name rp-smoke-vdl -p 127.0.0.1:18040:8040 -v "$OUT:/output:ro" --entrypoint visualdl "$IMAGE" \
  --logdir /output --host 0.0.0.0 --port 8040 --language en --disable-telemetry >/dev/null
CONTAINERS+=(rp-smoke-vdl)
wait_for 90 curl -fsS http://127.0.0.1:18040/app/api/runs || { podman logs rp-smoke-vdl | tail; fail "visualdl /app/api/runs"; }
code="$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18040/app/scalar)"
[ "$code" = 200 ] || fail "visualdl /app/scalar without Accept-Language answered HTTP $code"
sigterm_within_10s rp-smoke-vdl

# ----------------------------------------------------------------------------------------- compose
say "podman-compose config + up train visualdl"
COMPOSE_DIR="$SMOKE_DIR/compose"
rm -rf "$COMPOSE_DIR" && mkdir -p "$COMPOSE_DIR/output" "$COMPOSE_DIR/data"
cp docker-compose.yml docker-compose.cpu.yml "$COMPOSE_DIR/" && cp -r configs "$COMPOSE_DIR/"
chown "$SMOKE_UID:$SMOKE_UID" "$COMPOSE_DIR/output"
cd "$COMPOSE_DIR"
export TAG=smoke RUN=compose  # compose's image robust-paddle:${TAG}-cpu is the one built above
"$COMPOSE" -f docker-compose.yml -f docker-compose.cpu.yml config >"$SMOKE_DIR/compose-config.yml" 2>&1 \
  || { tail "$SMOKE_DIR/compose-config.yml"; fail "podman-compose config"; }
"$COMPOSE" -f docker-compose.yml -f docker-compose.cpu.yml up -d train visualdl >"$SMOKE_DIR/compose-up.log" 2>&1 \
  || { tail "$SMOKE_DIR/compose-up.log"; fail "podman-compose up"; }
wait_for 120 curl -fsS http://127.0.0.1:8040/app/api/runs || fail "compose visualdl on 127.0.0.1:8040"
code="$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8040/app/scalar)"
[ "$code" = 200 ] || fail "compose visualdl /app/scalar answered HTTP $code"
ports="$(podman ps --format '{{.Names}} {{.Ports}}')"
if echo "$ports" | grep -E '0\.0\.0\.0:|:::' | grep -q .; then fail "compose publishes beyond 127.0.0.1: $ports"; fi
wait_for 240 test -f "$COMPOSE_DIR/output/compose/checkpoints/latest.pdckpt" || fail "compose train wrote no checkpoint in output/compose"
# what `compose stop` / `down` / Ctrl-C do: SIGTERM, then SIGKILL after 10 s (`podman stop` also keeps the
# restart policy from starting the service again)
for svc in train visualdl; do
  name="$(podman ps --filter "label=com.docker.compose.service=$svc" --format '{{.Names}}' | head -1)"
  [ -n "$name" ] || fail "compose service $svc is not running"
  t=$SECONDS
  podman stop -t 10 "$name" >/dev/null
  rc="$(podman inspect --format '{{.State.ExitCode}}' "$name")"
  [ "$rc" != 137 ] && [ $((SECONDS - t)) -lt 10 ] || fail "compose $svc: stop took $((SECONDS - t)) s (exit $rc): SIGTERM ignored"
  say "compose $svc stopped $((SECONDS - t)) s after SIGTERM (exit $rc)"
done
cd "$REPO"
say "passed in $((SECONDS - T0)) s"
