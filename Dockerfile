# robust_paddle image. The toolkit's tested stack is installed through scripts/install.sh, the same script
# scripts/test.sh and CI use, with the pinned constraints of the Paddle line chosen (PADDLE_VERSION), so the
# image cannot drift from what the tests ran.
#
#   GPU (default, CUDA 11.8):  docker build -t robust-paddle .
#   CPU:                       docker build -t robust-paddle:cpu --build-arg BASE_IMAGE=python:3.11-slim \
#                                --build-arg PADDLE=cpu .
#   Paddle 2.6.2 instead of 3.x:  --build-arg PADDLE_VERSION=2 --build-arg PADDLE=gpu (or cpu)
#
# Default Paddle: 3.x. The GPU base image ships Paddle 3.0 (package paddlepaddle-gpu), which is kept
# (PADDLE=none); PyPI has no paddlepaddle-gpu 3.x wheel. Every stage of the toolkit, compression included,
# runs and is tested on Paddle 3.x (README, docs/docker.md), so replacing it with 2.6.2 would cost a
# ~1 GB download for nothing. The CPU variant installs paddlepaddle 3.3.1 from PyPI.
ARG BASE_IMAGE=paddlepaddle/paddle:3.0.0-gpu-cuda11.8-cudnn8.9-trt8.6
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="robust_paddle" \
      org.opencontainers.image.description="Train classifiers on noisy labels with PaddlePaddle: robust losses, Co-teaching, DivideMix, label-issue reports, export, compression, serving" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# The one shared library Paddle loads at import time that slim bases (python:*-slim) lack: OpenMP. The
# Paddle images have it, so apt runs only where it is missing. OpenCV is installed as its headless build
# (OPENCV=headless below), which needs no libGL: no Mesa/LLVM in the image.
# hadolint ignore=DL3008
RUN if ! python3 -c "import ctypes.util as u, sys; sys.exit(not u.find_library('gomp'))"; then \
        apt-get update \
        && apt-get install -y --no-install-recommends libgomp1 \
        && apt-get clean \
        && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    fi

WORKDIR /opt/robust_paddle

# 1) The pinned stack, from only the files the install reads: editing the code later reuses this layer.
#    The package folder gets an empty __init__.py here; the real one is copied in step 2 (the editable
#    install maps the package name to this folder, so it picks the code up).
COPY pyproject.toml README.md ./
COPY requirements/constraints.txt requirements/constraints.txt
COPY scripts/install.sh scripts/install.sh
#    The build arguments are declared here, after the apt layer, and USER_UID only below: changing one
#    re-runs only the steps that use it.
COPY requirements/paddle3.txt requirements/paddle3.txt
# PADDLE: gpu | cpu | none (keep the base image's Paddle); PADDLE_VERSION: 3 | 2 (see scripts/install.sh)
ARG PADDLE=none
ARG PADDLE_VERSION=3
ARG EXTRAS=slim,export,serve,text
RUN mkdir robust_paddle && touch robust_paddle/__init__.py \
    && if [ "$PADDLE" != none ]; then python3 -m pip uninstall -y paddlepaddle paddlepaddle-gpu; fi \
    && VENV=none PYTHON=python3 PADDLE="$PADDLE" PADDLE_VERSION="$PADDLE_VERSION" OPENCV=headless \
       ./scripts/install.sh "$EXTRAS"

# 2) The code and the ready configs.
COPY robust_paddle/ robust_paddle/
COPY configs/ configs/

# Fail the build, not the first run, when the stack is broken or the Paddle is not the one asked for.
RUN robust-paddle --version \
    && python3 -c "import sys, cv2, robust_paddle, paddle; \
want = {'cpu3': '3.3.1', 'cpu2': '2.6.2', 'gpu2': '2.6.2'}.get(sys.argv[1] + sys.argv[2]); \
sys.exit(want and paddle.__version__ != want and f'expected Paddle {want}, found {paddle.__version__}')" \
       "$PADDLE" "$PADDLE_VERSION"

# Non-root user; /data (datasets, read) and /output (runs, written) are the volumes. Relative paths in the
# configs resolve from /opt/robust_paddle, where data/ and output/ point at the volumes, so
# `robust-paddle train -c configs/quickstart.yaml` writes its run to /output/quickstart.
# uid of the non-root user; match your own (id -u) so files written to bind-mounted folders are yours.
# Declared here, after the install, so a different uid does not re-run apt or pip. 0 is refused: the user
# would be root.
ARG USER_UID=1000
RUN if ! [ "$USER_UID" -gt 0 ] 2>/dev/null; then \
        echo "USER_UID must be a uid > 0 for the non-root user, got '$USER_UID' (building as root? pass --build-arg USER_UID=1000)" >&2; \
        exit 1; \
    fi \
    && useradd --no-log-init --create-home --non-unique --uid "$USER_UID" --shell /bin/bash robust \
    && mkdir -p /data /output \
    && chown robust:robust /data /output \
    && ln -s /data data \
    && ln -s /output output

USER ${USER_UID}
VOLUME ["/data", "/output"]
# 8040: VisualDL (visualdl --logdir /output --host 0.0.0.0 --port 8040 --language en); 8080: robust-paddle serve
EXPOSE 8040 8080

ENTRYPOINT ["robust-paddle"]
CMD ["--help"]
