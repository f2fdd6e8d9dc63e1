#!/usr/bin/env bash
# Starts a broker and/or controller (KRaft): kafka-server-start.sh server.properties [--override k=v ...]
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 [-daemon] server.properties [--override property=value]..." >&2
    exit 2
fi
# A heap for a laptop: Kafka keeps its data in the page cache, not the heap.
export KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256M -Xmx512M}"
export KAFKA_JVM_PERFORMANCE_OPTS="${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15}"
export KAFKA_LOG4J_OPTS="${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=$(cd "$(dirname "$0")/.." && pwd)/config/log4j2.properties}"
extra=()
if [ "$1" = -daemon ]; then
    extra=(-daemon)
    shift
fi
exec "$(dirname "$0")/kafka-run-class.sh" "${extra[@]}" -name kafkaServer kafka.Kafka "$@"
