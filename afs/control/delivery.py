"""The per-visit cap on matches delivered per user, and per-filter stats written back per batch.

Cap (numBrokerAlerts): a user receives at most ``cap`` matches per visit over all their filters
(default ``AFS_MAX_MATCHES_PER_VISIT``, overridable per user; 0 is no cap). Several workers share a
visit's partitions, so the count lives in the database: each batch adds its matches to the
(user, visit) counter in one atomic upsert and learns the total, and the share granted to it is
what still fits under the cap. Within a batch, earlier alerts go first. Matches over the cap are
not published; they are counted per filter and visit, summed into the filter's stats, and logged.

Replays: a batch is settled in the same transaction that records its offsets and its capped grants
(SettledOffsets). Alerts replayed from the log (a worker crashed, or their partition moved, before
the offsets were committed) neither spend the caps nor count in the stats again; their recorded
grants, and every match of an uncapped owner, are published again (consumers dedupe by diaSourceId).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sandbox import FilterOutcome
from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from afs.control.db import Database
from afs.control.models import Filter, FilterStats, FilterVisit, SettledOffsets, UserVisit, utcnow

log = logging.getLogger(__name__)
UNKNOWN_VISIT = -1
KEEP_VISITS = timedelta(days=7)

Matches = list[tuple[int, float]]  # (index into the batch, score)
Position = tuple[str, int, int]  # an alert's (topic, partition, offset); offset < 0: not from a log, never replayed
Grants = dict[int, list[tuple[str, float]]]  # index into the batch -> (filter id, score) delivered


@dataclass(frozen=True)
class Owner:
    id: int
    name: str
    cap: int  # 0: no cap


@dataclass
class Settlement:
    """What may be published, and what the cap held back."""

    delivered: dict[str, Matches] = field(default_factory=dict)
    withheld: Counter[str] = field(default_factory=Counter)


def visit_of(record: Mapping[str, Any]) -> int:
    source = record.get("diaSource") or {}
    visit = source.get("visit")
    return visit if isinstance(visit, int) else UNKNOWN_VISIT


def _reserve(db: Database, session: Session, wanted: Mapping[tuple[int, int], int]) -> dict[tuple[int, int], int]:
    """Add each (user, visit) count to its counter atomically; the totals after this batch's addition.
    Rows go as executemany parameters, so the statement is compiled once, not once per batch and size."""
    table = UserVisit.__table__
    now = utcnow()
    statement = db.insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.user_id, table.c.visit],
        set_={"matched": table.c.matched + statement.excluded.matched, "updated_at": statement.excluded.updated_at},
    ).returning(table.c.user_id, table.c.visit, table.c.matched)
    rows = [{"user_id": u, "visit": v, "matched": n, "updated_at": now} for (u, v), n in sorted(wanted.items())]
    return {(u, v): total for u, v, total in session.execute(statement, rows)}


def apply_caps(db: Database, session: Session, owners: Mapping[str, Owner], matches: Mapping[str, Matches],
               visits: Sequence[int]) -> tuple[Settlement, dict[tuple[str, int], list[int]]]:
    """Split matches into delivered and withheld; also (filter, visit) -> [matched, delivered, withheld]."""
    settlement = Settlement()
    groups: defaultdict[tuple[int, int], list[tuple[int, str, float]]] = defaultdict(list)
    for fid, found in matches.items():
        owner = owners[fid]
        if owner.cap == 0:
            settlement.delivered[fid] = list(found)
        else:
            for index, score in found:
                groups[(owner.id, visits[index])].append((index, fid, score))
    totals = _reserve(db, session, {key: len(items) for key, items in groups.items()}) if groups else {}
    per_visit: defaultdict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    for fid, found in settlement.delivered.items():
        for index, _ in found:
            counts = per_visit[(fid, visits[index])]
            counts[0] += 1
            counts[1] += 1
    owner_by_id = {owner.id: owner for owner in owners.values()}
    for (user_id, visit), items in groups.items():
        owner = owner_by_id[user_id]
        granted = max(0, min(len(items), owner.cap - (totals[(user_id, visit)] - len(items))))
        items.sort()
        for rank, (index, fid, score) in enumerate(items):
            counts = per_visit[(fid, visit)]
            counts[0] += 1
            if rank < granted:
                settlement.delivered.setdefault(fid, []).append((index, score))
                counts[1] += 1
            else:
                settlement.withheld[fid] += 1
                counts[2] += 1
        if granted < len(items) and totals[(user_id, visit)] - len(items) <= owner.cap:  # once, as it is crossed
            held = Counter(fid for _, fid, _ in items[granted:])
            log.warning("user %s, visit %d: over the per-visit cap of %d; %d matches withheld so far (%s), "
                        "the rest of the visit's are counted in the filters' stats", owner.name, visit, owner.cap,
                        len(items) - granted, ", ".join(f"{f}: {n}" for f, n in sorted(held.items())))
    for found in settlement.delivered.values():
        found.sort()
    return settlement, dict(per_visit)


def _record_visits(db: Database, session: Session, owners: Mapping[str, Owner],
                   per_visit: Mapping[tuple[str, int], list[int]]) -> None:
    table = FilterVisit.__table__
    now = utcnow()
    statement = db.insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.filter_id, table.c.visit],
        set_={name: table.c[name] + statement.excluded[name] for name in ("matched", "delivered", "withheld")}
        | {"updated_at": statement.excluded.updated_at})
    session.execute(statement, [
        {"filter_id": fid, "visit": visit, "owner_id": owners[fid].id, "matched": m, "delivered": d, "withheld": w,
         "updated_at": now} for (fid, visit), (m, d, w) in sorted(per_visit.items())])


_COUNTERS = ("alerts_seen", "matched", "delivered", "withheld", "errors", "timeouts", "kills", "cpu_seconds")
_STATS = FilterStats.__table__
_INCREMENT_STATS = update(_STATS).where(_STATS.c.filter_id == bindparam("fid")).values(
    {name: _STATS.c[name] + bindparam(f"d_{name}") for name in _COUNTERS} | {"updated_at": bindparam("now")})


def _by_partition(positions: Sequence[Position], skip: Container[int] = ()) -> dict[tuple[str, int], dict[int, int]]:
    """(topic, partition) -> {offset: index into the batch}, for the alerts read from a log and not in ``skip``."""
    found: defaultdict[tuple[str, int], dict[int, int]] = defaultdict(dict)
    for index, (topic, partition, offset) in enumerate(positions):
        if offset >= 0 and index not in skip:
            found[(topic, partition)][offset] = index
    return found


def _replayed(session: Session, positions: Sequence[Position]) -> Grants:
    """The alerts of the batch that an earlier settlement covered, with the capped grants recorded for them."""
    replayed: Grants = {}
    table = SettledOffsets
    for (topic, partition), offsets in _by_partition(positions).items():
        rows = session.execute(select(table.first_offset, table.last_offset, table.grants).where(
            table.topic == topic, table.partition == partition, table.last_offset >= min(offsets),
            table.first_offset <= max(offsets)))
        for first, last, grants in rows:
            for offset, index in offsets.items():
                if first <= offset <= last:
                    replayed.setdefault(index, []).extend((fid, score) for fid, score in grants.get(str(offset), ()))
    return replayed


def _record_settled(session: Session, positions: Sequence[Position], replayed: Grants, owners: Mapping[str, Owner],
                    settlement: Settlement) -> None:
    """The batch's newly settled offsets, per partition, with what the caps granted on each."""
    capped: defaultdict[int, list[tuple[str, float]]] = defaultdict(list)
    for fid, found in settlement.delivered.items():
        if owners[fid].cap:
            for index, score in found:
                capped[index].append((fid, score))
    now = utcnow()
    rows = [{"topic": topic, "partition": partition, "first_offset": min(offsets), "last_offset": max(offsets),
             "grants": {str(offset): capped[index] for offset, index in offsets.items() if index in capped},
             "settled_at": now} for (topic, partition), offsets in sorted(_by_partition(positions, replayed).items())]
    if rows:
        session.execute(insert(SettledOffsets), rows)


def _republish(settlement: Settlement, owners: Mapping[str, Owner], outcomes: Mapping[str, FilterOutcome],
               replayed: Grants) -> None:
    """Add the replayed alerts' deliveries: what the caps granted them, and all of an uncapped owner's matches."""
    for index, grants in replayed.items():
        for fid, score in grants:
            if fid in owners and owners[fid].cap:  # still active and capped (else below, or not at all)
                settlement.delivered.setdefault(fid, []).append((index, score))
    for fid, outcome in outcomes.items():
        if owners[fid].cap == 0:
            settlement.delivered.setdefault(fid, []).extend(m for m in outcome.matches if m[0] in replayed)
    for found in settlement.delivered.values():
        found.sort()


def settle(db: Database, owners: Mapping[str, Owner], outcomes: Mapping[str, FilterOutcome], visits: Sequence[int],
           disabled_before: set[str], positions: Sequence[Position] = ()) -> Settlement:
    """One transaction per batch: apply the caps, add the batch to every filter's stats, record new
    auto-disables with their reason and diaSourceId. ``disabled_before``: filters that did not run.
    ``positions``: each alert's place in the log, so that a replay of the batch is recognised."""
    now = utcnow()
    with db.transaction() as session:
        replayed = _replayed(session, positions)
        fresh = {fid: [m for m in o.matches if m[0] not in replayed] for fid, o in outcomes.items()}
        matches = {fid: found for fid, found in fresh.items() if found}
        settlement, per_visit = apply_caps(db, session, owners, matches, visits)
        if per_visit:
            _record_visits(db, session, owners, per_visit)
        _record_settled(session, positions, replayed, owners, settlement)
        rows = [{"fid": fid, "now": now, "d_alerts_seen": 0 if fid in disabled_before else len(visits) - len(replayed),
                 "d_matched": len(fresh[fid]), "d_delivered": len(settlement.delivered.get(fid, ())),
                 "d_withheld": settlement.withheld[fid], "d_errors": sum(i not in replayed for i, _ in o.errors),
                 "d_timeouts": o.timeouts, "d_kills": o.kills, "d_cpu_seconds": o.cpu_seconds}
                for fid, o in sorted(outcomes.items())]
        if rows:
            session.connection().execute(_INCREMENT_STATS, rows)
        if matches:
            session.execute(update(FilterStats).where(FilterStats.filter_id.in_(list(matches)))
                            .values(last_match_at=now))
        for fid, outcome in outcomes.items():
            if outcome.disabled and fid not in disabled_before:
                session.execute(update(Filter).where(Filter.id == fid).values(
                    disabled_reason=outcome.disabled, disabled_dia_source_id=outcome.offending_id, disabled_at=now))
    if replayed:
        _republish(settlement, owners, outcomes, replayed)
    return settlement


def record_rejections(db: Database, rejected: Mapping[str, str]) -> None:
    """Filters a worker could not load: the owner sees why, as for an auto-disable."""
    now = utcnow()
    with db.transaction() as session:
        for fid, reason in rejected.items():
            session.execute(update(Filter).where(Filter.id == fid).values(
                disabled_reason=f"the worker could not load it: {reason}", disabled_dia_source_id=None,
                disabled_at=now))


def prune_visits(db: Database) -> None:
    """Per-visit counters and settled offsets older than KEEP_VISITS are only history (a replay reaches back
    only to the last committed offsets); keep the tables small."""
    horizon = utcnow() - KEEP_VISITS
    with db.transaction() as session:
        session.execute(delete(UserVisit).where(UserVisit.updated_at < horizon))
        session.execute(delete(FilterVisit).where(FilterVisit.updated_at < horizon))
        session.execute(delete(SettledOffsets).where(SettledOffsets.settled_at < horizon))
