"""The broker stops answering the worker's producer mid-visit without closing the connection (a hung broker,
a half-dead network path): the produce request times out after AFS_PRODUCE_TIMEOUT_S, is sent again on a
new connection, and the visit's outputs all arrive. With faust's default (20 minutes) the stream stalled
silently: no error, no output, until a test's own timeout. While a batch is stuck longer than
AFS_BATCH_STUCK_AFTER_S, the worker says so in its log and is not ready.

A TCP proxy in front of the broker (which advertises the proxy's port, so every connection goes through it)
swallows the first Produce request from the worker and everything after it on that connection, both ways.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from pathlib import Path

import pytest

from afs.alerts.simulate import simulate_visit
from afs.broker import EmbeddedBroker, free_port
from afs.processes import worker_process
from fault_helpers import (Reader, Seen, encode, expected_matches, filters_dir, log_has, produce, readiness, wait_for,
                           worker_settings)

pytestmark = pytest.mark.slow
N_ALERTS = 200
PRODUCE = 0  # Kafka API key
FAUST_CLIENT_ID = b"faust-"  # faust's producer and consumer; the test's own clients are aiokafka's


class BlackHoleProxy:
    """Forwards TCP connections from ``port`` to ``upstream``; once armed, the first connection to carry a
    Produce request from a faust client goes silent: nothing more is forwarded on it, either way, and it stays
    open."""

    def __init__(self, port: int, upstream: int) -> None:
        self.port, self.upstream = port, upstream
        self.armed = threading.Event()
        self.sprung = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> BlackHoleProxy:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(asyncio.start_server(self._connection, "127.0.0.1", self.port),
                                         self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _connection(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        broker_r, broker_w = await asyncio.open_connection("127.0.0.1", self.upstream)
        silent = asyncio.Event()

        async def requests() -> None:
            while True:
                size = await client_r.readexactly(4)
                frame = await client_r.readexactly(struct.unpack(">i", size)[0])
                api_key, = struct.unpack_from(">h", frame)
                id_length, = struct.unpack_from(">h", frame, 8)
                client_id = frame[10:10 + max(id_length, 0)]
                if (self.armed.is_set() and not self.sprung.is_set() and api_key == PRODUCE
                        and client_id.startswith(FAUST_CLIENT_ID)):
                    self.sprung.set()
                    silent.set()
                if not silent.is_set():
                    broker_w.write(size + frame)
                    await broker_w.drain()

        async def responses() -> None:
            while chunk := await broker_r.read(65536):
                if not silent.is_set():
                    client_w.write(chunk)
                    await client_w.drain()

        try:
            await asyncio.gather(requests(), responses())
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            client_w.close()
            broker_w.close()


def test_a_produce_request_the_broker_never_answers_is_sent_again(tmp_path: Path) -> None:
    broker_port, proxy_port = free_port(), free_port()
    settings = worker_settings(tmp_path, f"127.0.0.1:{proxy_port}", filters_dir(tmp_path), produce_timeout_s=3.0)
    alerts = simulate_visit(1, N_ALERTS, seed=5, cutouts=False)
    ids = {a["diaSourceId"] for a in alerts}
    expected = expected_matches(settings, alerts)
    seen = Seen(settings)
    log = tmp_path / "worker.log"
    with BlackHoleProxy(proxy_port, broker_port) as proxy, \
            EmbeddedBroker(broker_port, tmp_path / "broker.log", advertised_port=proxy_port), \
            worker_process(settings, log) as worker:
        wait_for(lambda: log_has(log, "worker ready"), "the worker")
        proxy.armed.set()
        produce(settings, encode(alerts))
        reader = Reader(settings)
        try:
            seen.read(reader, lambda: set(seen.lightweight) >= ids and
                      all(seen.matches(fid) >= want for fid, want in expected.items()), 90, worker)
        finally:
            reader.close()
        assert proxy.sprung.is_set(), "no produce request was swallowed: the test proved nothing"
        assert worker.poll() is None

    assert set(seen.lightweight) == ids
    assert {fid: seen.matches(fid) for fid in expected} == expected
    assert sum(map(len, expected.values())) > 0, "no filter matched: the check would be vacuous"


def test_a_batch_stuck_on_unanswered_outputs_makes_the_worker_unready(tmp_path: Path) -> None:
    broker_port, proxy_port, metrics_port = free_port(), free_port(), free_port()
    settings = worker_settings(tmp_path, f"127.0.0.1:{proxy_port}", filters_dir(tmp_path), produce_timeout_s=600.0,
                               batch_stuck_after_s=2.0, worker_metrics_port=metrics_port)
    url = f"http://127.0.0.1:{metrics_port}"
    log = tmp_path / "worker.log"
    with BlackHoleProxy(proxy_port, broker_port) as proxy, \
            EmbeddedBroker(broker_port, tmp_path / "broker.log", advertised_port=proxy_port), \
            worker_process(settings, log):
        wait_for(lambda: log_has(log, "worker ready"), "the worker")
        wait_for(lambda: readiness(url)[0] == 200, "the worker to be ready", 60)
        proxy.armed.set()
        produce(settings, encode(simulate_visit(1, 20, seed=5, cutouts=False)))
        wait_for(lambda: "still not complete" in readiness(url)[1].get("checks", {}).get("batches", ""),
                 "/readyz to report the stuck batch", 60)
        assert proxy.sprung.is_set()
        assert readiness(url)[0] == 503
        assert log_has(log, "is still not complete after")
