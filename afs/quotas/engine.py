"""``QuotaEngine``: what a user may still do, decided in O(1) against the shared store.

A request costs one atomic store operation per check (the token bucket, then the counters it
charges), independent of how much the user has used. Limits come from ``quota_overrides`` over
the AFS_QUOTA_* defaults and are cached per process for ``AFS_QUOTA_LIMITS_TTL_S`` (a change by an
admin applies at once in the process that made it, within that TTL in the others). The clock is
injectable: tests move it across midnight instead of sleeping.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select

from afs.config import Settings
from afs.control.db import Database
from afs.control.models import QuotaOverride
from afs.quotas.ledger import UsageLedger
from afs.quotas.limits import REQUESTS, SETTABLE, Limits, period_of, reset_for, resolve, utc_day, window_s
from afs.quotas.store import Charged, QuotaStore, Take


@dataclass(frozen=True)
class Charge:
    """``amount`` of ``kind``; ``key`` is the visit for ``visit_alerts``."""

    kind: str
    amount: int = 1
    key: int | None = None


@dataclass(frozen=True)
class Decision:
    """The answer, about the quota that binds: the refused one, or the one with the least left."""

    allowed: bool
    kind: str | None = None  # None: quotas are off
    limit: float = 0
    remaining: float = 0
    reset_s: float = 0.0  # until the quota is whole again (daily: next midnight; bucket: full)
    retry_after_s: float | None = None  # refused: when the same request can succeed
    window_s: float = 0.0  # the period the limit is for

    def headers(self) -> dict[str, str]:
        """RateLimit-Limit/-Remaining/-Reset and RateLimit-Policy as in draft-ietf-httpapi-ratelimit-headers-07
        (Reset in seconds from now), plus Retry-After (RFC 9110) on a refusal."""
        if self.kind is None:
            return {}
        out = {"RateLimit-Limit": _number(self.limit), "RateLimit-Remaining": str(max(0, math.floor(self.remaining))),
               "RateLimit-Reset": str(math.ceil(self.reset_s)),
               "RateLimit-Policy": f'{_number(self.limit)};w={math.ceil(self.window_s)};name="{self.kind}"'}
        if self.retry_after_s is not None:
            out["Retry-After"] = str(max(1, math.ceil(self.retry_after_s)))
        return out


UNLIMITED = Decision(True)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def tightest(*decisions: Decision) -> Decision:
    """Of several decisions for one request, the one to report: a refusal, else the least left."""
    counted = [d for d in decisions if d.kind is not None]
    if not counted:
        return UNLIMITED
    return min(counted, key=lambda d: (d.allowed, d.remaining / d.limit if d.limit else 0.0))


class QuotaEngine:
    def __init__(self, settings: Settings, db: Database, store: QuotaStore,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.db = db
        self.store = store
        self.clock = clock
        self.ledger = UsageLedger(db, settings.quota_ledger_flush_s, lambda: store.prune(self.clock()))
        self._limits: dict[int, tuple[float, Limits]] = {}

    @classmethod
    def for_settings(cls, settings: Settings, db: Database) -> QuotaEngine:
        """The backend the settings name: Redis at AFS_QUOTA_REDIS_URL, else the control-plane database."""
        if settings.quota_redis_url:
            from afs.quotas.redis_store import RedisQuotaStore

            return cls(settings, db, RedisQuotaStore(settings.quota_redis_url, settings.quota_redis_prefix))
        from afs.quotas.sql import SqlQuotaStore

        return cls(settings, db, SqlQuotaStore(db))

    def close(self) -> None:
        self.store.close()

    # Limits.
    def limits(self, user_id: int) -> Limits:
        cached = self._limits.get(user_id)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        with self.db.sessions() as session:
            overrides = {o.kind: o.value for o in session.scalars(
                select(QuotaOverride).where(QuotaOverride.user_id == user_id))}
        limits = resolve(self.settings, overrides)
        self._limits[user_id] = (time.monotonic() + self.settings.quota_limits_ttl_s, limits)
        return limits

    def set_limits(self, user_id: int, values: dict[str, float | None]) -> Limits:
        """Replace a user's overrides: a value sets the kind, None (or absent) means the default."""
        unknown = set(values) - set(SETTABLE)
        if unknown:
            raise ValueError(f"unknown quota kinds: {sorted(unknown)}")
        with self.db.transaction() as session:
            session.execute(delete(QuotaOverride).where(QuotaOverride.user_id == user_id))
            session.add_all(QuotaOverride(user_id=user_id, kind=k, value=v) for k, v in values.items() if v is not None)
        self._limits.pop(user_id, None)
        return self.limits(user_id)

    # Enforcement.
    def throttle(self, user_id: int, amount: int = 1) -> Decision:
        """The per-second token bucket of the data endpoints."""
        if not self.settings.quota_enabled:
            return UNLIMITED
        limits, now = self.limits(user_id), self.clock()
        rate, burst = limits.requests_per_second, limits.burst
        granted, tokens = self.store.spend(user_id, amount, rate, burst, now)
        if granted:
            self.ledger.add(utc_day(now), user_id, None, REQUESTS, amount)
        return Decision(granted, REQUESTS, burst, tokens, (burst - tokens) / rate,
                        None if granted else (amount - tokens) / rate, burst / rate)

    def charge(self, user_id: int, charges: Sequence[Charge], filter_id: str | None = None) -> Decision:
        """Charge all of ``charges`` or none of them."""
        if not self.settings.quota_enabled:
            return UNLIMITED
        limits, now = self.limits(user_id), self.clock()
        takes = [Take(c.kind, period_of(c.kind, c.key), c.amount, limits.of(c.kind),
                      reset_for(c.kind, now, self.settings.quota_visit_window_s)) for c in charges]
        charged = self.store.charge(user_id, takes, now)
        if charged.refused is None:
            for charge in charges:
                self.ledger.add(utc_day(now), user_id, filter_id, charge.kind, charge.amount)
        return self._decide(takes, charged, now)

    def _decide(self, takes: Sequence[Take], charged: Charged, now: float) -> Decision:
        decisions = []
        for index, (take, level) in enumerate(zip(takes, charged.levels)):
            refused = index == charged.refused
            decisions.append(Decision(not refused, take.kind, take.limit, take.limit - level.used,
                                      level.reset_at - now, level.reset_at - now if refused else None,
                                      window_s(take.kind, self.settings.quota_visit_window_s)))
        return tightest(*decisions)

    def charge_up_to(self, user_id: int, kind: str, amount: int, filter_id: str | None = None) -> int:
        """Charge as much of ``amount`` as still fits (bulk jobs): how much was granted."""
        while amount > 0:
            decision = self.charge(user_id, [Charge(kind, amount)], filter_id)
            if decision.allowed:
                return amount
            amount = min(amount - 1, max(0, math.floor(decision.remaining)))
        return 0

    def remaining(self, user_id: int, kind: str, key: int | None = None) -> Decision:
        """Where a quota stands, without charging (usage reports; refusing a bulk job upfront): allowed
        while one more unit would fit."""
        limits, now = self.limits(user_id), self.clock()
        if kind == REQUESTS:
            rate, burst = limits.requests_per_second, limits.burst
            tokens = self.store.tokens(user_id, rate, burst, now)
            return Decision(tokens >= 1, kind, burst, tokens, (burst - tokens) / rate,
                            None if tokens >= 1 else (1 - tokens) / rate, burst / rate)
        limit = limits.of(kind)
        level = self.store.level(user_id, kind, period_of(kind, key), now)
        visit_window = self.settings.quota_visit_window_s
        used, reset_at = (level.used, level.reset_at) if level else (0, reset_for(kind, now, visit_window))
        return Decision(used < limit, kind, limit, limit - used, reset_at - now,
                        None if used < limit else reset_at - now, window_s(kind, visit_window))
