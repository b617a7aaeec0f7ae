# syntax=docker/dockerfile:1
# Multi-stage: build a wheel-installed virtualenv, then copy it into a slim non-root image.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN /opt/venv/bin/pip install .

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VERIFYGUARD_ENVIRONMENT=production
RUN groupadd --system verifyguard && useradd --system --gid verifyguard --home /app verifyguard \
    && mkdir -p /app /var/lib/verifyguard && chown verifyguard:verifyguard /app /var/lib/verifyguard
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER verifyguard
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"
CMD ["verifyguard", "serve", "--host", "0.0.0.0", "--port", "8000"]
