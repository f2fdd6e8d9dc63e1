# The design notes' rollback plan: their uv Dockerfile with the install step
# replaced by `pip install --no-cache-dir -r requirements.txt` (and the uv
# copy dropped), kept as a benchmark baseline for `cargo xtask bench-build`.
# Adapted like notes-uv.Dockerfile: proxy CA mount, base image substituted.
FROM python:3.11-slim
WORKDIR /app

# Install dependencies with pip
COPY src/api-server/requirements.txt .
RUN --mount=type=bind,source=docker/ca,target=/tmp/proxy-ca \
    if [ -s /tmp/proxy-ca/proxy-ca.crt ]; then export PIP_CERT=/tmp/proxy-ca/proxy-ca.crt; fi; \
    pip install --no-cache-dir -r requirements.txt

COPY src/api-server .
COPY src/common ./common

CMD ["uvicorn", "main:app", "--host", "0.0.0.0", "--port", "8000"]
