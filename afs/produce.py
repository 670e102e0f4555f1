"""`afs simulate`: produce simulated visits of v11.1 alerts to the alert topic, as Rubin would."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from aiokafka import AIOKafkaProducer

from afs.alerts.codec import AlertCodec
from afs.alerts.malformed import KINDS, corrupt
from afs.config import RUBIN_COMPRESSION, Settings

log = logging.getLogger(__name__)


@dataclass
class ProduceReport:
    alerts: int = 0
    malformed: Counter[str] = field(default_factory=Counter)
    bytes: int = 0


def encode_visit(codec: AlertCodec, alerts: Iterable[dict], malformed_rate: float, rng: np.random.Generator,
                 report: ProduceReport) -> list[tuple[bytes, bytes]]:
    """(key, message) pairs for one visit; a ``malformed_rate`` fraction is replaced by broken messages."""
    out = []
    for alert in alerts:
        message = codec.encode(alert)
        if malformed_rate and rng.random() < malformed_rate:
            kind = KINDS[int(rng.integers(len(KINDS)))]
            message = corrupt(message, kind, codec.max_bytes, rng)
            report.malformed[kind] += 1
        else:
            report.alerts += 1
        report.bytes += len(message)
        out.append((str(alert["diaSourceId"]).encode(), message))
    return out


def producer_for(settings: Settings) -> AIOKafkaProducer:
    """A producer that sends alerts as Rubin's does: batched and snappy-compressed."""
    return AIOKafkaProducer(**settings.kafka_client_kwargs(), acks="all", linger_ms=5,
                            compression_type=RUBIN_COMPRESSION,
                            max_batch_size=settings.produce_batch_bytes,
                            max_request_size=2 * settings.max_alert_bytes + 1024)


async def produce_messages(producer: AIOKafkaProducer, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    """Send and wait for every acknowledgement."""
    pending = [await producer.send(topic, value, key=key) for key, value in messages]
    for fut in pending:
        await fut


async def simulate(settings: Settings, visits: int, alerts_per_visit: int, seed: int,
                   malformed_rate: float = 0.0, cutouts: bool = True) -> ProduceReport:
    from afs.alerts.simulate import simulate_visits

    codec = AlertCodec(max_bytes=settings.max_alert_bytes)
    rng = np.random.default_rng(seed + 1)
    report = ProduceReport()
    producer = producer_for(settings)
    await producer.start()
    try:
        for visit, alerts in simulate_visits(visits, alerts_per_visit, seed, cutouts=cutouts):
            await produce_messages(producer, settings.alerts_topic,
                                   encode_visit(codec, alerts, malformed_rate, rng, report))
            log.info("visit %d: produced %d messages", visit, len(alerts))
    finally:
        await producer.stop()
    return report
