"""The stream worker's link to the control plane: which filter versions run, caps and stats.

The worker reads the active versions at start and again every ``AFS_FILTER_RELOAD_S`` (at most
30 s), between batches: new or changed versions are loaded into the sandbox without a restart, their
output topics created first; a filter re-activated after an auto-disable is switched back on. Per
batch, ``settle`` applies the per-visit cap and writes the stats back in one transaction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence

from sandbox import FilterOutcome, FilterSpec

from afs.broker import ensure_topics
from afs.config import Settings
from afs.control.db import Database
from afs.control.delivery import Owner, Position, Settlement, prune_visits, record_rejections, settle
from afs.control.filters import ActiveVersion, active_versions
from afs.filtering import FilterEngine

log = logging.getLogger(__name__)
PRUNE_EVERY_S = 3600.0


class LiveFilters:
    """Keeps a FilterEngine in step with the active versions; the pipeline's MatchLedger."""

    def __init__(self, settings: Settings, db: Database, engine: FilterEngine) -> None:
        self.settings = settings
        self.db = db
        self.engine = engine
        self.lock = asyncio.Lock()  # held while a batch runs, so a reload never lands mid-batch
        self._active: dict[str, ActiveVersion] = {}
        self._owners: dict[str, Owner] = {}
        self._disabled: set[str] = set()
        self._pruned_at = 0.0

    async def reload(self) -> None:
        """Bring the sandbox in line with the database (nothing to do when nothing changed)."""
        rows = await asyncio.to_thread(self._read)
        wanted = {row.filter_id: row for row in rows}
        if wanted == self._active:
            return
        new_topics = {self.settings.filter_topic(fid): self.settings.output_partitions
                      for fid in wanted if fid not in self._active}
        if new_topics:
            await ensure_topics(self.settings, new_topics)
        specs = [FilterSpec(row.filter_id, row.owner_name, row.source) for row in rows]
        rejected = await asyncio.to_thread(self.engine.activate, specs)
        if rejected:
            await asyncio.to_thread(record_rejections, self.db, {fid: str(err) for fid, err in rejected.items()})
        still_disabled = set()
        for fid in self._disabled & wanted.keys():
            old, new = self._active[fid], wanted[fid]
            if old.source != new.source:
                continue  # a new version starts afresh in the sandbox
            if old.activated_at != new.activated_at:
                self.engine.enable(fid)  # re-activated by its owner or an admin
                log.info("filter %s re-enabled", fid)
            else:
                still_disabled.add(fid)
        self._disabled = still_disabled
        self._active = wanted
        self._owners = {fid: Owner(row.owner_id, row.owner_name, row.cap) for fid, row in wanted.items()}
        log.info("active filters: %d (%s); %d rejected", len(self.engine.active_ids),
                 ", ".join(f"{fid}@v{row.version}" for fid, row in wanted.items()), len(rejected))

    def _read(self) -> list[ActiveVersion]:
        if time.monotonic() - self._pruned_at > PRUNE_EVERY_S:
            prune_visits(self.db)
            self._pruned_at = time.monotonic()
        with self.db.sessions() as session:
            return active_versions(session, self.settings.max_matches_per_visit)

    async def keep_reloading(self) -> None:
        """Re-read the active versions every filter_reload_s, between batches, until cancelled."""
        while True:
            await asyncio.sleep(self.settings.filter_reload_s)
            async with self.lock:
                try:
                    await self.reload()
                except Exception:  # the database or broker away: keep running what we have, try again
                    log.exception("could not reload the active filters; keeping the current set")

    def settle(self, outcomes: Mapping[str, FilterOutcome], visits: Sequence[int],
               positions: Sequence[Position]) -> Settlement:
        """Blocking (call from a thread): caps and stats for one batch."""
        settlement = settle(self.db, self._owners, outcomes, visits, self._disabled, positions)
        self._disabled |= {fid for fid, o in outcomes.items() if o.disabled}
        return settlement
