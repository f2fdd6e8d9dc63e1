# The design notes' multi-stage proposal (a builder stage installs with
# `pip install --user --no-cache-dir`, the runtime stage copies /root/.local),
# kept as a benchmark baseline for `cargo xtask bench-build`. The notes'
# snippet cannot build as printed (it never copies requirements.txt and
# copies an `agent/` folder): the requirements file is copied into the
# builder and the service's folder replaces `agent/`. Adapted like
# notes-uv.Dockerfile: proxy CA mount, base image substituted.
FROM python:3.11-slim as builder
WORKDIR /app
COPY src/api-server/requirements.txt .
RUN --mount=type=bind,source=docker/ca,target=/tmp/proxy-ca \
    if [ -s /tmp/proxy-ca/proxy-ca.crt ]; then export PIP_CERT=/tmp/proxy-ca/proxy-ca.crt; fi; \
    pip install --user --no-cache-dir -r requirements.txt

FROM python:3.11-slim
COPY --from=builder /root/.local /root/.local
COPY src/api-server/ /app/
WORKDIR /app
CMD ["uvicorn", "main:app", "--host", "0.0.0.0", "--port", "8000"]
