"""Usage report rows (per UTC day, user, filter and kind), written in the background.

Enforcement never waits for these: each process adds what it granted to an in-memory tally and
writes it every ``AFS_QUOTA_LEDGER_FLUSH_S`` with one upsert per row (and at shutdown, and before a
report is read). A process that dies loses at most that interval of report rows, never a quota
decision: the counters that enforce live in the quota backend.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable

from afs.control.db import Database
from afs.control.models import UsageDay

log = logging.getLogger(__name__)
Key = tuple[str, int, str, str]  # day, user id, filter id ("" for none), kind


class UsageLedger:
    def __init__(self, db: Database, flush_s: float, prune: Callable[[], None] | None = None) -> None:
        self.db = db
        self.flush_s = flush_s
        self._prune = prune
        self._pending: Counter[Key] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="afs-usage", daemon=True)

    def add(self, day: str, user_id: int, filter_id: str | None, kind: str, amount: int) -> None:
        with self._lock:
            self._pending[(day, user_id, filter_id or "", kind)] += amount

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, Counter()
        if not pending:
            return
        table = UsageDay.__table__
        rows = [{"day": d, "user_id": u, "filter_id": f, "kind": k, "amount": n} for (d, u, f, k), n in
                sorted(pending.items())]
        statement = self.db.insert(table).values(rows)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.day, table.c.user_id, table.c.filter_id, table.c.kind],
            set_={"amount": table.c.amount + statement.excluded.amount})
        try:
            with self.db.transaction() as session:
                session.execute(statement)
        except Exception:
            with self._lock:  # the database away: keep the rows for the next flush
                self._pending.update(pending)
            raise

    def start(self) -> UsageLedger:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_s):
            try:
                self.flush()
                if self._prune:
                    self._prune()
            except Exception:
                log.exception("usage ledger")
