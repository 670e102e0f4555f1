"""The lightweight packet and the archive the packet points at."""

from __future__ import annotations

import json
from pathlib import Path

from afs.alerts import lightweight
from afs.alerts.codec import AlertCodec
from afs.alerts.schemas import sample_alert_path
from afs.archive import AlertArchive

CODEC = AlertCodec()


def test_lightweight_packet_is_small_and_points_at_the_full_alert() -> None:
    decoded = CODEC.decode(CODEC.encode(json.loads(sample_alert_path(1101).read_text()), 1101))
    packet = lightweight.build(decoded.record, decoded.dia_source_id, 1101, "https://afs.example.org/")
    message = lightweight.encode(packet)
    assert len(message) < 250
    back = lightweight.decode(message)
    assert back["alertUri"] == f"https://afs.example.org/v1/alerts/{decoded.dia_source_id}"
    assert back["diaSourceId"] == decoded.dia_source_id and back["schemaId"] == 1101
    assert back["nPrvDiaSources"] == len(decoded.record["prvDiaSources"] or [])
    assert back["band"] == decoded.record["diaSource"]["band"]


def test_lightweight_packet_from_the_oldest_supported_schema() -> None:
    decoded = CODEC.decode(CODEC.encode(json.loads(sample_alert_path(700).read_text()), 700))
    packet = lightweight.decode(lightweight.encode(lightweight.build(decoded.record, decoded.dia_source_id, 700, "x")))
    assert packet["diaSourceId"] == decoded.record["diaSource"]["diaSourceId"]
    assert packet["midpointMjdTai"] == decoded.record["diaSource"]["midpointMjdTai"]
    assert packet["band"] == decoded.record["diaSource"]["band"]


def test_archive_is_atomic_idempotent_and_returns_wire_bytes(tmp_path: Path) -> None:
    archive = AlertArchive(tmp_path)
    items = [(i * 1_000_003, bytes([i]) * 5000) for i in range(20)]
    assert archive.put_many(items) == 20
    assert archive.put_many(items[:5]) == 5  # a replayed batch overwrites with the same bytes
    for sid, data in items:
        assert archive.get(sid) == data and sid in archive
    assert archive.get(42) is None
    assert not list(tmp_path.rglob(".tmp-*"))
    archive.close()
