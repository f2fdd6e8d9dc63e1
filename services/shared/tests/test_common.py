import uuid

import pytest
from pysvc_common.config import ConfigError, Settings
from pysvc_common.messages import MAX_QUERY_LEN, MessageError, SearchRequested, blank

ENV = {"POSTGRES_PASSWORD": "pw", "POSTGRES_PORT": "5433", "KAFKA_BOOTSTRAP": "k:1"}


def test_settings_from_env() -> None:
    s = Settings.from_env(ENV)
    assert s.postgres_port == 5433
    assert s.kafka_bootstrap == "k:1"
    assert s.search_topic == "search-requests"
    assert "password=pw" in s.postgres_conninfo()


def test_settings_require_a_password() -> None:
    with pytest.raises(ConfigError, match="POSTGRES_PASSWORD"):
        Settings.from_env({})


def test_settings_reject_a_bad_port() -> None:
    with pytest.raises(ConfigError, match="POSTGRES_PORT"):
        Settings.from_env(ENV | {"POSTGRES_PORT": "x"})


def test_message_round_trip() -> None:
    m = SearchRequested(uuid.uuid4(), "kafka")
    assert SearchRequested.decode(m.encode()) == m


@pytest.mark.parametrize(
    "raw",
    [None, b"", b"not json", b"[]", b'{"id": "x", "query": "q"}', b'{"id": "00000000-0000-0000-0000-000000000000"}',
     ('{"id": "00000000-0000-0000-0000-000000000000", "query": "%s"}' % ("q" * (MAX_QUERY_LEN + 1))).encode()],
)
def test_bad_messages_are_rejected(raw: bytes | None) -> None:
    with pytest.raises(MessageError):
        SearchRequested.decode(raw)


def test_load_settings_have_defaults_and_are_checked() -> None:
    s = Settings.from_env(ENV)
    assert (s.kafka_partitions, s.db_pool_size, s.worker_batch_size) == (1, 8, 200)
    s = Settings.from_env(ENV | {"KAFKA_PARTITIONS": "6", "DB_POOL_SIZE": "4", "DB_RETRY_SECONDS": "3"})
    assert (s.kafka_partitions, s.db_pool_size, s.db_retry_seconds) == (6, 4, 3.0)
    with pytest.raises(ConfigError, match="KAFKA_PARTITIONS"):
        Settings.from_env(ENV | {"KAFKA_PARTITIONS": "0"})


def test_blank_is_the_schema_pattern_s_not_str_isspace() -> None:
    # The API's schema pattern (`\s`, ECMA semantics) and its validator must
    # agree: a query the schema calls valid is accepted (the fuzzer checks it).
    assert blank("") and blank(" \t\n\u3000\ufeff")
    assert not blank("\x1c") and not blank("\x85") and not blank(" kafka ")
    assert SearchRequested.decode(b'{"id": "8c0f5a56-8e0b-4ad2-9d2b-1b3f4b7d0a11", "query": "\\u001c"}').query == "\x1c"
