#!/usr/bin/env bash
# The API versions of every broker of a cluster (org.apache.kafka.tools.BrokerApiVersionsCommand).
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
