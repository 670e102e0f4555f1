"""The stream worker as an operator sees it: a real `afs worker` process against the embedded broker,
watched only through its metrics port (AFS_WORKER_METRICS_PORT) and its JSON log (AFS_LOG_FORMAT=json).

/metrics must agree with what the worker published (alerts, dead letters by reason, matches per filter,
read back from the output topics), the consumer lag must come down to 0 on every partition once the visit
is committed, /readyz must be ready with every check "ok" and turn 503 naming the broker when the broker
goes away while /healthz stays 200, and dead-letter log lines must carry their reason and origin as fields.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from afs.alerts.codec import AlertCodec
from afs.alerts.malformed import KINDS, corrupt
from afs.alerts.simulate import simulate_visit
from afs.broker import EmbeddedBroker, free_port
from afs.config import Settings
from afs.outputs import Outputs, through_worker
from afs.processes import worker_process

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
N_ALERTS = 200


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page: (name, sorted labels) -> value."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def samples(metrics: dict, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (n, labels), value in metrics.items() if n == name}


def wait_for(predicate, what: str, timeout_s: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


@dataclass
class Observed:
    settings: Settings
    url: str
    good: int
    bad: Counter[str]
    outputs: Outputs
    metrics: dict
    ready: httpx.Response
    unready: httpx.Response
    live_without_broker: httpx.Response
    log: Path


def lag_settled(url: str, partitions: int) -> bool:
    lag = samples(scrape(url), "afs_worker_consumer_lag")
    return len(lag) == partitions and not any(lag.values())


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    tmp = tmp_path_factory.mktemp("ops")
    broker = EmbeddedBroker(free_port()).start()
    try:
        port = free_port()
        settings = Settings(kafka_bootstrap=broker.bootstrap, archive_dir=tmp / "archive", filters_dir=REPO / "filters",
                            ppdb_path=tmp / "ppdb.duckdb", database_url=f"sqlite:///{tmp / 'afs.db'}",
                            max_alert_bytes=2_000_000, batch_size=100, batch_window_s=0.2, worker_metrics_port=port,
                            log_format="json", shutdown_grace_s=3)
        url = f"http://127.0.0.1:{port}"
        codec = AlertCodec(max_bytes=settings.max_alert_bytes)
        rng = np.random.default_rng(5)
        good = [(str(a["diaSourceId"]).encode(), codec.encode(a)) for a in simulate_visit(1, N_ALERTS, seed=2)]
        messages = list(good)
        for i, kind in enumerate(KINDS):  # one of each broken kind, spread through the visit
            messages.insert(i * 25 + 3, (f"bad-{kind}".encode(), corrupt(good[i][1], kind,
                                                                             settings.max_alert_bytes, rng)))
        log = tmp / "worker.log"

        with worker_process(settings, log) as worker:
            outputs = asyncio.run(through_worker(settings, messages, worker))
            wait_for(lambda: lag_settled(url, settings.alerts_partitions), "the lag to reach 0 on every partition")
            metrics = scrape(url)
            wait_for(lambda: httpx.get(f"{url}/readyz", timeout=5).status_code == 200, "readiness", 30)
            ready = httpx.get(f"{url}/readyz", timeout=5)
            broker.stop()
            wait_for(lambda: httpx.get(f"{url}/readyz", timeout=5).status_code == 503, "unreadiness", 30)
            unready = httpx.get(f"{url}/readyz", timeout=5)
            live_without_broker = httpx.get(f"{url}/healthz", timeout=5)
        yield Observed(settings, url, N_ALERTS, Counter(KINDS), outputs, metrics, ready, unready,
                       live_without_broker, log)
    finally:
        broker.stop()


def test_alert_and_dead_letter_counters_match_what_was_published(observed: Observed) -> None:
    assert sum(observed.outputs.lightweight.values()) == observed.good
    assert samples(observed.metrics, "afs_worker_alerts_total") == {(): observed.good}
    dead = {dict(labels)["reason"]: value for labels, value in
            samples(observed.metrics, "afs_worker_dead_letters_total").items()}
    assert dead == Counter(reason for _, reason in observed.outputs.dead_letters) == observed.bad
    assert samples(observed.metrics, "afs_worker_alerts_per_second")[()] > 0


def test_per_filter_matches_match_the_filter_topics(observed: Observed) -> None:
    matches = {dict(labels)["filter_id"]: value for labels, value in
               samples(observed.metrics, "afs_filter_matches_total").items()}
    published = {fid: len(ids) for fid, ids in observed.outputs.matches.items()}
    assert sum(published.values()) > 0, "no filter matched: the comparison would be vacuous"
    assert {fid: n for fid, n in matches.items() if n} == published
    cpu = samples(observed.metrics, "afs_filter_cpu_seconds_total")
    assert {dict(labels)["filter_id"] for labels in cpu} == set(matches) and all(v > 0 for v in cpu.values())
    assert {dict(labels)["kind"] for labels in samples(observed.metrics, "afs_filter_errors_total")} == \
        {"error", "timeout", "kill"}


def test_the_lag_is_reported_per_partition_and_reaches_zero(observed: Observed) -> None:
    lag = samples(observed.metrics, "afs_worker_consumer_lag")
    assert {dict(labels)["partition"] for labels in lag} == {str(p) for p in range(observed.settings.alerts_partitions)}
    assert set(lag.values()) == {0}


def test_readiness_checks_every_dependency(observed: Observed) -> None:
    assert observed.ready.json() == {"status": "ready", "checks": {
        "broker": "ok", "database": "ok", "ppdb": "ok", "sandbox": "ok", "batches": "ok"}}


def test_without_the_broker_it_is_alive_but_not_ready_and_says_why(observed: Observed) -> None:
    body = observed.unready.json()
    assert body["status"] == "not ready" and body["checks"]["broker"].startswith("unreachable")
    assert observed.live_without_broker.status_code == 200


def test_json_logs_carry_the_dead_letter_reason_and_origin(observed: Observed) -> None:
    entries = []
    for line in observed.log.read_text().splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
    assert any(e["message"].startswith("worker ready") for e in entries)
    dead = [e for e in entries if e["message"].startswith("dead-lettered")]
    assert sorted(e["reason"] for e in dead) == sorted(observed.bad)
    assert all(e["topic"] == observed.settings.alerts_topic and e["level"] == "WARNING" and
               isinstance(e["offset"], int) for e in dead)
