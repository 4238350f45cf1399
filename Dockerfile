# cluster-exporter image: the exporter (`cluster-exporter run`) and the billing API
# (`cluster-exporter billing-api serve`) from one package. See docs/image.md.
#
# Stage 1 builds wheels for the package and every dependency and installs them into a virtualenv;
# stage 2 is the same slim Python with only that virtualenv copied in. Nothing at run time needs a
# shell: the entrypoint is exec-form and the console script's interpreter is the virtualenv's python.
# No HEALTHCHECK: Kubernetes probes /healthz and /readyz (see the chart).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cluster_exporter ./cluster_exporter
# Wheels first, for the package with the billing extra (Stripe, psycopg) so the billing API runs from
# the same image; then an install from those wheels only, with no index.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[billing]"
RUN python -m venv /opt/cluster-exporter \
    && /opt/cluster-exporter/bin/pip install --no-cache-dir --no-index --find-links /wheels /wheels/*.whl \
    && /opt/cluster-exporter/bin/python -m compileall -q /opt/cluster-exporter/lib \
    && /opt/cluster-exporter/bin/cluster-exporter --version

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="cluster-exporter" \
      org.opencontainers.image.description="Per-customer usage metering for multi-tenant Kubernetes clusters" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
# Bytecode was compiled in the build stage; the root filesystem is read-only in the chart.
ENV PATH=/opt/cluster-exporter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/cluster-exporter /opt/cluster-exporter
# A fixed numeric non-root uid/gid, the same as the chart's podSecurityContext.runAsUser (65532).
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["/opt/cluster-exporter/bin/cluster-exporter"]
CMD ["run"]
