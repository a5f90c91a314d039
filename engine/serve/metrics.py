"""Prometheus metrics of one app, in the app's own CollectorRegistry (so tests can build many).

    insid3_requests_total{route,method,status}            counter
    insid3_request_duration_seconds{route,method,status}  histogram
    insid3_stage_duration_seconds{stage}                  histogram (queue, preprocess, backbone, ...)
    insid3_batch_size                                     histogram of backbone batch sizes
    insid3_queue_depth                                    gauge: targets waiting for the backbone
    insid3_references, insid3_reference_bytes             gauges: the reference cache
    insid3_reference_encodes_total{reason}                counter: "register" or "replica_miss" (Ray)

`route` is the route's template (/v1/references/{reference_id}), never the raw path, so the
label set stays bounded; paths that match no route count as "unmatched".
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "insid3_requests", "HTTP requests by route, method and status", ("route", "method", "status"), registry=r
        )
        self.request_seconds = Histogram(
            "insid3_request_duration_seconds", "HTTP request latency", ("route", "method", "status"),
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.stage_seconds = Histogram(
            "insid3_stage_duration_seconds", "Per-target latency of each engine stage", ("stage",),
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.batch_size = Histogram(
            "insid3_batch_size", "Targets per backbone call", buckets=BATCH_BUCKETS, registry=r
        )
        self.queue_depth = Gauge("insid3_queue_depth", "Targets waiting for the backbone", registry=r)
        self.references = Gauge("insid3_references", "References in the cache", registry=r)
        self.reference_bytes = Gauge("insid3_reference_bytes", "Device bytes held by cached references", registry=r)
        self.reference_encodes = Counter(
            "insid3_reference_encodes", "References encoded, by reason", ("reason",), registry=r
        )

    def observe_stages(self, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self.stage_seconds.labels(stage).observe(ms / 1e3)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetricsMiddleware:
    """Pure ASGI middleware: counts and times every HTTP request by route template and status."""

    def __init__(self, app, metrics: ServeMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_and_record(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            labels = (template, scope["method"], str(status["code"]))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.request_seconds.labels(*labels).observe(time.perf_counter() - started)
