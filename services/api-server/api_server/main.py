"""The ASGI entry point uvicorn loads: `api_server.main:app`."""

from __future__ import annotations

import logging

from pysvc_common import logs
from pysvc_common.config import Settings
from pysvc_common.kafka import ensure_topic

from api_server.app import ProbeLogFilter, create_app
from api_server.publisher import KafkaPublisher
from api_server.store import PostgresStore

logs.setup("api-server")
logging.getLogger("uvicorn.access").addFilter(ProbeLogFilter())
_settings = Settings.from_env()
ensure_topic(_settings.kafka_bootstrap, _settings.search_topic, _settings.kafka_partitions)
app = create_app(
    PostgresStore(_settings),
    KafkaPublisher(_settings.kafka_bootstrap, _settings.search_topic, _settings.kafka_partitions),
)
