# syntax=docker/dockerfile:1

# Build stage: the project's wheel only; dependencies come from PyPI in the runtime stage.
FROM python:3.12-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter/ exporter/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM python:3.12-slim-bookworm

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

COPY --from=build /dist/ /tmp/dist/
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir /tmp/dist/*.whl \
    && rm -rf /tmp/dist

# Numeric, so Kubernetes' runAsNonRoot can verify it without a passwd entry.
USER 65532:65532
EXPOSE 10209

# No HEALTHCHECK: the listen address and TLS are chosen at run time, so a fixed probe
# would be wrong for some deployments; orchestrators probe /-/healthy themselves.
ENTRYPOINT ["/opt/venv/bin/cognito-import-exporter"]
CMD ["--config.file=/etc/cognito-import-exporter/config.yaml"]
