"""A filter's matches as Server-Sent Events, read from its Kafka topic, resumable exactly.

Every event's id is the read position after it on every partition of the topic, written
``partition:next_offset`` joined by commas (e.g. ``0:42,1:17``). A client that reconnects with that
id in ``Last-Event-ID`` continues where it stopped, on every partition, missing nothing. The data
is JSON: the diaSourceId, the score, the diaSource record and a permanent link to the full alert;
never the cutouts (fetch those through the link).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from afs.alerts.codec import AlertCodec
from afs.alerts.lightweight import alert_uri
from afs.broker import ensure_topics
from afs.config import Settings


def format_event_id(positions: dict[int, int]) -> str:
    return ",".join(f"{p}:{o}" for p, o in sorted(positions.items()))


def parse_event_id(text: str) -> dict[int, int]:
    """Positions from a Last-Event-ID; ValueError if it is not one of ours."""
    positions = {}
    for part in text.split(","):
        partition, offset = (int(number) for number in part.split(":"))
        if partition < 0 or offset < 0:
            raise ValueError(f"not a stream position: {text!r}")
        positions[partition] = offset
    return positions


def _finite(value: Any) -> Any:
    """JSON has no NaN: nullable Avro floats become null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def event_data(record: ConsumerRecord, codec: AlertCodec, settings: Settings, filter_id: str) -> dict[str, Any]:
    alert = codec.decode(record.value)
    headers = {k: v.decode() for k, v in record.headers}
    return {
        "filterId": filter_id,
        "diaSourceId": alert.dia_source_id,
        "score": float(headers.get("afs-score", "1.0")),
        "schemaId": alert.schema_id,
        "alertUri": alert_uri(settings.public_base_url, alert.dia_source_id),
        "diaSource": {k: _finite(v) for k, v in (alert.record.get("diaSource") or {}).items()},
        "partition": record.partition,
        "offset": record.offset,
    }


class MatchStream:
    """An unmanaged consumer (no group, no commits) positioned on every partition of one filter topic."""

    def __init__(self, settings: Settings, filter_id: str) -> None:
        self.settings = settings
        self.filter_id = filter_id
        self.topic = settings.filter_topic(filter_id)
        self.positions: dict[int, int] = {}

    async def open(self, resume: dict[int, int] | None, start: str) -> None:
        """Connect and seek: to ``resume`` where given, else to the start or the end of each partition.
        Raises aiokafka's KafkaError when the broker is unreachable."""
        await ensure_topics(self.settings, {self.topic: self.settings.output_partitions})
        self._consumer = AIOKafkaConsumer(**self.settings.kafka_client_kwargs(), enable_auto_commit=False,
                                          max_partition_fetch_bytes=4 * self.settings.max_alert_bytes)
        try:
            await self._consumer.start()
            await self._consumer._client.force_metadata_update()
            partitions = [TopicPartition(self.topic, p) for p in sorted(self._consumer.partitions_for_topic(self.topic)
                                                                        or ())]
            self._consumer.assign(partitions)
            unknown = [tp for tp in partitions if tp.partition not in (resume or {})]
            if unknown:
                if start == "earliest" or resume:  # a partition the client has not seen yet: all of it
                    await self._consumer.seek_to_beginning(*unknown)
                else:
                    await self._consumer.seek_to_end(*unknown)
            for tp in partitions:
                if resume and tp.partition in resume:
                    self._consumer.seek(tp, resume[tp.partition])
                self.positions[tp.partition] = await self._consumer.position(tp)
        except BaseException:
            await self._consumer.stop()
            raise

    async def events(self, limit: int | None) -> AsyncIterator[str]:
        """SSE text: a comment once positioned, then one event per match, keep-alive comments when idle."""
        codec = AlertCodec(max_bytes=self.settings.max_alert_bytes)
        sent = 0
        idle_since = time.monotonic()
        try:
            yield f": subscribed to {self.topic} at {format_event_id(self.positions)}\n\n"
            while limit is None or sent < limit:
                batches = await self._consumer.getmany(timeout_ms=500, max_records=100)
                for tp, records in sorted(batches.items(), key=lambda item: item[0].partition):
                    for record in records:
                        if limit is not None and sent >= limit:
                            break
                        self.positions[tp.partition] = record.offset + 1
                        data = json.dumps(event_data(record, codec, self.settings, self.filter_id))
                        yield f"id: {format_event_id(self.positions)}\nevent: match\ndata: {data}\n\n"
                        sent += 1
                        idle_since = time.monotonic()
                if time.monotonic() - idle_since > self.settings.sse_keepalive_s:
                    yield ": keep-alive\n\n"
                    idle_since = time.monotonic()
        finally:
            await self._consumer.stop()
