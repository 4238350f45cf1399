# cluster-exporter image: the exporter (`cluster-exporter run`) and the billing API
# (`cluster-exporter billing-api serve`) from one package. See docs/image.md.
#
# Stage 1 builds wheels for the package and every dependency and installs them into a virtualenv
# without pip; stage 2 is the same Python base with only that virtualenv copied in. Nothing at run
# time needs a shell: the entrypoint is exec-form and the console script's interpreter is the
# virtualenv's python. No HEALTHCHECK: Kubernetes probes /healthz and /readyz (see the chart).
# ./scripts/image builds it with podman on a Debian base made locally (no registry needed).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Where pip's configuration is mounted for the build (scripts/image: the host's index and CA
# bundle, read-only); unset, pip uses its defaults. Nothing of it reaches a layer of the image.
ARG PIP_CONFIG_FILE
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# The build's own pip, from ensurepip: the base needs python3-venv, not the system's pip.
RUN python -m venv /opt/build
WORKDIR /src
# Dependencies first, from pyproject.toml alone, with the billing extra (Stripe, psycopg) so the
# billing API runs from the same image: a change to the code reuses this layer.
COPY pyproject.toml ./
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"] + p["optional-dependencies"]["billing"]))' >requirements.txt \
    && /opt/build/bin/pip wheel --wheel-dir /wheels -r requirements.txt
COPY README.md ./
COPY cluster_exporter ./cluster_exporter
RUN /opt/build/bin/pip wheel --no-deps --wheel-dir /wheels .
# The runtime virtualenv has no pip: the build's pip installs into it, from the wheels only, with
# no index. kubernetes/aio (the client's asyncio twin, half of the kubernetes package) is never
# imported. Bytecode is compiled here (the root filesystem is read-only at run time), not for
# the dependencies' test files; unchecked-hash because nothing in the image changes a source.
RUN python -m venv --without-pip /opt/cluster-exporter \
    && /opt/build/bin/pip --python /opt/cluster-exporter/bin/python install --no-compile --no-index --find-links /wheels /wheels/*.whl \
    && rm -rf /opt/cluster-exporter/lib/python3.11/site-packages/kubernetes/aio \
    && /opt/cluster-exporter/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash -x '/tests?/' /opt/cluster-exporter/lib \
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
