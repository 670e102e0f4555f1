"""The alert codec: every shipped schema round-trips; every malformed case is one typed error."""

from __future__ import annotations

import io
import json
import math
import random
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import fastavro
import pytest

from afs.alerts.codec import HEADER, AlertCodec, AlertDecodeError
from afs.alerts.schemas import SchemaStore, latest_schema_id, sample_alert_path

STORE = SchemaStore()
CODEC = AlertCodec(STORE, max_bytes=100_000)


def sample(sid: int) -> dict:
    return json.loads(sample_alert_path(sid).read_text())


def test_ships_every_version_from_7_0_to_latest() -> None:
    ids = STORE.shipped_ids
    assert ids[0] == 700 and ids[-1] == latest_schema_id() == 1101
    assert {700, 701, 702, 703, 704, 800, 900, 1000, 1100, 1101} <= set(ids)


@pytest.mark.parametrize("sid", STORE.shipped_ids)
def test_sample_alert_round_trips(sid: int) -> None:
    record = sample(sid)
    message = CODEC.encode(record, sid)
    assert message[0] == 0 and int.from_bytes(message[1:5], "big") == sid
    decoded = CODEC.decode(message)
    assert decoded.schema_id == sid
    assert decoded.dia_source_id == record.get("diaSourceId", record["diaSource"].get("diaSourceId"))
    assert CODEC.encode(decoded.record, sid) == message


def test_schema_is_chosen_by_header_not_default() -> None:
    old = CODEC.encode(sample(700), 700)
    assert CODEC.decode(old).schema_id == 700


GOOD = CODEC.encode(sample(1101), 1101)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"", "empty"),
        (GOOD + bytes(100_001 - len(GOOD)), "oversize"),
        (b"\x01" + GOOD[1:], "bad-magic"),
        (b"{\"json\": 1}", "bad-magic"),
        (HEADER.pack(0, 4242) + GOOD[5:], "unknown-schema"),
        (GOOD[:3], "truncated"),
        (GOOD[:5], "truncated"),
        (GOOD[: len(GOOD) // 2], "truncated"),
        (GOOD + b"\x00extra", "schema-mismatch"),
        (HEADER.pack(0, 1101) + b"\xff" * 64, "truncated"),  # one varint that never ends
        (HEADER.pack(0, 1101) + b"\x02\x7f" + bytes(62), "schema-mismatch"),  # union branch -64
    ],
    ids=["empty", "oversize", "bad-magic", "json", "unknown-schema", "short-header", "header-only",
         "half-body", "trailing-bytes", "endless-varint", "bad-union-branch"],
)
def test_malformed_messages_raise_one_typed_error(message: bytes, reason: str) -> None:
    with pytest.raises(AlertDecodeError) as info:
        CODEC.decode(message)
    assert info.value.reason == reason
    assert info.value.detail


def _fastavro_verdict(body: bytes) -> dict | None:
    """What the reference decoder makes of a body: the record, or None if it is not exactly one record."""
    stream = io.BytesIO(body)
    try:
        record = fastavro.schemaless_reader(stream, STORE.parsed(1101), None)
    except Exception:
        return None
    return record if stream.tell() == len(body) else None


def _same(a: object, b: object) -> bool:
    """Equal, with NaN equal to NaN and types compared exactly (bytes stays bytes, int stays int)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)  # type: ignore[attr-defined]
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))  # type: ignore[arg-type]
    return a == b


def test_decoder_agrees_with_fastavro_on_good_and_damaged_bodies() -> None:
    """cavro decodes the stream (it is faster); fastavro is the reference. On realistic alerts and on
    bodies with flipped, inserted, cut or appended bytes, cavro accepts no body fastavro rejects and
    decodes what both accept to the same record. It is stricter in one way only: fastavro takes a
    negative union branch as counted from the end (Python indexing), cavro rejects it."""
    from afs.alerts.simulate import simulate_visits

    rng = random.Random(11)
    codec = AlertCodec(STORE)
    bodies = [codec.encode(a)[HEADER.size:] for a in next(iter(simulate_visits(1, 40, 19)))[1]]
    verdicts = {"accepted": 0, "rejected": 0, "stricter": 0}
    for i in range(600):
        body = bytearray(rng.choice(bodies))
        kind = i % 4 if i >= len(bodies) else None
        if kind == 0:
            for _ in range(rng.randint(1, 4)):  # the head, where lengths and union branches are
                body[rng.randrange(min(len(body), 3000))] = rng.randrange(256)
        elif kind == 1:
            at = rng.randrange(min(len(body), 3000))
            body[at:at] = rng.randbytes(rng.randint(1, 3))
        elif kind == 2:
            del body[rng.randrange(len(body)):]
        elif kind == 3:
            body += rng.randbytes(rng.randint(1, 5))
        expected = _fastavro_verdict(bytes(body))
        try:
            got = codec.decode(HEADER.pack(0, 1101) + bytes(body)).record
        except AlertDecodeError as error:
            assert expected is None or re.search(r"Value -\d+ is not valid for a union", error.detail), (i, error)
            verdicts["rejected" if expected is None else "stricter"] += 1
        else:
            assert expected is not None and _same(got, expected), (i, kind)
            verdicts["accepted"] += 1
    assert verdicts["accepted"] > 100 and verdicts["rejected"] > 100, verdicts


class _Registry(BaseHTTPRequestHandler):
    schemas: dict[int, str] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        sid = int(self.path.rsplit("/", 1)[-1]) if self.path.startswith("/schemas/ids/") else -1
        if sid in self.schemas:
            body = json.dumps({"schema": self.schemas[sid]}).encode()
            self.send_response(200)
        else:
            body = b'{"error_code": 40403, "message": "Schema not found"}'
            self.send_response(404)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def registry_url() -> Iterator[str]:
    broken = json.loads(STORE.schema_json(1101))
    broken["fields"].append(broken["fields"][0])  # diaSourceId twice: fastavro parses it, Avro forbids it
    _Registry.schemas = {5501: STORE.schema_json(1101), 5503: json.dumps(broken)}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_unknown_id_is_fetched_from_a_confluent_registry(registry_url: str) -> None:
    codec = AlertCodec(SchemaStore(registry_url))
    message = HEADER.pack(0, 5501) + GOOD[5:]
    assert codec.decode(message).dia_source_id == sample(1101)["diaSourceId"]
    with pytest.raises(AlertDecodeError) as info:
        codec.decode(HEADER.pack(0, 5502) + GOOD[5:])
    assert info.value.reason == "unknown-schema" and "5502" in str(info.value)
    with pytest.raises(AlertDecodeError) as info:
        codec.decode(HEADER.pack(0, 5503) + GOOD[5:])
    assert info.value.reason == "unknown-schema" and "Duplicate field name" in str(info.value)
