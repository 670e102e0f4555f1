"""A batch is settled against the per-visit caps once, however often it is processed: retried in the same
worker after its outputs failed (the broker away mid-batch), or replayed from the log by a new worker after
the first one died before committing its offsets. Either way the owner's cap and the filter's stats count
the batch once and what was granted is published again. Real broker, sandbox, mirror and control-plane
database; only the failures are injected."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaConnectionError
from sqlalchemy import select

from afs.alerts.codec import AlertCodec
from afs.alerts.simulate import simulate_visit
from afs.broker import EmbeddedBroker, free_port
from afs.config import Settings
from afs.control.db import Database
from afs.control.filters import activate, create_filter
from afs.control.models import FilterStats, UserVisit
from afs.control.users import create_user
from afs.filtering import check_filter
from afs.pipeline import Headers, InMessage
from afs.produce import producer_for
from afs.worker import running_pipeline

EVERYTHING = 'def filter(alert):\n    return True\n'
CAP, ALERTS = 3, 8


class CountingPublisher:
    """The pipeline's Publisher over a real producer, counting the messages the broker acknowledged by
    topic; with ``fail_topic``, the first send there fails as if the broker went away."""

    def __init__(self, producer: Any, fail_topic: str | None = None) -> None:
        self.producer, self.fail_topic, self.failed = producer, fail_topic, False
        self.acked: Counter[str] = Counter()

    async def send(self, topic: str, value: bytes, key: bytes | None, headers: Headers) -> Any:
        if topic == self.fail_topic and not self.failed:
            self.failed = True
            raise KafkaConnectionError("injected: the broker went away")
        future = await self.producer.send(topic, value, key=key, headers=headers)

        async def acked() -> None:
            await future
            self.acked[topic] += 1
        return asyncio.ensure_future(acked())


def setup(tmp_path: Path, bootstrap: str) -> tuple[Settings, Database, str]:
    """A service whose one scientist's filter matches every alert, under a cap of CAP per visit."""
    (tmp_path / "filters").mkdir()
    settings = Settings(kafka_bootstrap=bootstrap, archive_dir=tmp_path / "archive",
                        filters_dir=tmp_path / "filters", ppdb_path=tmp_path / "ppdb.duckdb",
                        database_url=f"sqlite:///{tmp_path / 'afs.db'}", jobs_dir=tmp_path / "jobs",
                        sandbox_workers=1, max_matches_per_visit=CAP)
    db = Database(settings.database_url).create_schema()
    with db.transaction() as session:
        found, _ = create_filter(session, create_user(session, "alice"), EVERYTHING, check_filter(EVERYTHING), None)
        activate(session, found, None, max_match_rate=1.0)
    return settings, db, found.id


def alert_log(settings: Settings, count: int) -> list[InMessage]:
    """One visit's alerts as the worker reads them from partition 0 of the alert topic."""
    codec = AlertCodec()
    return [InMessage(codec.encode(a), str(a["diaSourceId"]).encode(), settings.alerts_topic, 0, n)
            for n, a in enumerate(simulate_visit(1, count, seed=3, cutouts=False))]


def counted(db: Database) -> tuple[int | None, tuple[int, int, int, int]]:
    """The owner's per-visit counter, and the filter's (alerts seen, matched, delivered, withheld)."""
    with db.sessions() as session:
        stats = session.scalars(select(FilterStats)).one()
        return session.scalar(select(UserVisit.matched)), (stats.alerts_seen, stats.matched, stats.delivered,
                                                           stats.withheld)


def test_a_retried_batch_spends_the_cap_once_and_publishes_what_was_granted(tmp_path: Path) -> None:
    with EmbeddedBroker(free_port()) as broker:
        settings, db, filter_id = setup(tmp_path, broker.bootstrap)
        messages = alert_log(settings, ALERTS)

        async def run() -> CountingPublisher:
            producer = producer_for(settings)
            await producer.start()
            publisher = CountingPublisher(producer, fail_topic=settings.filter_topic(filter_id))
            try:
                async with running_pipeline(settings, publisher) as (pipeline, _):
                    batch = pipeline.decode(messages)
                    try:
                        await pipeline.complete(batch)
                        raise AssertionError("the injected failure did not surface")
                    except KafkaConnectionError:
                        pass
                    report = await pipeline.complete(batch)
                    assert report.matches[filter_id] == ALERTS and report.withheld[filter_id] == ALERTS - CAP
                return publisher
            finally:
                await producer.stop()

        publisher = asyncio.run(run())
    assert publisher.failed and publisher.acked[settings.filter_topic(filter_id)] == CAP
    assert counted(db) == (ALERTS, (ALERTS, ALERTS, CAP, ALERTS - CAP))  # once, not twice
    db.close()


def test_a_batch_replayed_by_a_new_worker_spends_the_cap_once(tmp_path: Path) -> None:
    """The first worker settles and publishes offsets 0-7 and dies before committing them; the next one
    reads from offset 0 again, in other batches, and two new alerts follow."""
    with EmbeddedBroker(free_port()) as broker:
        settings, db, filter_id = setup(tmp_path, broker.bootstrap)
        messages = alert_log(settings, ALERTS + 2)
        topic = settings.filter_topic(filter_id)

        async def run() -> tuple[CountingPublisher, CountingPublisher]:
            producer = producer_for(settings)
            await producer.start()
            first, second = CountingPublisher(producer), CountingPublisher(producer)
            try:
                async with running_pipeline(settings, first) as (pipeline, _):  # the first worker
                    await pipeline.complete(pipeline.decode(messages[:ALERTS]))
                async with running_pipeline(settings, second) as (pipeline, _):  # a new one: nothing kept
                    replay = await pipeline.complete(pipeline.decode(messages[:5]))
                    assert replay.withheld[filter_id] == 0
                    then = await pipeline.complete(pipeline.decode(messages[5:]))
                    assert then.withheld[filter_id] == 2  # the new alerts 8 and 9 only
                return first, second
            finally:
                await producer.stop()

        first, second = asyncio.run(run())
    assert first.acked[topic] == CAP and second.acked[topic] == CAP  # the grants, published again
    assert counted(db) == (ALERTS + 2, (ALERTS + 2, ALERTS + 2, CAP, ALERTS + 2 - CAP))
    db.close()
