"""Filters through the API: upload validation and dry run, immutable versions, stable topics, the
activation gate and its override, soft delete, predefined filters."""

from __future__ import annotations

import pytest

from afs.control.models import FilterVersion, ImmutableVersionError

SELECTIVE = 'def filter(alert):\n    return alert["diaSourceId"] % 40 == 0\n'
EVERYTHING = '"""Everything."""\nNAME = "Everything"\n\ndef filter(alert):\n    return True\n'
BROKEN = 'import os\n\ndef filter(alert):\n    return alert.__class__\n'


def test_upload_dry_runs_on_the_reference_sample(api) -> None:
    owner = api.user("alice")
    uploaded = api.upload(owner, SELECTIVE, name="every fortieth")
    flt, version = uploaded["filter"], uploaded["version"]
    assert flt["name"] == "every fortieth" and flt["status"] == "inactive" and flt["latest_version"] == 1
    assert flt["topic"] == api.settings.filter_topic(flt["id"])
    report = version["dry_run"]
    assert report["sample"] == "simulated" and report["sample_size"] == report["alerts_seen"] == 200
    assert report["status"] == "ok" and report["errors"] == 0
    assert 0 < report["matched"] == len(report["sample_matches"]) and report["match_rate"] == report["matched"] / 200
    assert all(sid % 40 == 0 for sid in report["sample_matches"])
    assert report["cpu_per_alert_us"]["p50"] > 0


def test_a_filter_that_does_not_compile_gets_422_with_every_problem_located(api) -> None:
    owner = api.user("alice")
    response = api.client.post("/v1/filters", headers=owner, json={"source": BROKEN})
    assert response.status_code == 422
    body = response.json()
    assert body["problems"][0]["line"] == 1 and body["problems"][0]["column"] == 1
    assert "'os'" in body["problems"][0]["reason"]
    assert body["problems"][1]["line"] == 4 and "__class__" in body["problems"][1]["reason"]
    assert "line 1, column 1" in body["detail"]
    assert api.client.get("/v1/filters", headers=owner).json() == [f for f in api.client.get(
        "/v1/filters", headers=owner).json() if f["predefined"]], "nothing is stored"


def test_a_filter_failing_as_it_loads_is_refused_with_its_line(api) -> None:
    source = 'LIMIT = 1 // 0\n\ndef filter(alert):\n    return True\n'
    response = api.client.post("/v1/dry-run", headers=api.user("alice"), json={"source": source})
    assert response.status_code == 422, response.text
    assert response.json()["problems"][0]["line"] == 1 and "ZeroDivisionError" in response.json()["detail"]


def test_a_filter_erroring_on_every_alert_is_reported_disabled_and_cannot_be_activated(api) -> None:
    owner = api.user("alice")
    uploaded = api.upload(owner, 'def filter(alert):\n    return alert["nope"]\n')
    report = uploaded["version"]["dry_run"]
    assert report["status"] == "disabled" and report["errors"] > 0 and report["first_errors"]
    response = api.client.post(f"/v1/filters/{uploaded['filter']['id']}/activate", headers=owner, json={})
    assert response.status_code == 409 and "disabled in its dry run" in response.json()["detail"]


def test_updates_make_new_immutable_versions_and_keep_the_topic(api) -> None:
    owner = api.user("alice")
    first = api.upload(owner, SELECTIVE, name="first name")["filter"]
    v1 = api.client.get(f"/v1/filters/{first['id']}/versions/1", headers=owner).json()
    assert api.client.get(f"/v1/filters/{first['id']}/versions/{2**63}", headers=owner).status_code == 422
    renamed = SELECTIVE.replace("% 40", "% 41").replace("def filter", 'NAME = "Renamed"\n\ndef filter')
    response = api.client.put(f"/v1/filters/{first['id']}", headers=owner, json={"source": renamed})
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["version"]["version"] == 2 and second["filter"]["name"] == "Renamed"
    assert second["filter"]["id"] == first["id"] and second["filter"]["topic"] == first["topic"]
    assert api.client.get(f"/v1/filters/{first['id']}/versions/1", headers=owner).json() == v1
    history = api.client.get(f"/v1/filters/{first['id']}/versions", headers=owner).json()
    assert [v["version"] for v in history] == [1, 2] and [v["name"] for v in history] == ["first name", "Renamed"]
    assert api.client.get(f"/v1/filters/{first['id']}/versions/2", headers=owner).json()["source"] == renamed
    with api.db.sessions() as session:
        stored = session.query(FilterVersion).filter_by(filter_id=first["id"], number=1).one()
        stored.source = "def filter(alert):\n    return True\n"
        with pytest.raises(ImmutableVersionError):
            session.commit()


def test_activation_gate_refuses_permissive_versions_unless_an_admin_overrides(api) -> None:
    owner, admin = api.user("alice"), api.user("root", admin=True)
    flt = api.upload(owner, EVERYTHING)["filter"]
    url = f"/v1/filters/{flt['id']}"
    refused = api.client.post(f"{url}/activate", headers=owner, json={})
    assert refused.status_code == 409
    body = refused.json()
    assert body["match_rate"] == 1.0 and body["limit"] == api.settings.activation_max_match_rate
    assert "100.0% of the reference sample (200 simulated alerts), above the 5.0% limit" in body["detail"]
    assert api.client.get(url, headers=owner).json()["status"] == "inactive"
    assert api.client.put(f"{url}/gate-override", headers=owner, json={"override": True}).status_code == 403
    assert api.client.put(f"{url}/gate-override", headers=admin, json={"override": True}).json()["gate_override"]
    activated = api.client.post(f"{url}/activate", headers=owner, json={})
    assert activated.status_code == 200 and activated.json()["status"] == "active"
    assert activated.json()["active_version"] == 1


def test_activating_a_version_keeps_it_running_while_newer_versions_are_uploaded(api) -> None:
    owner = api.user("alice")
    flt = api.upload(owner, SELECTIVE)["filter"]
    url = f"/v1/filters/{flt['id']}"
    assert api.client.post(f"{url}/activate", headers=owner, json={}).json()["active_version"] == 1
    api.client.put(url, headers=owner, json={"source": EVERYTHING})
    assert api.client.get(url, headers=owner).json()["active_version"] == 1
    assert api.client.post(f"{url}/activate", headers=owner, json={"version": 2}).status_code == 409
    assert api.client.post(f"{url}/activate", headers=owner, json={"version": 9}).status_code == 404
    assert api.client.post(f"{url}/deactivate", headers=owner).json()["status"] == "inactive"


def test_deleted_filters_disappear_but_their_versions_stay(api) -> None:
    owner = api.user("alice")
    flt = api.upload(owner, SELECTIVE)["filter"]
    api.client.post(f"/v1/filters/{flt['id']}/activate", headers=owner, json={})
    assert api.client.delete(f"/v1/filters/{flt['id']}", headers=owner).status_code == 204
    assert api.client.get(f"/v1/filters/{flt['id']}", headers=owner).status_code == 404
    assert flt["id"] not in [f["id"] for f in api.client.get("/v1/filters", headers=owner).json()]
    with api.db.sessions() as session:
        assert session.query(FilterVersion).filter_by(filter_id=flt["id"]).count() == 1


def test_users_see_their_own_and_the_predefined_filters_admins_see_all(api) -> None:
    alice, bob, admin = api.user("alice"), api.user("bob"), api.user("root", admin=True)
    mine = api.upload(alice, SELECTIVE)["filter"]["id"]
    theirs = api.upload(bob, SELECTIVE)["filter"]["id"]
    predefined = {p.stem for p in api.settings.filters_dir.glob("*.py")}

    def listed(headers: dict[str, str]) -> set[str]:
        return {f["id"] for f in api.client.get("/v1/filters", headers=headers).json()}

    assert listed(alice) == predefined | {mine}
    assert listed(admin) == predefined | {mine, theirs}
    some = sorted(predefined)[0]
    shown = api.client.get(f"/v1/filters/{some}", headers=alice).json()
    assert shown["predefined"] and shown["owner"] == "rubin" and shown["status"] == "active"
    assert shown["topic"] == api.settings.filter_topic(some)
    assert api.client.get(f"/v1/filters/{some}/subscription", headers=alice).status_code == 200
    assert api.client.post(f"/v1/filters/{some}/deactivate", headers=alice).status_code == 403
    assert api.client.put(f"/v1/filters/{some}", headers=alice, json={"source": SELECTIVE}).status_code == 403
    assert api.client.post(f"/v1/filters/{some}/deactivate", headers=admin).json()["status"] == "inactive"


def test_subscription_tells_topic_schema_and_group_prefix(api) -> None:
    owner = api.user("alice")
    flt = api.upload(owner, SELECTIVE)["filter"]
    info = api.client.get(f"/v1/filters/{flt['id']}/subscription", headers=owner).json()
    assert info["topic"] == flt["topic"] and info["consumer_group_prefix"] == "afs-alice-"
    assert info["schema_id"] == 1101 and info["value_schema"]["name"] == "lsst.v11_1.alert"
    assert info["bootstrap_servers"] == api.settings.kafka_bootstrap
    schema = api.client.get(info["schema_url"].removeprefix("http://testserver")).json()
    assert '"diaSourceId"' in schema["schema"]
    assert api.client.get("/v1/schemas/900001").json()["schema"].startswith('{"type": "record"')


def test_predefined_filters_follow_the_directory(api, tmp_path) -> None:  # noqa: ANN001
    from afs.control.filters import sync_predefined

    directory = tmp_path / "predefined"
    directory.mkdir()
    (directory / "bright.py").write_text(SELECTIVE)
    sync_predefined(api.db, directory)
    admin = api.user("root", admin=True)
    assert api.client.get("/v1/filters/bright", headers=admin).json()["active_version"] == 1
    (directory / "bright.py").write_text(SELECTIVE.replace("40", "41"))
    sync_predefined(api.db, directory)
    assert api.client.get("/v1/filters/bright", headers=admin).json()["active_version"] == 2
    sync_predefined(api.db, tmp_path / "elsewhere")  # missing: nothing changes
    assert api.client.get("/v1/filters/bright", headers=admin).json()["status"] == "active"
    (directory / "bright.py").unlink()
    sync_predefined(api.db, directory)
    assert api.client.get("/v1/filters/bright", headers=admin).json()["status"] == "inactive"
