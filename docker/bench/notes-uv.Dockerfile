# The design notes' Dockerfile (their ADR on uv), kept as a benchmark
# baseline for `cargo xtask bench-build`. As written there, except: the
# install step mounts the proxy CA (a machine behind a TLS-inspecting proxy
# needs it), and the bench substitutes the base and uv images at build time
# (python:3.11-slim and ghcr.io/astral-sh/uv:latest -> the images `.env`
# selects; on a machine without a registry, the local stand-ins).
FROM python:3.11-slim
WORKDIR /app

# Install uv (Astral's fast package installer)
COPY --from=ghcr.io/astral-sh/uv:latest /uv /usr/local/bin/uv

# Install dependencies with uv
COPY src/api-server/requirements.txt .
RUN --mount=type=bind,source=docker/ca,target=/tmp/proxy-ca \
    if [ -s /tmp/proxy-ca/proxy-ca.crt ]; then export SSL_CERT_FILE=/tmp/proxy-ca/proxy-ca.crt; fi; \
    uv pip install --system --no-cache -r requirements.txt

COPY src/api-server .
COPY src/common ./common

CMD ["uvicorn", "main:app", "--host", "0.0.0.0", "--port", "8000"]
