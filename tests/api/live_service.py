"""The whole service running for end-to-end tests through the API (tests/api/test_live.py, tests/web):
the embedded broker, real `afs api` and `afs worker` subprocesses, users bootstrapped with `afs users
create`, and simulated visits produced to the alert topic. A plain module, imported as
``tests.api.live_service`` (fixtures too: import ``broker`` into the test module that uses it)."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from afs.alerts.codec import AlertCodec
from afs.broker import EmbeddedBroker, ensure_topics, free_port, service_topics
from afs.config import Settings
from afs.processes import afs_process
from afs.produce import produce_messages, producer_for
from tests.api.conftest import make_settings

T = TypeVar("T")


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(free_port()) as running:
        yield running


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 60.0) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout_s, f"timed out waiting for {what}"
        time.sleep(0.2)
    return time.monotonic() - started


def log_has(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text(errors="replace")


def api_up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def live_settings(database_url: str, tmp: Path, broker: EmbeddedBroker, **overrides: object) -> Settings:
    """Settings for a service of its own: topics and consumer group named for this run, an API port,
    no predefined filters (only what the test uploads runs), quick reloads and small batches."""
    (tmp / "filters").mkdir(exist_ok=True)
    port, run = free_port(), secrets.token_hex(3)
    values: dict[str, object] = dict(
        kafka_bootstrap=broker.bootstrap, filters_dir=tmp / "filters", filter_reload_s=1.0, batch_size=100,
        batch_window_s=0.2, max_alert_bytes=2_000_000, alerts_topic=f"alerts-{run}",
        consumer_group=f"worker-{run}", api_port=port, api_url=f"http://127.0.0.1:{port}",
        public_base_url=f"http://127.0.0.1:{port}")
    return make_settings(database_url, tmp, **(values | overrides))


def create_user(settings: Settings, *args: str) -> str:
    """`afs users create ARGS...`: the new user's token."""
    return subprocess.run([sys.executable, "-m", "afs.cli", "users", "create", *args],
                          env=os.environ | settings.as_env(), capture_output=True, text=True, check=True).stdout.strip()


@contextmanager
def serving(settings: Settings, tmp: Path) -> Iterator[Path]:
    """`afs api` and `afs worker` running and ready; yields the worker's log."""
    in_a_thread(ensure_topics(settings, service_topics(settings)))
    worker_log = tmp / "worker.log"
    with afs_process(settings, tmp / "api.log", "api"), afs_process(settings, worker_log, "worker"):
        wait_for(lambda: api_up(settings.api_url), "the API")
        wait_for(lambda: log_has(worker_log, "worker ready"), "the worker")
        yield worker_log


def in_a_thread(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` in a thread of its own, so a caller whose thread has an event loop already
    (Playwright's sync API keeps one) can run it too."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


def produce_alerts(settings: Settings, alerts: list[dict]) -> None:
    """Produce the alerts to the alert topic."""
    codec = AlertCodec(max_bytes=settings.max_alert_bytes)

    async def send() -> None:
        producer = producer_for(settings)
        await producer.start()
        try:
            await produce_messages(producer, settings.alerts_topic,
                                   [(str(a["diaSourceId"]).encode(), codec.encode(a)) for a in alerts])
        finally:
            await producer.stop()

    in_a_thread(send())
