"""The API as an operator sees it, through a real uvicorn server: /healthz, /readyz (what it checks and
what makes it unready) and Prometheus /metrics (requests by route template and status, quota denials)."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from afs.alerts.codec import AlertCodec
from afs.alerts.simulate import simulate_visit
from afs.archive import AlertArchive
from afs.broker import free_port
from afs.config import Settings
from afs.control.db import Database
from afs.quotas.bench import new_user, serving

REPO = Path(__file__).resolve().parents[1]
REDIS_URL = "redis://127.0.0.1:6379/15"


def settings_in(directory: Path, **overrides: object) -> Settings:
    values: dict[str, object] = dict(
        database_url=f"sqlite:///{directory}/afs.db", archive_dir=directory / "archive", jobs_dir=directory / "jobs",
        ppdb_path=directory / "ppdb.duckdb", filters_dir=REPO / "filters", dry_run_alerts=50,
        kafka_bootstrap=f"127.0.0.1:{free_port()}")
    return Settings(**(values | overrides))


def counter(url: str, name: str, **labels: str) -> float:
    """One sample of the API's /metrics (0 when the series does not exist yet)."""
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_liveness_and_readiness_with_the_database_up(tmp_path: Path) -> None:
    with serving(settings_in(tmp_path)) as url:
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        ready = httpx.get(f"{url}/readyz")
        metrics = httpx.get(f"{url}/metrics").text
    assert "process_cpu_seconds_total" in metrics and "afs_worker_" not in metrics  # its own series only
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["checks"]["database"] == "ok"
    assert body["checks"]["ppdb"].startswith("unreachable")  # no mirror owner runs: reported, not required
    assert "quotas" not in body["checks"]  # the SQL quota store is the database itself


def test_readiness_follows_the_redis_quota_store(tmp_path: Path) -> None:
    with serving(settings_in(tmp_path, quota_redis_url=REDIS_URL)) as url:
        assert httpx.get(f"{url}/readyz").json()["checks"]["quotas"] == "ok"
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    with serving(settings_in(tmp_path / "dead", quota_redis_url=dead_redis)) as url:
        refused = httpx.get(f"{url}/readyz")
        assert httpx.get(f"{url}/healthz").status_code == 200  # alive: restarting it would not bring Redis back
    assert refused.status_code == 503
    assert refused.json()["status"] == "not ready" and refused.json()["checks"]["quotas"].startswith("unreachable")


def test_metrics_count_quota_denials_and_responses_by_route(tmp_path: Path) -> None:
    settings = settings_in(tmp_path, quota_request_burst=3, quota_requests_per_second=0.001)
    record = simulate_visit(1, 1, seed=4)[0]
    archive = AlertArchive(settings.archive_dir)
    archive.put_many([(record["diaSourceId"], AlertCodec().encode(record))])
    archive.close()
    db = Database(settings.database_url).create_schema()
    _, token = new_user(db, "alice")
    db.close()
    route = "/v1/alerts/{dia_source_id}"
    with serving(settings) as url:
        before = {code: counter(url, "afs_api_requests_total", route=route, status=code) for code in ("200", "429")}
        denied_before = counter(url, "afs_api_quota_denials_total", kind="requests")
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
            codes = [http.get(f"/v1/alerts/{record['diaSourceId']}").status_code for _ in range(7)]
        assert codes == [200] * 3 + [429] * 4
        assert counter(url, "afs_api_quota_denials_total", kind="requests") - denied_before == 4
        assert counter(url, "afs_api_requests_total", route=route, status="200") - before["200"] == 3
        assert counter(url, "afs_api_requests_total", route=route, status="429") - before["429"] == 4
        httpx.get(f"{url}/no/such/path")
        assert counter(url, "afs_api_requests_total", route="unmatched", status="404") >= 1
