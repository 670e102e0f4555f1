"""PPDB queries over HTTP: the API asks a real mirror owner over Arrow Flight; pages, formats, quotas,
refusals. SQLite control plane only: the database plays no part in the queries."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import uvicorn
from click.testing import CliRunner

from afs.alerts.simulate import simulate_visits
from afs.api.app import create_app
from afs.broker import free_port
from afs.cli import main
from afs.config import Settings
from afs.control.db import Database
from afs.control.users import create_user, issue_token
from afs.ppdb.mirror import Mirror
from afs.ppdb.service import Owner
from tests.api.conftest import Api, make_settings, running_api


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return [a for _, alerts in simulate_visits(3, 120, seed=5, cutouts=False) for a in alerts]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, records: list[dict]) -> Iterator[tuple[Settings, Mirror]]:
    """The mirror's owner as the worker runs it: the file, served on its Unix socket."""
    directory = tmp_path_factory.mktemp("ppdb-api")
    settings = make_settings(f"sqlite:///{directory}/afs.db", directory, quota_ppdb_queries_per_day=1000,
                             quota_requests_per_second=1000, quota_request_burst=1000)
    owner = Owner(settings)
    assert isinstance(owner.mirror, Mirror)
    owner.mirror.ingest_alerts(records)
    yield settings, owner.mirror
    owner.close()


@pytest.fixture(scope="module")
def api(served: tuple[Settings, Mirror]) -> Iterator[Api]:
    yield from running_api(served[0])


@pytest.fixture(scope="module")
def alice(api: Api) -> dict[str, str]:
    return api.user("alice")


def busiest_object(records: list[dict]) -> int:
    counts: dict[int, int] = {}
    for record in records:
        for source in [record["diaSource"], *(record["prvDiaSources"] or ())]:
            if source["diaObjectId"] is not None:
                counts[source["diaObjectId"]] = counts.get(source["diaObjectId"], 0) + 1
    return max(counts, key=counts.__getitem__)


def test_history_pages_add_up_to_the_whole_history(api: Api, alice: dict[str, str], served, records) -> None:  # noqa: ANN001
    mirror = served[1]
    object_id = busiest_object(records)
    whole = mirror.history(object_id, limit=10_000).as_json()["rows"]
    assert len(whole) > 5
    assert api.client.get(f"/v1/ppdb/objects/{2**63}/history", headers=alice).status_code == 422  # not a long
    url, rows = f"/v1/ppdb/objects/{object_id}/history?limit=3", []
    while url:
        response = api.client.get(url, headers=alice)
        assert response.status_code == 200, response.text
        rows += response.json()["rows"]
        link = response.headers.get("link")
        url = link[1:link.index(">")] if link else None
        assert (response.json()["next_cursor"] is None) == (link is None)
    assert rows == whole
    assert [r["midpointMjdTai"] for r in rows] == sorted(r["midpointMjdTai"] for r in rows)


def test_cone_and_window_answer_like_the_mirror(api: Api, alice: dict[str, str], served, records) -> None:  # noqa: ANN001
    mirror = served[1]
    source = records[0]["diaSource"]
    cone = api.client.get("/v1/ppdb/cone", headers=alice,
                          params={"ra": source["ra"], "dec": source["dec"], "radius_arcsec": 600})
    assert cone.status_code == 200
    assert cone.json() == mirror.cone(source["ra"], source["dec"], 600).as_json()
    assert cone.json()["rows"], "the alert's own object is in its cone"
    t = source["midpointMjdTai"]
    window = api.client.get("/v1/ppdb/sources", headers=alice,
                            params={"start_mjd": t - 1, "end_mjd": t + 1, "columns": "diaSourceId,band,psfFlux"})
    assert window.status_code == 200
    assert window.json() == mirror.window(t - 1, t + 1, columns=["diaSourceId", "band", "psfFlux"]).as_json()
    assert set(window.json()["rows"][0]) == {"diaSourceId", "band", "psfFlux"}


def test_parquet_pages(api: Api, alice: dict[str, str], records) -> None:  # noqa: ANN001
    object_id = busiest_object(records)
    response = api.client.get(f"/v1/ppdb/objects/{object_id}/history",
                              params={"format": "parquet", "columns": "midpointMjdTai,psfFlux"}, headers=alice)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(response.content))
    assert table.column_names[:2] == ["midpointMjdTai", "psfFlux"] and table.num_rows > 5


@pytest.mark.parametrize("params", [
    {"columns": 'band"; DROP TABLE "DiaSource'},
    {"columns": "diaSourceId,(SELECT 1)"},
    {"cursor": "' OR 1=1 --"},
    {"table": "metadata"},
])
def test_injection_through_parameters_is_refused(api: Api, alice: dict[str, str], served, records,  # noqa: ANN001
                                                 params: dict[str, str]) -> None:
    t = records[0]["diaSource"]["midpointMjdTai"]
    response = api.client.get("/v1/ppdb/sources", headers=alice, params={"start_mjd": t - 1, "end_mjd": t + 1} | params)
    assert response.status_code == 422, response.text
    assert served[1].info()["rows"]["DiaSource"] > 0


def test_a_cone_past_the_radius_cap_is_refused_with_the_reason(api: Api, alice: dict[str, str]) -> None:
    response = api.client.get("/v1/ppdb/cone", headers=alice, params={"ra": 10, "dec": -30, "radius_arcsec": 7200})
    assert response.status_code == 422 and "radius_arcsec" in response.json()["detail"]


def test_queries_count_against_the_daily_quota(served, tmp_path: Path) -> None:  # noqa: ANN001
    settings = served[0].model_copy(update={"database_url": f"sqlite:///{tmp_path}/afs.db",
                                            "quota_ppdb_queries_per_day": 3})
    for api in running_api(settings):
        bob = api.user("bob")
        statuses = [api.client.get("/v1/ppdb/cone", headers=bob, params={"ra": 1, "dec": -30, "radius_arcsec": 5})
                    for _ in range(4)]
        assert [r.status_code for r in statuses] == [200, 200, 200, 429]
        assert statuses[2].headers["ratelimit-remaining"] == "0"
        assert int(statuses[3].headers["retry-after"]) > 0
        assert api.client.get("/v1/ppdb/cone", params={"ra": 1, "dec": -30, "radius_arcsec": 5}).status_code == 401


def test_no_owner_is_a_503_not_a_crash(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path}/afs.db", tmp_path)
    for api in running_api(settings):
        response = api.client.get("/v1/ppdb/cone", headers=api.user("carol"),
                                  params={"ra": 1, "dec": -30, "radius_arcsec": 5})
        assert response.status_code == 503 and "not reachable" in response.json()["detail"]


def test_the_user_cli_pages_through_the_api(served, records, tmp_path: Path) -> None:  # noqa: ANN001
    """`afs query` against a real uvicorn server: JSON lines across pages, and a Parquet page."""
    port = free_port()
    settings = served[0].model_copy(update={"api_url": f"http://127.0.0.1:{port}"})
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        with Database(settings.database_url).transaction() as session:
            _, token = issue_token(session, create_user(session, "dora"))
        env = {"AFS_API_URL": settings.api_url, "AFS_API_TOKEN": token}
        object_id = busiest_object(records)
        result = CliRunner().invoke(main, ["query", "history", str(object_id), "--limit", "2", "--pages", "100",
                                           "--columns", "diaSourceId,midpointMjdTai"], env=env)
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        whole = served[1].history(object_id, columns=["diaSourceId", "midpointMjdTai"], limit=10_000).as_json()
        assert rows == whole["rows"] and len(rows) > 2
        out = tmp_path / "cone.parquet"
        source = records[0]["diaSource"]
        result = CliRunner().invoke(main, ["query", "cone", str(source["ra"]), str(source["dec"]), "60",
                                           "--out", str(out)], env=env)
        assert result.exit_code == 0, result.output
        assert pq.read_table(out).num_rows >= 1
    finally:
        server.should_exit = True
        thread.join(timeout=10)
