"""Subscribe to an AFS filter topic with confluent-kafka and print each matched alert.

Needs only confluent-kafka, fastavro and lsst-alert-packet (pip install confluent-kafka lsst-alert-packet):

    python examples/subscribe.py --bootstrap 127.0.0.1:19092 --topic afs-filter-high_snr --group me-test

Each message is a full Rubin alert in Confluent framing; the schema comes from the id in its header.
"""

from __future__ import annotations

import argparse
import io
import struct
from pathlib import Path

import fastavro
from confluent_kafka import Consumer
from lsst.alert.packet.schema import Schema, get_schema_root


def schema_for(schema_id: int) -> dict:
    major, minor = divmod(schema_id, 100)
    path = Path(get_schema_root()) / str(major) / str(minor) / f"lsst.v{major}_{minor}.alert.avsc"
    return fastavro.parse_schema(Schema.from_file(str(path)).definition)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True, help="your consumer group (keeps your position)")
    parser.add_argument("--max-messages", type=int, default=None, help="stop after this many alerts")
    args = parser.parse_args()

    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([args.topic])
    schemas: dict[int, dict] = {}
    seen = 0
    try:
        while args.max_messages is None or seen < args.max_messages:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            magic, schema_id = struct.unpack_from(">bI", message.value())
            if schema_id not in schemas:
                schemas[schema_id] = schema_for(schema_id)
            alert = fastavro.schemaless_reader(io.BytesIO(message.value()[5:]), schemas[schema_id], None)
            source = alert["diaSource"]
            headers = dict(message.headers() or [])
            print(f"{alert['diaSourceId']}  band={source['band']}  ra={source['ra']:.5f} dec={source['dec']:.5f}  "
                  f"psfFlux={source['psfFlux']} nJy  score={headers.get('afs-score', b'').decode()}", flush=True)
            seen += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
