"""The authorization matrix: every operation of the OpenAPI document x (no token, bad token, owner,
another user, admin) gets the right status.

The operations come from the app's own OpenAPI document, so a new endpoint fails
``test_every_operation_has_an_access_rule`` until someone decides who may call it. The expected
success status is the one the document declares.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from afs.alerts.codec import AlertCodec
from afs.alerts.simulate import simulate_visit
from afs.api.app import create_app
from afs.archive import AlertArchive
from afs.config import Settings
from afs.control.dry_run import ReferenceSamples, compile_upload, dry_run
from afs.control.filters import create_filter
from afs.control.models import Job
from afs.control.users import by_name, issue_token

SELECTIVE = 'def filter(alert):\n    return alert["diaSourceId"] % 40 == 0\n'
DOCUMENT = create_app(Settings()).openapi()
OPERATIONS = sorted((method, path) for path, item in DOCUMENT["paths"].items() for method in item)
IDENTITIES = ("none", "bad", "owner", "other", "admin")

# public: anyone; user: any valid token; owner: the owner or an admin (others get 404, as if it did
# not exist); admin: admins only (users get 403).
ACCESS = {
    ("get", "/health"): "public",
    ("get", "/v1/schemas/{schema_id}"): "public",
    ("get", "/v1/me"): "user",
    ("get", "/v1/users"): "admin",
    ("post", "/v1/users"): "admin",
    ("get", "/v1/users/{name}"): "owner",
    ("patch", "/v1/users/{name}"): "admin",
    ("get", "/v1/users/{name}/tokens"): "owner",
    ("post", "/v1/users/{name}/tokens"): "owner",
    ("delete", "/v1/users/{name}/tokens/{key}"): "owner",
    ("get", "/v1/filters"): "user",
    ("post", "/v1/filters"): "user",
    ("post", "/v1/dry-run"): "user",
    ("get", "/v1/helpers"): "user",
    ("get", "/v1/filters/{filter_id}"): "owner",
    ("put", "/v1/filters/{filter_id}"): "owner",
    ("delete", "/v1/filters/{filter_id}"): "owner",
    ("get", "/v1/filters/{filter_id}/versions"): "owner",
    ("get", "/v1/filters/{filter_id}/versions/{version}"): "owner",
    ("post", "/v1/filters/{filter_id}/activate"): "owner",
    ("post", "/v1/filters/{filter_id}/deactivate"): "owner",
    ("put", "/v1/filters/{filter_id}/gate-override"): "admin",
    ("post", "/v1/filters/{filter_id}/dry-run"): "owner",
    ("get", "/v1/filters/{filter_id}/stats"): "owner",
    ("get", "/v1/filters/{filter_id}/subscription"): "owner",
    ("get", "/v1/filters/{filter_id}/stream"): "owner",
    ("post", "/v1/filters/{filter_id}/backtests"): "owner",
    ("get", "/v1/jobs"): "user",
    ("get", "/v1/jobs/{job_id}"): "owner",
    ("get", "/v1/jobs/{job_id}/results"): "owner",
    ("get", "/v1/alerts/{dia_source_id}"): "user",
    ("get", "/v1/alerts/{dia_source_id}/cutouts/{kind}"): "user",
    ("post", "/v1/filters/{filter_id}/bulk"): "owner",
    ("get", "/v1/me/usage"): "user",
    ("get", "/v1/users/{name}/usage"): "owner",
    ("get", "/v1/users/{name}/quotas"): "owner",
    ("put", "/v1/users/{name}/quotas"): "admin",
    ("get", "/v1/admin/usage"): "admin",
    ("post", "/v1/filters/{filter_id}/moderation"): "admin",
    ("get", "/v1/ppdb/objects/{dia_object_id}/history"): "user",
    ("get", "/v1/ppdb/cone"): "user",
    ("get", "/v1/ppdb/sources"): "user",
}
# The stream needs Kafka, which this fast matrix does not start: its success here is 503 (Kafka
# unreachable), after the token and ownership checks; tests/api/test_live.py sees it stream.
NEEDS_KAFKA = {("get", "/v1/filters/{filter_id}/stream")}
# Likewise the PPDB queries need the mirror's owner (a stream worker): 503 here; tests/api/test_ppdb_api.py.
NEEDS_MIRROR = {("get", "/v1/ppdb/objects/{dia_object_id}/history"), ("get", "/v1/ppdb/cone"),
                ("get", "/v1/ppdb/sources")}
QUERY = {("get", "/v1/ppdb/cone"): {"ra": 1.0, "dec": -30.0, "radius_arcsec": 5.0},
         ("get", "/v1/ppdb/sources"): {"start_mjd": 61000.0, "end_mjd": 61000.5}}
_names = itertools.count()


def body_for(method: str, path: str) -> dict[str, Any] | None:
    return {
        ("post", "/v1/users"): lambda: {"name": f"new{next(_names)}"},
        ("patch", "/v1/users/{name}"): lambda: {"max_matches_per_visit": 7},
        ("post", "/v1/users/{name}/tokens"): lambda: {"label": "matrix"},
        ("post", "/v1/filters"): lambda: {"source": SELECTIVE},
        ("post", "/v1/dry-run"): lambda: {"source": SELECTIVE},
        ("put", "/v1/filters/{filter_id}"): lambda: {"source": SELECTIVE + "\n"},
        ("post", "/v1/filters/{filter_id}/activate"): dict,
        ("post", "/v1/filters/{filter_id}/dry-run"): dict,
        ("put", "/v1/filters/{filter_id}/gate-override"): lambda: {"override": True},
        ("post", "/v1/filters/{filter_id}/backtests"): lambda: {"start": "2020-01-01T00:00:00Z",
                                                                 "end": "2040-01-01T00:00:00Z"},
        ("post", "/v1/filters/{filter_id}/bulk"): lambda: {"start": "2020-01-01T00:00:00Z",
                                                            "end": "2040-01-01T00:00:00Z", "format": "tar"},
        ("put", "/v1/users/{name}/quotas"): lambda: {"alerts": 500},
        ("post", "/v1/filters/{filter_id}/moderation"): lambda: {"disabled": True, "reason": "matrix"},
    }.get((method, path), lambda: None)()


def success_status(method: str, path: str) -> int:
    if (method, path) in NEEDS_KAFKA | NEEDS_MIRROR:
        return 503
    codes = [int(code) for code in DOCUMENT["paths"][path][method]["responses"] if code.startswith("2")]
    assert len(codes) == 1, f"{method} {path} declares {codes}"
    return codes[0]


def expected_status(method: str, path: str, identity: str) -> int:
    access = ACCESS[(method, path)]
    if access == "public":
        return success_status(method, path)
    if identity in ("none", "bad"):
        return 401
    if access == "admin" and identity != "admin":
        return 403
    if access == "owner" and identity == "other":
        return 404
    return success_status(method, path)


@pytest.fixture(scope="module")
def world(module_api) -> dict[str, Any]:
    """Three users, a stored dry run to make owned filters cheaply, a finished backtest, an archived alert."""
    api = module_api
    alert = simulate_visit(1, 1, seed=3)[0]
    AlertArchive(api.settings.archive_dir).put(alert["diaSourceId"], AlertCodec().encode(alert))
    headers = {"owner": api.user("owner"), "other": api.user("other"), "admin": api.user("admin", admin=True)}
    owner_key = headers["owner"]["Authorization"].split("afs-")[1].split(".")[0]
    headers["bad"] = {"Authorization": f"Bearer afs-{owner_key}.not-the-secret"}
    headers["none"] = {}
    info = compile_upload(SELECTIVE, "matrix")
    report = dry_run(api.settings, ReferenceSamples(api.settings), SELECTIVE, info)
    filter_id = api.upload(headers["owner"], SELECTIVE)["filter"]["id"]
    job = api.client.post(f"/v1/filters/{filter_id}/backtests", headers=headers["owner"],
                          json=body_for("post", "/v1/filters/{filter_id}/backtests")).json()
    deadline = time.monotonic() + 30
    while api.client.get(f"/v1/jobs/{job['id']}", headers=headers["owner"]).json()["status"] != "done":
        assert time.monotonic() < deadline, "the backtest did not finish"
        time.sleep(0.1)
    return {"api": api, "headers": headers, "info": info, "report": report, "job_id": job["id"],
            "dia_source_id": alert["diaSourceId"]}


def path_values(world: dict[str, Any]) -> dict[str, str]:
    """Fresh resources owned by "owner" for one request, so a delete or revoke cannot spoil the next."""
    api = world["api"]
    with api.db.transaction() as session:
        owner = by_name(session, "owner")
        found, _ = create_filter(session, owner, SELECTIVE, world["info"], world["report"])
        token, _ = issue_token(session, owner)
        assert session.get(Job, world["job_id"]) is not None
        return {"filter_id": found.id, "version": "1", "name": "owner", "key": token.key,
                "job_id": world["job_id"], "schema_id": "1101", "dia_source_id": world["dia_source_id"],
                "kind": "difference", "dia_object_id": "1"}


def test_every_operation_has_an_access_rule() -> None:
    missing = [f"{m.upper()} {p}" for m, p in OPERATIONS if (m, p) not in ACCESS]
    assert not missing, f"decide who may call these, in ACCESS: {missing}"
    assert not set(ACCESS) - set(OPERATIONS), "ACCESS lists operations the API no longer has"


def test_only_public_operations_answer_without_a_token() -> None:
    public = {op for op, access in ACCESS.items() if access == "public"}
    secured = {(m, p) for m, p in OPERATIONS if DOCUMENT["paths"][p][m].get("security")}
    assert secured == set(OPERATIONS) - public


@pytest.mark.parametrize("identity", IDENTITIES)
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: f"{op[0].upper()} {op[1]}")
def test_access(world: dict[str, Any], operation: tuple[str, str], identity: str) -> None:
    method, path = operation
    url = path.format(**path_values(world))
    response = world["api"].client.request(method.upper(), url, headers=world["headers"][identity],
                                           json=body_for(method, path), params=QUERY.get(operation))
    assert response.status_code == expected_status(method, path, identity), response.text
    if response.status_code == 401:
        assert response.headers["www-authenticate"] == "Bearer"


def test_the_docs_answer_without_a_token(module_api) -> None:  # noqa: ANN001
    for path in ("/docs", "/openapi.json"):
        assert module_api.client.get(path).status_code == 200
