"""Accounts and tokens: bootstrap from the CLI, hashed storage, scopes, revocation, usage."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import select

from afs.cli import main
from afs.control.models import Token


def test_users_create_bootstraps_a_fresh_install(settings, api) -> None:
    env = {"AFS_DATABASE_URL": settings.database_url}
    created = CliRunner().invoke(main, ["users", "create", "root", "--admin"], env=env)
    assert created.exit_code == 0, created.output
    token = created.output.strip()
    assert token.startswith("afs-")
    me = api.client.get("/v1/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["name"] == "root" and me["is_admin"] and me["scopes"] == ["admin", "user"]
    again = CliRunner().invoke(main, ["users", "create", "root"], env=env)
    assert again.exit_code == 1 and "already exists" in again.output
    renewed = CliRunner().invoke(main, ["users", "token", "root"], env=env)
    assert renewed.exit_code == 0 and renewed.output.strip() != token


def test_tokens_are_stored_only_as_hashes_and_revocation_is_immediate(api) -> None:
    headers = api.user("alice")
    token = headers["Authorization"].removeprefix("Bearer ")
    key, secret = token.removeprefix("afs-").split(".")
    with api.db.sessions() as session:
        stored = session.scalars(select(Token)).all()
    assert all(secret not in repr(vars(row)) for row in stored)
    assert api.client.get("/v1/me", headers=headers).status_code == 200
    revoked = api.client.delete(f"/v1/users/alice/tokens/{key}", headers=headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert api.client.get("/v1/me", headers=headers).status_code == 401


def test_scopes_limit_what_a_token_may_do(api) -> None:
    admin = api.user("root", admin=True)
    narrow = api.client.post("/v1/users/root/tokens", headers=admin, json={"scopes": ["user"], "label": "script"})
    assert narrow.status_code == 201 and narrow.json()["scopes"] == ["user"]
    script = {"Authorization": f"Bearer {narrow.json()['token']}"}
    assert api.client.get("/v1/users", headers=script).status_code == 403
    assert api.client.get("/v1/users", headers=admin).status_code == 200
    alice = api.user("alice")
    refused = api.client.post("/v1/users/alice/tokens", headers=alice, json={"scopes": ["user", "admin"]})
    assert refused.status_code == 422 and "not an admin" in refused.json()["detail"]


def test_admins_create_users_and_set_their_per_visit_cap(api) -> None:
    admin = api.user("root", admin=True)
    created = api.client.post("/v1/users", headers=admin, json={"name": "carol"})
    assert created.status_code == 201
    body = created.json()
    assert body["max_matches_per_visit"] == api.settings.max_matches_per_visit and body["cap_is_default"]
    carol = {"Authorization": f"Bearer {body['token']}"}
    assert api.client.post("/v1/users", headers=admin, json={"name": "carol"}).status_code == 409
    assert api.client.post("/v1/users", headers=admin, json={"name": "Not Valid"}).status_code == 422
    patched = api.client.patch("/v1/users/carol", headers=admin, json={"max_matches_per_visit": 50}).json()
    assert patched["max_matches_per_visit"] == 50 and not patched["cap_is_default"]
    assert api.client.get("/v1/me", headers=carol).json()["max_matches_per_visit"] == 50
    reset = api.client.patch("/v1/users/carol", headers=admin, json={"default_cap": True}).json()
    assert reset["cap_is_default"] and reset["max_matches_per_visit"] == api.settings.max_matches_per_visit


def test_usage_counts_the_users_own_filters(api) -> None:
    alice = api.user("alice")
    api.upload(alice)
    usage = api.client.get("/v1/users/alice", headers=alice).json()["usage"]
    assert usage == {"filters": 1, "active_filters": 0, "jobs": 0, "matched": 0, "delivered": 0, "withheld": 0}


def test_a_body_that_is_not_utf8_is_a_422_not_a_server_error(api) -> None:
    """Schemathesis found it: FastAPI's own 422 handler failed on echoing such a body."""
    admin = api.user("root", admin=True)
    api.client.post("/v1/users", headers=admin, json={"name": "carol"})
    response = api.client.patch("/v1/users/carol", content=b"\x81\x01",
                                headers=admin | {"Content-Type": "application/octet-stream"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body"]
