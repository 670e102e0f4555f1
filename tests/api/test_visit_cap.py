"""The per-visit cap (numBrokerAlerts) and the stats the workers write back, on the real database."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sandbox import FilterOutcome, compile_filter
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from afs.control.db import Database
from afs.control.delivery import Owner, settle
from afs.control.filters import active_versions, activate, create_filter, stats_of
from afs.control.models import Filter, User, UserVisit
from afs.control.users import create_user

SOURCE = 'def filter(alert):\n    return alert["diaSourceId"] % 40 == 0\n'


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url).create_schema()
    yield database
    database.close()


def make_filters(db: Database, owner: str, count: int, cap: int | None) -> tuple[list[str], Owner]:
    with db.transaction() as session:
        user = create_user(session, owner, max_matches_per_visit=cap)
        ids = [create_filter(session, user, SOURCE, compile_filter(SOURCE, f"f{i}"), None)[0].id for i in range(count)]
        return ids, Owner(user.id, user.name, 20 if cap is None else cap)


def matches(*indices: int) -> FilterOutcome:
    return FilterOutcome(matches=[(i, 1.0) for i in indices], cpu_seconds=0.01)


def test_the_cap_holds_across_filters_and_batches_of_one_visit(db: Database, caplog) -> None:  # noqa: ANN001
    (a, b), owner = make_filters(db, "alice", 2, cap=5)
    owners = {a: owner, b: owner}
    visits = [7] * 10
    first = settle(db, owners, {a: matches(1, 4, 6), b: matches(2, 9)}, visits, set())
    assert first.delivered == {a: [(1, 1.0), (4, 1.0), (6, 1.0)], b: [(2, 1.0), (9, 1.0)]} and not first.withheld
    second = settle(db, owners, {a: matches(0, 3), b: matches(5)}, visits, set())
    assert second.delivered == {} and second.withheld == {a: 2, b: 1}
    settle(db, owners, {a: matches(8)}, visits, set())
    crossings = [r.getMessage() for r in caplog.records if "over the per-visit cap" in r.getMessage()]
    held = ", ".join(f"{fid}: {n}" for fid, n in sorted({a: 2, b: 1}.items()))
    assert crossings == [f"user alice, visit 7: over the per-visit cap of 5; 3 matches withheld so far ({held}), "
                         "the rest of the visit's are counted in the filters' stats"]
    other_visit = settle(db, owners, {a: matches(0, 1, 2)}, [8] * 10, set())
    assert other_visit.delivered == {a: [(0, 1.0), (1, 1.0), (2, 1.0)]}
    with db.sessions() as session:
        stats = stats_of(session, session.get(Filter, a))
    assert (stats["matched"], stats["delivered"], stats["withheld"]) == (9, 6, 3)
    assert stats["alerts_seen"] == 40 and stats["last_match_at"] is not None
    assert stats["capped_visits"] == [{"visit": 7, "matched": 6, "delivered": 3, "withheld": 3}]


def test_earlier_alerts_of_a_batch_go_first(db: Database) -> None:
    (a, b), owner = make_filters(db, "alice", 2, cap=3)
    settlement = settle(db, {a: owner, b: owner}, {a: matches(5, 8), b: matches(0, 6)}, [1] * 10, set())
    assert settlement.delivered == {a: [(5, 1.0)], b: [(0, 1.0), (6, 1.0)]} and settlement.withheld == {a: 1}


def test_an_uncapped_owner_gets_everything(db: Database) -> None:
    (a,), owner = make_filters(db, "rubin", 1, cap=0)
    settlement = settle(db, {a: owner}, {a: matches(*range(50))}, [1] * 50, set())
    assert len(settlement.delivered[a]) == 50 and not settlement.withheld


def test_the_cap_is_the_users_own_or_the_default(db: Database) -> None:
    (mine,), _ = make_filters(db, "alice", 1, cap=None)
    (theirs,), _ = make_filters(db, "bob", 1, cap=3)
    with db.transaction() as session:
        for fid in (mine, theirs):
            activate(session, session.get(Filter, fid), None, 1.0)
    with db.sessions() as session:
        caps = {row.filter_id: row.cap for row in active_versions(session, default_cap=20)}
    assert caps == {mine: 20, theirs: 3}


def test_concurrent_workers_never_deliver_more_than_the_cap(db: Database) -> None:
    (a,), owner = make_filters(db, "alice", 1, cap=20)
    delivered: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(3):
            got = settle(db, {a: owner}, {a: matches(*range(4))}, [42] * 4, set())
            with lock:
                delivered.append(len(got.delivered.get(a, ())))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(delivered) == 20
    with db.sessions() as session:
        stats = stats_of(session, session.get(Filter, a))
    assert (stats["matched"], stats["delivered"], stats["withheld"]) == (48, 20, 28)


def log_at(partition: int, *offsets: int) -> list[tuple[str, int, int]]:
    return [("lsst-alerts-v11", partition, offset) for offset in offsets]


def test_a_replayed_batch_spends_no_cap_and_gets_what_was_granted(db: Database) -> None:
    """A worker died after settling offsets 0-7; their replay, cut into other batches, neither spends the
    cap nor counts in the stats again, and gets the same grants; new alerts after them settle as usual."""
    (a,), capped = make_filters(db, "alice", 1, cap=3)
    (u,), uncapped = make_filters(db, "rubin", 1, cap=0)
    owners = {a: capped, u: uncapped}
    first = settle(db, owners, {a: matches(*range(8)), u: matches(1, 6)}, [5] * 8, set(), log_at(0, *range(8)))
    assert first.delivered == {a: [(0, 1.0), (1, 1.0), (2, 1.0)], u: [(1, 1.0), (6, 1.0)]}
    assert first.withheld == {a: 5}

    again = settle(db, owners, {a: matches(*range(5)), u: matches(1)}, [5] * 5, set(), log_at(0, *range(5)))
    assert again.delivered == {a: [(0, 1.0), (1, 1.0), (2, 1.0)], u: [(1, 1.0)]} and not again.withheld
    lifted = {a: Owner(capped.id, capped.name, 0)}  # the cap lifted meanwhile: every match, each once
    assert settle(db, lifted, {a: matches(0, 1)}, [5] * 2, set(), log_at(0, 0, 1)).delivered == {a: [(0, 1.0),
                                                                                                    (1, 1.0)]}
    rest = settle(db, owners, {a: matches(*range(5)), u: matches(1, 4)}, [5] * 5, set(), log_at(0, *range(5, 10)))
    assert rest.delivered == {u: [(1, 1.0), (4, 1.0)]} and rest.withheld == {a: 2}  # offsets 8, 9 are new
    elsewhere = settle(db, owners, {a: matches(0)}, [5], set(), log_at(1, 0))  # same offset, other partition
    assert elsewhere.withheld == {a: 1}
    with db.sessions() as session:
        stats = stats_of(session, session.get(Filter, a))
        assert session.scalar(select(UserVisit.matched).where(UserVisit.user_id == capped.id)) == 11
    assert (stats["alerts_seen"], stats["matched"], stats["delivered"], stats["withheld"]) == (11, 11, 3, 8)


def test_two_workers_settling_the_same_batch_spend_the_cap_once(db: Database) -> None:
    """After a rebalance the old and the new owner of a partition can settle the same batch at once: one
    commits, the other's insert collides, and its retry is a replay."""
    (a,), owner = make_filters(db, "alice", 1, cap=3)
    barrier = threading.Barrier(2)
    results: list[dict[str, list[tuple[int, float]]]] = []
    collisions: list[str] = []

    def worker() -> None:
        barrier.wait()
        while True:
            try:
                results.append(settle(db, {a: owner}, {a: matches(*range(8))}, [9] * 8, set(), log_at(0, *range(8)))
                               .delivered)
                return
            except DBAPIError as error:  # the key collision (PostgreSQL) or a lock timeout (SQLite): retry
                collisions.append(type(error).__name__)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [{a: [(0, 1.0), (1, 1.0), (2, 1.0)]}] * 2
    with db.sessions() as session:
        assert session.scalar(select(UserVisit.matched).where(UserVisit.user_id == owner.id)) == 8


def test_auto_disable_is_recorded_once_with_its_reason_and_alert(db: Database) -> None:
    (a,), owner = make_filters(db, "alice", 1, cap=None)
    disabled = FilterOutcome(errors=[(0, "KeyError")], disabled="it failed on more than 100 alerts",
                             offending_id=1234)
    settle(db, {a: owner}, {a: disabled}, [1] * 10, set())
    settle(db, {a: owner}, {a: FilterOutcome(disabled="later reason", offending_id=99)}, [1] * 10, {a})
    with db.sessions() as session:
        found = session.get(Filter, a)
        stats = stats_of(session, found)
        assert session.get(User, found.owner_id).name == "alice"
    assert (found.disabled_reason, found.disabled_dia_source_id) == ("it failed on more than 100 alerts", 1234)
    assert stats["alerts_seen"] == 10 and stats["errors"] == 1
