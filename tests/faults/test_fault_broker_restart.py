"""The broker goes away in the middle of a visit and comes back: the same `afs worker` process (never
restarted) is unready while it is gone, reconnects, and catches up; every alert produced before the outage
and after it gets its lightweight packet, its archived packet and its matches.

The embedded broker (Tansu) keeps data in memory only, so the restarted broker starts empty. To stand in
for a persistent Kafka: the worker is frozen (SIGSTOP) mid-visit while everything it published so far is
read from the old broker, the broker is stopped and the worker resumed (so it meets the outage mid-batch);
the new broker gets the topics again and the first visit's messages re-produced in the same order, checked
to land at the same partitions and offsets. The group's committed offsets are lost with the old broker, so
the worker may process some alerts again (identical duplicates, deduped by diaSourceId) but must skip none:
every alert must have its outputs on the old broker or the new one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from afs.alerts.simulate import simulate_visit
from afs.archive import AlertArchive
from afs.broker import EmbeddedBroker, ensure_topics, free_port, service_topics
from afs.filtering import load_filter_dir
from afs.processes import worker_process
from fault_helpers import (Reader, Seen, encode, expected_matches, filters_dir, log_has, produce, readiness,
                           slow_filter, wait_for, worker_settings)

pytestmark = pytest.mark.slow
N_ALERTS = 600


def test_the_worker_reconnects_and_catches_up_after_the_broker_returns(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    url = f"http://127.0.0.1:{metrics_port}"
    filters = filters_dir(tmp_path, {"slow": slow_filter(200_000)})  # ~10 ms per alert
    settings = worker_settings(tmp_path, f"127.0.0.1:{port}", filters, worker_metrics_port=metrics_port)
    first_visit = encode(simulate_visit(1, N_ALERTS, seed=2, cutouts=False))
    second_visit = encode(simulate_visit(2, N_ALERTS, seed=2, cutouts=False))
    all_alerts = simulate_visit(1, N_ALERTS, seed=2, cutouts=False) + simulate_visit(2, N_ALERTS, seed=2, cutouts=False)
    ids = {a["diaSourceId"] for a in all_alerts}
    expected = expected_matches(settings, all_alerts)
    filter_topics = {settings.filter_topic(s.id): settings.output_partitions for s in load_filter_dir(filters)}
    seen = Seen(settings)
    log = tmp_path / "worker.log"
    broker = EmbeddedBroker(port, tmp_path / "broker-1.log").start()
    try:
        with worker_process(settings, log) as worker:
            wait_for(lambda: log_has(log, "worker ready"), "the worker")
            reader = Reader(settings)
            try:
                placed = produce(settings, first_visit)
                seen.read(reader, lambda: len(seen.lightweight) >= N_ALERTS // 6, 180, worker, settle_s=0)
                os.kill(worker.pid, signal.SIGSTOP)
                seen.read(reader, lambda: True, 10, settle_s=3)  # all it published to the old broker
            finally:
                reader.close()
            assert len(seen.lightweight) < N_ALERTS, "the visit was through before the broker went away"
            broker.stop()
            os.kill(worker.pid, signal.SIGCONT)
            wait_for(lambda: readiness(url)[0] == 503 and readiness(url)[1]["checks"]["broker"] != "ok",
                     "the worker to report the broker unreachable", 60)
            time.sleep(5)  # an outage of several seconds: fetches, commits and publishing fail meanwhile

            broker = EmbeddedBroker(port, tmp_path / "broker-2.log").start()
            asyncio.run(ensure_topics(settings, service_topics(settings) | filter_topics))
            assert produce(settings, first_visit) == placed  # the same messages at the same offsets
            produce(settings, second_visit)
            reader = Reader(settings)
            try:
                seen.read(reader, lambda: set(seen.lightweight) >= ids and
                          all(seen.matches(fid) >= want for fid, want in expected.items()), 300, worker, settle_s=2)
            finally:
                reader.close()
            wait_for(lambda: readiness(url)[0] == 200, "the worker to be ready again", 60)
            assert worker.poll() is None  # the same process throughout: it reconnected
    finally:
        broker.stop()

    assert set(seen.lightweight) == ids
    archive = AlertArchive(settings.archive_dir)
    assert all(archive.get(int(key)) == message for key, message in first_visit + second_visit)
    archive.close()
    assert {fid: seen.matches(fid) for fid in expected} == expected
    assert sum(map(len, expected.values())) > 0, "no filter matched: the check would be vacuous"
    for topic, by_id in seen.messages.items():  # duplicates (replayed after the outage) are identical
        assert all(len(set(values)) == 1 for values in by_id.values()), topic
    print(f"\n{sum(seen.lightweight.values()) - len(ids)} lightweight packets published more than once")
