"""Bulk downloads charged to the daily quota, the usage report, and filter moderation."""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from afs.alerts.codec import AlertCodec
from afs.alerts.simulate import simulate_visit
from afs.archive import AlertArchive
from afs.control.db import Database
from afs.control.filters import active_versions
from afs.control.models import BulkJob, Job

EVERYTHING = 'def filter(alert):\n    return True\n'
RANGE = {"start": "2020-01-01T00:00:00Z", "end": "2040-01-01T00:00:00Z"}


def archive_visit(settings, n: int) -> dict[int, bytes]:  # noqa: ANN001
    archive, codec = AlertArchive(settings.archive_dir), AlertCodec()
    wires = {r["diaSourceId"]: codec.encode(r) for r in simulate_visit(1, n, seed=5)}
    archive.put_many(wires.items())
    archive.close()
    return wires


def finished(api, headers: dict[str, str], job_id: str) -> dict:  # noqa: ANN001
    deadline = time.monotonic() + 60
    while (job := api.client.get(f"/v1/jobs/{job_id}", headers=headers).json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, "the bulk job did not finish"
        time.sleep(0.1)
    return job


def test_bulk_tar_stops_at_the_daily_quota_and_is_reported(api) -> None:
    wires = archive_visit(api.settings, 12)
    alice, root = api.user("alice"), api.user("root", admin=True)
    filter_id = api.upload(alice, EVERYTHING)["filter"]["id"]
    api.client.put("/v1/users/alice/quotas", headers=root, json={"alerts": 7})
    submitted = api.client.post(f"/v1/filters/{filter_id}/bulk", headers=alice, json=RANGE | {"format": "tar"})
    assert submitted.status_code == 202 and submitted.json()["kind"] == "bulk"
    job = finished(api, alice, submitted.json()["id"])
    assert job["status"] == "done" and job["matched"] >= 7 and job["charged"] == 7 and "quota" in job["stopped"]
    download = api.client.get(job["results"]["tar"], headers=alice)
    assert download.status_code == 200 and download.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(download.content)) as tar:
        files = {int(m.name.removesuffix(".avro")): tar.extractfile(m).read() for m in tar.getmembers()}
    assert len(files) == 7 and all(wires[i] == data for i, data in files.items())
    again = api.client.post(f"/v1/filters/{filter_id}/bulk", headers=alice, json=RANGE)
    assert again.status_code == 429 and again.headers["ratelimit-remaining"] == "0"
    assert int(again.headers["retry-after"]) > 0
    report = api.client.get(f"/v1/admin/usage?user=alice&filter={filter_id}&day={date.today()}", headers=root)
    assert report.status_code == 200
    assert [(r["kind"], r["amount"]) for r in report.json()] == [("alerts", 7)]
    assert api.client.get("/v1/admin/usage", headers=alice).status_code == 403


def test_a_bulk_job_is_never_seen_done_before_its_charge(api, monkeypatch) -> None:  # noqa: ANN001
    """Status and charge commit together, so a client polling the job never reads "done" with 0 charged."""
    archive_visit(api.settings, 5)
    alice = api.user("alice")
    filter_id = api.upload(alice, EVERYTHING)["filter"]["id"]
    seen: list[tuple[str, int]] = []
    transaction = Database.transaction

    @contextmanager
    def watched(db: Database) -> Iterator[Session]:
        with transaction(db) as session:
            yield session
        with db.sessions() as session:
            seen.extend(tuple(row) for row in session.execute(select(Job.status, BulkJob.charged).join(BulkJob)))

    monkeypatch.setattr(Database, "transaction", watched)
    job = finished(api, alice, api.client.post(f"/v1/filters/{filter_id}/bulk", headers=alice, json=RANGE).json()["id"])
    assert job["status"] == "done" and job["charged"] == 5
    assert ("done", 5) in seen and all(charged == 5 for status, charged in seen if status == "done")


def test_bulk_parquet_holds_every_match_decoded(api) -> None:
    wires = archive_visit(api.settings, 6)
    alice = api.user("alice")
    filter_id = api.upload(alice, EVERYTHING)["filter"]["id"]
    job_id = api.client.post(f"/v1/filters/{filter_id}/bulk", headers=alice,
                             json=RANGE | {"format": "parquet"}).json()["id"]
    job = finished(api, alice, job_id)
    assert job["status"] == "done" and job["charged"] == 6 and job["stopped"] is None
    table = pq.read_table(io.BytesIO(api.client.get(job["results"]["parquet"], headers=alice).content))
    assert sorted(table.column("diaSourceId").to_pylist()) == sorted(wires)
    assert table.column("diaSource").type.field("visit").type == "int64"


def test_moderation_stops_a_filter_and_its_owner_sees_why(api) -> None:
    alice, root = api.user("alice"), api.user("root", admin=True)
    filter_id = api.upload(alice)["filter"]["id"]
    assert api.client.post(f"/v1/filters/{filter_id}/activate", headers=alice).status_code == 200
    body = {"disabled": True, "reason": "floods its topic"}
    assert api.client.post(f"/v1/filters/{filter_id}/moderation", headers=alice, json=body).status_code == 403
    assert api.client.post(f"/v1/filters/{filter_id}/moderation", headers=root, json=body).status_code == 200
    seen = api.client.get(f"/v1/filters/{filter_id}", headers=alice).json()
    assert seen["status"] == "disabled" and seen["moderation"]["reason"] == "floods its topic"
    assert seen["moderation"]["by"] == "root"
    with api.db.sessions() as session:
        assert filter_id not in {a.filter_id for a in active_versions(session, 20)}  # workers drop it
    refused = api.client.post(f"/v1/filters/{filter_id}/activate", headers=alice)
    assert refused.status_code == 409 and "floods its topic" in refused.json()["detail"]
    assert api.client.post(f"/v1/filters/{filter_id}/bulk", headers=alice, json=RANGE).status_code == 409
    api.client.post(f"/v1/filters/{filter_id}/moderation", headers=root, json={"disabled": False, "reason": "fixed"})
    assert api.client.get(f"/v1/filters/{filter_id}", headers=alice).json()["status"] == "active"
    with api.db.sessions() as session:
        assert filter_id in {a.filter_id for a in active_versions(session, 20)}
