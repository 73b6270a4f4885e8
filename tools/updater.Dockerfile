# The edge model-updater (tools/updater.py): one pod per node, run by the model-updater DaemonSet.
#
#   docker build -f tools/updater.Dockerfile -t context-edge/model-updater:<tag> .     (from the repo root)
#
# Delivery side only: the project's base dependencies, never the `training` extra (no torch), plus ONNX
# Runtime for the golden health check. It writes nothing outside the model root (a hostPath volume) and
# /tmp (an emptyDir), so the DaemonSet runs it with readOnlyRootFilesystem: true, as a non-root user, with
# every capability dropped. The hostPath model root must be writable by UID/GID 10001 (fsGroup or a
# pre-created directory), and readable by the inference service, which loads <root>/current/model.onnx.

# Pinned by exact tag; CI may add the digest (@sha256:…) when it mirrors the image.
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /build
# Only what the package build needs: pyproject's metadata (README.md is its readme), the exact versions,
# and the tools/ package. training/ and pipelines/ are not copied, so they cannot be installed by accident.
COPY pyproject.toml requirements.lock README.md ./
COPY tools ./tools

# The base dependencies include onnxruntime (the golden health check); the lock pins every version.
RUN pip install --no-cache-dir --constraint requirements.lock . \
    && python -c "import onnxruntime, prometheus_client, tools.updater" \
    && rm -rf /build

RUN groupadd --system --gid 10001 edgeops \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin edgeops

USER 10001:10001
WORKDIR /tmp
# /ready, /healthz, /metrics when started with --listen 0.0.0.0:9180
EXPOSE 9180

ENTRYPOINT ["edgeops", "updater", "run"]
