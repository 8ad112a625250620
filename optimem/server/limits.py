"""Request limits: body size (413, an ASGI middleware) and requests per key per minute (429).

Requests per key are counted in one process (`RateLimiter`, a token bucket) or, where several
processes serve (`--workers N`, replicas on one PostgreSQL), in the store they all share
(`SharedRateLimiter`, a sliding window over per-minute counts).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError, error_body


def too_large_message(limit: int) -> str:
    return f"request body over the {limit:,}-byte limit; send smaller batches"


class BodyLimit:
    """Refuse bodies over `limit` bytes: by Content-Length before reading, else while streaming."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.limit:
                    await _send_json(
                        send, 413, error_body("payload_too_large", too_large_message(self.limit))
                    )
                    return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # an HTTPException, because FastAPI turns anything else raised while
                    # reading the body into a 400
                    raise HTTPException(413, too_large_message(self.limit))
            return message

        await self.app(scope, counted, send)


async def _send_json(send: Send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per key: `per_minute` requests a minute, refilled smoothly; 0 = no limit.

    Counts per worker process (each `--workers` process keeps its own buckets).
    """

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> None:
        """Take one request from `key`'s bucket, or raise a 429 ApiError with Retry-After."""
        if self.per_minute <= 0:
            return
        rate = self.per_minute / 60.0
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(float(self.per_minute), now)
            bucket.tokens = min(float(self.per_minute), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return
            wait = math.ceil((1.0 - bucket.tokens) / rate)
        raise rate_limited(self.per_minute, wait)

    async def ahit(self, key: str) -> None:
        self.hit(key)


def rate_limited(per_minute: int, wait: int) -> ApiError:
    return ApiError(
        429,
        "rate_limited",
        f"more than {per_minute} requests a minute for this key; retry in {wait} s",
        headers={"Retry-After": str(wait)},
    )


class SharedRateLimiter:
    """`per_minute` requests a minute per key, counted in the store every process shares.

    The estimate of the last 60 s is this minute's count plus the previous minute's weighted by
    the part of it still inside the window (the sliding-window counter): one write per request,
    no clock shared beyond the minute number.

    Args:
        per_minute: Requests a minute per key; 0 = no limit.
        count: `Store.count_request` of the shared store (taken lazily: the app opens its
            memory in its lifespan).
    """

    def __init__(self, per_minute: int, count: Callable[[], Callable[[str, int], tuple[int, int]]]) -> None:
        self.per_minute = per_minute
        self._count = count

    def hit(self, key: str, now: float | None = None) -> None:
        """Count one request of `key`, or raise a 429 ApiError with Retry-After."""
        if self.per_minute <= 0:
            return
        now = time.time() if now is None else now
        minute, into = divmod(now, 60.0)
        current, previous = self._count()(key, int(minute))
        fraction = into / 60.0
        if previous * (1.0 - fraction) + current <= self.per_minute:
            return
        # seconds until the estimate falls back under the limit: the previous minute's weight
        # shrinks as the window slides; past the minute's end only this minute counts
        room = self.per_minute - current
        wait = 60.0 * (1.0 - room / previous) - into if previous and room > 0 else 60.0 - into
        raise rate_limited(self.per_minute, max(1, math.ceil(wait)))

    async def ahit(self, key: str) -> None:
        if self.per_minute > 0:
            await asyncio.to_thread(self.hit, key)
