"""Prometheus metrics of one app: requests by route and status, latencies, pages by mode, decode queue."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from optimem import OpticalMemory

#: Seconds a scrape reuses the last count of pages by mode (counting walks every session).
PAGES_CACHE_SECONDS = 15.0
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """The metrics of one app, in a registry of its own (several apps may share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "optimem_http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "optimem_http_request_seconds",
            "HTTP request latency by route template.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge("optimem_http_in_flight", "Requests being served.", registry=self.registry)
        self.compress = Histogram(
            "optimem_compress_seconds",
            "Latency of compress().",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.recall = Histogram(
            "optimem_recall_seconds",
            "Latency of recall, by kind (page ids or query).",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def watch(self, memory: OpticalMemory) -> None:
        """Report the memory's decode queue and its pages by mode."""
        self.registry.register(_MemoryCollector(memory))

    @contextmanager
    def timed(self, histogram: Histogram, **labels: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            (histogram.labels(**labels) if labels else histogram).observe(time.perf_counter() - start)


class _MemoryCollector(Collector):
    def __init__(self, memory: OpticalMemory) -> None:
        self.memory = memory
        self._pages: dict[str, int] = {}
        self._at = float("-inf")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        queue = GaugeMetricFamily("optimem_decode_queue", "Pages waiting for background OCR.")
        queue.add_metric([], self.memory.pending_decodes())
        yield queue
        if time.monotonic() - self._at > PAGES_CACHE_SECONDS:
            counts: dict[str, int] = {}
            for sid in self.memory.sessions():
                for page in self.memory.session(sid).pages():
                    counts[page.mode.value] = counts.get(page.mode.value, 0) + 1
            self._pages, self._at = counts, time.monotonic()
        pages = GaugeMetricFamily("optimem_pages", "Pages stored, by current mode.", labels=["mode"])
        for mode, n in sorted(self._pages.items()):
            pages.add_metric([mode], n)
        yield pages


class RequestMetrics:
    """ASGI middleware counting every HTTP request by its route template (never its raw path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics | Callable[[], Metrics]) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.metrics if isinstance(self.metrics, Metrics) else self.metrics()
        status = 500
        start = time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics.in_flight.inc()
        try:
            await self.app(scope, receive, sending)
        finally:
            metrics.in_flight.dec()
            matched = scope.get("route")  # its template without convertors: {session}, not {session:session}
            route = getattr(matched, "path_format", None) or getattr(matched, "path", None) or "unmatched"
            method = scope.get("method", "")
            metrics.requests.labels(route, method, str(status)).inc()
            metrics.latency.labels(route, method).observe(time.perf_counter() - start)
