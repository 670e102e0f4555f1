"""The helpers module: values, NaN conventions, frozen results, sanitised errors."""
from __future__ import annotations

import math
import random
from types import MappingProxyType

import astropy.units as u
import pytest
from astropy.coordinates import SkyCoord

from sandbox import helpers
from sandbox.freeze import freeze

nan_check = math.isnan


def test_flux_to_mag() -> None:
    assert helpers.flux_to_mag(3631e9) == pytest.approx(-2.5 * math.log10(3631e9) + 31.4)
    assert helpers.flux_to_mag(1.0) == 31.4
    assert helpers.flux_to_mag(10**6) == pytest.approx(16.4)
    for bad in (None, 0, -5.0, math.nan, math.inf):
        assert nan_check(helpers.flux_to_mag(bad))


def test_mag_err_and_snr() -> None:
    assert helpers.mag_err(1000.0, 100.0) == pytest.approx(2.5 / math.log(10) * 0.1)
    assert helpers.snr(-500.0, 50.0) == 10.0
    for flux, err in ((None, 1.0), (1.0, None), (-1.0, 1.0), (1.0, -1.0)):
        assert nan_check(helpers.mag_err(flux, err))
    for flux, err in ((None, 1.0), (1.0, 0.0), (1.0, None), (math.nan, 1.0)):
        assert nan_check(helpers.snr(flux, err))


def test_angular_separation_matches_astropy() -> None:
    rng = random.Random(1)
    for _ in range(50):
        ra1, ra2 = rng.uniform(0, 360), rng.uniform(0, 360)
        dec1, dec2 = rng.uniform(-90, 90), rng.uniform(-90, 90)
        expected = SkyCoord(ra1 * u.deg, dec1 * u.deg).separation(SkyCoord(ra2 * u.deg, dec2 * u.deg))
        assert helpers.angular_separation(ra1, dec1, ra2, dec2) == pytest.approx(
            expected.arcsec, abs=1e-6)
    assert helpers.angular_separation(10.0, 10.0, 10.0, 10.0 + 1 / 3600) == pytest.approx(1.0)


def test_galactic_latitude_matches_astropy() -> None:
    rng = random.Random(2)
    for _ in range(50):
        ra, dec = rng.uniform(0, 360), rng.uniform(-90, 90)
        expected = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs").galactic.b.deg
        assert helpers.galactic_latitude(ra, dec) == pytest.approx(expected, abs=1e-6)


def test_statistics() -> None:
    assert helpers.mean([1, 2, None, math.nan, 3]) == 2.0
    assert helpers.median([5, 1, 3, None]) == 3
    assert helpers.median([4, 1, 3, 2]) == 2.5
    assert helpers.stdev([2, 4, 4, 4, 5, 5, 7, 9]) == pytest.approx(2.138089935)
    assert helpers.slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2.0)
    for value in (helpers.mean([]), helpers.median([None]), helpers.stdev([1.0]),
                  helpers.slope([1], [1]), helpers.slope([1, 1], [2, 3])):
        assert nan_check(value)


def _alert() -> dict:
    def source(sid: int, mjd: float, band: str, flux: float | None) -> dict:
        return {"diaSourceId": sid, "midpointMjdTai": mjd, "band": band, "psfFlux": flux,
                "psfFluxErr": 10.0}
    return {
        "diaSourceId": 9,
        "diaSource": source(9, 60010.0, "r", 4000.0),
        "prvDiaSources": [source(3, 60005.0, "g", 2000.0), source(1, 60000.0, "r", 1000.0),
                          source(2, 60001.0, "r", None)],
        "prvDiaForcedSources": [
            {"midpointMjdTai": 59990.0, "band": "r", "psfFlux": 10.0, "psfFluxErr": 5.0},
        ],
    }


def test_light_curve_is_sorted_frozen_and_filtered() -> None:
    curve = helpers.light_curve(freeze(_alert()))
    assert [p["mjd"] for p in curve] == [60000.0, 60001.0, 60005.0, 60010.0]
    assert set(curve[0]) == {"mjd", "band", "flux", "flux_err"}
    assert type(curve) is tuple and all(type(p) is MappingProxyType for p in curve)
    assert [p["band"] for p in helpers.light_curve(_alert(), band="r")] == ["r", "r", "r"]
    forced = helpers.light_curve(_alert(), forced=True)
    assert [p["flux"] for p in forced] == [10.0]
    assert helpers.light_curve({"diaSource": None, "prvDiaSources": None}) == ()


def test_light_curve_is_cached_per_frozen_alert() -> None:
    alert = freeze(_alert())
    assert helpers.light_curve(alert) is helpers.light_curve(alert)
    helpers.reset_caches()
    other = freeze(_alert())
    assert helpers.light_curve(other) == helpers.light_curve(alert)
    assert helpers.light_curve(_alert()) is not helpers.light_curve(_alert())  # dicts: no cache


def test_rise_rate() -> None:
    alert = _alert()
    # r band: 1000 nJy at 60000, 4000 nJy at 60010 -> 2.5*log10(4) mag brighter in 10 days.
    assert helpers.rise_rate(alert, band="r") == pytest.approx(-2.5 * math.log10(4) / 10)
    assert nan_check(helpers.rise_rate(alert, band="r", days=5))  # one point left
    assert helpers.rise_rate(alert, days=5.0) == pytest.approx(
        helpers.slope([60005.0, 60010.0], [helpers.flux_to_mag(2000.0), helpers.flux_to_mag(4000.0)]))
    assert nan_check(helpers.rise_rate({"diaSource": None}))


@pytest.mark.parametrize("call", [
    lambda: helpers.flux_to_mag("10"),
    lambda: helpers.light_curve(42),
    lambda: helpers.light_curve({}, band=3),
    lambda: helpers.slope([1, 2], [1]),
    lambda: helpers.mean([object()]),
    lambda: helpers.rise_rate({"prvDiaSources": [{"midpointMjdTai": "x", "psfFlux": 1.0}],
                               "diaSource": {"midpointMjdTai": 1.0, "psfFlux": 1.0}}),
])
def test_failures_are_fresh_plain_exceptions(call) -> None:
    with pytest.raises((TypeError, ValueError)) as caught:
        call()
    exc = caught.value
    assert type(exc) in (TypeError, ValueError)
    assert exc.__context__ is None and exc.__cause__ is None
    assert all(isinstance(arg, str) for arg in exc.args)
