"""Prometheus metrics for the server (its own registry, so several apps in one process do not collide), and the
pure-ASGI middlewares that feed them and cap request bodies."""
from __future__ import annotations

import json
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from .values import Rejected

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("polymodal_requests", "HTTP requests by endpoint and status code",
                                ("endpoint", "code"), registry=self.registry)
        self.latency = Histogram("polymodal_request_seconds", "Request latency by endpoint", ("endpoint",),
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_rows = Histogram("polymodal_batch_rows", "Rows per model batch", ("model",),
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.errors = Counter("polymodal_errors", "Requests answered with an error, by endpoint and kind",
                              ("endpoint", "kind"), registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


async def _reply(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class _TooLarge(Rejected):
    def __init__(self, message: str) -> None:
        super().__init__(message, status=413)


class BodyLimit:
    """413 for a body over `limit` bytes: at once from Content-Length, or as soon as a streamed body passes it."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is over the server's limit of {self.limit / 2**20:g} MB (--max-body-mb)"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await _reply(send, 413, message)
            return
        received, started = 0, False

        async def limited_receive() -> dict:
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.limit:
                    raise _TooLarge(message)
            return msg

        async def watched_send(msg: dict) -> None:
            nonlocal started
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, limited_receive, watched_send)
        except _TooLarge:
            if not started:
                await _reply(send, 413, message)


class Instrument:
    """Counts every request by endpoint and status, and times it."""

    def __init__(self, app: Any, metrics: ServerMetrics, endpoints: set[str]) -> None:
        self.app, self.metrics, self.endpoints = app, metrics, endpoints

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        endpoint = path if path in self.endpoints else "other"
        status = 500
        start = time.perf_counter()

        async def watched_send(msg: dict) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
            self.metrics.requests.labels(endpoint, str(status)).inc()
            if status >= 400:
                self.metrics.errors.labels(endpoint, "client" if status < 500 else "server").inc()
