"""Full alerts and cutouts over HTTP: the archived bytes exactly, JSON, FITS that astropy opens with its
WCS, PNG and multi-resolution cutouts, 429s with Retry-After and RateLimit headers, usage, and 50
concurrent clients through a real server never granted more than the quota."""

from __future__ import annotations

import io
import threading
from collections import Counter

import httpx
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.wcs import WCS

from afs.alerts.codec import AlertCodec
from afs.alerts.simulate import simulate_visit
from afs.archive import AlertArchive
from afs.config import Settings
from afs.control.db import Database
from afs.quotas.bench import new_user, serving

VISIT = 1


def token_for(settings: Settings, name: str) -> str:
    """A new user's token, straight in the control-plane database."""
    db = Database(settings.database_url).create_schema()
    _, token = new_user(db, name)
    db.close()
    return token


@pytest.fixture
def alerts(settings) -> list[dict]:  # noqa: ANN001
    """One simulated visit, archived as the worker archives it."""
    records = simulate_visit(VISIT, 5, seed=4)
    archive = AlertArchive(settings.archive_dir)
    archive.put_many((r["diaSourceId"], AlertCodec().encode(r)) for r in records)
    archive.close()
    return records


def test_the_alert_is_the_archived_bytes_and_json_on_request(api, alerts) -> None:
    alice = api.user("alice")
    first = alerts[0]["diaSourceId"]
    response = api.client.get(f"/v1/alerts/{first}", headers=alice)
    assert response.status_code == 200
    assert response.content == AlertArchive(api.settings.archive_dir).get(first)
    assert response.headers["content-type"] == "application/vnd.apache.avro+binary"
    assert AlertCodec().decode(response.content).record["diaSource"] == alerts[0]["diaSource"]
    assert response.headers["afs-schema-id"] == "1101" and "ratelimit-remaining" in response.headers
    as_json = api.client.get(f"/v1/alerts/{first}?format=json", headers=alice).json()
    assert as_json["diaSourceId"] == first and as_json["diaSource"]["visit"] == VISIT
    assert as_json["cutoutDifference"].endswith(f"/v1/alerts/{first}/cutouts/difference")
    assert api.client.get("/v1/alerts/12345", headers=alice).status_code == 404
    for path in (f"/v1/alerts/{2**63}", f"/v1/alerts/{2**63}/cutouts/science"):  # no Avro long is that large
        assert api.client.get(path, headers=alice).status_code == 422
    assert api.client.get(f"/v1/alerts/{first}").status_code == 401


def test_cutouts_open_in_astropy_with_their_wcs(api, alerts) -> None:
    alice = api.user("alice")
    alert = alerts[0]
    source = alert["diaSource"]
    for kind in ("difference", "science", "template"):
        response = api.client.get(f"/v1/alerts/{alert['diaSourceId']}/cutouts/{kind}", headers=alice)
        assert response.status_code == 200 and response.headers["content-type"] == "application/fits"
        ccd = CCDData.read(io.BytesIO(response.content), format="fits")
        assert ccd.unit == "nJy" and ccd.wcs is not None and ccd.wcs.wcs.ctype[0] == "RA---TAN"
        x, y = ccd.wcs.world_to_pixel_values(source["ra"], source["dec"])  # the source is at the centre
        assert abs(x - (ccd.shape[1] - 1) / 2) < 1.5 and abs(y - (ccd.shape[0] - 1) / 2) < 1.5
        assert ccd.uncertainty is not None and ccd.uncertainty.array.shape == ccd.shape
    usage = api.client.get("/v1/me/usage", headers=alice).json()
    cutout_bytes = next(q for q in usage["quotas"] if q["kind"] == "cutout_bytes")
    sizes = sum(len(alert[f]) for f in ("cutoutDifference", "cutoutScience", "cutoutTemplate"))
    assert cutout_bytes["used"] == sizes


def test_png_preview_and_multiresolution_geometry(api, alerts) -> None:
    alice = api.user("alice")
    url = f"/v1/alerts/{alerts[1]['diaSourceId']}/cutouts/science"
    png = api.client.get(f"{url}?format=png", headers=alice)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    multires = api.client.get(f"{url}?format=multires", headers=alice)
    assert multires.status_code == 200
    with fits.open(io.BytesIO(multires.content)) as hdus:
        levels = [hdu for hdu in hdus if hdu.data is not None and hdu.data.ndim == 2]
        assert len(levels) == 4
        base = WCS(levels[0].header)
        centre = base.pixel_to_world_values((levels[0].data.shape[1] - 1) / 2, (levels[0].data.shape[0] - 1) / 2)
        for k, hdu in enumerate(levels):
            assert hdu.data.shape == levels[0].data.shape  # n x n on every level
            level_wcs = WCS(hdu.header)
            assert np.allclose(np.abs(level_wcs.pixel_scale_matrix), np.abs(base.pixel_scale_matrix) * 2**k)
            here = level_wcs.pixel_to_world_values((hdu.data.shape[1] - 1) / 2, (hdu.data.shape[0] - 1) / 2)
            assert np.allclose(here, centre, atol=1e-7)  # every level centred on the same sky position


def test_over_quota_is_429_with_retry_after_and_ratelimit_headers(api, alerts) -> None:
    alice, root = api.user("alice"), api.user("root", admin=True)
    put = api.client.put("/v1/users/alice/quotas", headers=root, json={"visit_alerts": 2, "cutout_bytes": 1000})
    assert put.status_code == 200 and put.json()["overridden"] == ["cutout_bytes", "visit_alerts"]
    ids = [a["diaSourceId"] for a in alerts]
    assert [api.client.get(f"/v1/alerts/{i}", headers=alice).status_code for i in ids[:3]] == [200, 200, 429]
    refused = api.client.get(f"/v1/alerts/{ids[3]}", headers=alice)
    assert refused.status_code == 429 and "visit_alerts" in refused.json()["detail"]
    headers = refused.headers
    assert int(headers["retry-after"]) > 0 and headers["ratelimit-limit"] == "2"
    assert headers["ratelimit-remaining"] == "0" and int(headers["ratelimit-reset"]) > 0
    assert headers["ratelimit-policy"].startswith('2;w=86400;name="visit_alerts"')
    cutout = api.client.get(f"/v1/alerts/{ids[0]}/cutouts/difference", headers=alice)
    assert cutout.status_code == 429 and cutout.headers["ratelimit-policy"].endswith('name="cutout_bytes"')
    usage = api.client.get(f"/v1/me/usage?visit={VISIT}", headers=alice).json()
    assert api.client.get(f"/v1/me/usage?visit={2**63}", headers=alice).status_code == 422
    by_kind = {q["kind"]: q for q in usage["quotas"]}
    assert by_kind["visit_alerts"]["used"] == 2 and by_kind["alerts"]["used"] == 2
    own = api.client.get("/v1/me/usage", headers=alice).json()
    assert api.client.get("/v1/users/alice/usage", headers=root).json()["limits"] == own["limits"]
    assert api.client.get("/v1/users/root/usage", headers=alice).status_code == 404
    reset = api.client.put("/v1/users/alice/quotas", headers=root, json={}).json()
    assert reset["overridden"] == [] and reset["visit_alerts"] == api.settings.quota_visit_alerts


def test_the_per_second_limit_refuses_bursts(settings_for, database_url, tmp_path, alerts) -> None:  # noqa: ANN001
    settings = settings_for(database_url, tmp_path, quota_request_burst=3, quota_requests_per_second=0.001)
    alice = {"Authorization": f"Bearer {token_for(settings, 'alice')}"}
    with serving(settings) as url, httpx.Client(base_url=url, headers=alice) as http:
        codes = [http.get(f"/v1/alerts/{alerts[0]['diaSourceId']}") for _ in range(4)]
        assert [r.status_code for r in codes] == [200, 200, 200, 429]
        assert codes[-1].headers["ratelimit-policy"].endswith('name="requests"')
        assert int(codes[-1].headers["retry-after"]) >= 1000  # one token per 1000 s
        assert http.get("/v1/me").status_code == 200  # only the data endpoints are throttled


def test_fifty_concurrent_http_clients_never_get_more_than_the_visit_quota(settings, alerts) -> None:
    with serving(settings) as url:
        token = token_for(settings, "alice")
        barrier, statuses = threading.Barrier(50), Counter()

        def client(index: int) -> None:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
                barrier.wait()
                statuses[http.get(f"/v1/alerts/{alerts[index % len(alerts)]['diaSourceId']}").status_code] += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    # 50 requests in one visit: the default 20 per visit are granted, the burst (50) lets all through.
    assert statuses == {200: settings.quota_visit_alerts, 429: 50 - settings.quota_visit_alerts}
