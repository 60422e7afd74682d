# robust_paddle image. The toolkit's tested stack (requirements/constraints.txt) is installed through
# scripts/install.sh, the same script scripts/test.sh and CI use, so the image cannot drift from them.
#
#   GPU (default, CUDA 11.8):  docker build -t robust-paddle .
#   CPU:                       docker build -t robust-paddle:cpu --build-arg BASE_IMAGE=python:3.11-slim \
#                                --build-arg PADDLE=cpu .
#   Keep the base image's Paddle 3.x instead of the pinned 2.6.2:  --build-arg PADDLE=none
#     (PaddleSlim 2.6 cannot run on Paddle 3, so the compression stages then stop with a clear message)
#
# The base image ships Paddle 3.0 (package paddlepaddle-gpu); PaddleSlim 2.6 needs Paddle 2.6, so with
# PADDLE=gpu|cpu any Paddle already present is uninstalled first and paddlepaddle[-gpu]==2.6.2 (on PyPI the
# GPU wheel is the CUDA 11.8 build, matching the base image's CUDA 11.8 / cuDNN 8.9) is installed.
ARG BASE_IMAGE=paddlepaddle/paddle:3.0.0-gpu-cuda11.8-cudnn8.9-trt8.6
FROM ${BASE_IMAGE}

# gpu | cpu | none   (see scripts/install.sh)
ARG PADDLE=gpu
ARG EXTRAS=slim,export,serve,text
# uid of the non-root user; match your own (id -u) so files written to bind-mounted folders are yours
ARG USER_UID=1000

LABEL org.opencontainers.image.title="robust_paddle" \
      org.opencontainers.image.description="Train classifiers on noisy labels with PaddlePaddle: robust losses, Co-teaching, DivideMix, label-issue reports, export, compression, serving" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Shared libraries OpenCV and Paddle load at import time; slim bases (python:*-slim) lack them, the Paddle
# images have them, so apt runs only where one is missing.
# hadolint ignore=DL3008
RUN if ! python3 -c "import ctypes.util as u, sys; sys.exit(not all(map(u.find_library, ('GL', 'glib-2.0', 'gomp'))))"; then \
        apt-get update \
        && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 libgomp1 \
        && rm -rf /var/lib/apt/lists/*; \
    fi

WORKDIR /opt/robust_paddle

# 1) The pinned stack, from only the files the install reads: editing the code later reuses this layer.
#    The package folder gets an empty __init__.py here; the real one is copied in step 2 (the editable
#    install maps the package name to this folder, so it picks the code up).
COPY pyproject.toml README.md ./
COPY requirements/constraints.txt requirements/constraints.txt
COPY scripts/install.sh scripts/install.sh
RUN mkdir robust_paddle && touch robust_paddle/__init__.py \
    && if [ "$PADDLE" != none ]; then python3 -m pip uninstall -y paddlepaddle paddlepaddle-gpu; fi \
    && VENV=none PYTHON=python3 PADDLE="$PADDLE" ./scripts/install.sh "$EXTRAS"

# 2) The code and the ready configs.
COPY robust_paddle/ robust_paddle/
COPY configs/ configs/

# Fail the build, not the first run, when the stack is broken or the Paddle is not the one asked for.
RUN robust-paddle --version \
    && python3 -c "import sys, robust_paddle, paddle; want = {'cpu': '2.6.2', 'gpu': '2.6.2'}.get(sys.argv[1]); \
sys.exit(want and paddle.__version__ != want and f'expected Paddle {want}, found {paddle.__version__}')" "$PADDLE"

# Non-root user; /data (datasets, read) and /output (runs, written) are the volumes. Relative paths in the
# configs resolve from /opt/robust_paddle, where data/ and output/ point at the volumes, so
# `robust-paddle train -c configs/quickstart.yaml` writes its run to /output/quickstart.
RUN useradd --no-log-init --create-home --non-unique --uid "$USER_UID" --shell /bin/bash robust \
    && mkdir -p /data /output \
    && chown robust:robust /data /output \
    && ln -s /data data \
    && ln -s /output output

USER ${USER_UID}
VOLUME ["/data", "/output"]
# 8040: VisualDL (visualdl --logdir /output --host 0.0.0.0 --port 8040); 8080: robust-paddle serve
EXPOSE 8040 8080

ENTRYPOINT ["robust-paddle"]
CMD ["--help"]
