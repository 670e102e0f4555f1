"""The quota engine against its real backends (SQL on SQLite and PostgreSQL, Redis): never over-granted
under 50 concurrent clients, periods that reset at their boundaries on an injected clock, persistence."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis

from afs.config import Settings
from afs.control.db import Database
from afs.control.users import create_user
from afs.quotas.engine import Charge, QuotaEngine
from afs.quotas.redis_store import RedisQuotaStore
from afs.quotas.sql import SqlQuotaStore

REDIS_URL = "redis://127.0.0.1:6379/0"
BACKENDS = ["sql", "redis"]
CLIENTS = 50


class Clock:
    """A clock the test moves: periods end without sleeping."""

    def __init__(self, moment: datetime) -> None:
        self.now = moment.timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, database_url: str) -> Iterator[tuple[Settings, Database, str]]:
    """Settings, a control-plane database (SQLite, PostgreSQL) with user 'alice', and a Redis prefix of its
    own (deleted after): the SQL backend on both databases, and Redis."""
    kind, url = request.param, database_url
    prefix = f"afs-test-{secrets.token_hex(4)}:"
    if kind == "redis":
        try:
            redis.Redis.from_url(REDIS_URL).ping()
        except redis.ConnectionError as error:
            pytest.skip(f"Redis not reachable at {REDIS_URL}: {error}")
    settings = Settings(database_url=url, quota_redis_url=REDIS_URL if kind == "redis" else None,
                        quota_redis_prefix=prefix, quota_visit_alerts=20, quota_alerts_per_day=100,
                        quota_requests_per_second=2.0, quota_request_burst=30)
    db = Database(url).create_schema()
    with db.transaction() as session:
        create_user(session, "alice")
    yield settings, db, prefix
    db.close()
    if kind == "redis":
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


def engine_for(settings: Settings, db: Database, clock: Clock) -> QuotaEngine:
    store = (RedisQuotaStore(settings.quota_redis_url, settings.quota_redis_prefix) if settings.quota_redis_url
             else SqlQuotaStore(db))
    return QuotaEngine(settings, db, store, clock)


def hammer(n: int, attempt: object) -> list[bool]:
    """``n`` threads released together, each making 3 attempts: every outcome."""
    barrier, results, lock = threading.Barrier(n), [], threading.Lock()

    def client() -> None:
        barrier.wait()
        for _ in range(3):
            outcome = attempt()
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=client) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_fifty_concurrent_clients_are_never_granted_more_than_the_limit(backend) -> None:
    settings, db, _ = backend
    engine = engine_for(settings, db, Clock(datetime(2031, 3, 1, 12, tzinfo=UTC)))
    alerts = hammer(CLIENTS, lambda: engine.charge(1, [Charge("visit_alerts", 1, 7), Charge("alerts", 1)]).allowed)
    assert len(alerts) == 3 * CLIENTS and alerts.count(True) == 20  # the visit's 20, not one more
    assert engine.remaining(1, "alerts").remaining == 100 - 20  # the refused ones charged nothing
    requests = hammer(CLIENTS, lambda: engine.throttle(1).allowed)  # the clock stands still: no refill
    assert requests.count(True) == 30
    engine.close()


def test_quotas_reset_at_their_period_boundaries(backend) -> None:
    settings, db, _ = backend
    clock = Clock(datetime(2031, 3, 1, 23, 59, 58, tzinfo=UTC))
    engine = engine_for(settings, db, clock)
    assert engine.charge(1, [Charge("alerts", 100)]).allowed
    refused = engine.charge(1, [Charge("alerts", 1)])
    assert not refused.allowed and refused.headers()["Retry-After"] == "2"
    assert refused.headers()["RateLimit-Remaining"] == "0" and refused.headers()["RateLimit-Reset"] == "2"
    clock.now += 1.999
    assert not engine.charge(1, [Charge("alerts", 1)]).allowed  # still 23:59:59.999
    clock.now += 0.001  # 00:00:00 UTC
    assert engine.charge(1, [Charge("alerts", 1)]).allowed and engine.remaining(1, "alerts").remaining == 99
    # A visit's counter lives AFS_QUOTA_VISIT_WINDOW_S from its first fetch; other visits are separate.
    assert engine.charge(1, [Charge("visit_alerts", 20, 8)]).allowed
    assert not engine.charge(1, [Charge("visit_alerts", 1, 8)]).allowed
    assert engine.charge(1, [Charge("visit_alerts", 1, 9)]).allowed
    clock.now += settings.quota_visit_window_s
    assert engine.charge(1, [Charge("visit_alerts", 20, 8)]).allowed
    # The bucket: empty, then one token back after 1/rate seconds.
    assert engine.throttle(1, 30).allowed and not engine.throttle(1).allowed
    clock.now += 0.5
    assert engine.throttle(1).allowed and not engine.throttle(1).allowed
    engine.close()


def test_all_or_nothing_and_overrides(backend) -> None:
    settings, db, _ = backend
    engine = engine_for(settings, db, Clock(datetime(2031, 3, 1, 12, tzinfo=UTC)))
    assert not engine.charge(1, [Charge("alerts", 5), Charge("visit_alerts", 21, 1)]).allowed
    assert engine.remaining(1, "alerts").remaining == 100  # the first take was rolled back
    limits = engine.set_limits(1, {"alerts": 3, "burst": 2})
    assert (limits.alerts, limits.burst, limits.visit_alerts) == (3, 2, 20) and limits.overridden == {"alerts", "burst"}
    assert engine.charge_up_to(1, "alerts", 10) == 3 and engine.charge_up_to(1, "alerts", 10) == 0
    engine.close()


def test_counters_persist_across_restarts(backend) -> None:
    settings, db, _ = backend
    clock = Clock(datetime(2031, 3, 1, 12, tzinfo=UTC))
    first = engine_for(settings, db, clock)
    assert first.charge(1, [Charge("alerts", 60)]).allowed and first.throttle(1, 30).allowed
    first.close()
    again = Database(settings.database_url)  # a new process: new engine, new connections or Redis client
    second = engine_for(settings, again, clock)
    assert second.remaining(1, "alerts").remaining == 40
    assert not second.charge(1, [Charge("alerts", 41)]).allowed and not second.throttle(1).allowed
    second.close()
    again.close()
