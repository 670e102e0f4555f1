"""`afs worker`: the faust-streaming app that feeds micro-batches of the alert topic to the pipeline.

Offsets advance only after a batch's outputs are acknowledged: each message holds one extra reference,
released when its batch completes (faust's own ack from ``take_events`` comes earlier), and a batch that
fails for an infrastructure reason (broker, database or disk away) is retried with back-off instead of
being skipped; one still completing after AFS_BATCH_STUCK_AFTER_S makes the worker unready, so a stall shows.
Two batches are in flight: the next one decodes while the previous one completes.
The active filter versions come from the control-plane database and are re-read between batches (afs.control.live).

Operations (afs.metrics): with AFS_WORKER_METRICS_PORT set, the worker serves Prometheus ``/metrics``,
``/healthz`` and ``/readyz`` there; a faust timer probes readiness and sets the consumer lag every
PROBE_INTERVAL_S. The lag's high watermark is the one the consumer's own fetch responses carry, never
ListOffsets(latest), which Tansu answers too small (DESIGN.md §7).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import faust
from aiokafka.helpers import create_ssl_context
from faust.exceptions import ConsumerNotStarted
from sandbox import FilterOutcome

from afs.alerts.codec import AlertCodec
from afs.alerts.schemas import SchemaStore
from afs.archive import AlertArchive
from afs.broker import ensure_topics, service_topics
from afs.config import Settings
from afs.control.db import Database
from afs.control.delivery import Position, Settlement
from afs.control.filters import sync_predefined
from afs.control.live import LiveFilters
from afs.filtering import FilterEngine, sandbox_limits
from afs.metrics import (BATCH_FAILURES, WorkerHealth, probe_database, probe_ppdb, record_batch, record_filters,
                         serve_worker_http, set_lag)
from afs.pipeline import AlertPipeline, BatchReport, Decoded, Headers, InMessage, Publisher
from afs.ppdb.service import Owner, narrow_limits

log = logging.getLogger(__name__)
RETRY_BACKOFF_S = (0.5, 1, 2, 5, 10)
PROBE_INTERVAL_S = 5.0


class FaustPublisher:
    """The pipeline's Publisher over the faust app's own (aiokafka) producer."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    async def send(self, topic: str, value: bytes, key: bytes | None, headers: Headers) -> Awaitable[Any]:
        return await self.app.producer.send(topic, key, value, None, None, headers)


def _credentials(settings: Settings) -> Any:
    if settings.kafka_sasl_mechanism:
        ssl = create_ssl_context(cafile=str(settings.kafka_ssl_cafile)) if "SSL" in settings.kafka_security_protocol \
            else None
        return faust.SASLCredentials(username=settings.kafka_sasl_username, password=settings.kafka_sasl_password,
                                     mechanism=settings.kafka_sasl_mechanism, ssl_context=ssl)
    if settings.kafka_security_protocol == "SSL":
        return faust.SSLCredentials(create_ssl_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None))
    return None


class MeteredLedger:
    """LiveFilters as the pipeline's MatchLedger, exporting each batch's per-filter figures: the outcomes
    (with the filters' CPU time) pass through here and nowhere else outside the pipeline."""

    def __init__(self, live: LiveFilters) -> None:
        self.live = live

    def settle(self, outcomes: Mapping[str, FilterOutcome], visits: Sequence[int],
               positions: Sequence[Position]) -> Settlement:
        settlement = self.live.settle(outcomes, visits, positions)
        record_filters(outcomes, settlement)
        return settlement


class Probes:
    """Readiness checks and consumer-lag gauges, run on the worker's event loop (so a wedged loop also
    shows: /healthz goes stale)."""

    def __init__(self, app: faust.App, settings: Settings, health: WorkerHealth) -> None:
        self.app = app
        self.settings = settings
        self.health = health
        self.live: LiveFilters | None = None  # set by the agent once the pipeline is built

    async def run(self) -> None:
        checks = {"broker": await self._broker(),
                  "ppdb": await asyncio.to_thread(probe_ppdb, self.settings.ppdb_owner_url())}
        if self.live is not None:
            checks["database"] = await asyncio.to_thread(probe_database, self.live.db)
        self.health.update(**checks)
        self._lag()
        self.health.heartbeat()

    async def _broker(self) -> str:
        """'ok' when a bootstrap server accepts a TCP connection (the consumer reconnects on its own)."""
        for server in self.settings.kafka_bootstrap.split(","):
            host, port = server.strip().rsplit(":", 1)
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 2.0)
            except (OSError, asyncio.TimeoutError):
                continue
            writer.close()
            return "ok"
        return f"unreachable: {self.settings.kafka_bootstrap}"

    def _lag(self) -> None:
        """High watermark from the consumer's last fetch response minus the offset this worker committed
        last, per assigned partition; a partition appears with this worker's first commit on it."""
        topic = self.settings.alerts_topic
        try:
            assigned = [tp for tp in self.app.consumer.assignment() if tp.topic == topic]
            highwaters = {tp: self.app.consumer.highwater(tp) for tp in assigned}
        except ConsumerNotStarted:
            return
        committed = self.app.monitor.tp_committed_offsets
        set_lag(topic, {tp.partition: max(0, high - committed[tp]) for tp, high in highwaters.items()
                        if high is not None and committed.get(tp) is not None})


def create_app(settings: Settings, health: WorkerHealth) -> faust.App:
    """The faust app; ``health`` is kept current by a timer and by the agent."""
    app = faust.App(
        settings.consumer_group,
        broker=[f"kafka://{server}" for server in settings.kafka_bootstrap.split(",")],
        broker_credentials=_credentials(settings),
        broker_session_timeout=6.0,  # Tansu holds every JoinGroup for session_timeout/2
        broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_size=4 * settings.max_alert_bytes,
        producer_max_request_size=2 * settings.max_alert_bytes,
        producer_max_batch_size=settings.produce_batch_bytes,
        producer_acks=-1,
        producer_request_timeout=settings.produce_timeout_s,
        producer_compression_type=None if settings.output_compression == "none" else settings.output_compression,
        stream_buffer_maxsize=4 * settings.batch_size,
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=settings.worker_web_port is not None,
        web_bind="127.0.0.1",
        web_port=settings.worker_web_port or 6066,
        datadir=str(settings.archive_dir.parent / "faust"),
    )
    alerts = app.topic(settings.alerts_topic, key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")

    probes = Probes(app, settings, health)

    @app.timer(PROBE_INTERVAL_S)
    async def probe() -> None:
        await probes.run()

    @app.agent(alerts)
    async def process(stream: faust.StreamT) -> None:
        async with running_pipeline(settings, FaustPublisher(app)) as (pipeline, live):
            probes.live = live
            health.update(sandbox="ok")  # the pool exists only once every sandbox worker reported ready
            reloading = asyncio.create_task(live.keep_reloading())
            completing: asyncio.Task[None] | None = None
            try:
                async for events in stream.take_events(settings.batch_size, within=settings.batch_window_s):
                    for event in events:  # take_events acks on our next turn; ours is the last ack, once done
                        event.message.incref()
                    batch = [InMessage(e.message.value, e.message.key, e.message.topic, e.message.partition,
                                       e.message.offset) for e in events]
                    decoded = await asyncio.to_thread(pipeline.decode, batch)  # while the previous one completes
                    if completing is not None:
                        await completing
                    completing = asyncio.create_task(_complete(pipeline, live, decoded, events, health))
                if completing is not None:
                    await completing
            finally:
                if completing is not None:
                    completing.cancel()
                health.update(sandbox="stopped")
                probes.live = None
                reloading.cancel()

    return app


@asynccontextmanager
async def running_pipeline(settings: Settings,
                           publisher: Publisher) -> AsyncIterator[tuple[AlertPipeline, LiveFilters]]:
    """Open (or reach) the PPDB mirror, start the sandbox with the active filter versions (the predefined
    ones synced from AFS_FILTERS_DIR first), make sure every output topic exists, wire it up; on exit stop
    the sandbox and close the archive, the mirror and the control-plane database."""
    db = await asyncio.to_thread(lambda: Database(settings.database_url).create_schema())
    await asyncio.to_thread(sync_predefined, db, settings.filters_dir)
    await ensure_topics(settings, service_topics(settings))
    owner = await asyncio.to_thread(Owner, settings)
    live = LiveFilters(settings, db, FilterEngine(sandbox_limits(settings), owner.mirror, narrow_limits(settings)))
    await live.reload()
    codec = AlertCodec(SchemaStore(settings.schema_registry_url), settings.max_alert_bytes)
    log.info("worker ready: %d active filters; PPDB mirror %s", len(live.engine.active_ids),
             settings.ppdb_url or f"{settings.ppdb_path}, served at {settings.ppdb_listen_address()}")
    pipeline = AlertPipeline(settings, codec, AlertArchive(settings.archive_dir), live.engine, publisher,
                             MeteredLedger(live), owner.mirror)
    try:
        yield pipeline, live
    finally:
        pipeline.engine.close()
        pipeline.archive.close()
        owner.close()
        live.db.close()


async def _complete(pipeline: AlertPipeline, live: LiveFilters, batch: Decoded, events: Sequence[faust.EventT],
                    health: WorkerHealth) -> None:
    """Complete a decoded batch, retrying until its outputs are all acknowledged, never skipping it (that
    would lose alerts); then release its offsets for commit. While it keeps failing the worker is not
    ready, with the error as the reason. Filters are reloaded only between batches (``live.lock``)."""
    failing_since: float | None = None
    for attempt in range(10**9):
        try:
            async with live.lock:
                report = await _watched(pipeline.complete(batch), len(batch.messages), health,
                                        pipeline.settings.batch_stuck_after_s)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            BATCH_FAILURES.inc()
            failing_since = failing_since or time.time()
            health.update(batches=f"failing since {time.strftime('%H:%M:%S', time.gmtime(failing_since))} UTC "
                                  f"(attempt {attempt + 1}): {type(error).__name__}: {error}"[:500])
            delay = RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S) - 1)]
            log.exception("batch of %d failed (attempt %d); retrying in %s s", len(batch.messages), attempt + 1,
                          delay)
            await asyncio.sleep(delay)
        else:
            for event in events:
                event.ack()
            record_batch(report.alerts, report.dead_letters, report.seconds, report.cpu)
            health.update(batches="ok")
            return


async def _watched(completing: Awaitable[BatchReport], alerts: int, health: WorkerHealth,
                   stuck_after_s: float) -> BatchReport:
    """Await a batch's completion; while it takes longer than ``stuck_after_s``, say so in the log and in
    /readyz, where a stuck batch would otherwise leave every check "ok"."""
    task = asyncio.ensure_future(completing)
    started = time.monotonic()
    try:
        while not (await asyncio.wait({task}, timeout=stuck_after_s))[0]:
            waited = time.monotonic() - started
            health.update(batches=f"a batch of {alerts} alerts still not complete after {waited:.0f} s")
            log.warning("a batch of %d alerts is still not complete after %.0f s (outputs not acknowledged, or "
                        "the archive, mirror, sandbox or database not answering)", alerts, waited)
        return task.result()
    finally:
        task.cancel()


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run the worker until stopped; with AFS_WORKER_METRICS_PORT, serve /metrics, /healthz and /readyz."""
    from faust.worker import Worker

    class BoundedShutdownWorker(Worker):
        """faust's shutdown can wait forever on a broker that is gone; after a stop signal we give it
        ``shutdown_grace_s`` and then exit hard. Safe: offsets of unfinished batches are not committed.
        Logging stays as afs.cli configured it (text or JSON), without faust's handlers or its terminal
        spinner (which writes escape codes into the log)."""

        def _setup_logging(self) -> None:
            self.spinner = None

        def _schedule_shutdown(self, signal: Any) -> None:
            if not self._signal_stop_time:
                timer = threading.Timer(settings.shutdown_grace_s, _exit_now, args=(settings.shutdown_grace_s,))
                timer.daemon = True
                timer.start()
            super()._schedule_shutdown(signal)

    health = WorkerHealth(stale_after_s=6 * PROBE_INTERVAL_S)
    if settings.worker_metrics_port is not None:
        serve_worker_http(settings.worker_metrics_host, settings.worker_metrics_port, health)
    app = create_app(settings, health)
    BoundedShutdownWorker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False).execute_from_commandline()


def _exit_now(grace_s: float) -> None:
    log.error("clean shutdown took longer than %s s (broker unreachable?); exiting now", grace_s)
    logging.shutdown()
    os._exit(75)
