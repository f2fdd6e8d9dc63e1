#!/usr/bin/env bash
# KRaft storage: random-uuid, format, info (kafka.tools.StorageTool).
exec "$(dirname "$0")/kafka-run-class.sh" kafka.tools.StorageTool "$@"
