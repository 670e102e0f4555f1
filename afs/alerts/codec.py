"""Rubin alert wire format: Confluent framing (magic 0, 4-byte big-endian schema id) + schemaless Avro.

The schema is chosen by the id in the header, never by topic name. Every way a message can be bad
raises one typed error, AlertDecodeError, whose ``reason`` is a short stable code for counters and
dead-letter headers and whose message says what was wrong.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any

import cavro
import fastavro

from afs.alerts.schemas import SchemaStore, UnknownSchemaError, latest_schema_id

MAGIC = 0
HEADER = struct.Struct(">bI")
_ONE_BYTE = cavro.Schema('"boolean"')  # cavro reads a boolean as exactly one byte, any value


class AlertDecodeError(ValueError):
    """A message that is not a decodable Rubin alert. ``reason`` is one of REASONS."""

    REASONS = ("oversize", "empty", "bad-magic", "unknown-schema", "truncated", "schema-mismatch")

    def __init__(self, reason: str, detail: str) -> None:
        assert reason in self.REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class DecodedAlert:
    schema_id: int
    dia_source_id: int
    record: dict[str, Any]


def dia_source_id_of(record: Any) -> int | None:
    """The triggering diaSourceId: top-level since v8, inside diaSource before (v7 keyed by alertId)."""
    if not isinstance(record, dict):
        return None
    value = record.get("diaSourceId")
    if value is None and isinstance(record.get("diaSource"), dict):
        value = record["diaSource"].get("diaSourceId")
    return value if isinstance(value, int) else None


def split_header(message: bytes, max_bytes: int) -> tuple[int, memoryview]:
    """Check size and framing; return (schema id, Avro body) without decoding the body."""
    if len(message) > max_bytes:
        raise AlertDecodeError("oversize", f"{len(message)} bytes exceeds the {max_bytes}-byte limit")
    if not message:
        raise AlertDecodeError("empty", "zero-length message")
    if len(message) < HEADER.size:
        raise AlertDecodeError("truncated", f"{len(message)} bytes is shorter than the 5-byte header")
    magic, sid = HEADER.unpack_from(message)
    if magic != MAGIC:
        raise AlertDecodeError("bad-magic", f"first byte is {message[0]:#04x}, expected 0x00 (Confluent framing)")
    return sid, memoryview(message)[HEADER.size :]


class AlertCodec:
    """Encode and decode alerts against a SchemaStore."""

    def __init__(self, store: SchemaStore | None = None, max_bytes: int = 10 * 1024 * 1024) -> None:
        self.store = store or SchemaStore()
        self.max_bytes = max_bytes

    def decode(self, message: bytes) -> DecodedAlert:
        sid, body = split_header(message, self.max_bytes)
        try:
            schema = self.store.reader(sid)
        except UnknownSchemaError as exc:
            raise AlertDecodeError("unknown-schema", str(exc)) from None
        reader = cavro.MemoryReader(body)
        try:
            record = schema.binary_read(reader)
        except EOFError as exc:
            raise AlertDecodeError("truncated", f"body ends before the schema {sid} record does ({exc!r})") from None
        except Exception as exc:  # garbage raises many types; all mean "does not match"
            raise AlertDecodeError("schema-mismatch", f"body does not match schema {sid}: {exc!r}") from None
        try:
            _ONE_BYTE.binary_read(reader)  # succeeds only if a byte is left over
        except EOFError:
            pass
        else:
            raise AlertDecodeError("schema-mismatch", f"trailing bytes after the schema {sid} record")
        dia_source_id = dia_source_id_of(record)
        if dia_source_id is None:
            raise AlertDecodeError("schema-mismatch", f"schema {sid} record has no integer diaSourceId")
        return DecodedAlert(sid, dia_source_id, record)

    def encode(self, record: dict[str, Any], schema_id: int | None = None) -> bytes:
        sid = latest_schema_id() if schema_id is None else schema_id
        out = io.BytesIO()
        out.write(HEADER.pack(MAGIC, sid))
        fastavro.schemaless_writer(out, self.store.parsed(sid), record)
        return out.getvalue()
