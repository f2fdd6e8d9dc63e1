"""HTTP routes. Nothing here touches a real database or broker directly:
`create_app` takes a Store and a Publisher, so tests can pass fakes."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pysvc_common.messages import MAX_QUERY_LEN, SearchRequested

from api_server.publisher import Publisher, PublishError
from api_server.store import Store

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
REPUBLISH_AFTER_SECONDS = 10.0


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=MAX_QUERY_LEN)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message})


def republish_unfinished(store: Store, publisher: Publisher) -> int:
    """Publish again every search that was accepted but not answered in time
    (the broker lost it, or was down when it was accepted). Redelivery is safe:
    the worker stores each search's results once."""
    count = 0
    for search_id, query in store.unfinished(REPUBLISH_AFTER_SECONDS):
        publisher.publish(SearchRequested(search_id, query))
        store.mark_published(search_id)
        count += 1
    return count


def _republish_loop(store: Store, publisher: Publisher, stop: threading.Event) -> None:
    while not stop.wait(2.0):
        try:
            if count := republish_unfinished(store, publisher):
                log.info("republished %d unfinished searches", count)
        except Exception as err:  # keep the loop alive through outages
            log.warning("republish deferred: %s", err)


def create_app(store: Store, publisher: Publisher, background: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        worker = threading.Thread(
            target=_republish_loop, args=(store, publisher, stop), daemon=True
        )
        if background:
            worker.start()
        yield
        stop.set()
        if background:
            worker.join(timeout=5)
        log.info("api-server stopped cleanly")

    app = FastAPI(title="search api", lifespan=lifespan)

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
        return JSONResponse(status_code=422, content={"error": "invalid request", "details": problems})

    @app.exception_handler(Exception)
    async def unavailable(_request: Request, exc: Exception) -> JSONResponse:
        log.error("request failed: %s", exc)
        return error(503, "a backing service is unavailable, try again")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    def ready() -> JSONResponse:
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

    @app.post("/searches", status_code=202)
    def create_search(body: SearchIn) -> dict[str, str]:
        search_id = uuid.uuid4()
        store.create(search_id, body.query)
        status = "pending"
        try:
            publisher.publish(SearchRequested(search_id, body.query))
            store.mark_published(search_id)
            status = "queued"
        except PublishError as err:
            # Accepted all the same: the row is the source of truth and the
            # republish loop sends it once the broker is back.
            log.warning("%s; will retry", err)
        return {"id": str(search_id), "status": status}

    @app.get("/searches/{search_id}")
    def get_search(search_id: uuid.UUID) -> JSONResponse:
        found = store.get(search_id)
        if found is None:
            return error(404, f"no search with id {search_id}")
        return JSONResponse(
            content={
                "id": str(found.search_id),
                "query": found.query,
                "status": found.status,
                "results": [
                    {"document_id": r.document_id, "title": r.title, "rank": r.rank}
                    for r in found.results
                ],
            }
        )

    return app
