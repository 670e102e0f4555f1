"""kill -9 the stream worker in the middle of a visit and start it again (a real `afs worker` against the
embedded broker): every alert still gets its lightweight packet and its archived packet, every match is
delivered, and the only duplicates are alerts whose offsets were not committed when the worker died, each
published again with the same bytes under the same key (diaSourceId), so consumers can dedupe by key; and
the filters' stats count each alert once, however often it was processed."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import select

from afs.alerts.simulate import simulate_visit
from afs.archive import AlertArchive
from afs.broker import EmbeddedBroker, free_port
from afs.config import Settings
from afs.control.db import Database
from afs.control.models import FilterStats
from afs.processes import worker_process
from fault_helpers import (Reader, Seen, encode, expected_matches, filters_dir, log_has, produce, slow_filter, wait_for,
                           worker_settings)

pytestmark = pytest.mark.slow
N_ALERTS = 1200


def committed_offsets(settings: Settings) -> dict[int, int]:
    """The consumer group's committed offset per alert-topic partition (absent: nothing committed), read
    without joining the group."""
    async def fetch() -> dict[int, int]:
        consumer = AIOKafkaConsumer(**settings.kafka_client_kwargs(), group_id=settings.consumer_group,
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            offsets = {p: await consumer.committed(TopicPartition(settings.alerts_topic, p))
                       for p in range(settings.alerts_partitions)}
        finally:
            await consumer.stop()
        return {p: offset for p, offset in offsets.items() if offset is not None}

    return asyncio.run(fetch())


def test_a_worker_killed_mid_visit_loses_nothing_and_duplicates_only_the_uncommitted(tmp_path: Path) -> None:
    with EmbeddedBroker(free_port()) as broker:
        settings = worker_settings(tmp_path, broker.bootstrap, filters_dir(tmp_path, {"slow": slow_filter()}))
        alerts = simulate_visit(1, N_ALERTS, seed=2, cutouts=False)
        messages = encode(alerts)
        ids = {a["diaSourceId"] for a in alerts}
        expected = expected_matches(settings, alerts)
        seen, reader = Seen(settings), Reader(settings)
        try:
            log = tmp_path / "first.log"
            with worker_process(settings, log) as first:
                wait_for(lambda: log_has(log, "worker ready"), "the first worker")
                placed = produce(settings, messages)
                seen.read(reader, lambda: len(seen.lightweight) >= N_ALERTS // 4, 180, first, settle_s=0)
                os.kill(first.pid, signal.SIGKILL)
                assert first.wait(timeout=10) == -signal.SIGKILL
            committed = committed_offsets(settings)
            seen.read(reader, lambda: True, 10, settle_s=2)  # whatever it published before it died
            assert len(seen.lightweight) < N_ALERTS, "the worker finished the visit before the kill: not mid-visit"
            assert sum(committed.values()) < N_ALERTS

            log = tmp_path / "second.log"
            with worker_process(settings, log) as second:
                seen.read(reader, lambda: set(seen.lightweight) >= ids and
                          all(seen.matches(fid) >= want for fid, want in expected.items()), 300, second, settle_s=3)
        finally:
            reader.close()

    assert set(seen.lightweight) == ids  # every alert has its lightweight packet...
    archive = AlertArchive(settings.archive_dir)
    assert all(archive.get(int(key)) == message for key, message in messages)  # ...and its archived packet
    archive.close()
    assert {fid: seen.matches(fid) for fid in expected} == expected  # every match, nothing else
    assert sum(map(len, expected.values())) > 0, "no filter matched: the check would be vacuous"

    duplicated = {sid for sid, count in seen.lightweight.items() if count > 1}
    for sid in duplicated:  # re-published only if its offset was not committed when the worker died
        partition, offset = placed[sid]
        assert offset >= committed.get(partition, 0), f"{sid} at {partition}/{offset} was committed"
    for topic, by_id in seen.messages.items():  # a duplicate is the same message again: dedupe by key
        assert all(len(set(values)) == 1 for values in by_id.values()), topic
    db = Database(settings.database_url)
    with db.sessions() as session:  # the replayed alerts were settled before the kill: counted once
        counted = {s.filter_id: (s.alerts_seen, s.matched) for s in session.scalars(select(FilterStats))}
    db.close()
    assert counted == {fid: (N_ALERTS, len(want)) for fid, want in expected.items()}
    print(f"\nkilled after {sum(committed.values())} committed of {N_ALERTS}; "
          f"{len(duplicated)} alerts published twice (the uncommitted batches)")
