"""Broken messages for exercising the dead-letter path: one per AlertDecodeError reason."""

from __future__ import annotations

import numpy as np

from afs.alerts.codec import HEADER

KINDS = ("bad-magic", "unknown-schema", "truncated", "schema-mismatch", "oversize", "empty")


def corrupt(good: bytes, kind: str, max_bytes: int, rng: np.random.Generator) -> bytes:
    """A message derived from a good one that must be dead-lettered with reason ``kind``."""
    if kind == "bad-magic":
        return b"\x01" + good[1:]
    if kind == "unknown-schema":
        return HEADER.pack(0, 4242) + good[HEADER.size :]
    if kind == "truncated":
        return good[: HEADER.size + int(rng.integers(1, 40))]
    if kind == "schema-mismatch":
        return good + b"\x00trailing-garbage"
    if kind == "oversize":
        return good + bytes(max_bytes + 1 - len(good))
    if kind == "empty":
        return b""
    raise ValueError(f"unknown malformed kind {kind!r}")
