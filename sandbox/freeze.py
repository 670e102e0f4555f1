"""Deep-freeze decoded alerts once per worker per batch, shared by every filter.

Records become read-only mappings, arrays become tuples, scalars stay as they
are (they are immutable already), so no filter can change what another sees.
"""
from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Iterable
from types import MappingProxyType
from typing import Any

# Immutable leaves: JSON-like scalars, bytes, and what fastavro makes of Avro's
# logical types (timestamps, dates, times, decimals, uuids).
_SCALARS = frozenset({str, int, float, bool, type(None), bytes, datetime.datetime,
                      datetime.date, datetime.time, decimal.Decimal, uuid.UUID})

FrozenAlert = MappingProxyType  # the type filters receive


class UnsupportedValue(TypeError):
    """An alert holds a value that is not plain decoded Avro data."""


def freeze(value: Any) -> Any:
    """Deep-freeze plain decoded data, taking ownership of it.

    Dicts are wrapped as they are (after their nested values are frozen in place)
    rather than copied, which is what makes freezing cheap; so the caller must hand
    over data nobody else holds, as a worker does with a batch it has just unpickled.
    """
    kind = type(value)
    if kind is dict:
        if not set(map(type, value.values())) <= _SCALARS:
            for key, item in value.items():
                if type(item) not in _SCALARS:
                    value[key] = freeze(item)
        return MappingProxyType(value)
    if kind is list or kind is tuple:
        return tuple([item if type(item) in _SCALARS else freeze(item) for item in value])
    if kind in _SCALARS or kind is MappingProxyType:  # a proxy: met before, via a shared reference
        return value
    if kind is bytearray:
        return bytes(value)
    raise UnsupportedValue(f"alerts may hold only plain decoded Avro data (dicts, lists, "
                           f"scalars, bytes, dates), not {kind.__name__}")


def freeze_top(alert: dict[str, Any]) -> dict[str, Any]:
    """Freeze an alert's values in place but keep its top level a dict, for cheap
    projections; takes ownership like freeze()."""
    for key, item in alert.items():
        if type(item) not in _SCALARS:
            alert[key] = freeze(item)
    return alert


def project(top: dict[str, Any], keys: Iterable[str] | None,
            extra: dict[str, Any] | None = None) -> MappingProxyType[str, Any]:
    """The read-only view a filter gets: only the top-level keys it declared, plus ``extra``
    (frozen values the service gave this filter alone)."""
    if keys is None and extra is None:
        return MappingProxyType(top)
    view = dict(top) if keys is None else {k: top[k] for k in keys if k in top}
    if extra:
        view.update(extra)
    return MappingProxyType(view)
