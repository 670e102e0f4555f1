"""The embedded quota backend: counters in the control-plane database (SQLite or PostgreSQL).

Each take is one conditional upsert, ``INSERT ... ON CONFLICT DO UPDATE SET used = used + n WHERE
used + n <= limit RETURNING used``: the database's row lock (PostgreSQL) or write lock (SQLite) makes
the check and the increment one step, so concurrent requests, threads and API processes can never be
granted more than the limit. Several takes run in one transaction, rolled back if any does not fit,
and in a fixed order so two transactions never wait on each other's rows. An expired counter
restarts inside the same statement (``CASE WHEN reset_at <= now``). Counters persist with the
control plane, so they survive restarts. The token bucket is the same kind of statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, case, delete, literal, select
from sqlalchemy.orm import Session

from afs.control.db import Database
from afs.control.models import QuotaBucket, QuotaCounter
from afs.quotas.store import Charged, Level, Take

COUNTERS = QuotaCounter.__table__
BUCKETS = QuotaBucket.__table__


class _Refused(Exception):
    def __init__(self, index: int) -> None:
        self.index = index


class SqlQuotaStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _take(self, session: Session, user_id: int, take: Take, now: float) -> Level | None:
        c = COUNTERS.c
        expired = c.reset_at <= now
        amount, limit = literal(take.amount, BigInteger()), literal(take.limit, BigInteger())  # PostgreSQL: not int4
        statement = self.db.insert(COUNTERS).values(user_id=user_id, kind=take.kind, period=take.period,
                                                    used=take.amount, reset_at=take.reset_at)
        statement = statement.on_conflict_do_update(
            index_elements=[c.user_id, c.kind, c.period],
            set_={"used": case((expired, amount), else_=c.used + amount),
                  "reset_at": case((expired, take.reset_at), else_=c.reset_at)},
            where=case((expired, literal(0, BigInteger())), else_=c.used) + amount <= limit,
        ).returning(c.used, c.reset_at)
        row = session.execute(statement).one_or_none()
        return None if row is None else Level(int(row[0]), float(row[1]))

    def charge(self, user_id: int, takes: Sequence[Take], now: float) -> Charged:
        order = sorted(range(len(takes)), key=lambda i: (takes[i].kind, takes[i].period))
        levels: dict[int, Level] = {}
        try:
            with self.db.transaction() as session:
                for index in order:
                    take = takes[index]
                    level = self._take(session, user_id, take, now) if take.amount <= take.limit else None
                    if level is None:
                        raise _Refused(index)
                    levels[index] = level
        except _Refused as refusal:
            current = [self.level(user_id, t.kind, t.period, now) or Level(0, t.reset_at) for t in takes]
            return Charged(current, refusal.index)
        return Charged([levels[i] for i in range(len(takes))])

    def spend(self, user_id: int, amount: float, rate: float, burst: float, now: float) -> tuple[bool, float]:
        b = BUCKETS.c
        level = self._refilled(rate, burst, now)
        statement = self.db.insert(BUCKETS).values(user_id=user_id, tokens=burst - amount, at=now)
        statement = statement.on_conflict_do_update(
            index_elements=[b.user_id],
            set_={"tokens": level - amount, "at": case((b.at < now, now), else_=b.at)},
            where=level >= amount,
        ).returning(b.tokens)
        if amount <= burst:
            with self.db.transaction() as session:
                row = session.execute(statement).one_or_none()
            if row is not None:
                return True, float(row[0])
        return False, self.tokens(user_id, rate, burst, now)

    @staticmethod
    def _refilled(rate: float, burst: float, now: float) -> Any:
        """The bucket's level at ``now``: what it held plus what refilled since, up to ``burst``."""
        b = BUCKETS.c
        refill = b.tokens + case((b.at < now, now - b.at), else_=0.0) * rate
        return case((refill > burst, burst), else_=refill)

    def level(self, user_id: int, kind: str, period: str, now: float) -> Level | None:
        c = COUNTERS.c
        with self.db.sessions() as session:
            row = session.execute(select(c.used, c.reset_at).where(
                c.user_id == user_id, c.kind == kind, c.period == period, c.reset_at > now)).one_or_none()
        return None if row is None else Level(int(row[0]), float(row[1]))

    def tokens(self, user_id: int, rate: float, burst: float, now: float) -> float:
        with self.db.sessions() as session:
            value = session.scalar(select(self._refilled(rate, burst, now)).where(BUCKETS.c.user_id == user_id))
        return burst if value is None else float(value)

    def prune(self, now: float) -> None:
        with self.db.transaction() as session:
            session.execute(delete(COUNTERS).where(COUNTERS.c.reset_at <= now))

    def close(self) -> None:
        """Nothing of its own: the database belongs to the caller."""
