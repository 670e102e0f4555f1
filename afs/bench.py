"""`afs bench visit`: one simulated visit, per-record fastavro decoding alone vs the whole worker path.

Both figures come from the same run on the same alerts, so their ratio means something on a
shared, noisy machine where absolute seconds do not.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
import time
from pathlib import Path

import fastavro

from afs.alerts.codec import AlertCodec, split_header
from afs.broker import EmbeddedBroker, ensure_topics, free_port, service_topics
from afs.config import Settings
from afs.filtering import load_filter_dir
from afs.outputs import Outputs, collect, output_consumer
from afs.processes import worker_process
from afs.produce import produce_messages, producer_for


def decode_rate(codec: AlertCodec, messages: list[bytes]) -> float:
    """Alerts/s for plain per-record fastavro decoding of the bodies: the baseline."""
    started = time.perf_counter()
    for message in messages:
        sid, body = split_header(message, codec.max_bytes)
        fastavro.schemaless_reader(io.BytesIO(body), codec.store.parsed(sid), None)
    return len(messages) / (time.perf_counter() - started)


async def worker_path(settings: Settings, messages: list[tuple[bytes, bytes]], warmup: tuple[bytes, bytes],
                      log_path: Path) -> tuple[float, Outputs]:
    """Seconds from the first produce to the last output of the visit, through a real worker process."""
    topics = service_topics(settings) | {settings.filter_topic(s.id): settings.output_partitions
                                         for s in load_filter_dir(settings.filters_dir)}
    await ensure_topics(settings, topics)
    producer = producer_for(settings)
    await producer.start()
    consumer = await output_consumer(settings, [t for t in topics if t != settings.alerts_topic])
    try:
        with worker_process(settings, log_path) as worker:
            await produce_messages(producer, settings.alerts_topic, [warmup])
            outputs = Outputs()
            await collect(consumer, settings, outputs, 1, worker, timeout_s=120)  # worker started and joined
            started = time.monotonic()
            await produce_messages(producer, settings.alerts_topic, messages)
            await collect(consumer, settings, outputs, 1 + len(messages), worker, timeout_s=900)
            return outputs.last_seen - started, outputs
    finally:
        await producer.stop()
        await consumer.stop()


def bench_visit(settings: Settings, n_alerts: int, seed: int) -> None:
    from afs.alerts.simulate import simulate_visit

    codec = AlertCodec(max_bytes=settings.max_alert_bytes)
    started = time.perf_counter()
    alerts = simulate_visit(1, n_alerts, seed)
    messages = [(str(a["diaSourceId"]).encode(), codec.encode(a)) for a in alerts]
    warmup_alert = simulate_visit(2, 1, seed + 1)[0]
    warmup = (str(warmup_alert["diaSourceId"]).encode(), codec.encode(warmup_alert))
    del alerts
    size = sum(len(m) for _, m in messages)
    print(f"simulated {n_alerts} alerts ({size / 1e6:.0f} MB, {size / n_alerts / 1e3:.0f} kB mean) "
          f"in {time.perf_counter() - started:.1f} s")

    baseline = decode_rate(codec, [m for _, m in messages])
    with tempfile.TemporaryDirectory(prefix="afs-bench-") as tmp, EmbeddedBroker(free_port()) as broker:
        run_settings = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap,
                                                   "archive_dir": Path(tmp) / "archive"})
        seconds, outputs = asyncio.run(worker_path(run_settings, messages, warmup, Path(tmp) / "worker.log"))
    rate = n_alerts / seconds
    matched = sum(len(v) for v in outputs.matches.values())
    print(f"{'per-record fastavro decode alone (1 core)':46s} {baseline:9,.0f} alerts/s")
    print(f"{'whole worker path (broker->worker->outputs)':46s} {rate:9,.0f} alerts/s  "
          f"({seconds:.1f} s for the visit, {len(load_filter_dir(settings.filters_dir))} filters, {matched} matches)")
    print(f"{'ratio worker path / decode alone':46s} {rate / baseline:9.2f}")
