"""Shared parts of the fault tests: settings for a real worker against the embedded broker, producing a
visit while recording where each alert landed, reading every output message as a subscriber would, and
what the filters should match (run directly in the sandbox). A plain module, not a conftest: the test
directories have no packages, so `from conftest import` could find another directory's conftest."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer

from afs.alerts.codec import AlertCodec
from afs.config import Settings
from afs.filtering import FilterEngine, load_filter_dir, sandbox_limits
from afs.outputs import output_consumer
from afs.produce import producer_for

REPO = Path(__file__).resolve().parents[2]


def slow_filter(iterations: int = 60_000) -> str:
    """A filter that burns CPU on every alert (60,000 iterations: ~3 ms here) and matches nothing: a visit
    then lasts long enough to interrupt it."""
    return f'''"""Burns CPU on every alert and matches nothing."""


def filter(alert):
    total = 0
    for i in range({iterations}):
        total += i
    return total < 0
'''


def filters_dir(tmp: Path, extra: dict[str, str] | None = None) -> Path:
    """The predefined filters plus ``extra`` (file stem -> source), as the worker's AFS_FILTERS_DIR."""
    directory = tmp / "filters"
    shutil.copytree(REPO / "filters", directory)
    for stem, source in (extra or {}).items():
        (directory / f"{stem}.py").write_text(source)
    return directory


def worker_settings(tmp: Path, bootstrap: str, filters: Path, **overrides: object) -> Settings:
    values: dict[str, object] = dict(
        kafka_bootstrap=bootstrap, archive_dir=tmp / "archive", filters_dir=filters, ppdb_path=tmp / "ppdb.duckdb",
        database_url=f"sqlite:///{tmp / 'afs.db'}", jobs_dir=tmp / "jobs", max_alert_bytes=2_000_000,
        batch_size=50, batch_window_s=0.2, shutdown_grace_s=5, sandbox_workers=1,
        max_matches_per_visit=0)  # no per-visit cap: every match is published, so every match can be checked
    return Settings(**(values | overrides))


def encode(alerts: list[dict]) -> list[tuple[bytes, bytes]]:
    codec = AlertCodec()
    return [(str(a["diaSourceId"]).encode(), codec.encode(a)) for a in alerts]


def produce(settings: Settings, messages: list[tuple[bytes, bytes]]) -> dict[int, tuple[int, int]]:
    """Send and wait for every ack; diaSourceId -> (partition, offset) where the broker stored it."""
    async def send() -> dict[int, tuple[int, int]]:
        producer = producer_for(settings)
        await producer.start()
        try:
            futures = [(key, await producer.send(settings.alerts_topic, value, key=key)) for key, value in messages]
            return {int(key): ((m := await future).partition, m.offset) for key, future in futures}
        finally:
            await producer.stop()

    return asyncio.run(send())


def expected_matches(settings: Settings, alerts: list[dict], only: set[str] | None = None) -> dict[str, set[int]]:
    """filter id -> the diaSourceIds it matches, running the filters directly in the sandbox."""
    specs = [s for s in load_filter_dir(settings.filters_dir) if only is None or s.id in only]
    engine = FilterEngine(sandbox_limits(settings))
    try:
        engine.activate(specs)
        result = engine.run(alerts)
    finally:
        engine.close()
    assert result is not None
    return {fid: {alerts[i]["diaSourceId"] for i, _ in outcome.matches} for fid, outcome in result.outcomes.items()}


@dataclass
class Seen:
    """Every output message read so far: per topic, diaSourceId -> the values it was published with."""

    settings: Settings
    messages: defaultdict[str, defaultdict[int, list[bytes]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    dead_letters: list[str] = field(default_factory=list)

    @property
    def lightweight(self) -> Counter[int]:
        return Counter({sid: len(values) for sid, values in self.messages[self.settings.lightweight_topic].items()})

    def matches(self, filter_id: str) -> set[int]:
        return set(self.messages[self.settings.filter_topic(filter_id)])

    def add(self, topic: str, records: list) -> None:  # noqa: ANN001 (aiokafka ConsumerRecords)
        for record in records:
            if topic == self.settings.dead_letter_topic:
                self.dead_letters.append(dict(record.headers)["afs-reason"].decode())
            else:
                self.messages[topic][int(record.key)].append(record.value)

    def read(self, reader: Reader, until: Callable[[], bool], timeout_s: float,
             worker: subprocess.Popen[bytes] | None = None, settle_s: float = 2.0) -> None:
        """Read until ``until()`` holds (then ``settle_s`` more for stragglers); fails after ``timeout_s``."""
        async def loop() -> None:
            deadline = time.monotonic() + timeout_s
            while not until():
                assert worker is None or worker.poll() is None, f"the worker exited with {worker.returncode}"
                assert time.monotonic() < deadline, f"outputs incomplete after {timeout_s} s"
                for tp, records in (await reader.consumer.getmany(timeout_ms=200)).items():
                    self.add(tp.topic, records)
            settle_until = time.monotonic() + settle_s
            while time.monotonic() < settle_until:
                for tp, records in (await reader.consumer.getmany(timeout_ms=100)).items():
                    self.add(tp.topic, records)

        reader.loop.run_until_complete(loop())


class Reader:
    """An output consumer (afs.outputs.output_consumer: every output topic, from the start) on its own loop,
    so synchronous tests can read a little, act on the worker or the broker, and read on."""

    def __init__(self, settings: Settings, topics: list[str] | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.consumer: AIOKafkaConsumer = self.loop.run_until_complete(output_consumer(settings, topics))

    def close(self) -> None:
        self.loop.run_until_complete(self.consumer.stop())
        self.loop.close()


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def log_has(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text(errors="replace")


def readiness(url: str) -> tuple[int, dict]:
    """(status code, body) of a worker's /readyz; (0, {}) while it does not answer."""
    try:
        response = httpx.get(f"{url}/readyz", timeout=5)
    except httpx.HTTPError:
        return 0, {}
    return response.status_code, response.json()
