"""``python -m afs.quotas.bench``: what a quota check costs, and what quotas cost a full-alert GET.

1. One quota check in process (the token bucket plus a full alert's two counters, as a GET does),
   p50/p99 per backend: SQL on SQLite, SQL on PostgreSQL and Redis (each skipped if unreachable).
2. ``GET /v1/alerts/{id}`` requests/s on loopback through a real uvicorn server, from a few client
   threads, with quotas on and then off, and their ratio.
Nothing is asserted: it prints figures (tests run it at a tiny size).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from afs.alerts.codec import AlertCodec
from afs.alerts.simulate import simulate_visit
from afs.archive import AlertArchive
from afs.broker import free_port
from afs.config import Settings
from afs.control.db import Database
from afs.control.users import create_user, issue_token
from afs.quotas.engine import Charge, QuotaEngine

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
BIG = 10**12
UNBOUNDED = {"visit_alerts": BIG, "alerts": BIG, "requests_per_second": 1e9, "burst": BIG}  # never reached


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def check_latency(engine: QuotaEngine, user_id: int, calls: int) -> dict[str, tuple[float, float]]:
    """p50 and p99 in microseconds of the two checks a full-alert GET makes: the token bucket, and the
    charge of its two counters (the alert's visit and the day)."""
    engine.set_limits(user_id, UNBOUNDED)
    samples: dict[str, list[float]] = {"bucket": [], "counters": []}
    for i in range(calls):
        start = time.perf_counter()
        engine.throttle(user_id)
        middle = time.perf_counter()
        engine.charge(user_id, [Charge("visit_alerts", 1, i % 50), Charge("alerts", 1)])
        samples["bucket"].append((middle - start) * 1e6)
        samples["counters"].append((time.perf_counter() - middle) * 1e6)
    return {name: _percentiles(values) for name, values in samples.items()}


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A PostgreSQL schema of its own for the run, dropped after it; its URL."""
    import psycopg

    schema = f"afs_bench_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


def _backends(directory: Path) -> Iterator[tuple[str, Settings]]:
    yield "sql/sqlite", Settings(database_url=f"sqlite:///{directory}/bench.db")
    try:
        with postgres_schema() as url:
            yield "sql/postgresql", Settings(database_url=url)
    except Exception as error:
        print(f"  sql/postgresql: skipped ({type(error).__name__}: {error})")
    if _redis_up():
        yield "redis", Settings(database_url=f"sqlite:///{directory}/bench-redis.db", quota_redis_url=REDIS_URL,
                                quota_redis_prefix=f"afs-bench-{secrets.token_hex(4)}:")
    else:
        print("  redis: skipped (not reachable)")


def _redis_up() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping())
    except redis.RedisError:
        return False


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The API in a real uvicorn server on a free loopback port, in a thread; its base URL."""
    from afs.api.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the API server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def fill_archive(settings: Settings, alerts: int, seed: int = 1) -> list[int]:
    """Archive one simulated visit; its diaSourceIds."""
    archive, codec = AlertArchive(settings.archive_dir), AlertCodec()
    records = simulate_visit(1, alerts, seed)
    archive.put_many((r["diaSourceId"], codec.encode(r)) for r in records)
    archive.close()
    return [r["diaSourceId"] for r in records]


def new_user(db: Database, name: str) -> tuple[int, str]:
    """A new user: its id and a token."""
    with db.transaction() as session:
        user = create_user(session, name)
        _, token = issue_token(session, user)
    return user.id, token


def gets_per_second(settings: Settings, requests: int, clients: int = 4, alerts: int = 20) -> float:
    """Full-alert GETs per second over loopback, ``clients`` threads with keep-alive connections."""
    ids = fill_archive(settings, alerts)
    db = Database(settings.database_url).create_schema()
    user_id, token = new_user(db, "bench")
    QuotaEngine.for_settings(settings, db).set_limits(user_id, UNBOUNDED)
    db.close()
    with serving(settings) as url:
        errors: list[int] = []

        def client(n: int) -> None:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
                for i in range(n):
                    status = http.get(f"/v1/alerts/{ids[i % len(ids)]}").status_code
                    if status != 200:
                        errors.append(status)

        threads = [threading.Thread(target=client, args=(requests // clients,)) for _ in range(clients)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed: {sorted(set(errors))}")
    return (requests // clients) * clients / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="quota checks per backend")
    parser.add_argument("--requests", type=int, default=1000, help="full-alert GETs per run")
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        print(f"quota checks, {args.calls} of each, in process (microseconds):")
        for name, settings in _backends(directory):
            db = Database(settings.database_url).create_schema()
            engine = QuotaEngine.for_settings(settings, db)
            for check, (p50, p99) in check_latency(engine, new_user(db, "bench")[0], args.calls).items():
                print(f"  {name:15s} {check:9s} p50 {p50:7.0f}   p99 {p99:7.0f}")
            engine.close()
            db.close()
        print(f"GET /v1/alerts/{{id}} on loopback (uvicorn, {args.clients} clients, {args.requests} requests):")
        runs = {"quotas off": {"quota_enabled": False}, "quotas on, SQL (SQLite)": {}}
        if _redis_up():
            runs["quotas on, Redis"] = {"quota_redis_url": REDIS_URL,
                                        "quota_redis_prefix": f"afs-bench-{secrets.token_hex(4)}:"}
        rates = {}
        for label, overrides in runs.items():
            run = directory / label.replace(" ", "-").replace(",", "")
            settings = Settings(database_url=f"sqlite:///{run}/afs.db", archive_dir=run / "archive",
                                jobs_dir=run / "jobs", filters_dir=run / "no-filters", **overrides)
            rates[label] = gets_per_second(settings, args.requests, args.clients)
            ratio = rates[label] / rates["quotas off"]
            print(f"  {label:24s} {rates[label]:6.0f} requests/s   on/off ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
