"""The API under load and under fuzzing, through a real uvicorn server with the embedded broker behind
it: 50 concurrent clients each upload a filter, dry-run it, activate it, read its subscription, subscribe
to its HTTP stream and list their filters, on SQLite and on PostgreSQL, and get no server error; then
schemathesis sends schema-generated requests to every operation of the OpenAPI document with an admin
token and finds no server error either."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from prometheus_client.parser import text_string_to_metric_families
from schemathesis.checks import not_a_server_error

from afs.api.app import create_app
from afs.broker import EmbeddedBroker, free_port
from afs.config import Settings
from afs.control.db import Database
from afs.control.users import create_user, issue_token
from afs.metrics import probe_ppdb
from afs.processes import afs_process
from afs.quotas.bench import serving
from fault_helpers import REPO, wait_for
from tests.api.conftest import DATABASES, database_url_for, postgres_database  # noqa: F401 (a fixture it uses)

pytestmark = pytest.mark.slow
CLIENTS = 50


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(free_port()) as running:
        yield running


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty control-plane database: a SQLite file, or a fresh schema in this run's PostgreSQL database."""
    return database_url_for(request, request.param, tmp_path)


def api_settings(database_url: str, tmp: Path, bootstrap: str) -> Settings:
    return Settings(database_url=database_url, archive_dir=tmp / "archive", jobs_dir=tmp / "jobs",
                    ppdb_path=tmp / "ppdb.duckdb", filters_dir=REPO / "filters", dry_run_alerts=50,
                    kafka_bootstrap=bootstrap)


def tokens(settings: Settings, names: list[str], admin: bool = False) -> list[str]:
    db = Database(settings.database_url).create_schema()
    made = []
    with db.transaction() as session:
        for name in names:
            made.append(issue_token(session, create_user(session, name, admin=admin))[1])
    db.close()
    return made


def one_client(url: str, token: str, index: int, statuses: Counter[tuple[str, int]]) -> None:
    """Upload, dry-run, activate, subscribe (Kafka details and the HTTP stream), list: as a scientist."""
    modulus = 41 + index  # selective enough for the activation gate
    source = f'"""Every {modulus}th source."""\ndef filter(alert):\n    return alert["diaSourceId"] % {modulus} == 0\n'
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=300) as http:
        def call(step: str, method: str, path: str, **kwargs: object) -> httpx.Response:
            response = http.request(method, path, **kwargs)
            statuses[(step, response.status_code)] += 1
            return response

        uploaded = call("upload", "POST", "/v1/filters", json={"source": source, "name": f"f{index}"})
        if uploaded.status_code != 201:
            return
        fid = uploaded.json()["filter"]["id"]
        call("dry-run", "POST", f"/v1/filters/{fid}/dry-run", json={})
        call("activate", "POST", f"/v1/filters/{fid}/activate", json={})
        call("subscription", "GET", f"/v1/filters/{fid}/subscription")
        call("stream", "GET", f"/v1/filters/{fid}/stream", params={"start": "earliest", "limit": 0})
        call("list", "GET", "/v1/filters")
        call("me", "GET", "/v1/me")


def server_errors(metrics: str) -> float:
    """5xx responses counted so far in this process's afs_api_requests."""
    return sum(sample.value for family in text_string_to_metric_families(metrics) for sample in family.samples
               if sample.name == "afs_api_requests_total" and sample.labels.get("status", "").startswith("5"))


def test_fifty_concurrent_clients_get_no_server_error(broker: EmbeddedBroker, database_url: str,
                                                      tmp_path: Path) -> None:
    settings = api_settings(database_url, tmp_path, broker.bootstrap)
    users = tokens(settings, [f"user{i}" for i in range(CLIENTS // 5)])
    statuses: Counter[tuple[str, int]] = Counter()
    with serving(settings) as url:
        before = server_errors(httpx.get(f"{url}/metrics").text)  # the counters are per process, not per app
        barrier = threading.Barrier(CLIENTS)

        def run(index: int) -> None:
            barrier.wait()
            one_client(url, users[index % len(users)], index, statuses)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        metrics = httpx.get(f"{url}/metrics").text
    expected = {"upload": 201, "dry-run": 200, "activate": 200, "subscription": 200, "stream": 200, "list": 200,
                "me": 200}
    assert statuses == Counter({(step, code): CLIENTS for step, code in expected.items()}), statuses
    assert server_errors(metrics) == before  # the server counted no 5xx either


@pytest.fixture(scope="module")
def fuzzed_api(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A running API, with the PPDB mirror's owner (`afs ppdb serve`) beside it, and an admin token (so
    requests get past authentication, into the handlers)."""
    tmp = tmp_path_factory.mktemp("schemathesis")
    settings = api_settings(f"sqlite:///{tmp}/afs.db", tmp, broker.bootstrap)
    (token,) = tokens(settings, ["fuzzer"], admin=True)
    with afs_process(settings, tmp / "ppdb.log", "ppdb", "serve"), serving(settings) as url:
        wait_for(lambda: probe_ppdb(settings.ppdb_owner_url()) == "ok", "the PPDB mirror's owner", 60)
        yield url, token


# The document the server serves (built without one: no request is needed to describe the routes). The SSE
# stream never ends without a limit, so it is left to the load test above, which subscribes with one.
SCHEMA = schemathesis.openapi.from_dict(create_app(Settings()).openapi()).exclude(path_regex=r"/stream$")


@SCHEMA.parametrize()
@settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_schemathesis_finds_no_server_error(case: schemathesis.Case, fuzzed_api: tuple[str, str]) -> None:
    url, token = fuzzed_api
    case.call_and_validate(base_url=url, headers={"Authorization": f"Bearer {token}"}, checks=[not_a_server_error])
