"""The worker's narrow interface to user filters: which are active, and what they match in a batch.

All user code runs in the sandbox's worker processes (``sandbox/``); this module only chooses the
active set, trims each alert to what the filters read, and hands back matches per filter.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sandbox import BatchResult, FilterRejected, FilterSpec, SandboxLimits, SandboxPool

from afs.config import Settings

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


def load_filter_dir(directory: Path, owner: str = PREDEFINED_OWNER) -> list[FilterSpec]:
    """Filters from a directory of ``*.py`` files, each in the upload format; the id is the file stem."""
    return [FilterSpec(id=path.stem, owner=owner, source=path.read_text(encoding="utf-8"))
            for path in sorted(Path(directory).glob("*.py")) if not path.name.startswith("_")]


class FilterEngine:
    """Runs the active filters over decoded alerts in the sandbox pool."""

    def __init__(self, limits: SandboxLimits) -> None:
        self._pool = SandboxPool(limits)
        self._active: dict[str, FilterSpec] = {}
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
        # Cutouts are large: hand them only to filters that declare they read them.
        self._wants_cutouts = any((self._pool.info(fid).reads or frozenset()) & CUTOUT_KEYS for fid in self._active)
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
        return self._pool.run_batch([self.trim(r) for r in records])

    def close(self) -> None:
        self._pool.close()
