"""A batch of alerts as pickled columns, one per top-level key, each pickled once.

Every worker needs only the keys its filters read; sending columns lets workers
with different needs share the same pickled bytes, so the parent (whose CPU the
service needs too) pickles each value once per batch however many workers there are.

Supplements (data the service fetched for particular filters, such as PPDB rows) travel
the same way, as extra columns under keys no alert key can be (SUPPLEMENT_PREFIX);
filters that were given the same supplement object share one column.
"""
from __future__ import annotations

import pickle
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

ABSENT = ...  # stands for a key an alert lacks (never a decoded Avro value)
SUPPLEMENT_PREFIX = "\0supplement:"


def is_supplement(key: str) -> bool:
    return key.startswith(SUPPLEMENT_PREFIX)


class AlertColumns:
    def __init__(self, alerts: Sequence[Mapping[str, Any]],
                 supplements: Mapping[str, Sequence[Any]] | None = None) -> None:
        """``supplements``: filter id -> one value per alert."""
        self.alerts = alerts
        self.all_keys = tuple(sorted(set().union(*(alert.keys() for alert in alerts))))
        self.supplement_of: dict[str, str] = {}  # filter id -> its supplement column
        self._supplements: dict[str, Sequence[Any]] = {}
        by_identity: dict[int, str] = {}
        for fid, values in (supplements or {}).items():
            if len(values) != len(alerts):
                raise ValueError(f"the supplement for filter {fid} has {len(values)} values for "
                                 f"{len(alerts)} alerts")
            key = by_identity.setdefault(id(values), f"{SUPPLEMENT_PREFIX}{len(by_identity)}")
            self._supplements[key] = values
            self.supplement_of[fid] = key
        self._whole: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def keys_for(self, reads: Iterable[tuple[str, ...] | None]) -> tuple[str, ...]:
        """The keys a worker needs: the union of its filters' READS (all if any lacks one)."""
        wanted: set[str] = set()
        for keys in reads:
            if keys is None:
                return self.all_keys
            wanted.update(keys)
        return tuple(k for k in self.all_keys if k in wanted)

    def frames(self, keys: tuple[str, ...], indices: Sequence[int] | None = None) -> list[bytes]:
        """Pickled columns for `keys`, for all alerts (cached) or for a subset."""
        if indices is not None:
            return [self._pickle(key, indices) for key in keys]
        with self._lock:
            for key in keys:
                if key not in self._whole:
                    self._whole[key] = self._pickle(key, range(len(self.alerts)))
            return [self._whole[key] for key in keys]

    def _pickle(self, key: str, indices: Iterable[int]) -> bytes:
        values = self._supplements.get(key)
        if values is not None:
            column = [values[i] for i in indices]
        else:
            column = [self.alerts[i].get(key, ABSENT) for i in indices]
        return pickle.dumps(column, pickle.HIGHEST_PROTOCOL)


def rows(keys: Sequence[str], columns: Sequence[list[Any]], n_alerts: int) -> list[dict[str, Any]]:
    """The alerts back from their columns (in the worker)."""
    if not columns:
        return [{} for _ in range(n_alerts)]
    return [{key: value for key, value in zip(keys, row) if value is not ABSENT}
            for row in zip(*columns)]
