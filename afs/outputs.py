"""Reading the service's output topics as a subscriber would: the demo, benchmark and tests watch
the worker only from the outside, through what it published."""

from __future__ import annotations

import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from afs.alerts import lightweight
from afs.broker import ensure_topics, service_topics
from afs.config import Settings
from afs.filtering import load_filter_dir


@dataclass
class Outputs:
    """What the service published, keyed by diaSourceId."""

    lightweight: Counter[int] = field(default_factory=Counter)
    lightweight_ms: dict[int, int] = field(default_factory=dict)  # broker timestamp of each packet
    dead_letters: list[tuple[bytes | None, str]] = field(default_factory=list)
    matches: defaultdict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    sample_packet: dict[str, Any] | None = None
    last_seen: float = 0.0

    @property
    def accounted(self) -> int:
        """Inputs with an outcome: a lightweight packet or a dead letter."""
        return sum(self.lightweight.values()) + len(self.dead_letters)

    def add(self, settings: Settings, topic: str, records: list[Any]) -> None:
        prefix = settings.filter_topic_prefix
        if topic == settings.lightweight_topic:
            self.lightweight.update(int(r.key) for r in records)
            self.lightweight_ms.update((int(r.key), r.timestamp) for r in records)
            if self.sample_packet is None:
                self.sample_packet = lightweight.decode(records[0].value)
        elif topic == settings.dead_letter_topic:
            self.dead_letters.extend((r.key, dict(r.headers)["afs-reason"].decode()) for r in records)
        elif topic.startswith(prefix):
            self.matches[topic[len(prefix):]].extend(int(r.key) for r in records)
        self.last_seen = time.monotonic()


async def output_consumer(settings: Settings, topics: list[str] | None = None,
                          filter_ids: Iterable[str] = ()) -> AIOKafkaConsumer:
    """A consumer of ``topics`` from the beginning, with no group and no commits. By default: every output
    topic (lightweight, dead letters, each predefined filter's and those of ``filter_ids``), created first so
    it can start before the worker."""
    if topics is None:
        ids = [*(spec.id for spec in load_filter_dir(settings.filters_dir)), *filter_ids]
        filter_topics = {settings.filter_topic(fid): settings.output_partitions for fid in ids}
        await ensure_topics(settings, service_topics(settings) | filter_topics)
        topics = [settings.lightweight_topic, settings.dead_letter_topic, *filter_topics]
    consumer = AIOKafkaConsumer(**settings.kafka_client_kwargs(), enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_bytes=64 * 1024 * 1024,
                                max_partition_fetch_bytes=4 * settings.max_alert_bytes)
    await consumer.start()
    await consumer._client.force_metadata_update()
    partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    return consumer


async def collect(consumer: AIOKafkaConsumer, settings: Settings, outputs: Outputs, until: int,
                  worker: subprocess.Popen[bytes] | None = None, timeout_s: float = 180.0,
                  settle_s: float = 0.0) -> None:
    """Read until ``until`` inputs are accounted for, then on until nothing has arrived for ``settle_s``: the
    matches of the last batches may still be queued behind a lot of full alerts."""
    deadline = time.monotonic() + timeout_s
    while outputs.accounted < until:
        if worker is not None and worker.poll() is not None:
            raise RuntimeError(f"the worker exited with code {worker.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {outputs.accounted} of {until} inputs accounted for after {timeout_s} s")
        for tp, records in (await consumer.getmany(timeout_ms=200)).items():
            outputs.add(settings, tp.topic, records)
    quiet_until = time.monotonic() + settle_s
    while time.monotonic() < quiet_until:
        fetched = await consumer.getmany(timeout_ms=100)
        for tp, records in fetched.items():
            outputs.add(settings, tp.topic, records)
        if fetched:
            quiet_until = time.monotonic() + settle_s


async def through_worker(settings: Settings, messages: list[tuple[bytes, bytes]], worker: subprocess.Popen[bytes],
                         timeout_s: float = 240.0, settle_s: float = 2.0) -> Outputs:
    """Produce ``messages`` (key, value) to the alerts topic and read every output they cause, as a subscriber."""
    from afs.produce import produce_messages, producer_for

    consumer = await output_consumer(settings)
    producer = producer_for(settings)
    await producer.start()
    outputs = Outputs()
    try:
        await produce_messages(producer, settings.alerts_topic, messages)
        await collect(consumer, settings, outputs, len(messages), worker, timeout_s=timeout_s, settle_s=settle_s)
    finally:
        await producer.stop()
        await consumer.stop()
    return outputs
