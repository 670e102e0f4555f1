"""The alert simulator: schema validity, determinism, consistency, populations and cutouts."""

from __future__ import annotations

import io
from pathlib import Path

import fastavro
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import CCDData, VarianceUncertainty
import astropy.units as u
from lsst.alert.packet import Schema
from lsst.alert.packet.schema import get_schema_root

from afs.alerts import cutouts
from afs.alerts.simulate import BLOB, DEFAULT_FIRST_VISIT, simulate_visit, simulate_visits

VISIT = DEFAULT_FIRST_VISIT + 2


@pytest.fixture(scope="module")
def schema():
    path = Path(get_schema_root()) / "11" / "1" / "lsst.v11_1.alert.avsc"
    return fastavro.parse_schema(Schema.from_file(str(path)).definition)


@pytest.fixture(scope="module")
def visit_alerts():
    return simulate_visit(VISIT, 250, seed=7)


@pytest.fixture(scope="module")
def big_visit():
    return simulate_visit(VISIT, 2000, seed=11, cutouts=False)


@pytest.fixture(scope="module")
def night():
    return list(simulate_visits(2 * BLOB, 150, seed=3, cutouts=False))


def _encode(schema, alert) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, alert, strict=True)    # strict: no missing or extra fields
    return buffer.getvalue()


def test_every_alert_is_valid_v11_1_and_round_trips(schema, visit_alerts, night):
    alerts = visit_alerts + [a for _, batch in night for a in batch]
    # fastavro's validator is slow (~6 ms an alert): run it on a sample holding every kind of alert,
    # and write every alert in strict mode, which also rejects wrong types, missing and extra fields.
    sample = alerts[::25] + [a for a in alerts if a["ssSource"] is not None][:10]
    assert fastavro.validation.validate_many(sample, schema, raise_errors=True)
    encoded = [_encode(schema, alert) for alert in alerts]
    for alert, data in list(zip(alerts, encoded))[::5]:
        assert fastavro.schemaless_reader(io.BytesIO(data), schema) == alert   # float32-exact, UTC datetimes


def test_same_seed_gives_identical_bytes(schema):
    def blob(seed):
        return b"".join(_encode(schema, a) for a in simulate_visit(VISIT, 60, seed=seed))
    assert blob(5) == blob(5)
    assert blob(5) != blob(6)
    first = next(simulate_visits(1, 60, seed=5, first_visit=VISIT))[1]
    assert b"".join(_encode(schema, a) for a in first) == blob(5)


def test_ids_are_unique_and_consistent(night):
    seen = set()
    for visit, alerts in night:
        assert len(alerts) == 150
        for alert in alerts:
            source = alert["diaSource"]
            assert alert["diaSourceId"] == source["diaSourceId"] and source["visit"] == visit
            assert source["diaSourceId"] >> 22 == visit
            assert source["diaSourceId"] not in seen
            seen.add(source["diaSourceId"])
            assert source["timeProcessedMjdTai"] > source["midpointMjdTai"]
            for prv in alert["prvDiaSources"] or []:
                assert prv["diaObjectId"] == source["diaObjectId"]
                assert prv["midpointMjdTai"] < source["midpointMjdTai"]
                assert prv["timeProcessedMjdTai"] > prv["midpointMjdTai"]
            for forced in alert["prvDiaForcedSources"] or []:
                assert forced["diaObjectId"] == source["diaObjectId"]
            if alert["diaObject"] is not None:
                assert alert["diaObject"]["diaObjectId"] == source["diaObjectId"]
        bands = {a["diaSource"]["band"] for a in alerts}
        assert len(bands) == 1                       # one filter per visit


def test_dia_object_summarises_exactly_the_history(big_visit):
    for alert in big_visit:
        obj = alert["diaObject"]
        if obj is None:
            continue
        sources = (alert["prvDiaSources"] or []) + [alert["diaSource"]]
        assert obj["nDiaSources"] == len(sources)
        times = [s["midpointMjdTai"] for s in sources]
        assert obj["firstDiaSourceMjdTai"] == min(times) and obj["lastDiaSourceMjdTai"] == max(times)
        for band in "ugrizy":
            fluxes = [s["psfFlux"] for s in sources if s["band"] == band]
            assert obj[f"{band}_psfFluxNdata"] == len(fluxes)
            if fluxes:
                assert obj[f"{band}_psfFluxMin"] == pytest.approx(min(fluxes), rel=1e-5)
                assert obj[f"{band}_psfFluxMax"] == pytest.approx(max(fluxes), rel=1e-5)
                assert min(fluxes) - 1e-3 <= obj[f"{band}_psfFluxMean"] <= max(fluxes) + 1e-3
            else:
                assert obj[f"{band}_psfFluxMean"] is None
        assert abs(obj["dec"] - alert["diaSource"]["dec"]) < 2 / 3600


def test_positions_fluxes_and_pixels_are_plausible(big_visit):
    ra = np.array([a["diaSource"]["ra"] for a in big_visit])
    dec = np.array([a["diaSource"]["dec"] for a in big_visit])
    centre = SkyCoord(np.median(ra) * u.deg, np.median(dec) * u.deg)
    assert centre.separation(SkyCoord(ra * u.deg, dec * u.deg)).deg.max() < 2.6    # one LSSTCam field
    assert dec.max() < 33
    for alert in big_visit:
        s = alert["diaSource"]
        assert 0 <= s["detector"] < 189 and 0 <= s["x"] < 4072 and 0 <= s["y"] < 4000
        assert s["psfFluxErr"] > 0 and s["snr"] >= 5
        assert s["snr"] == pytest.approx(abs(s["psfFlux"]) / s["psfFluxErr"], rel=0.2) or s["isDipole"]
        assert s["isNegative"] == (s["psfFlux"] < 0)
        assert 0 <= s["reliability"] <= 1
        assert s["scienceFluxErr"] <= s["psfFluxErr"]     # the difference adds the template's noise


def test_population_fractions(big_visit):
    n = len(big_visit)
    no_history = sum(not a["prvDiaSources"] for a in big_visit) / n
    bogus = sum(a["diaSource"]["reliability"] < 0.3 for a in big_visit) / n
    history = [len(a["prvDiaSources"] or []) for a in big_visit]
    assert 0.15 < no_history < 0.55
    assert 0.1 < bogus < 0.4
    assert max(history) >= 20 and 2 <= np.median(history) <= 30
    known = [a for a in big_visit if a["diaSource"]["ssObjectId"] is not None]
    assert 0 < len(known) / n < 0.2
    for alert in known:
        assert alert["diaObject"] is None and alert["diaSource"]["diaObjectId"] is None
        assert not alert["prvDiaSources"] and not alert["prvDiaForcedSources"]
        ss, orbit = alert["ssSource"], alert["mpc_orbits"]
        assert ss["ssObjectId"] == alert["diaSource"]["ssObjectId"]
        assert ss["diaSourceId"] == alert["diaSourceId"]
        assert ss["designation"] == orbit["designation"]
        assert ss["helioRange"] > 0.5 and ss["topoRange"] > 0 and ss["ephRate"] > 0
        assert orbit["q"] == pytest.approx(orbit["a"] * (1 - orbit["e"]))
        assert int.from_bytes(orbit["packed_primary_provisional_designation"].encode().ljust(8), "big") \
            == ss["ssObjectId"]
    flagged = [a for a in big_visit if a["diaSource"]["isDipole"] or a["diaSource"]["pixelFlags_cr"]
               or a["diaSource"]["pixelFlags_edge"]]
    assert flagged and np.median([a["diaSource"]["reliability"] for a in flagged]) < 0.5


def test_revisits_carry_objects_and_move_asteroids(night):
    by_visit = dict(night)
    moved_asteroids = 0
    for j in range(BLOB):
        first, again = by_visit[DEFAULT_FIRST_VISIT + j], by_visit[DEFAULT_FIRST_VISIT + BLOB + j]
        first_ids = {a["diaSourceId"] for a in first}
        carried = [a for a in again if any(p["diaSourceId"] in first_ids for p in a["prvDiaSources"] or [])]
        assert len(carried) > 0.2 * len(again)
        asteroids = {a["diaSource"]["ssObjectId"]: a["diaSource"] for a in first if a["diaSource"]["ssObjectId"]}
        for alert in again:
            source = alert["diaSource"]
            before = asteroids.get(source["ssObjectId"])
            if before is None:
                continue
            moved = SkyCoord(before["ra"] * u.deg, before["dec"] * u.deg).separation(
                SkyCoord(source["ra"] * u.deg, source["dec"] * u.deg)).arcsec
            expected = alert["ssSource"]["ephRate"] * (source["midpointMjdTai"] - before["midpointMjdTai"]) * 3600
            assert moved == pytest.approx(expected, abs=0.05 + 5 * 3600 * (source["raErr"] + before["raErr"]))
            moved_asteroids += 1
    assert moved_asteroids > 0


def test_cutouts_are_ccddata_with_a_wcs_on_the_source(visit_alerts):
    for alert in visit_alerts:
        source = alert["diaSource"]
        side = min(max(source["bboxSize"], 30), 102)
        for key in ("cutoutDifference", "cutoutScience", "cutoutTemplate"):
            with fits.open(io.BytesIO(alert[key])) as hdul:
                assert [h.name for h in hdul] == ["PRIMARY", "UNCERT", "PSFIMAGE"]
                assert hdul[0].header["BUNIT"] == "nJy" and hdul[0].data.dtype.name == "float32"
        ccd = CCDData.read(io.BytesIO(alert["cutoutDifference"]))
        assert ccd.shape == (side, side) and isinstance(ccd.uncertainty, VarianceUncertainty)
        assert ccd.psf is not None and abs(ccd.psf.sum() - 1) < 1e-4
        x, y = ccd.wcs.world_to_pixel(SkyCoord(source["ra"] * u.deg, source["dec"] * u.deg))
        assert np.allclose([x, y], ccd.wcs.wcs.crpix - 1, atol=1e-6)
        assert abs(x - (side - 1) / 2) <= 1 and abs(y - (side - 1) / 2) <= 1
        assert 0.18 < abs(np.linalg.det(ccd.wcs.pixel_scale_matrix)) ** 0.5 * 3600 < 0.22      # ~0.2"/px


def test_cutout_pixels_match_the_catalogue(visit_alerts):
    checked = 0
    for alert in visit_alerts:
        source = alert["diaSource"]
        if source["snr"] < 30 or source["isDipole"] or source["pixelFlags_cr"] or source["trailLength"] > 0.5:
            continue
        ccd = CCDData.read(io.BytesIO(alert["cutoutDifference"]))
        psf = ccd.psf / ccd.psf.sum()
        half = psf.shape[0] // 2
        cx, cy = (int(round(float(v))) for v in ccd.wcs.wcs.crpix - 1)
        window = ccd.data[cy - half: cy + half + 1, cx - half: cx + half + 1]
        if window.shape != psf.shape:
            continue
        fit = (window * psf).sum() / (psf * psf).sum()
        assert fit == pytest.approx(source["psfFlux"], rel=0.25)        # PSF centred to a pixel, not sub-pixel
        residual = (ccd.data - np.median(ccd.data))[:4]
        assert np.std(residual) == pytest.approx(np.sqrt(np.median(ccd.uncertainty.array[:4])), rel=0.35)
        checked += 1
    assert checked >= 5


def test_fast_writer_is_byte_identical_to_ccddata_write():
    rng = np.random.default_rng(0)
    writer = cutouts.CutoutWriter()
    for side in (30, 57):
        image = rng.normal(size=(2, side, side)).astype(np.float32)
        variance = rng.uniform(1, 2, size=(2, side, side)).astype(np.float32)
        crval = np.array([[10.123456789012, -45.5], [359.9, 12.25]])
        crpix = np.array([[15.3, 15.9], [29.1, 28.7]])
        angle = np.radians([30.0, 200.0])
        cd = np.stack([[-np.cos(angle), np.sin(angle)], [np.sin(angle), np.cos(angle)]]).transpose(2, 0, 1) * 5.5e-5
        cutmin = np.array([[100, -3], [4000, 17]])
        psf = cutouts.psf_image(1.7)
        fast = writer.files(writer.headers(side, crval, crpix, cd, cutmin), image, variance, psf)
        for i in range(2):
            assert fast[i] == cutouts.ccddata_bytes(image[i], variance[i], psf, tuple(crval[i]), tuple(crpix[i]),
                                                    cd[i], tuple(cutmin[i]))


def test_arguments_are_checked():
    assert simulate_visit(VISIT, 0, seed=1) == []
    with pytest.raises(ValueError):
        simulate_visit(-1, 10, seed=1)
    with pytest.raises(ValueError):
        simulate_visit(VISIT, 10, seed=-1)
