"""The lightweight packet and the archive the packet points at."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    items = [(i * 1_000_003, bytes([i]) * 5000 + os.urandom(100)) for i in range(20)]
    assert archive.put_many(items) == 20
    assert archive.put_many(items[:5]) == 5  # a replayed batch: the index points at the newer copy
    for sid, data in items:
        assert archive.get(sid) == data and sid in archive
    assert archive.get(42) is None and 42 not in archive
    assert sorted(archive.ids()) == sorted(sid for sid, _ in items)
    assert archive.recent(3) == [data for _, data in reversed(items[2:5])]  # newest batch, last packet first
    segments = list(tmp_path.rglob("*.seg"))
    assert len(segments) == 2 and not list(tmp_path.rglob("*.partial"))
    assert sum(p.stat().st_size for p in segments) < sum(len(d) for _, d in items) / 2  # compressed
    archive.close()


def test_archive_written_by_one_process_is_read_by_another(tmp_path: Path) -> None:
    """The worker writes, the API reads: another process sees each batch whole once it is archived."""
    items = [(7_000 + i, os.urandom(3000)) for i in range(50)]
    script = ("import sys; from pathlib import Path; from afs.archive import AlertArchive; "
              f"AlertArchive(Path(sys.argv[1])).put_many([(7000 + i, bytes.fromhex(h)) for i, h in "
              f"enumerate(sys.argv[2:])])")
    reader = AlertArchive(tmp_path)
    assert reader.get(7_000) is None
    subprocess.run([sys.executable, "-c", script, str(tmp_path), *(d.hex() for _, d in items)], check=True)
    assert [reader.get(sid) for sid, _ in items] == [d for _, d in items]
