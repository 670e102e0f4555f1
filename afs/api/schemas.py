"""Request and response bodies: what the OpenAPI document (/docs) shows a scientist."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

MAX_SOURCE_CHARS = 100_000
AVRO_LONG_MAX = 2**63 - 1  # diaSourceId, diaObjectId and visit are Avro longs: larger ids exist nowhere


class UserOut(BaseModel):
    name: str
    is_admin: bool
    builtin: bool
    max_matches_per_visit: int = Field(description="Matches delivered per visit over all this user's filters; "
                                                   "0 is no cap")
    cap_is_default: bool
    created_at: datetime


class Usage(BaseModel):
    filters: int
    active_filters: int
    jobs: int
    matched: int
    delivered: int
    withheld: int = Field(description="Matches not delivered because they were over the per-visit cap")


class UserDetail(UserOut):
    usage: Usage


class Me(UserDetail):
    scopes: list[str]


class UserCreate(BaseModel):
    name: str
    admin: bool = False
    max_matches_per_visit: int | None = Field(default=None, ge=0, description="None: the service default")


class UserPatch(BaseModel):
    is_admin: bool | None = None
    max_matches_per_visit: int | None = Field(default=None, ge=0)
    default_cap: bool = Field(default=False, description="Go back to the service's default cap")


class TokenOut(BaseModel):
    key: str
    scopes: list[str]
    label: str
    created_at: datetime
    revoked_at: datetime | None


class TokenCreate(BaseModel):
    label: str = Field(default="", max_length=200)
    scopes: list[str] | None = Field(default=None, description="Default: every scope the user may hold")


class TokenCreated(TokenOut):
    token: str = Field(description="Shown once; only its hash is stored")


class UserCreated(UserOut):
    token: str = Field(description="Shown once; only its hash is stored")


class FilterUpload(BaseModel):
    source: str = Field(max_length=MAX_SOURCE_CHARS, description="The filter file, as for `afs filter check`")
    name: str | None = Field(default=None, max_length=200, description="Used when the source sets no NAME")


class HelperOut(BaseModel):
    module: str = Field(description="helpers or math: what the filter imports it from")
    name: str
    signature: str
    doc: str


class CpuPerAlert(BaseModel):
    p50: float | None
    p99: float | None


class DryRunReport(BaseModel):
    sample: str = Field(description="archived (the most recent archived alerts) or simulated (archive empty)")
    sample_size: int
    status: str = Field(description="ok, or disabled (it would be switched off live)")
    reason: str | None
    offending_dia_source_id: int | None
    alerts_seen: int
    matched: int
    match_rate: float
    errors: int
    timeouts: int
    kills: int
    cpu_seconds: float
    cpu_per_alert_us: CpuPerAlert
    first_errors: list[str]
    sample_matches: list[int] = Field(description="diaSourceIds of the first matches")


class Disabled(BaseModel):
    reason: str
    dia_source_id: int | None
    at: datetime | None


class Moderation(BaseModel):
    disabled: bool = Field(description="True: an admin stopped the filter; it cannot be activated until re-enabled")
    reason: str
    by: str
    at: datetime


class FilterOut(BaseModel):
    id: str
    name: str
    description: str
    owner: str
    predefined: bool
    topic: str = Field(description="Kafka topic of its matches; derives from the id, stable across versions")
    status: str = Field(description="active, inactive, or disabled (switched off by the sandbox or an admin)")
    active_version: int | None
    latest_version: int
    gate_override: bool
    disabled: Disabled | None
    moderation: Moderation | None = Field(default=None, description="An admin's latest decision, with the reason")
    created_at: datetime
    updated_at: datetime


class VersionOut(BaseModel):
    version: int
    name: str
    description: str
    reads: list[str] | None
    sha256: str
    created_at: datetime
    created_by: str
    dry_run: DryRunReport | None = Field(description="On the reference sample at upload; the gate judges this")


class VersionDetail(VersionOut):
    source: str


class Uploaded(BaseModel):
    filter: FilterOut
    version: VersionOut


class ActivateIn(BaseModel):
    version: int | None = Field(default=None, description="Default: the latest version")


class DryRunIn(BaseModel):
    version: int | None = Field(default=None, description="Default: the latest version")


class GateOverride(BaseModel):
    override: bool


class CappedVisit(BaseModel):
    visit: int
    matched: int
    delivered: int
    withheld: int


class FilterStatsOut(BaseModel):
    filter_id: str
    alerts_seen: int
    matched: int
    delivered: int
    withheld: int = Field(description="Over the owner's per-visit cap: counted, not published")
    errors: int
    timeouts: int
    kills: int
    cpu_seconds: float
    cpu_per_alert_us: float | None
    last_match_at: datetime | None
    updated_at: datetime | None
    disabled_reason: str | None
    disabled_dia_source_id: int | None
    disabled_at: datetime | None
    capped_visits: list[CappedVisit] = Field(description="The latest visits in which the cap held matches back")


class KafkaSubscription(BaseModel):
    filter_id: str
    topic: str
    bootstrap_servers: str
    security_protocol: str
    consumer_group_prefix: str = Field(description="Name your consumer groups with this prefix")
    key: str = "diaSourceId as decimal text (dedupe by it: delivery is at-least-once)"
    headers: dict[str, str]
    value_format: str
    schema_id: int
    value_schema: dict[str, Any] = Field(description="Avro schema of the newest alert version")
    schema_url: str
    http_stream_url: str


class BacktestIn(BaseModel):
    start: datetime = Field(description="Alert time (midpointMjdTai) from, inclusive; UTC if no zone is given")
    end: datetime = Field(description="...to, exclusive")
    version: int | None = Field(default=None, description="Default: the latest version")


class JobOut(BaseModel):
    id: str
    kind: str = "backtest"
    filter_id: str
    version: int
    start_mjd_tai: float
    end_mjd_tai: float
    status: str = Field(description="queued, running, done or failed")
    progress: float
    total: int
    processed: int
    in_range: int
    matched: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    results: dict[str, str] | None = Field(description="Download URLs by format, once done")
    charged: int | None = Field(default=None, description="Bulk: full alerts written, charged to your daily quota")
    stopped: str | None = Field(default=None, description="Bulk: why it stopped before every match (the quota)")


class Health(BaseModel):
    status: str
    database: str


class BulkIn(BaseModel):
    start: datetime = Field(description="Alert time (midpointMjdTai) from, inclusive; UTC if no zone is given")
    end: datetime = Field(description="...to, exclusive")
    format: Literal["tar", "parquet"] = Field(default="tar", description="tar: one Avro wire-format file per "
                                              "alert; parquet: one file, one row per alert, the decoded record")
    version: int | None = Field(default=None, description="Default: the active version, else the latest")


class QuotaLimits(BaseModel):
    """Limits per user; in a PUT, a missing or null field means the service default."""

    visit_alerts: int | None = Field(default=None, ge=0, description="Full alerts per visit")
    alerts: int | None = Field(default=None, ge=0, description="Full alerts per UTC day (fetches and bulk jobs)")
    cutout_bytes: int | None = Field(default=None, ge=0, description="Cutout bytes per UTC day")
    ppdb_queries: int | None = Field(default=None, ge=0, description="PPDB queries per UTC day")
    requests_per_second: float | None = Field(default=None, gt=0, description="Data requests per second...")
    burst: int | None = Field(default=None, ge=1, description="...with bursts of up to this many")


class QuotaLimitsOut(QuotaLimits):
    overridden: list[str] = Field(description="The limits an admin set for this user; the rest are defaults")


class QuotaUse(BaseModel):
    kind: str
    period: str = Field(description="visit, day (UTC) or second (the token bucket)")
    key: int | None = Field(description="The visit, for visit_alerts")
    limit: float
    used: float
    remaining: float
    resets_at: datetime = Field(description="When the quota is whole again")


class UsageOut(BaseModel):
    user: str
    limits: QuotaLimitsOut
    quotas: list[QuotaUse]


class UsageRow(BaseModel):
    day: str
    user: str
    filter_id: str | None = Field(description="The filter a bulk job ran; null for single fetches")
    kind: str
    amount: int


class ModerationIn(BaseModel):
    disabled: bool = Field(description="True: stop the filter (workers drop it); False: let its owner run it again")
    reason: str = Field(min_length=1, max_length=2000, description="Shown to the owner")
