"""Messages between the parent and its workers.

Parent -> worker: length-prefixed pickles (the worker trusts the parent).
Worker -> parent: length-prefixed JSON, parsed with a size cap and validated
field by field, because a worker runs hostile code: nothing it sends can make
the parent execute anything, and anything malformed counts as the worker failing.
"""
from __future__ import annotations

import json
import math
import pickle
import struct
from dataclasses import dataclass
from typing import Any, TypeGuard

from .cpu_histogram import N_BINS

# Progress cursor shared with the parent (int64 slots in a small shared memory);
# SLOT_CPU_NS: the worker's CPU clock when the current filter's calls began, from
# which the parent tells what a filter used in a run its worker did not survive.
CURSOR_SLOTS = 5
SLOT_SEQUENCE, SLOT_PHASE, SLOT_FILTER, SLOT_ALERT, SLOT_CPU_NS = range(CURSOR_SLOTS)
PHASE_IDLE, PHASE_RECEIVING, PHASE_FREEZING, PHASE_LOADING, PHASE_RUNNING, PHASE_REPORTING = range(6)
USER_CODE_PHASES = frozenset({PHASE_LOADING, PHASE_RUNNING})

EXIT_OUT_OF_MEMORY = 71

TO_WORKER_HEADER = struct.Struct(">Q")
TO_PARENT_HEADER = struct.Struct(">I")
MAX_REPORT_BYTES = 64 * 1024 * 1024
MAX_MESSAGE_CHARS = 1_000
STOP_REASONS = frozenset({"errors", "timeouts"})


class ProtocolError(Exception):
    """A worker sent something that is not a valid message."""


def to_worker(message: object) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return TO_WORKER_HEADER.pack(len(payload)) + payload


def worker_frame_header(length: int) -> bytes:
    """The header of an already pickled payload (alert columns are pickled once)."""
    return TO_WORKER_HEADER.pack(length)


def to_parent(message: dict[str, Any]) -> bytes:
    payload = json.dumps(message, allow_nan=False, separators=(",", ":")).encode()
    return TO_PARENT_HEADER.pack(len(payload)) + payload


def parse_report(payload: bytes) -> dict[str, Any]:
    """Decode one worker message; only plain JSON values can come out of it."""
    try:
        message = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"undecodable message: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("message is not an object with a type")
    return message


@dataclass(frozen=True)
class FilterReport:
    """One filter's results from one run, validated; indices are run positions.

    calls: the filter ran on the first `calls` alerts of the run (all of them
    unless it failed to load or was stopped); cpu_histogram counts those calls.
    """

    position: int
    matches: list[tuple[int, float]]
    errors: list[tuple[int, str]]
    timeouts: list[int]
    calls: int
    cpu_histogram: tuple[int, ...]
    cpu_seconds: float
    load_error: str | None
    load_line: int | None
    stopped: str | None


def _is_int(value: object) -> TypeGuard[int]:
    return type(value) is int


def _message(value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_MESSAGE_CHARS:
        raise ProtocolError("bad message text")
    return value


def _indexed(items: object, n_alerts: int, limit: int, convert: Any) -> list[Any]:
    if not isinstance(items, list) or len(items) > limit:
        raise ProtocolError("bad list")
    result = []
    previous = -1
    for item in items:
        if not (isinstance(item, list) and len(item) == 2 and _is_int(item[0])
                and previous < item[0] < n_alerts):
            raise ProtocolError("bad indexed entry")
        previous = item[0]
        result.append((item[0], convert(item[1])))
    return result


def _indices(items: object, n_alerts: int, limit: int) -> list[int]:
    if not isinstance(items, list) or len(items) > limit:
        raise ProtocolError("bad index list")
    previous = -1
    for index in items:
        if not (_is_int(index) and previous < index < n_alerts):
            raise ProtocolError("bad index")
        previous = index
    return items


def _score(value: object) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or not value > 0:
        raise ProtocolError("bad score")
    return float(value)


def _histogram(value: object, calls: int) -> tuple[int, ...]:
    """Counts per bin, trimmed as sandbox.cpu_histogram makes them, one per call."""
    if not (isinstance(value, list) and len(value) <= N_BINS
            and all(_is_int(count) and count >= 0 for count in value)):
        raise ProtocolError("bad cpu histogram")
    if sum(value) != calls or (value and not value[-1]):
        raise ProtocolError("cpu histogram does not match the calls")
    return tuple(value)


def _calls(value: object, n_alerts: int, load_error: str | None, stopped: str | None) -> int:
    """Calls made: none if the filter failed to load, every alert unless it was stopped."""
    if not _is_int(value):
        raise ProtocolError("bad call count")
    if load_error is not None:
        valid = value == 0
    elif stopped is None:
        valid = value == n_alerts
    else:
        valid = 0 < value <= n_alerts
    if not valid:
        raise ProtocolError("bad call count")
    return value


def validate_filter_report(message: dict[str, Any], n_filters: int, n_alerts: int,
                           max_errors: int, max_timeouts: int) -> FilterReport:
    position = message.get("f")
    if not (_is_int(position) and 0 <= position < n_filters):
        raise ProtocolError("bad filter position")
    cpu = message.get("cpu")
    if type(cpu) not in (int, float) or not (math.isfinite(cpu) and cpu >= 0):
        raise ProtocolError("bad cpu time")
    load_error, stopped = message.get("load_error"), message.get("stop")
    if load_error is not None:
        _message(load_error)
    load_line = message.get("load_line")
    if load_line is not None and not (_is_int(load_line) and load_line > 0):
        raise ProtocolError("bad load line")
    if stopped is not None and stopped not in STOP_REASONS:
        raise ProtocolError("bad stop reason")
    calls = _calls(message.get("n"), n_alerts, load_error, stopped)
    return FilterReport(
        position=position,
        matches=_indexed(message.get("m"), calls, calls, _score),
        errors=_indexed(message.get("e"), calls, min(calls, max_errors + 1), _message),
        timeouts=_indices(message.get("t"), calls, min(calls, max_timeouts + 1)),
        calls=calls,
        cpu_histogram=_histogram(message.get("h"), calls),
        cpu_seconds=float(cpu),
        load_error=load_error,
        load_line=load_line,
        stopped=stopped,
    )


_REPORT_FIELDS = {"network": str, "filesystem": str, "uid": int, "seccomp": bool,
                  "rlimits": bool}


def validate_confinement(message: dict[str, Any]) -> dict[str, Any]:
    """The worker's account of its confinement, sent before it runs any filter."""
    report = message.get("confinement")
    if not isinstance(report, dict):
        raise ProtocolError("bad confinement report")
    for name, kind in _REPORT_FIELDS.items():
        if type(report.get(name)) is not kind:
            raise ProtocolError(f"bad confinement field {name}")
    warnings = report.get("warnings")
    if not isinstance(warnings, list) or len(warnings) > 20:
        raise ProtocolError("bad confinement warnings")
    for warning in warnings:
        _message(warning)
    return report


MAX_QUERY_PARAMS = 20
MAX_QUERY_TEXT = 200


def validate_query(message: dict[str, Any], n_filters: int, n_alerts: int
                   ) -> tuple[int, int, str, dict[str, Any]]:
    """A filter's query: (filter position, alert position, kind, params) with plain small values."""
    position, alert, kind, params = (message.get(k) for k in ("f", "a", "kind", "params"))
    if not (_is_int(position) and 0 <= position < n_filters and _is_int(alert) and 0 <= alert < n_alerts):
        raise ProtocolError("query from no running call")
    if not isinstance(kind, str) or len(kind) > MAX_QUERY_TEXT:
        raise ProtocolError("bad query kind")
    if not isinstance(params, dict) or len(params) > MAX_QUERY_PARAMS:
        raise ProtocolError("bad query parameters")
    for name, value in params.items():
        values = value if isinstance(value, list) else [value]
        if len(name) > MAX_QUERY_TEXT or len(values) > MAX_QUERY_PARAMS or not all(
                value is None or isinstance(value, bool | int | float) or
                (isinstance(value, str) and len(value) <= MAX_QUERY_TEXT) for value in values):
            raise ProtocolError("bad query parameters")
    return position, alert, kind, params
