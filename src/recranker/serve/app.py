"""The HTTP rerank service of a finished run (`recranker serve RUN_DIR`), on FastAPI + uvicorn.

    POST /v1/rerank   {"history": [{"item": "50", "rating": 5}, {"title": "Heat (1995)", "rating": 4}],
                       "candidates": ["1", "181", "258"], "scores": null, "user": null, "k": 2}
                      -> {"items": [{"item": "181", "score": ..., "utilities": {...}}, ...], "hints": false,
                          "system": "tuned hybrid", ...}
    GET  /healthz     {"status": "ok", "waiting": n, "system": "tuned hybrid", "selected_on": {...}}

The service ranks with the system its study selected on validation users (`recranker.serve.Reranker`;
`recranker serve --system` chooses another); every response and /healthz name it.
    GET  /metrics     Prometheus text: requests by status, latency, batch sizes, tokens

Concurrent requests are batched (`recranker.serve.batcher`): a short window, a bounded queue; a
full queue answers 503 with Retry-After. Every bad request gets a 4xx with one message
({"error": ...}) and the service goes on. Needs the `serve` extra (FastAPI, uvicorn, prometheus-client). With an API key (`--api-key` or RECRANKER_API_KEY),
/v1/rerank needs `Authorization: Bearer <key>` (401 otherwise); /healthz and /metrics stay open.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from recranker.serve.batcher import Batcher, QueueFull
from recranker.serve.reranker import Reranker
from recranker.serve.requests import RankRequest, RequestError
from recranker.settings import Settings


class ServeSettings(Settings):
    """Settings of the HTTP service (the request limits are the reranker's `Limits`)."""

    batch_window_ms: float = Field(10.0, ge=0, description="how long the first request of a batch waits for others")
    max_batch: int = Field(16, ge=1, description="requests answered by one backend call")
    queue_size: int = Field(64, ge=1, description="requests waiting at most; one more is answered 503")
    retry_after_s: int = Field(1, ge=0, description="the Retry-After of a 503")
    max_body_bytes: int = Field(65536, ge=256, description="largest request body; larger is answered 413")
    api_key: str | None = Field(None, description="bearer token /v1/rerank requires (None: no auth)")


class HistoryEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # "5" is not a rating, true is not a number
    item: str | int | None = Field(None, description="catalogue item id")
    title: str | None = Field(None, description="free title, for an item outside the catalogue")
    rating: float


class RerankBody(BaseModel):
    """A rerank request; candidates in the backbone's order unless `scores` are given."""

    model_config = ConfigDict(extra="forbid", strict=True)
    history: list[HistoryEntry] | None = Field(None, description="the user's rated items, most recent first "
                                               "(leave out with a target)")
    candidates: list[str | int] = Field(description="catalogue item ids to rerank")
    scores: list[float] | None = Field(None, description="the backbone's score of each candidate (higher is better)")
    user: str | int | None = Field(None, description="a user id the run knows (for hints); else none are shown")
    tasks: list[str] | None = Field(None, description="tasks to ask (default: every tuned task)")
    k: int | None = Field(None, ge=1, description="how many ranked items to return (default: all)")
    target: str | None = Field(None, description="valid or test: rank a user of the run as its study did at that "
                               "target (the user's history from the run's data)")

    def to_request(self) -> RankRequest:
        history = None if self.history is None else [e.model_dump(exclude_none=True) for e in self.history]
        return RankRequest(history, list(self.candidates), self.scores, self.user, self.tasks, self.k, self.target)


class RankedOut(BaseModel):
    item: str
    score: float
    utilities: dict[str, float]


class RerankResponse(BaseModel):
    items: list[RankedOut]
    hints: bool
    tasks: list[str]
    system: str
    weights: tuple[float, float, float] | None
    a0: float


class Metrics:
    """The service's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("recranker_requests", "rerank requests by HTTP status", ["status"], registry=self.registry)
        self.latency = Histogram("recranker_request_seconds", "rerank latency, arrival to answer", registry=self.registry,
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64))
        self.batch = Histogram("recranker_batch_size", "requests per backend call", registry=self.registry,
                               buckets=(1, 2, 4, 8, 16, 32, 64))
        self.tokens = Counter("recranker_tokens", "backend tokens by kind", ["kind"], registry=self.registry)
        self.waiting = Gauge("recranker_queue_waiting", "requests waiting for a batch", registry=self.registry)


class Service:
    """What the routes share: the reranker, the settings, the batcher and the metrics."""

    def __init__(self, reranker: Reranker, settings: ServeSettings) -> None:
        self.reranker, self.settings, self.metrics = reranker, settings, Metrics()
        self._counted = reranker.backend.usage.snapshot()
        self.batcher = Batcher(self.handle, window_s=settings.batch_window_ms / 1000, max_batch=settings.max_batch,
                               queue_size=settings.queue_size, on_batch=lambda n, _: self.metrics.batch.observe(n))

    def handle(self, requests: list[RankRequest]) -> list:
        """One batch: ranked together, the backend's new tokens counted."""
        results = self.reranker.rank_many(requests)
        now = self.reranker.backend.usage.snapshot()
        cost = now.since(self._counted).as_dict()
        for kind in ("prompt_tokens", "computed_tokens", "generated_tokens"):
            self.metrics.tokens.labels(kind).inc(max(cost[kind], 0))
        self._counted = now
        return results

    def error(self, status: int, message: str, headers: dict | None = None) -> JSONResponse:
        self.metrics.requests.labels(str(status)).inc()
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    def authorised(self, request: Request) -> None:
        key = self.settings.api_key
        if key is not None and not hmac.compare_digest(request.headers.get("authorization", "").encode(),
                                                       f"Bearer {key}".encode()):
            raise Unauthorised()

    async def rerank(self, body: RerankBody) -> Any:
        started = time.perf_counter()
        request = body.to_request()
        try:
            self.reranker.parse(request)
            future = self.batcher.submit(request)
        except RequestError as exc:
            return self.error(422, str(exc))
        except QueueFull as exc:
            return self.error(503, f"busy: {exc}; retry later", {"Retry-After": str(self.settings.retry_after_s)})
        finally:
            self.metrics.waiting.set(self.batcher.waiting)
        try:
            result = await asyncio.wrap_future(future)
        except Exception as exc:  # logged by the batcher
            return self.error(500, f"internal error: {type(exc).__name__}")
        self.metrics.latency.observe(time.perf_counter() - started)
        self.metrics.requests.labels("200").inc()
        return {"items": [vars(i) for i in result.items], "hints": result.hints, "tasks": result.tasks,
                "system": result.system, "weights": result.weights, "a0": result.a0}


def create_app(reranker: Reranker, settings: ServeSettings | None = None) -> Any:
    """The ASGI application serving `reranker` (FastAPI behind the body-size limit); the batcher
    runs while the app does (lifespan)."""
    service = Service(reranker, settings or ServeSettings())

    @asynccontextmanager
    async def lifespan(_app):
        service.batcher.start()
        yield
        await asyncio.to_thread(service.batcher.stop)  # uvicorn has let the in-flight requests finish

    app = FastAPI(title="recranker", version="1", lifespan=lifespan,
                  description="Rerank a user's candidates with a run's instruction-tuned LLM.")
    app.state.batcher, app.state.metrics = service.batcher, service.metrics

    @app.exception_handler(RequestValidationError)
    async def invalid(_request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        return service.error(422, f"{where}: {first['msg']}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, exc: StarletteHTTPException) -> JSONResponse:
        return service.error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Unauthorised)
    async def unauthorised(_request, _exc) -> JSONResponse:
        return service.error(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})

    app.post("/v1/rerank", response_model=RerankResponse, dependencies=[Depends(service.authorised)],
             responses={401: {}, 413: {}, 422: {}, 503: {}})(service.rerank)

    @app.get("/healthz")
    async def healthz() -> dict:
        reranker = service.reranker
        return {"status": "ok", "waiting": service.batcher.waiting, "system": reranker.system,
                "selected_on": {"validated": reranker.systems.selected, "validation": reranker.systems.validation}}

    @app.get("/metrics")
    async def prometheus() -> Response:
        service.metrics.waiting.set(service.batcher.waiting)
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return BodyLimit(app, service.settings.max_body_bytes, service.metrics)


class Unauthorised(Exception):
    """No or a wrong bearer token."""


class BodyLimit:
    """ASGI middleware: a body over `limit` bytes (by its Content-Length, or counted as it streams
    in) is answered 413 before the application reads it. `app` is the wrapped application."""

    def __init__(self, app: Any, limit: int, metrics: Metrics) -> None:
        self.app, self.limit, self.metrics = app, limit, metrics
        self.state = app.state

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await self._refuse(send)
        chunks, size, more = [], 0, True
        while more:  # read the whole body first (it is small), counting as it streams in
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message], receive), send)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                return await self._refuse(send)
        whole = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([whole], receive), send)

    async def _refuse(self, send) -> None:
        self.metrics.requests.labels("413").inc()
        body = json.dumps({"error": f"request body over {self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _replay(messages: list[dict], receive):
    """An ASGI receive that gives `messages` first, then what `receive` gives."""
    pending = list(messages)

    async def replayed():
        return pending.pop(0) if pending else await receive()

    return replayed
