# Local stand-in for ghcr.io/astral-sh/uv: the static uv binary from the PyPI
# `uv` wheel, at /uv like the upstream image.
FROM scratch
COPY uv /uv
ENTRYPOINT ["/uv"]
