# syntax=docker/dockerfile:1

# Debian's own Python on Debian's slim image: a base that can be rebuilt from Debian's archive
# alone (mmdebstrap, as the official image is made) and gets Debian's security updates.
FROM docker.io/library/debian:bookworm-slim AS runtime-base
# Versions are not pinned: the archive keeps only a suite's newest build, so a pin would fail the
# build at the next security update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log

# Build stage: the locked dependencies (hashes checked) and the project's wheel, into /opt/venv.
FROM runtime-base AS build
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
# Behind a TLS-intercepting proxy pip needs the proxy's CA: mount the host's trust store and name
# its bundle, e.g. -v /etc/ssl/certs:/etc/ssl/host-certs:ro
# --build-arg PIP_CERT=/etc/ssl/host-certs/ca-certificates.crt (not over /etc/ssl/certs, which
# python3-venv's ca-certificates writes to).
ARG PIP_CERT
COPY requirements.lock /src/
RUN /opt/venv/bin/pip install --no-cache-dir --require-hashes -r /src/requirements.lock
COPY pyproject.toml README.md /src/
COPY exporter/ /src/exporter/
# pip and setuptools only install; the runtime has no use for them.
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps /src \
    && /opt/venv/bin/pip uninstall --yes --quiet pip setuptools

FROM runtime-base

# Keep in step with exporter/__version__ (tests/test_container.py checks); releases pass --build-arg.
ARG VERSION=0.1.0
ARG SOURCE=https://github.com/cognito-import-exporter/cognito-import-exporter

LABEL org.opencontainers.image.title="cognito-import-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Amazon Cognito user pool import jobs" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/opt/venv/bin:${PATH}"

COPY --from=build /opt/venv/ /opt/venv/

# Numeric, so Kubernetes' runAsNonRoot can verify it without a passwd entry.
USER 65532:65532
EXPOSE 10209

# No HEALTHCHECK: the listen address and TLS are chosen at run time, so a fixed probe
# would be wrong for some deployments; orchestrators probe /-/healthy themselves.
ENTRYPOINT ["/opt/venv/bin/cognito-import-exporter"]
CMD ["--config.file=/etc/cognito-import-exporter/config.yaml"]
