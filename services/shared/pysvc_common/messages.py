"""The message put on the search topic, and its validation."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

MAX_QUERY_LEN = 200
# White space as the API's schema means it (`\s` of the JSON Schema / ECMA
# pattern): narrower than `str.isspace`, which also counts the ASCII
# separators U+001C-U+001F and U+0085. The API and the worker agree on it.
SCHEMA_SPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def blank(query: str) -> bool:
    """True when `query` holds nothing but schema white space."""
    return not query.strip(SCHEMA_SPACE)


class MessageError(ValueError):
    """A message on the topic cannot be decoded."""


@dataclass(frozen=True)
class SearchRequested:
    search_id: uuid.UUID
    query: str

    def encode(self) -> bytes:
        body = {"id": str(self.search_id), "query": self.query}
        return json.dumps(body, sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> SearchRequested:
        if raw is None:
            raise MessageError("empty message")
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise MessageError(f"not JSON: {err}") from None
        if not isinstance(body, dict):
            raise MessageError("message is not a JSON object")
        query = body.get("query")
        if not isinstance(query, str) or blank(query):
            raise MessageError("'query' must be a non-empty string")
        if len(query) > MAX_QUERY_LEN:
            raise MessageError(f"'query' is longer than {MAX_QUERY_LEN}")
        try:
            search_id = uuid.UUID(str(body.get("id")))
        except ValueError:
            raise MessageError("'id' is not a UUID") from None
        return cls(search_id=search_id, query=query)
