# Stand-in for python:3.11-slim where no registry answers: the selected
# Python base image (`PYTHON_BASE_IMAGE`, e.g. the local Debian one) made to
# behave like the official slim image for the design notes' Dockerfiles:
# pip installed system-wide and no PEP 668 marker. On the official image
# both steps change nothing.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
# hadolint ignore=DL3013
RUN rm -f /usr/lib/python3*/EXTERNALLY-MANAGED \
    && if ! python3 -m pip --version >/dev/null 2>&1; then \
        wheel="$(ls /usr/share/python-wheels/pip-*.whl)" \
        && python3 "$wheel/pip" install --no-index --no-cache-dir --disable-pip-version-check "$wheel"; \
    fi
