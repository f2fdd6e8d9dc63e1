#!/usr/bin/env bash
# Runs one Java class of Apache Kafka with every jar in ../libs on the class
# path. Written for this project's image (the distribution's scripts are not
# on Maven Central); same name, place and main environment variables.
#
#   KAFKA_HEAP_OPTS             heap flags (default: a small heap for tools)
#   KAFKA_JVM_PERFORMANCE_OPTS  GC and JIT flags (default: see below)
#   KAFKA_LOG4J_OPTS            logging configuration (default: config/tools-log4j2.properties)
#   KAFKA_OPTS                  anything else for the JVM
#   KAFKA_DEBUG=y               opens a JDWP port (JAVA_DEBUG_PORT, default 5005)
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 [-daemon] [-name NAME] CLASS [ARGS...]" >&2
    exit 2
fi

home="$(cd "$(dirname "$0")/.." && pwd)"
name=""
daemon=""
while [ $# -gt 0 ]; do
    case "$1" in
        -daemon) daemon=yes; shift ;;
        -name) name="$2"; shift 2 ;;
        -loggc) shift ;;
        *) break ;;
    esac
done

java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
heap="${KAFKA_HEAP_OPTS:--Xmx256M}"
# Tools are short-lived: the client compiler and the serial collector start
# fastest (one compiler thread, no perf-data file). The broker script sets
# its own flags.
perf="${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:CICompilerCount=1 -XX:-UsePerfData -Xss512k}"
log4j="${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=$home/config/tools-log4j2.properties}"

# shellcheck disable=SC2206 # the *_OPTS variables are word lists by design
args=($heap $perf $log4j -Djava.awt.headless=true ${KAFKA_OPTS:-})
if [ "${KAFKA_DEBUG:-}" = y ]; then
    args+=("-agentlib:jdwp=transport=dt_socket,server=y,suspend=n,address=*:${JAVA_DEBUG_PORT:-5005}")
fi
# The class-data-sharing archive made when the image was built (broker.jsa
# for the broker, tools.jsa for every other class), when there is one.
archive="$home/tools.jsa"
[ "$1" = kafka.Kafka ] && archive="$home/broker.jsa"
if [ -r "$archive" ]; then
    args+=("-XX:SharedArchiveFile=$archive" -Xlog:cds=off -Xlog:cds+dynamic=off)
fi
args+=(-cp "$home/libs/*")

if [ -n "$daemon" ]; then
    logs="${LOG_DIR:-$home/logs}"
    mkdir -p "$logs"
    nohup "$java" "${args[@]}" "$@" >"$logs/${name:-kafka}.out" 2>&1 </dev/null &
    exit 0
fi
exec "$java" "${args[@]}" "$@"
