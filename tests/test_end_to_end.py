"""One simulated visit through the embedded broker and a real `afs worker` process, produced as Rubin
produces it (batched, snappy-compressed: the worker has to decompress what it consumes).

Checks, from the outside: every good alert has exactly one lightweight packet and one archived
packet; every malformed message is dead-lettered with its reason; each filter topic holds exactly
the alerts that filter matches when run directly in the sandbox; and a librdkafka subscriber
(confluent-kafka, a different client from the worker's) can read and decode what was published,
which the worker sends snappy-compressed as Rubin's topic is.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords

from afs.alerts.codec import AlertCodec
from afs.alerts.malformed import KINDS, corrupt
from afs.alerts.simulate import simulate_visit
from afs.archive import AlertArchive
from afs.broker import EmbeddedBroker, free_port
from afs.config import Settings
from afs.filtering import FilterEngine, load_filter_dir, sandbox_limits
from afs.outputs import Outputs, through_worker
from afs.ppdb.mirror import Mirror
from afs.processes import worker_process

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
N_ALERTS = 300
SNAPPY = 2  # a record batch's compression codec (its attributes' low 3 bits)


@dataclass
class VisitRun:
    settings: Settings
    alerts: list[dict]
    good: dict[int, bytes]
    bad: dict[bytes, str]
    outputs: Outputs


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(free_port()) as running:
        yield running


@pytest.fixture(scope="module")
def visit_run(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> VisitRun:
    tmp = tmp_path_factory.mktemp("e2e")
    settings = Settings(kafka_bootstrap=broker.bootstrap, archive_dir=tmp / "archive", filters_dir=REPO / "filters",
                        ppdb_path=tmp / "ppdb.duckdb",
                        database_url=f"sqlite:///{tmp / 'afs.db'}",
                        max_alert_bytes=2_000_000, batch_size=100, batch_window_s=0.2)
    codec = AlertCodec(max_bytes=settings.max_alert_bytes)
    alerts = simulate_visit(1, N_ALERTS, seed=11)
    good = {a["diaSourceId"]: codec.encode(a) for a in alerts}
    rng = np.random.default_rng(3)
    bad = {f"bad-{kind}".encode(): kind for kind in KINDS}
    messages = [(str(sid).encode(), message) for sid, message in good.items()]
    for i, (key, kind) in enumerate(bad.items()):  # interleave the broken ones with the good
        messages.insert(i * 40 + 7, (key, corrupt(messages[i][1], kind, settings.max_alert_bytes, rng)))

    with worker_process(settings, tmp / "worker.log") as worker:
        outputs = asyncio.run(through_worker(settings, messages, worker))
    return VisitRun(settings, alerts, good, bad, outputs)


def test_every_good_alert_has_exactly_one_lightweight_packet(visit_run: VisitRun) -> None:
    assert visit_run.outputs.lightweight == Counter({sid: 1 for sid in visit_run.good})


def test_every_good_alert_is_archived_as_its_wire_bytes(visit_run: VisitRun) -> None:
    archive = AlertArchive(visit_run.settings.archive_dir)
    for sid, message in visit_run.good.items():
        assert archive.get(sid) == message
    archive.close()


def test_every_good_alert_is_in_the_ppdb_mirror_with_its_history(visit_run: VisitRun) -> None:
    with Mirror(visit_run.settings.ppdb_path, read_only=True) as mirror, mirror.reader() as con:
        sources = {row[0] for row in con.execute('SELECT "diaSourceId" FROM "DiaSource"').fetchall()}
        forced = con.execute('SELECT count(*) FROM "DiaForcedSource"').fetchall()[0][0]
    prior = {s["diaSourceId"] for a in visit_run.alerts for s in a["prvDiaSources"] or ()}
    assert set(visit_run.good) <= sources and prior <= sources
    assert forced == len({s["diaForcedSourceId"] for a in visit_run.alerts for s in a["prvDiaForcedSources"] or ()})


def test_malformed_messages_are_dead_lettered_with_their_reasons(visit_run: VisitRun) -> None:
    assert dict(visit_run.outputs.dead_letters) == visit_run.bad


def test_matches_land_on_the_right_filter_topics(visit_run: VisitRun) -> None:
    engine = FilterEngine(sandbox_limits(visit_run.settings))
    try:
        engine.activate(load_filter_dir(visit_run.settings.filters_dir))
        result = engine.run(visit_run.alerts)
    finally:
        engine.close()
    assert result is not None
    expected = {fid: sorted(visit_run.alerts[i]["diaSourceId"] for i, _ in outcome.matches)
                for fid, outcome in result.outcomes.items()}
    got = {fid: sorted(visit_run.outputs.matches.get(fid, [])) for fid in expected}
    assert got == expected
    assert sum(map(len, expected.values())) > 0, "no filter matched anything: the check would be vacuous"


def test_a_librdkafka_subscriber_reads_and_decodes_a_filter_topic(visit_run: VisitRun) -> None:
    from confluent_kafka import Consumer

    fid, ids = max(visit_run.outputs.matches.items(), key=lambda item: len(item[1]))
    consumer = Consumer(visit_run.settings.librdkafka_config() | {
        "group.id": "e2e-subscriber", "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
        "enable.auto.commit": False})
    consumer.subscribe([visit_run.settings.filter_topic(fid)])
    codec = AlertCodec(max_bytes=visit_run.settings.max_alert_bytes)
    seen: dict[int, bytes] = {}
    deadline = time.monotonic() + 60
    try:
        while len(seen) < len(ids) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            decoded = codec.decode(message.value())
            assert dict(message.headers())["afs-filter-id"] == fid.encode()
            assert decoded.record["diaSourceId"] == decoded.dia_source_id
            seen[decoded.dia_source_id] = message.value()
    finally:
        consumer.close()
    assert sorted(seen) == sorted(ids)
    assert all(value == visit_run.good[sid] for sid, value in seen.items())  # the full alert, unchanged


async def _batch_codecs(bootstrap: str, topic: str) -> list[int]:
    """The compression codec of each record batch stored on ``topic``, read raw: consumers decompress
    silently, so only the batches' own attributes show how the worker sent them."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        await client._wait_on_metadata(topic)
        codecs = []
        for partition in sorted(client.cluster.partitions_for_topic(topic)):
            leader = client.cluster.leader_for_partition(TopicPartition(topic, partition))
            request = FetchRequest(100, 1, 64 << 20, 0, [(topic, [(partition, 0, 64 << 20)])])
            for _, partitions in (await client.send(leader, request)).topics:
                for *_, raw in partitions:
                    records = MemoryRecords(raw)
                    while (batch := records.next_batch()) is not None:
                        codecs.append(batch.compression_type)
        return codecs
    finally:
        await client.close()


def test_outputs_are_snappy_compressed_as_rubins_topic(visit_run: VisitRun) -> None:
    fid = max(visit_run.outputs.matches, key=lambda f: len(visit_run.outputs.matches[f]))
    for topic in (visit_run.settings.lightweight_topic, visit_run.settings.filter_topic(fid)):
        codecs = asyncio.run(_batch_codecs(visit_run.settings.kafka_bootstrap, topic))
        assert codecs and set(codecs) == {SNAPPY}, f"{topic}: batch codecs {codecs}"


def test_the_example_subscriber_prints_every_match(visit_run: VisitRun) -> None:
    fid, ids = max(visit_run.outputs.matches.items(), key=lambda item: len(item[1]))
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "subscribe.py"), "--bootstrap", visit_run.settings.kafka_bootstrap,
         "--topic", visit_run.settings.filter_topic(fid), "--group", "example", "--max-messages", str(len(ids))],
        capture_output=True, text=True, timeout=90, check=True)
    printed = sorted(int(line.split()[0]) for line in result.stdout.splitlines())
    assert printed == sorted(ids)
