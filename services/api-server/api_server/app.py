"""HTTP routes. Nothing here touches a real database or broker directly:
`create_app` takes a Store and a Publisher, so tests can pass fakes.

Every status a route can answer is declared in the OpenAPI document with its
body; `503` means a backing service really is down (PostgreSQL did not answer
within the retry budget), never bad input."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal, cast

from fastapi import FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator
from pysvc_common.db import Unavailable
from pysvc_common.messages import MAX_QUERY_LEN, SearchRequested, blank
from starlette.exceptions import HTTPException

from api_server.publisher import Publisher, PublishError
from api_server.store import Conflict, Store

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
REPUBLISH_AFTER_SECONDS = 10.0
# A search the broker acknowledged is in its log: published again only if
# it stays unanswered this long (the broker lost its log, or the topic).
REPUBLISH_QUEUED_AFTER_SECONDS = 60.0
# Acknowledged ids waiting to be marked while PostgreSQL is away, at most.
MAX_UNMARKED = 100_000
REPUBLISH_EVERY_SECONDS = 2.0
PROBE_PATHS = ("/health", "/ready")
# What PostgreSQL text can hold, as a JSON Schema pattern: no NUL, and at
# least one character that is not white space. (Lone surrogates cannot be
# written in a pattern; the validator below refuses them too.)
QUERY_PATTERN = r"^[^\x00]*[^\s\x00][^\x00]*$"
# A header is a string or absent, never JSON null: the schema says so.
IdempotencyKey = Annotated[
    uuid.UUID | None,
    WithJsonSchema({"type": "string", "format": "uuid"}),
    Header(
        alias="Idempotency-Key",
        description="A UUID the client makes for this search; it becomes the search's id, so a retry "
        "(after a timeout or a 503) is stored once and answered with the same id.",
    ),
]


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(
        min_length=1,
        max_length=MAX_QUERY_LEN,
        json_schema_extra={"pattern": QUERY_PATTERN},
        description="Full-text query: 1 to 200 characters, not only white space, no NUL.",
    )

    @field_validator("query")
    @classmethod
    def storable(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("must not contain NUL (\\u0000) characters")
        if any("\ud800" <= c <= "\udfff" for c in value):
            raise ValueError("must not contain unpaired UTF-16 surrogates")
        if blank(value):
            raise ValueError("must contain a character that is not white space")
        return value


class ErrorOut(BaseModel):
    error: str
    details: list[str] | None = None


SearchStatus = Literal["pending", "queued", "done"]


class AcceptedOut(BaseModel):
    id: uuid.UUID
    status: SearchStatus = Field(description="`pending` when just stored; a retry answers the status it has now")


class ResultOut(BaseModel):
    document_id: int
    title: str
    rank: float


class SearchOut(BaseModel):
    id: uuid.UUID
    query: str
    status: SearchStatus = Field(
        description="`pending`: stored, not yet acknowledged by the broker; `queued`: in the broker's log, "
        "waiting for a worker; `done`: answered, `results` hold the matches"
    )
    results: list[ResultOut]
    created_at: datetime | None
    completed_at: datetime | None


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    status: Literal["ready", "unready"]
    problems: dict[str, str] | None = None


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    reasons = {
        400: "The body could not be read (not UTF-8 JSON)",
        404: "No search with that id",
        409: "The Idempotency-Key is the id of a search for another query",
        413: f"Body larger than {MAX_BODY_BYTES} bytes",
        422: "Invalid input; `details` names each field and what is wrong",
        503: "PostgreSQL is unavailable; try again",
    }
    return {s: {"model": ErrorOut, "description": reasons[s]} for s in statuses}


def error(status: int, message: str, details: list[str] | None = None) -> JSONResponse:
    content: dict[str, Any] = {"error": message}
    if details is not None:
        content["details"] = details
    return JSONResponse(status_code=status, content=content)


def republish_unfinished(store: Store, publisher: Publisher) -> tuple[int, int]:
    """Publish again every search the broker has not acknowledged in time
    (it was down, or refused it), and every acknowledged one that stayed
    unanswered far longer (the broker lost its log). Redelivery is safe: the
    worker stores each search's results once. Returns how many were
    published again, and how many of them the broker had acknowledged."""
    ids: list[uuid.UUID] = []
    queued = 0
    for item in store.unfinished(REPUBLISH_AFTER_SECONDS, REPUBLISH_QUEUED_AFTER_SECONDS):
        try:
            publisher.publish(SearchRequested(item.search_id, item.query))
        except PublishError:
            break
        ids.append(item.search_id)
        queued += item.queued
    store.mark_published(ids)
    return len(ids), queued


def relay(store: Store, publisher: Publisher, stop: threading.Event) -> None:
    """The background half of publishing: serves the broker's delivery
    reports, and republishes unanswered searches on start and then every
    REPUBLISH_EVERY_SECONDS."""
    last_republish = 0.0
    unmarked: list[uuid.UUID] = []
    while not stop.is_set():
        try:
            unmarked.extend(publisher.confirm(0.2))
            del unmarked[:-MAX_UNMARKED]
            store.mark_queued(unmarked)
            unmarked.clear()
            if time.monotonic() - last_republish >= REPUBLISH_EVERY_SECONDS:
                last_republish = time.monotonic()
                count, queued = republish_unfinished(store, publisher)
                if count:
                    log.info("republished %d unfinished searches (%d of them acknowledged)", count, queued)
        except Exception as err:  # keep the relay alive through outages
            log.warning("publish relay deferred: %s", err)
            stop.wait(1.0)


class ProbeLogFilter(logging.Filter):
    """Keeps the access log readable under probes every 2 s: a probe is
    logged when it fails or when its status differs from the last one."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple) or len(args) < 5:
            return True
        path, status = str(args[2]), args[4]
        if path not in PROBE_PATHS or not isinstance(status, int):
            return True
        changed = self._last.get(path) != status
        self._last[path] = status
        return changed or status >= 400


def create_app(store: Store, publisher: Publisher, background: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        worker = threading.Thread(target=relay, args=(store, publisher, stop), daemon=True)
        if background:
            worker.start()
        yield
        stop.set()
        if background:
            worker.join(timeout=5)
        publisher.close()
        store.close()
        log.info("api-server stopped cleanly")

    app = FastAPI(title="search api", version="1", lifespan=lifespan)

    @app.middleware("http")
    async def limit_body(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return error(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in exc.errors()
        ]
        return error(422, "invalid request", problems)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        response = error(exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(Unavailable)
    async def unavailable(_request: Request, exc: Unavailable) -> JSONResponse:
        log.error("request failed: %s", exc)
        return error(503, "a backing service is unavailable, try again")

    @app.get("/health", response_model=HealthOut)
    def health() -> HealthOut:
        """Liveness: the process serves HTTP."""
        return HealthOut(status="ok")

    @app.get(
        "/ready",
        response_model=ReadyOut,
        responses={503: {"model": ReadyOut, "description": "A dependency is down; `problems` names it"}},
    )
    def ready() -> JSONResponse:
        """Readiness: PostgreSQL and the broker answer."""
        problems: dict[str, str] = {}
        try:
            store.ping()
        except Exception as err:
            problems["postgres"] = str(err).strip() or type(err).__name__
        try:
            publisher.ping()
        except Exception as err:
            problems["kafka"] = str(err).strip() or type(err).__name__
        if problems:
            return JSONResponse(status_code=503, content={"status": "unready", "problems": problems})
        return JSONResponse(content={"status": "ready"})

    @app.post(
        "/searches",
        status_code=202,
        response_model=AcceptedOut,
        responses=_errors(400, 409, 413, 422, 503),
    )
    def create_search(body: SearchIn, idempotency_key: IdempotencyKey = None) -> AcceptedOut | JSONResponse:
        """Accept a search. A 202 means it is stored in PostgreSQL; it is
        queued for the worker asynchronously and answered at least once.
        With an `Idempotency-Key` (a UUID the client makes, which becomes
        the search's id) a retry stores nothing twice and gets the same id."""
        search_id = idempotency_key or uuid.uuid4()
        try:
            stored = store.create(search_id, body.query)
        except Conflict:
            return error(409, f"Idempotency-Key {search_id} is the id of a search for another query")
        if stored.new:
            try:
                publisher.publish(SearchRequested(search_id, body.query))
            except PublishError as err:
                # Accepted all the same: the row is the source of truth and
                # the relay publishes it again.
                log.debug("%s", err)
        return AcceptedOut(id=search_id, status=cast(SearchStatus, stored.status))

    @app.get("/searches/{search_id}", response_model=SearchOut, responses=_errors(404, 422, 503))
    def get_search(search_id: uuid.UUID) -> SearchOut | JSONResponse:
        """Status and results of one search."""
        found = store.get(search_id)
        if found is None:
            return error(404, f"no search with id {search_id}")
        return SearchOut(
            id=found.search_id,
            query=found.query,
            status=cast(SearchStatus, found.status),
            results=[ResultOut(document_id=r.document_id, title=r.title, rank=r.rank) for r in found.results],
            created_at=found.created_at,
            completed_at=found.completed_at,
        )

    return app
