# Local stand-in for python:3.11-slim-bookworm on machines without a registry.
# Built by `cargo xtask base-images` on top of a debootstrapped Debian bookworm.
ARG DEBIAN_IMAGE=pysvc/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python-is-python3 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
CMD ["python3"]
