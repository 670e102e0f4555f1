"""`afs demo`: the whole service on embedded defaults, watched from the outside.

Starts the embedded broker and a real `afs worker` process, produces simulated visits, and reads
the service's output topics with an independent consumer to print what came out. Everything it
starts is stopped at the end or on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from afs.alerts import lightweight
from afs.alerts.codec import AlertCodec
from afs.broker import EmbeddedBroker
from afs.config import Settings
from afs.filtering import load_filter_dir
from afs.processes import worker_process
from afs.outputs import Outputs, collect, output_consumer
from afs.produce import ProduceReport, encode_visit, produce_messages, producer_for


async def _run(settings: Settings, visits: int, alerts_per_visit: int, seed: int, malformed_rate: float,
               worker: subprocess.Popen[bytes]) -> None:
    from afs.alerts.simulate import simulate_visits

    filter_ids = [spec.id for spec in load_filter_dir(settings.filters_dir)]
    consumer = await output_consumer(settings)
    producer = producer_for(settings)
    await producer.start()
    codec = AlertCodec(max_bytes=settings.max_alert_bytes)
    rng = np.random.default_rng(seed + 1)
    produced, outputs = ProduceReport(), Outputs()
    try:
        for n, (visit, alerts) in enumerate(simulate_visits(visits, alerts_per_visit, seed)):
            started = time.monotonic()
            await produce_messages(producer, settings.alerts_topic,
                                   encode_visit(codec, alerts, malformed_rate, rng, produced))
            await collect(consumer, settings, outputs, produced.alerts + sum(produced.malformed.values()), worker)
            elapsed = time.monotonic() - started
            print(f"visit {visit}: {len(alerts)} in, {sum(outputs.lightweight.values())} lightweight and "
                  f"{len(outputs.dead_letters)} dead-lettered so far; {len(alerts) / elapsed:,.0f} alerts/s"
                  f"{' (includes worker start-up)' if n == 0 else ''}",
                  flush=True)
        await collect(consumer, settings, outputs, 0, settle_s=1.0)  # matches still in flight
    finally:
        await producer.stop()
        await consumer.stop()
    print_summary(produced, outputs, filter_ids)


def print_summary(produced: ProduceReport, outputs: Outputs, filter_ids: list[str]) -> None:
    total = produced.alerts + sum(produced.malformed.values())
    print(f"\nalerts in: {total} ({produced.bytes / 1e6:.1f} MB), of which malformed: "
          f"{dict(produced.malformed) or 0}")
    print(f"lightweight packets out: {sum(outputs.lightweight.values())}")
    reasons = Counter(reason for _, reason in outputs.dead_letters)
    print(f"dead-lettered: {len(outputs.dead_letters)} {dict(reasons) or ''}")
    print("matches per filter:")
    for fid in filter_ids:
        n = len(outputs.matches[fid])
        print(f"  {fid:32s} {n:6d}  ({n / max(produced.alerts, 1):.1%})")
    if outputs.sample_packet:
        packet = outputs.sample_packet
        print(f"one lightweight packet ({len(lightweight.encode(packet))} bytes):")
        print("  " + json.dumps(packet))


def run_demo(settings: Settings, visits: int, alerts_per_visit: int, seed: int, malformed_rate: float) -> int:
    workdir = Path("var/demo")
    workdir.mkdir(parents=True, exist_ok=True)
    with EmbeddedBroker(settings.broker_port, log_file=workdir / "broker.log") as broker:
        settings = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap,
                                               "archive_dir": workdir / "archive",
                                               "ppdb_path": workdir / "ppdb.duckdb",
                                               "database_url": f"sqlite:///{workdir}/afs.db"})
        print(f"embedded broker on {broker.bootstrap}; starting the worker (log: {workdir / 'worker.log'})",
              flush=True)
        with worker_process(settings, workdir / "worker.log") as worker:
            try:
                asyncio.run(_run(settings, visits, alerts_per_visit, seed, malformed_rate, worker))
            except KeyboardInterrupt:
                print("\ninterrupted; shutting down", file=sys.stderr)
                return 130
            except (RuntimeError, TimeoutError) as exc:
                print(f"demo failed: {exc}; see {workdir / 'worker.log'}", file=sys.stderr)
                return 1
    print(f"\narchive: {settings.archive_dir}; everything stopped.")
    return 0
