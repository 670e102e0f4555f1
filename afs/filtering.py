"""The worker's narrow interface to user filters: which are active, and what they match in a batch.

All user code runs in the sandbox's worker processes (``sandbox/``); this module only chooses the
active set, trims each alert to what the filters read, fetches what they declared they NEED from the
PPDB mirror (one query per batch, handed to each filter as ``alert["ppdb"]``), answers their narrow
``helpers.ppdb_query`` calls under a per-filter, per-alert budget, and hands back matches per filter.

Without a mirror (``afs filter test``, dry runs, backtests) filters that declare NEEDS get a scratch
mirror built from the alerts they are run on: the PPDB as those alerts' own histories tell it.
"""

from __future__ import annotations

import functools
import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sandbox import (WHERE_RECORDS, BatchResult, FilterInfo, FilterRejected, FilterSpec, QueryRefused, SandboxLimits,
                     SandboxPool, compile_filter)

from afs.alerts.schemas import SchemaStore, latest_schema_id

from afs.config import Settings
from afs.ppdb.narrow import Budget, NarrowLimits
from afs.ppdb.needs import Need, needs_problems, validate_needs
from afs.ppdb.queries import QueryError

log = logging.getLogger(__name__)

CUTOUT_KEYS = frozenset({"cutoutDifference", "cutoutScience", "cutoutTemplate"})
PREDEFINED_OWNER = "rubin"


def sandbox_limits(settings: Settings) -> SandboxLimits:
    return SandboxLimits(
        workers=settings.sandbox_workers,
        batch_deadline_s=settings.sandbox_batch_deadline_s,
        memory_mb=settings.sandbox_memory_mb,
        cpu_seconds=settings.sandbox_cpu_seconds,
        per_call_soft_timeout_s=settings.sandbox_call_soft_timeout_s,
        per_call_hard_timeout_s=settings.sandbox_call_hard_timeout_s,
        max_errors=settings.sandbox_max_errors,
        max_timeouts=settings.sandbox_max_timeouts,
        max_kills=settings.sandbox_max_kills,
    )


def check_filter(source: str, filename: str = "<filter>") -> FilterInfo:
    """Compile a filter as the service accepts it (NEEDS and WHERE included); raises FilterRejected."""
    return compile_filter(source, filename, check_needs=needs_problems, check_where=where_column_problems)


@functools.cache
def _record_columns() -> dict[str, frozenset[str]]:
    """The columns of the alert's single records in the current schema (the names filters use)."""
    schema = SchemaStore().parsed(latest_schema_id())
    namespace = schema["name"].rsplit(".", 1)[0]
    named = schema["__named_schemas"]
    return {record: frozenset(f["name"] for f in named[f"{namespace}.{record}"]["fields"]) for record in WHERE_RECORDS}


def where_column_problems(conditions: Sequence[tuple[str, str, Any]]) -> list[str]:
    """WHERE may test only columns the alert schema has: a misspelt one would never match."""
    columns = _record_columns()
    problems = []
    for field, _, _ in conditions:
        record, _, column = field.partition(".")
        if column and column not in columns[record]:
            problems.append(f"{record} has no column {column!r}")
    return problems


def load_filter_dir(directory: Path, owner: str = PREDEFINED_OWNER) -> list[FilterSpec]:
    """Filters from a directory of ``*.py`` files, each in the upload format; the id is the file stem."""
    return [FilterSpec(id=path.stem, owner=owner, source=path.read_text(encoding="utf-8"))
            for path in sorted(Path(directory).glob("*.py")) if not path.name.startswith("_")]


class FilterEngine:
    """Runs the active filters over decoded alerts in the sandbox pool. ``mirror``: the PPDB mirror
    (afs.ppdb.Mirror or MirrorClient) that NEEDS and narrow queries are answered from."""

    def __init__(self, limits: SandboxLimits, mirror: Any = None,
                 narrow_limits: NarrowLimits = NarrowLimits()) -> None:
        self._pool = SandboxPool(limits, check_needs=needs_problems)
        self._mirror = mirror
        self._scratch: Any = None  # a mirror of the batches themselves, when there is no real one
        self._scratch_dir: tempfile.TemporaryDirectory[str] | None = None
        self._narrow_limits = narrow_limits
        self._active: dict[str, FilterSpec] = {}
        self._needs: dict[str, dict[str, Need]] = {}
        self._wants_cutouts = False

    @property
    def active_ids(self) -> list[str]:
        return sorted(self._active)

    def activate(self, specs: Sequence[FilterSpec]) -> dict[str, FilterRejected]:
        """Replace the active set; filters that do not compile are reported and left out."""
        rejected = self._pool.set_filters(list(specs))
        for fid, err in rejected.items():
            log.warning("filter %s rejected: %s", fid, err)
        self._active = {s.id: s for s in specs if s.id not in rejected}
        infos = {fid: self._pool.info(fid) for fid in self._active}
        # Cutouts are large: hand them only to filters that declare they read them.
        self._wants_cutouts = any((info.reads or frozenset()) & CUTOUT_KEYS for info in infos.values())
        self._needs = {fid: validate_needs(info.needs) for fid, info in infos.items() if info.needs}
        return rejected

    def enable(self, filter_id: str) -> None:
        """Switch a filter the sandbox disabled back on (its owner or an admin re-activated it)."""
        self._pool.enable(filter_id)

    def trim(self, record: Mapping[str, Any]) -> dict[str, Any]:
        if self._wants_cutouts:
            return dict(record)
        return {k: v for k, v in record.items() if k not in CUTOUT_KEYS}

    def run(self, records: Sequence[Mapping[str, Any]]) -> BatchResult | None:
        """Blocking; call from a thread. None when no filter is active."""
        if not self._active or not records:
            return None
        mirror = self._mirror_for(records)
        supplements = self._supplements(mirror, records) if self._needs else None
        return self._pool.run_batch([self.trim(r) for r in records], supplements,
                                    self._answerer(mirror, records) if mirror is not None else None)

    def _mirror_for(self, records: Sequence[Mapping[str, Any]]) -> Any:
        if self._mirror is not None or not self._needs:
            return self._mirror
        if self._scratch is None:
            from afs.ppdb.mirror import Mirror

            self._scratch_dir = tempfile.TemporaryDirectory(prefix="afs-scratch-ppdb-")
            self._scratch = Mirror(Path(self._scratch_dir.name) / "ppdb.duckdb", memory_limit="1GB", threads=1)
        self._scratch.ingest_alerts(records)
        return self._scratch

    def _supplements(self, mirror: Any, records: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
        """filter id -> alert["ppdb"] per alert; filters with equal NEEDS share one list (sent once)."""
        groups: dict[tuple[tuple[str, Need], ...], list[str]] = {}
        for fid, needs in self._needs.items():
            groups.setdefault(tuple(sorted(needs.items())), []).append(fid)
        fetched = mirror.prefetch({str(i): dict(key) for i, key in enumerate(groups)}, records)
        return {fid: fetched[str(i)] for i, fids in enumerate(groups.values()) for fid in fids}

    def _answerer(self, mirror: Any, records: Sequence[Mapping[str, Any]]) -> Any:
        """Answers helpers.ppdb_query: as of the alert, within one budget per (filter, alert)."""
        budgets: dict[tuple[str, int], Budget] = {}

        def answer(filter_id: str, index: int, kind: str, params: dict[str, Any]) -> Any:
            budget = budgets.get((filter_id, index))
            if budget is None:
                mjd = (records[index].get("diaSource") or {}).get("midpointMjdTai")
                if not isinstance(mjd, int | float):
                    raise QueryRefused("this alert has no midpointMjdTai to query as of")
                budget = budgets[(filter_id, index)] = Budget(self._narrow_limits, float(mjd))
            try:
                return budget.run(mirror.narrow, kind, params)
            except QueryError as error:
                raise QueryRefused(str(error)) from None
            except Exception:
                log.exception("PPDB query of filter %s failed: %s %s", filter_id, kind, params)
                raise QueryRefused("the PPDB query failed on the service's side") from None

        return answer

    def close(self) -> None:
        self._pool.close()
        if self._scratch is not None:
            self._scratch.close()
        if self._scratch_dir is not None:
            self._scratch_dir.cleanup()
