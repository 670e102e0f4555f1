"""A batch retried after its outputs failed (the broker away mid-batch) is settled against the per-visit
caps once: the retry publishes what the first attempt granted, and the owner's cap and the filter's
stats count the batch once. Real broker, sandbox, mirror and control-plane database; only the failure
is injected, into the first send to the filter's topic."""

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
from afs.worker import build_pipeline

EVERYTHING = 'def filter(alert):\n    return True\n'
CAP, ALERTS = 3, 8


class BrokerDropsOnce:
    """The pipeline's Publisher over a real producer; the first send to ``topic`` fails as if the broker
    went away. Counts the messages the broker acknowledged, by topic."""

    def __init__(self, producer: Any, topic: str) -> None:
        self.producer, self.topic, self.failed = producer, topic, False
        self.acked: Counter[str] = Counter()

    async def send(self, topic: str, value: bytes, key: bytes | None, headers: Headers) -> Any:
        if topic == self.topic and not self.failed:
            self.failed = True
            raise KafkaConnectionError("injected: the broker went away")
        future = await self.producer.send(topic, value, key=key, headers=headers)

        async def acked() -> None:
            await future
            self.acked[topic] += 1
        return asyncio.ensure_future(acked())


def test_a_retried_batch_spends_the_cap_once_and_publishes_what_was_granted(tmp_path: Path) -> None:
    with EmbeddedBroker(free_port()) as broker:
        (tmp_path / "filters").mkdir()
        settings = Settings(kafka_bootstrap=broker.bootstrap, archive_dir=tmp_path / "archive",
                            filters_dir=tmp_path / "filters", ppdb_path=tmp_path / "ppdb.duckdb",
                            database_url=f"sqlite:///{tmp_path / 'afs.db'}", jobs_dir=tmp_path / "jobs",
                            sandbox_workers=1, max_matches_per_visit=CAP)
        db = Database(settings.database_url).create_schema()
        with db.transaction() as session:
            found, _ = create_filter(session, create_user(session, "alice"), EVERYTHING,
                                     check_filter(EVERYTHING), None)
            activate(session, found, None, max_match_rate=1.0)
            filter_id = found.id
        codec = AlertCodec()
        alerts = simulate_visit(1, ALERTS, seed=3, cutouts=False)
        messages = [InMessage(codec.encode(a), str(a["diaSourceId"]).encode(), settings.alerts_topic, 0, n)
                    for n, a in enumerate(alerts)]

        async def run() -> BrokerDropsOnce:
            producer = producer_for(settings)
            await producer.start()
            publisher = BrokerDropsOnce(producer, settings.filter_topic(filter_id))
            pipeline, live, owner = await build_pipeline(settings, publisher)
            try:
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
                pipeline.engine.close()
                pipeline.archive.close()
                owner.close()
                live.db.close()
                await producer.stop()

        publisher = asyncio.run(run())
    assert publisher.failed and publisher.acked[settings.filter_topic(filter_id)] == CAP
    with db.sessions() as session:
        assert session.scalar(select(UserVisit.matched)) == ALERTS  # once, not twice
        stats = session.get(FilterStats, filter_id)
        assert (stats.alerts_seen, stats.matched, stats.delivered, stats.withheld) == (ALERTS, ALERTS, CAP,
                                                                                       ALERTS - CAP)
    db.close()
