"""Multi-resolution cutouts: geometry, WCS of every level, flux conservation, agreement with the alert's cutout."""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from afs.alerts.codec import AlertCodec
from afs.alerts.cutouts import cutout_side
from afs.alerts.multires import KINDS, LEVELS, build, field_source, level_side, pyramid
from afs.alerts.simulate import DEFAULT_FIRST_VISIT, simulate_visit
from afs.config import Settings

VISIT = DEFAULT_FIRST_VISIT + 6
SETTINGS = Settings()


@pytest.fixture(scope="module")
def alerts() -> list[dict]:
    """A few decoded alerts: a 30 px cutout, the largest cutout and the brightest science source."""
    codec = AlertCodec()
    records = [codec.decode(codec.encode(a)).record for a in simulate_visit(VISIT, 80, seed=5)]
    sides = [int(cutout_side(np.asarray(r["diaSource"]["bboxSize"]))) for r in records]
    picked = [records[sides.index(30)], records[int(np.argmax(sides))],
              max(records, key=lambda r: r["diaSource"]["scienceFlux"] or 0)]
    assert max(sides) > 30
    return picked


def _cases(alerts):
    return [(alert, kind) for alert in alerts for kind in KINDS]


def _open(data: bytes) -> fits.HDUList:
    return fits.open(io.BytesIO(data))


def _side(alert) -> int:
    return int(cutout_side(np.asarray(alert["diaSource"]["bboxSize"])))


def _cutout(alert, kind):
    hdus = fits.open(io.BytesIO(alert[f"cutout{kind.title()}"]))
    return hdus[0].data, WCS(hdus[0].header)


def test_level_side_rule():
    assert [level_side(s) for s in (30, 31, 32, 40, 64, 102)] == [16, 16, 16, 20, 32, 52]
    for side in range(30, 103):
        n = level_side(side)
        assert n % 4 == 0 and abs(n - side / 2) <= 2
        assert 0.75 < LEVELS * n * n / side**2 < 1.3          # about the alert's own pixel count


def test_every_level_opens_with_a_celestial_wcs_and_documented_keywords(alerts):
    for alert, kind in _cases(alerts):
        n = level_side(_side(alert))
        hdus = _open(build(SETTINGS, alert, kind))
        assert len(hdus) == LEVELS and isinstance(hdus[0], fits.PrimaryHDU)
        assert sum(h.data.size for h in hdus) == LEVELS * n * n
        for level, hdu in enumerate(hdus):
            header = hdu.header
            assert hdu.data.shape == (n, n) and hdu.data.dtype == np.dtype(">f4")
            assert (header["EXTNAME"], header["MRLEVEL"], header["MRBIN"]) == (f"LEVEL{level}", level, 2**level)
            assert (header["MRLEVELS"], header["MRNPIX"], header["MRFIELD"]) == (LEVELS, n, n * 2 ** (LEVELS - 1))
            assert (header["BUNIT"], header["MRBINOP"], header["CUTKIND"]) == ("nJy", "SUM", kind)
            assert header["DIASRCID"] == alert["diaSourceId"]
            level_wcs = WCS(header)
            assert level_wcs.has_celestial and level_wcs.naxis == 2 and level_wcs.pixel_shape == (n, n)


def test_alert_position_is_at_the_centre_of_every_level(alerts):
    for alert, kind in _cases(alerts):
        n = level_side(_side(alert))
        for level, hdu in enumerate(_open(build(SETTINGS, alert, kind))):
            x, y = WCS(hdu.header).world_to_pixel_values(alert["diaSource"]["ra"], alert["diaSource"]["dec"])
            # the centre of a level is the pixel corner nearest the source: within half a native pixel
            assert abs(x - (n - 1) / 2) <= 0.5 / 2**level + 1e-6
            assert abs(y - (n - 1) / 2) <= 0.5 / 2**level + 1e-6


def test_field_width_is_eight_level_sides_of_native_pixels(alerts):
    for alert in alerts:
        n = level_side(_side(alert))
        image, native = _cutout(alert, "science")
        coarsest = WCS(_open(build(SETTINGS, alert, "science"))[LEVELS - 1].header)
        # the outer edges of the coarsest level, through the middle row, against the native pixel scale
        left, right = coarsest.pixel_to_world([-0.5, n - 0.5], [(n - 1) / 2] * 2)
        scale = np.linalg.norm(native.pixel_scale_matrix[:, 0]) * 3600      # arcsec per native pixel along x
        assert left.separation(right).arcsec == pytest.approx(8 * n * scale, rel=1e-6)
        assert 8 * n > 3.5 * image.shape[0]                     # about four times the alert's cutout


@pytest.fixture(scope="module")
def pyramids(alerts):
    """(alert, kind, levels as written, the parent image and WCS they were binned from)."""
    out = []
    for alert, kind in _cases(alerts):
        field = level_side(_side(alert)) * 2 ** (LEVELS - 1)
        parent, parent_wcs = field_source(SETTINGS).parent(alert, kind, field)
        assert parent.shape == (field, field)
        out.append((alert, kind, _open(build(SETTINGS, alert, kind)), parent, parent_wcs))
    return out


def test_binning_conserves_flux_against_the_parent(pyramids):
    for _, _, hdus, parent, _ in pyramids:
        for hdu in hdus:
            b, n, x0, y0 = (hdu.header[k] for k in ("MRBIN", "MRNPIX", "MRORIGX", "MRORIGY"))
            covered = parent[y0: y0 + n * b, x0: x0 + n * b].astype(np.float64)
            sums = covered.reshape(n, b, n, b).sum(axis=(1, 3))
            np.testing.assert_allclose(hdu.data, sums, rtol=1e-5, atol=1e-3 * np.abs(covered).max())
            assert hdu.data.sum(dtype=np.float64) == pytest.approx(covered.sum(), rel=1e-5, abs=1e-2 * covered.std())


def test_centre_quarter_of_each_level_is_the_finer_level_binned(pyramids):
    for _, _, hdus, _, _ in pyramids:
        for finer, coarser in zip(hdus[:-1], hdus[1:]):
            n = finer.header["MRNPIX"]
            binned = finer.data.astype(np.float64).reshape(n // 2, 2, n // 2, 2).sum(axis=(1, 3))
            np.testing.assert_allclose(coarser.data[n // 4: 3 * n // 4, n // 4: 3 * n // 4], binned,
                                       rtol=1e-5, atol=1e-4 * np.abs(binned).max())


def test_coarse_pixel_world_coordinates_are_the_mean_of_the_native_pixels(pyramids):
    for _, _, hdus, _, parent_wcs in pyramids:
        for hdu in hdus[1:]:
            b, n, x0, y0 = (hdu.header[k] for k in ("MRBIN", "MRNPIX", "MRORIGX", "MRORIGY"))
            level_wcs = WCS(hdu.header)
            for i, j in ((0, 0), (n - 1, 0), (0, n - 1), (n - 1, n - 1), (n // 2, n // 3)):
                xs, ys = np.meshgrid(x0 + i * b + np.arange(b), y0 + j * b + np.arange(b))
                natives = parent_wcs.pixel_to_world(xs.ravel(), ys.ravel()).cartesian
                mean = SkyCoord(natives.mean(), representation_type="cartesian", frame="icrs")
                assert level_wcs.pixel_to_world(i, j).separation(mean).to(u.mas).value < 0.1


def test_full_resolution_level_is_the_alerts_own_cutout(alerts):
    for alert, kind in _cases(alerts):
        n = level_side(_side(alert))
        image, native = _cutout(alert, kind)
        primary = _open(build(SETTINGS, alert, kind))[0]
        x, y = native.world_to_pixel_values(alert["diaSource"]["ra"], alert["diaSource"]["dec"])
        x0, y0 = int(np.floor(x + 1)) - n // 2, int(np.floor(y + 1)) - n // 2
        np.testing.assert_array_equal(primary.data, image[y0: y0 + n, x0: x0 + n])
        corners = WCS(primary.header).pixel_to_world([0, n - 1], [0, n - 1])
        assert corners.separation(native.pixel_to_world([x0, x0 + n - 1], [y0, y0 + n - 1])).max().to(u.mas).value < 0.1


def test_outside_the_cutout_the_noise_matches_its_variance(pyramids):
    for alert, kind, _, parent, _ in pyramids:
        if kind != "difference":                                 # no field stars to mask there
            continue
        variance = fits.open(io.BytesIO(alert["cutoutDifference"]))["UNCERT"].data
        edge = parent[:, : parent.shape[1] // 8]                # far from the source and the pasted cutout
        robust = 1.4826 * np.median(np.abs(edge - np.median(edge)))
        assert robust == pytest.approx(np.sqrt(np.median(variance)), rel=0.1)


def test_science_and_template_show_the_same_field_stars(pyramids):
    by_alert = {}
    for alert, kind, hdus, _, _ in pyramids:
        by_alert.setdefault(alert["diaSourceId"], {})[kind] = hdus[LEVELS - 1].data
    for images in by_alert.values():
        outer = np.ones(images["science"].shape, bool)
        n = outer.shape[0]
        outer[n // 4: 3 * n // 4, n // 4: 3 * n // 4] = False      # outside level 2 (holds the cutout)
        science, template, difference = (images[k][outer] for k in ("science", "template", "difference"))
        assert np.corrcoef(science, template)[0, 1] > 0.5 > abs(np.corrcoef(science, difference)[0, 1])


def test_same_alert_gives_the_same_bytes(alerts):
    alert = alerts[0]
    assert build(SETTINGS, alert, "science") == build(SETTINGS, alert, "science")
    assert build(SETTINGS, alert, "science") != build(SETTINGS, alert, "template")


def test_bad_requests_raise_value_error(alerts):
    alert = alerts[0]
    with pytest.raises(ValueError, match="kind"):
        build(SETTINGS, alert, "calexp")
    with pytest.raises(ValueError, match="no template cutout"):
        build(SETTINGS, {**alert, "cutoutTemplate": None}, "template")
    parent, parent_wcs = field_source(SETTINGS).parent(alert, "science", 64)
    with pytest.raises(ValueError, match="does not cover level 3"):
        pyramid(parent, parent_wcs, alert["diaSource"]["ra"], alert["diaSource"]["dec"], 16)
