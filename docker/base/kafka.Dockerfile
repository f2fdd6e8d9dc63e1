# Apache Kafka (KRaft) from Maven Central jars, on the local Debian base, for
# machines without a registry. Laid out like the upstream apache/kafka image:
# /opt/kafka/{bin,config,libs}, data in /var/lib/kafka/data, started by
# /etc/kafka/docker/run, configured by the same KAFKA_* variables and
# CLUSTER_ID. The jars come from docker/base/kafka/jars.tsv (pinned by
# sha256, checked by `cargo xtask base-images` before they enter the build
# context); the scripts are this project's own (docker/base/kafka).
ARG DEBIAN_IMAGE=pysvc/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && groupadd --system --gid 1000 appuser \
    && useradd --system --uid 1000 --gid 1000 --home-dir /opt/kafka --no-create-home --shell /usr/sbin/nologin appuser \
    && install -d -o 1000 -g 1000 /var/lib/kafka/data /opt/kafka/logs
# The jars first: they change only with a Kafka upgrade.
COPY kafka/libs/ /opt/kafka/libs/
COPY kafka/jars.tsv /opt/kafka/jars.tsv
COPY kafka/bin/ /opt/kafka/bin/
COPY kafka/config/ /opt/kafka/config/
COPY kafka/run /etc/kafka/docker/run
# Class-data-sharing archives of the broker's and the tools' classes (see
# kafka/make-cds, mounted for this step only): faster starts, cheaper probes.
RUN --mount=type=bind,source=kafka/make-cds,target=/mnt/make-cds bash /mnt/make-cds
ENV PATH=/opt/kafka/bin:$PATH \
    KAFKA_HOME=/opt/kafka
USER 1000:1000
WORKDIR /opt/kafka
EXPOSE 9092
HEALTHCHECK --interval=5s --timeout=8s --start-period=30s --retries=3 CMD ["/opt/kafka/bin/kafka-health", "127.0.0.1:9092"]
CMD ["/etc/kafka/docker/run"]
