"""Prometheus metrics and health probes shared by the stream worker and the API.

Each process exports its own series, the worker's and the API's from separate registries (each with the
process's CPU, memory and GC figures); Prometheus adds them up across workers and API replicas. The
worker serves them with ``/healthz`` and ``/readyz`` on a small HTTP server of its own
(``AFS_WORKER_METRICS_PORT``: faust's web server stays off), the API on its own port at ``/metrics``.
Names follow Prometheus conventions: counters end in ``_total``, rates are ``rate()`` of counters, except
``afs_worker_alerts_per_second`` for dashboards without PromQL.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, GCCollector, Histogram,
                               PlatformCollector, ProcessCollector, generate_latest)
from sandbox import FilterOutcome
from sqlalchemy import text

from afs.control.db import Database
from afs.control.delivery import Settlement

log = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 2.0


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    return registry


WORKER_METRICS = _registry()
API_METRICS = _registry()

# -- the stream worker ---------------------------------------------------------------------------
ALERTS = Counter("afs_worker_alerts", "Decodable alerts processed (archived, lightweight packet published)",
                 registry=WORKER_METRICS)
DEAD_LETTERS = Counter("afs_worker_dead_letters", "Messages sent to the dead-letter topic", ["reason"],
                       registry=WORKER_METRICS)
BATCH_SECONDS = Histogram("afs_worker_batch_seconds", "Wall time of one micro-batch through the pipeline",
                          buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=WORKER_METRICS)
STAGE_CPU = Counter("afs_worker_stage_cpu_seconds", "CPU time per pipeline stage (afs.pipeline.STAGES); the "
                    "filters stage includes the sandbox processes' CPU", ["stage"], registry=WORKER_METRICS)
BATCH_FAILURES = Counter("afs_worker_batch_failures", "Micro-batch attempts that failed and are retried",
                         registry=WORKER_METRICS)
CONSUMER_LAG = Gauge("afs_worker_consumer_lag",
                     "Alert-topic messages not yet committed: high watermark minus committed offset, per "
                     "partition assigned to this worker", ["topic", "partition"],
                     registry=WORKER_METRICS)
FILTER_MATCHES = Counter("afs_filter_matches", "Alerts a filter matched", ["filter_id"],
                         registry=WORKER_METRICS)
FILTER_WITHHELD = Counter("afs_filter_withheld", "Matches not published: over the owner's per-visit cap",
                          ["filter_id"], registry=WORKER_METRICS)
FILTER_ERRORS = Counter("afs_filter_errors", "A filter's failures: exceptions or bad results (error), soft "
                        "time-outs (timeout), sandbox worker deaths charged to it (kill)", ["filter_id", "kind"],
                        registry=WORKER_METRICS)
FILTER_CPU = Counter("afs_filter_cpu_seconds", "CPU time spent in a filter's calls", ["filter_id"],
                     registry=WORKER_METRICS)

# -- the API ---------------------------------------------------------------------------------------
QUOTA_DENIALS = Counter("afs_api_quota_denials", "Requests refused with 429 for being over a quota", ["kind"],
                        registry=API_METRICS)
API_REQUESTS = Counter("afs_api_requests", "HTTP responses by route template and status code",
                       ["method", "route", "status"], registry=API_METRICS)


class AlertRate:
    """Alerts per second over the last ``window_s`` (or since the first batch, if more recent)."""

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self._batches: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()
        self._started: float | None = None

    def add(self, alerts: int, seconds: float) -> None:
        now = time.monotonic()
        with self._lock:
            if self._started is None:
                self._started = now - seconds
            self._batches.append((now, alerts))

    def per_second(self) -> float:
        now = time.monotonic()
        with self._lock:
            while self._batches and self._batches[0][0] < now - self.window_s:
                self._batches.popleft()
            if self._started is None:
                return 0.0
            span = min(self.window_s, now - self._started)
            return sum(n for _, n in self._batches) / span if span > 0 else 0.0


ALERT_RATE = AlertRate()
Gauge("afs_worker_alerts_per_second", "Alerts processed per second over the last minute",
      registry=WORKER_METRICS).set_function(ALERT_RATE.per_second)


def record_batch(alerts: int, dead_letters: Mapping[str, int], seconds: float,
                 cpu: Mapping[str, float] | None = None) -> None:
    """One micro-batch whose outputs were all acknowledged; ``cpu``: seconds per pipeline stage."""
    ALERTS.inc(alerts)
    for stage, spent in (cpu or {}).items():
        STAGE_CPU.labels(stage).inc(spent)
    for reason, count in dead_letters.items():
        DEAD_LETTERS.labels(reason).inc(count)
    BATCH_SECONDS.observe(seconds)
    ALERT_RATE.add(alerts, seconds)


def record_filters(outcomes: Mapping[str, FilterOutcome], settlement: Settlement) -> None:
    """Per-filter figures of one batch (counted like the control plane's stats: a retried batch twice)."""
    for fid, outcome in outcomes.items():
        FILTER_MATCHES.labels(fid).inc(len(outcome.matches))
        FILTER_WITHHELD.labels(fid).inc(settlement.withheld[fid])
        FILTER_ERRORS.labels(fid, "error").inc(len(outcome.errors))
        FILTER_ERRORS.labels(fid, "timeout").inc(outcome.timeouts)
        FILTER_ERRORS.labels(fid, "kill").inc(outcome.kills)
        FILTER_CPU.labels(fid).inc(outcome.cpu_seconds)


def set_lag(topic: str, lags: Mapping[int, int]) -> None:
    """Replace the lag series of ``topic`` by ``lags`` (partition -> messages): a partition that moved to
    another worker after a rebalance stops being reported here."""
    for labels in [s.labels for m in CONSUMER_LAG.collect() for s in m.samples]:
        if labels["topic"] == topic and int(labels["partition"]) not in lags:
            CONSUMER_LAG.remove(topic, labels["partition"])
    for partition, lag in lags.items():
        CONSUMER_LAG.labels(topic, str(partition)).set(lag)


class RequestMetrics:
    """ASGI middleware counting API responses by route template (not raw path: bounded cardinality)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # an exception that escapes every handler is answered 500 by the server

        async def record_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            API_REQUESTS.labels(scope["method"], route, str(status)).inc()


# -- probes ------------------------------------------------------------------------------------------
def probe_database(db: Database) -> str:
    """'ok', or why the control-plane database does not answer."""
    try:
        with db.sessions() as session:
            session.execute(text("SELECT 1"))
    except Exception as error:
        return f"unreachable: {type(error).__name__}"
    return "ok"


def probe_ppdb(url: str) -> str:
    """'ok' when the PPDB mirror's owner answers an Arrow Flight call at ``url`` (it may be this process)."""
    from pyarrow import flight

    try:
        with flight.connect(url) as client:
            client.wait_for_available(timeout=PROBE_TIMEOUT_S)  # any answer but "unavailable" will do
    except Exception as error:
        return f"unreachable at {url}: {type(error).__name__}"
    return "ok"


def probe_redis(url: str) -> str:
    """'ok' when the quota store's Redis answers PING."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=PROBE_TIMEOUT_S, socket_connect_timeout=PROBE_TIMEOUT_S)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as error:
        return f"unreachable: {type(error).__name__}"
    return "ok"


# -- the worker's HTTP endpoint ------------------------------------------------------------------------
class WorkerHealth:
    """What the worker's /healthz and /readyz answer, kept current by the worker's event loop.

    Live: the event loop ran a probe within ``stale_after_s`` (a wedged loop processes nothing).
    Ready: every check is "ok"; checks not run yet read "starting".
    """

    CHECKS = ("broker", "database", "ppdb", "sandbox", "batches")

    def __init__(self, stale_after_s: float) -> None:
        self.stale_after_s = stale_after_s
        self.checks: dict[str, str] = dict.fromkeys(self.CHECKS, "starting")
        self.checks["batches"] = "ok"
        self.beat = time.monotonic()

    def update(self, **checks: str) -> None:
        self.checks = self.checks | checks

    def heartbeat(self) -> None:
        self.beat = time.monotonic()

    def live(self) -> tuple[bool, dict[str, Any]]:
        age = time.monotonic() - self.beat
        return age <= self.stale_after_s, {"status": "ok" if age <= self.stale_after_s else "stalled",
                                           "last_probe_s": round(age, 1)}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        checks = dict(self.checks)
        ok = all(v == "ok" for v in checks.values()) and self.live()[0]
        return ok, {"status": "ready" if ok else "not ready", "checks": checks}


def serve_worker_http(host: str, port: int, health: WorkerHealth) -> ThreadingHTTPServer:
    """/metrics, /healthz and /readyz on host:port, in a daemon thread; raises OSError if the port is taken."""
    routes: dict[str, Callable[[], tuple[bool, dict[str, Any]]]] = {"/healthz": health.live, "/readyz": health.ready}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, generate_latest(WORKER_METRICS), CONTENT_TYPE_LATEST)
            elif path in routes:
                ok, body = routes[path]()
                self._answer(200 if ok else 503, json.dumps(body).encode(), "application/json")
            else:
                self._answer(404, b'{"detail": "not found"}', "application/json")

        def _answer(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (scrapes are not worth a log line)
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="afs-metrics", daemon=True).start()
    log.info("metrics, /healthz and /readyz on http://%s:%d", host, server.server_address[1])
    return server
