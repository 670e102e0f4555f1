"""One micro-batch of raw alert messages through the service: the stream worker's whole job.

decode once -> archive the full packet and append to the PPDB mirror -> lightweight packet -> filters ->
per-visit caps -> per-filter topics; anything undecodable goes to the dead-letter topic with its reason. In two
phases: ``decode`` (CPU only, no output) and ``complete``, which returns only when every output of the batch is
acknowledged by the broker, so the caller may then commit offsets (at-least-once; outputs are keyed by
diaSourceId so consumers can dedupe a replayed batch). Kept free of faust.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sandbox import BatchResult, FilterOutcome

from afs.alerts import lightweight
from afs.alerts.codec import AlertCodec, AlertDecodeError, DecodedAlert
from afs.archive import AlertArchive
from afs.config import Settings
from afs.control.delivery import Position, Settlement, visit_of
from afs.filtering import FilterEngine
from afs.ppdb.mirror import IngestReport

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
T = TypeVar("T")


class Publisher(Protocol):
    """Schedules a message and returns an awaitable that resolves once the broker acknowledged it."""

    async def send(self, topic: str, value: bytes, key: bytes | None, headers: Headers) -> Awaitable[Any]: ...


class MirrorWriter(Protocol):
    """The PPDB mirror as the pipeline sees it (afs.ppdb Mirror or MirrorClient)."""

    def ingest_alerts(self, records: Sequence[Mapping[str, Any]]) -> IngestReport:
        """Blocking: append the batch's rows; idempotent for a replayed batch."""
        ...


class MatchLedger(Protocol):
    """The control plane as the pipeline sees it (afs.control.live.LiveFilters)."""

    def settle(self, outcomes: Mapping[str, FilterOutcome], visits: Sequence[int],
               positions: Sequence[Position]) -> Settlement:
        """Blocking: which matches may be published under the per-visit caps; records the batch's stats.
        ``positions`` (topic, partition, offset) tell a replay of already settled alerts from new ones."""
        ...


@dataclass(frozen=True, slots=True)
class InMessage:
    value: bytes
    key: bytes | None = None
    topic: str = ""
    partition: int = -1
    offset: int = -1


@dataclass
class BatchReport:
    alerts: int = 0
    ppdb_rows: int = 0  # new rows in the mirror
    dead_letters: Counter[str] = field(default_factory=Counter)
    matches: Counter[str] = field(default_factory=Counter)
    withheld: Counter[str] = field(default_factory=Counter)  # over the owner's per-visit cap
    filter_errors: Counter[str] = field(default_factory=Counter)
    disabled: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    # CPU seconds per stage (STAGES): this process's threads plus the filters' own CPU in the sandbox; DuckDB's
    # internal threads are not counted under "mirror".
    cpu: Counter[str] = field(default_factory=Counter)

    def add(self, other: BatchReport) -> None:
        self.alerts += other.alerts
        self.ppdb_rows += other.ppdb_rows
        self.dead_letters.update(other.dead_letters)
        self.matches.update(other.matches)
        self.withheld.update(other.withheld)
        self.filter_errors.update(other.filter_errors)
        self.disabled.update(other.disabled)
        self.seconds += other.seconds
        self.cpu.update(other.cpu)


STAGES = ("decode", "archive", "mirror", "lightweight", "filters", "publish")


def cpu_timed(cpu: Counter[str], stage: str, function: Callable[..., T], *args: Any) -> T:
    """Call ``function`` and add the calling thread's CPU time to ``cpu[stage]`` (threads overlap, so wall
    time could not tell the stages apart)."""
    started = time.thread_time()
    try:
        return function(*args)
    finally:
        cpu[stage] += time.thread_time() - started


@dataclass
class Decoded:
    """A batch after decoding: its alerts in order, what could not be decoded and why, the CPU it took;
    once its matches are settled against the caps, what the filters found and what may be published."""

    messages: Sequence[InMessage]
    alerts: list[tuple[InMessage, DecodedAlert]] = field(default_factory=list)
    undecodable: list[tuple[InMessage, AlertDecodeError]] = field(default_factory=list)
    cpu: Counter[str] = field(default_factory=Counter)
    settled: tuple[dict[str, FilterOutcome], Settlement] | None = None


def dead_letter_headers(error: AlertDecodeError, message: InMessage) -> Headers:
    origin = f"{message.topic}/{message.partition}/{message.offset}"
    return [("afs-reason", error.reason.encode()), ("afs-error", error.detail.encode()[:1000]),
            ("afs-origin", origin.encode())]


class AlertPipeline:
    def __init__(self, settings: Settings, codec: AlertCodec, archive: AlertArchive,
                 engine: FilterEngine, publisher: Publisher, ledger: MatchLedger,
                 mirror: MirrorWriter | None = None) -> None:
        self.settings = settings
        self.codec = codec
        self.archive = archive
        self.mirror = mirror
        self.engine = engine
        self.publisher = publisher
        self.ledger = ledger
        self.totals = BatchReport()

    @staticmethod
    def _lightweight(alert: DecodedAlert, base_url: str) -> bytes:
        return lightweight.encode(lightweight.build(alert.record, alert.dia_source_id, alert.schema_id, base_url))

    async def _send(self, cpu: Counter[str], topic: str, value: bytes, key: bytes | None,
                    headers: Headers) -> Awaitable[Any]:
        """Schedule one output; the event loop's CPU meanwhile counts as publishing."""
        started = time.thread_time()
        try:
            return await self.publisher.send(topic, value, key, headers)
        finally:
            cpu["publish"] += time.thread_time() - started

    async def _settle(self, cpu: Counter[str], result: BatchResult | None,
                      decoded: Sequence[tuple[InMessage, DecodedAlert]]) -> tuple[dict[str, FilterOutcome], Settlement]:
        """The filters' outcomes and what the per-visit caps let through, recorded in the control plane."""
        if result is None:
            return {}, Settlement()
        cpu["filters"] += sum(outcome.cpu_seconds for outcome in result.outcomes.values())  # in the sandbox
        visits = [visit_of(alert.record) for _, alert in decoded]
        positions = [(message.topic, message.partition, message.offset) for message, _ in decoded]
        return result.outcomes, await asyncio.to_thread(self.ledger.settle, result.outcomes, visits, positions)

    def decode(self, messages: Sequence[InMessage]) -> Decoded:
        """Phase one, pure CPU and no output: the worker runs it for the next batch while the previous one
        completes (its outputs and their acknowledgements are mostly waiting on threads and the broker)."""
        batch = Decoded(messages)
        for message in messages:
            try:
                batch.alerts.append((message, cpu_timed(batch.cpu, "decode", self.codec.decode, message.value)))
            except AlertDecodeError as exc:
                batch.undecodable.append((message, exc))
        return batch

    async def complete(self, batch: Decoded) -> BatchReport:
        """Phase two: every output of the batch, acknowledged. Safe to call again for a batch that failed:
        archive and mirror are idempotent, and filters and caps run once per batch (settling twice would
        spend the owners' per-visit caps twice and withhold matches), so a retry republishes what was settled.
        A replay from the log by another worker is recognised by the ledger from the alerts' offsets."""
        started = time.perf_counter()
        report = BatchReport()
        pending: list[Awaitable[Any]] = []
        decoded = batch.alerts
        cpu = report.cpu
        cpu.update(batch.cpu)
        for message, exc in batch.undecodable:
            report.dead_letters[exc.reason] += 1
            log.warning("dead-lettered %s/%d/%d: %s", message.topic, message.partition, message.offset, exc,
                        extra={"topic": message.topic, "partition": message.partition, "offset": message.offset,
                               "reason": exc.reason})
            pending.append(await self.publisher.send(
                self.settings.dead_letter_topic, message.value, message.key, dead_letter_headers(exc, message)))
        report.alerts = len(decoded)

        # Archive, mirror and filters run side by side in threads (zstd, DuckDB and the sandbox pipes release
        # the GIL). Filters see the mirror as of each alert's time, so they need not wait for this batch's rows.
        records = [a.record for _, a in decoded]
        archived = asyncio.to_thread(cpu_timed, cpu, "archive", self.archive.put_many,
                                     [(a.dia_source_id, m.value) for m, a in decoded])
        mirrored = asyncio.to_thread(cpu_timed, cpu, "mirror", self.mirror.ingest_alerts, records) \
            if self.mirror and records else asyncio.sleep(0, None)
        filtered = asyncio.to_thread(cpu_timed, cpu, "filters", self.engine.run, records) \
            if batch.settled is None else asyncio.sleep(0, None)
        _, ingested, result = await asyncio.gather(archived, mirrored, filtered)
        if ingested is not None:
            report.ppdb_rows = sum(ingested.inserted.values())
        if batch.settled is None:
            batch.settled = await self._settle(cpu, result, decoded)
        outcomes, settlement = batch.settled

        # Lightweight packets only after the archive holds the packet their URI points to.
        base_url = self.settings.public_base_url
        for _, alert in decoded:
            packet = cpu_timed(cpu, "lightweight", self._lightweight, alert, base_url)
            pending.append(await self._send(cpu, self.settings.lightweight_topic, packet,
                                            str(alert.dia_source_id).encode(), []))

        for filter_id, found in settlement.delivered.items():
            topic = self.settings.filter_topic(filter_id)
            for index, score in found:
                message, alert = decoded[index]
                headers = [("afs-filter-id", filter_id.encode()), ("afs-score", repr(score).encode()),
                           ("afs-schema-id", str(alert.schema_id).encode())]
                pending.append(await self._send(cpu, topic, message.value, str(alert.dia_source_id).encode(),
                                                headers))
        for filter_id, outcome in outcomes.items():
            report.matches[filter_id] += len(outcome.matches)
            report.withheld[filter_id] += settlement.withheld[filter_id]
            if outcome.errors or outcome.timeouts or outcome.kills:
                report.filter_errors[filter_id] += len(outcome.errors) + outcome.timeouts + outcome.kills
            if outcome.disabled:
                report.disabled[filter_id] = outcome.disabled
            if outcome.disabled and filter_id not in self.totals.disabled:
                log.warning("filter %s disabled: %s (diaSourceId %s)", filter_id, outcome.disabled,
                            outcome.offending_id, extra={"filter_id": filter_id, "diaSourceId": outcome.offending_id})

        started_cpu = time.thread_time()
        await asyncio.gather(*pending)
        cpu["publish"] += time.thread_time() - started_cpu
        report.seconds = time.perf_counter() - started
        self.totals.add(report)
        log.info("batch: %d alerts, %d dead-lettered, %d new PPDB rows, %d matches (%d withheld by caps) in %.2f s; "
                 "CPU ms %s", report.alerts, sum(report.dead_letters.values()), report.ppdb_rows,
                 sum(report.matches.values()), sum(report.withheld.values()), report.seconds,
                 " ".join(f"{stage} {cpu[stage] * 1e3:.0f}" for stage in STAGES))
        return report
