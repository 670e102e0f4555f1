"""Control-plane tables (SQLAlchemy 2 typed models); portable between SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (JSON, BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint,
                        event)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way in and out (SQLite would hand back naive datetimes)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    is_admin: Mapped[bool] = mapped_column(default=False)
    builtin: Mapped[bool] = mapped_column(default=False)  # owns the predefined filters; has no tokens
    max_matches_per_visit: Mapped[int | None] = mapped_column(Integer)  # None: the service default; 0: no cap
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Token(Base):
    """A bearer token ``afs-{key}.{secret}``: the key finds the row, only the secret's SHA-256 is stored."""

    __tablename__ = "tokens"

    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(64))  # space-separated: "user" or "user admin"
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Filter(Base):
    """A filter's identity; its code lives in immutable versions. The id names its output topic."""

    __tablename__ = "filters"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    latest_version: Mapped[int] = mapped_column(Integer, default=1)
    active_version: Mapped[int | None] = mapped_column(Integer)  # None: not running
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # changes tell workers to re-enable
    gate_override: Mapped[bool] = mapped_column(default=False)  # an admin let it past the match-rate gate
    disabled_reason: Mapped[str | None] = mapped_column(Text)  # set by a worker's sandbox
    disabled_dia_source_id: Mapped[int | None] = mapped_column(BigInteger)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    moderation: Mapped[FilterModeration | None] = relationship(lazy="selectin")


class FilterModeration(Base):
    """An admin's decision on a filter (its own table, so existing databases gain it without a migration)."""

    __tablename__ = "filter_moderation"

    filter_id: Mapped[str] = mapped_column(ForeignKey("filters.id"), primary_key=True)
    disabled: Mapped[bool] = mapped_column(default=False)  # True: no worker runs it, its owner cannot activate it
    reason: Mapped[str] = mapped_column(Text)  # shown to the owner
    by: Mapped[str] = mapped_column(String(32))  # the admin's name
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FilterVersion(Base):
    """One uploaded source with what its dry run found; never updated once written."""

    __tablename__ = "filter_versions"
    __table_args__ = (UniqueConstraint("filter_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    filter_id: Mapped[str] = mapped_column(ForeignKey("filters.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    reads: Mapped[list[str] | None] = mapped_column(JSON)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    dry_run: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # None for predefined filters


class FilterStats(Base):
    """Running totals written back by the workers, one row per filter, incremented per batch."""

    __tablename__ = "filter_stats"

    filter_id: Mapped[str] = mapped_column(ForeignKey("filters.id"), primary_key=True)
    alerts_seen: Mapped[int] = mapped_column(BigInteger, default=0)
    matched: Mapped[int] = mapped_column(BigInteger, default=0)
    delivered: Mapped[int] = mapped_column(BigInteger, default=0)
    withheld: Mapped[int] = mapped_column(BigInteger, default=0)  # over the owner's per-visit cap
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    timeouts: Mapped[int] = mapped_column(BigInteger, default=0)
    kills: Mapped[int] = mapped_column(BigInteger, default=0)
    cpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    last_match_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class FilterVisit(Base):
    """Matches of one filter in one visit: how many went out and how many the cap held back."""

    __tablename__ = "filter_visits"

    filter_id: Mapped[str] = mapped_column(ForeignKey("filters.id"), primary_key=True)
    visit: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    matched: Mapped[int] = mapped_column(Integer, default=0)
    delivered: Mapped[int] = mapped_column(Integer, default=0)
    withheld: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class UserVisit(Base):
    """A user's matches in one visit across all their filters and all workers: the cap's counter."""

    __tablename__ = "user_visits"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    visit: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    matched: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class SettledOffsets(Base):
    """One batch's alerts on one partition whose matches were settled against the caps. A replay of those
    offsets (a worker crashed, or the partition moved, before its offsets were committed) publishes the
    grants recorded here instead of spending the caps again. Two workers settling a batch from the same
    offset collide on the key; the loser's retry finds the batch settled."""

    __tablename__ = "settled_offsets"
    __table_args__ = (Index("ix_settled_offsets_last", "topic", "partition", "last_offset"),)  # a replay's lookup

    topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_offset: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    last_offset: Mapped[int] = mapped_column(BigInteger)
    # offset -> [[filter id, score], ...]: the capped owners' delivered matches (bounded by their caps); an
    # uncapped owner's matches are all delivered, so a replay takes them from the filters run again
    grants: Mapped[dict[str, list[list[Any]]]] = mapped_column(JSON)
    settled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class Job(Base):
    """A backtest: one filter version over the archived alerts of a time range, run in the background."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    filter_id: Mapped[str] = mapped_column(ForeignKey("filters.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    start_mjd: Mapped[float] = mapped_column(Float)  # midpointMjdTai range, inclusive start, exclusive end
    end_mjd: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|done|failed
    total: Mapped[int] = mapped_column(Integer, default=0)  # archived alerts to look at
    processed: Mapped[int] = mapped_column(Integer, default=0)
    in_range: Mapped[int] = mapped_column(Integer, default=0)
    matched: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    bulk: Mapped[BulkJob | None] = relationship(lazy="selectin")

    @property
    def kind(self) -> str:
        return "backtest" if self.bulk is None else "bulk"


class BulkJob(Base):
    """What makes a job a bulk download of full alerts rather than a backtest (its own table: no migration)."""

    __tablename__ = "bulk_jobs"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    format: Mapped[str] = mapped_column(String(16))  # tar | parquet
    charged: Mapped[int] = mapped_column(Integer, default=0)  # full alerts written and charged to the quota
    stopped: Mapped[str | None] = mapped_column(Text)  # why it ended before every match (the quota)


class QuotaOverride(Base):
    """An admin's limit for one user and one quota kind, over the AFS_QUOTA_* default."""

    __tablename__ = "quota_overrides"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class QuotaCounter(Base):
    """The SQL quota backend's counters: use of one kind (and visit) in its current period."""

    __tablename__ = "quota_counters"

    user_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    period: Mapped[str] = mapped_column(String(32), primary_key=True)  # "" or the visit
    used: Mapped[int] = mapped_column(BigInteger)
    reset_at: Mapped[float] = mapped_column(Float, index=True)  # epoch seconds; past it, used starts again


class QuotaBucket(Base):
    """The SQL quota backend's token bucket per user (requests per second with a burst)."""

    __tablename__ = "quota_buckets"

    user_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    at: Mapped[float] = mapped_column(Float)  # epoch seconds of the last refill


class UsageDay(Base):
    """Usage report rows: what each user was granted per UTC day, quota kind and filter ("" for none)."""

    __tablename__ = "usage_days"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD
    user_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    filter_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)


class ImmutableVersionError(RuntimeError):
    """Raised on any attempt to change a stored filter version."""


@event.listens_for(FilterVersion, "before_update")
def _versions_are_immutable(mapper: Any, connection: Any, target: FilterVersion) -> None:
    raise ImmutableVersionError(f"version {target.number} of filter {target.filter_id} is immutable; "
                                "upload a new version instead")
