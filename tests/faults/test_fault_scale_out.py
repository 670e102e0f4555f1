"""Scale-out: two real `afs worker` processes in one consumer group share the alert topic's partitions
(each reports, on its own metrics port, the lag of exactly the partitions it holds; together all of them,
none twice); the second uses the first one's PPDB mirror (the first on a host owns the file and serves it
on a Unix socket); a filter activated through the API (a real uvicorn) reaches both and runs in both; the
filter's topic holds exactly its matches. Prints throughput with two workers against one on the same visit
(a figure, not an assertion: this machine has 2 shared cores)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from afs.alerts.simulate import simulate_visit
from afs.bench import partitions_held
from afs.broker import EmbeddedBroker, ensure_topics, free_port, service_topics
from afs.config import Settings
from afs.control.db import Database
from afs.processes import worker_process
from afs.quotas.bench import new_user, serving
from fault_helpers import REPO, Reader, Seen, encode, log_has, produce, wait_for, worker_settings

pytestmark = pytest.mark.slow
MODULUS = 25  # the uploaded filter matches 4% of alerts: under the 5% activation gate
N_ALERTS = 3000
FILTER = f'"""Every {MODULUS}th source."""\ndef filter(alert):\n    return alert["diaSourceId"] % {MODULUS} == 0\n'


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def filter_matches(port: int, filter_id: str) -> float:
    return sum(v for (name, labels), v in scrape(port).items()
               if name == "afs_filter_matches_total" and dict(labels)["filter_id"] == filter_id)


@contextmanager
def workers(settings: Settings, tmp: Path, ports: list[int]) -> Iterator[list[Path]]:
    """Workers one after the other (so the first owns the PPDB mirror), each with its metrics port."""
    logs = [tmp / f"worker-{port}.log" for port in ports]
    with ExitStack() as stack:
        for port, log in zip(ports, logs):
            stack.enter_context(worker_process(settings.model_copy(update={"worker_metrics_port": port}), log))
            wait_for(lambda: log_has(log, "worker ready"), f"worker on {port}")
        yield logs


def balance(settings: Settings, reader: Reader, seen: Seen, ports: list[int]) -> None:
    """Warm-up visits until every worker reports lag for its own share of the partitions, together all of
    them, none twice: the group has settled and every worker has processed and committed."""
    everything = set(range(settings.alerts_partitions))
    for visit in range(100, 130):
        messages = encode(simulate_visit(visit, 80, seed=2, cutouts=False))
        produce(settings, messages)
        keys = {int(key) for key, _ in messages}
        seen.read(reader, lambda: set(seen.lightweight) >= keys, 120, settle_s=0)
        time.sleep(1.5)  # a commit interval
        held = [partitions_held(f"http://127.0.0.1:{port}/metrics") for port in ports]
        if all(held) and set().union(*held) == everything and sum(map(len, held)) == len(everything):
            return
    raise AssertionError(f"the group did not settle: {held}")


def measure(settings: Settings, reader: Reader, seen: Seen, alerts: list[dict]) -> float:
    """Alerts per second from the first produce to the last lightweight packet read."""
    ids = {a["diaSourceId"] for a in alerts}
    started = time.monotonic()
    produce(settings, encode(alerts))
    seen.read(reader, lambda: set(seen.lightweight) >= ids, 300, settle_s=0)
    return len(alerts) / (time.monotonic() - started)


def test_two_workers_share_the_partitions_and_both_run_a_filter_activated_through_the_api(tmp_path: Path) -> None:
    visit = simulate_visit(1, N_ALERTS, seed=2, cutouts=False)
    with EmbeddedBroker(free_port()) as broker:
        base = worker_settings(tmp_path, broker.bootstrap, REPO / "filters", filter_reload_s=1.0, dry_run_alerts=200)
        db = Database(base.database_url).create_schema()
        _, token = new_user(db, "alice")
        db.close()
        rates: dict[int, float] = {}
        with serving(base) as api, httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"},
                                                timeout=120) as http:
            for n_workers in (2, 1):  # two first: the filter is activated while both run
                case = tmp_path / f"{n_workers}-workers"
                case.mkdir()
                settings = base.model_copy(update={
                    "alerts_topic": f"alerts-{n_workers}", "consumer_group": f"afs-{n_workers}",
                    "archive_dir": case / "archive", "ppdb_path": case / "ppdb.duckdb"})
                ports = [free_port() for _ in range(n_workers)]
                with workers(settings, case, ports) as logs:
                    if n_workers == 2:
                        uploaded = http.post("/v1/filters", json={"source": FILTER, "name": "every 25th"})
                        assert uploaded.status_code == 201, uploaded.text
                        fid = uploaded.json()["filter"]["id"]
                        assert http.post(f"/v1/filters/{fid}/activate", json={}).status_code == 200
                        wait_for(lambda: all(log_has(log, f"{fid}@v1") for log in logs), "both workers to load it")
                        assert log_has(logs[1], "is owned by another process")  # the second uses the first's mirror
                    topics = [settings.lightweight_topic, settings.dead_letter_topic, settings.filter_topic(fid)]
                    asyncio.run(ensure_topics(settings, service_topics(settings) |
                                              {settings.filter_topic(fid): settings.output_partitions}))
                    seen, reader = Seen(settings), Reader(settings, topics)
                    try:
                        balance(settings, reader, seen, ports)
                        before = [filter_matches(port, fid) for port in ports]
                        seen.messages.clear()
                        rates[n_workers] = measure(settings, reader, seen, visit)
                        want = {a["diaSourceId"] for a in visit if a["diaSourceId"] % MODULUS == 0}
                        seen.read(reader, lambda: seen.matches(fid) >= want, 60, settle_s=1)
                    finally:
                        reader.close()
                    assert seen.matches(fid) == want
                    ran = [filter_matches(port, fid) - b for port, b in zip(ports, before)]
                    assert all(ran) and sum(ran) == len(want), ran  # both ran it, between them once per match
    print(f"\n{N_ALERTS} alerts, predefined filters + 1 uploaded: one worker {rates[1]:,.0f} alerts/s, "
          f"two workers {rates[2]:,.0f} alerts/s (x{rates[2] / rates[1]:.2f}) on this machine's shared cores")
