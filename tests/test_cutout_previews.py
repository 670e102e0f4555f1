"""PNG previews of alert cutouts: readable, sized, stretched as documented, and strict about their input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from afs.alerts.codec import AlertCodec
from afs.alerts.multires import build
from afs.alerts.previews import MIN_PREVIEW_PX, png_preview
from afs.alerts.simulate import DEFAULT_FIRST_VISIT, simulate_visit
from afs.config import Settings

VISIT = DEFAULT_FIRST_VISIT + 4


@pytest.fixture(scope="module")
def alerts() -> list[dict]:
    """Simulated alerts, through the wire format and back as a consumer of the stream sees them."""
    codec = AlertCodec()
    return [codec.decode(codec.encode(alert)).record for alert in simulate_visit(VISIT, 40, seed=3)]


@pytest.fixture(scope="module")
def bright(alerts) -> dict:
    """The alert with the most significant positive difference-image source."""
    return max(alerts, key=lambda a: (a["diaSource"]["psfFlux"] or 0) / (a["diaSource"]["psfFluxErr"] or 1))


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def _fits(image: np.ndarray, header: fits.Header | None = None) -> bytes:
    with io.BytesIO() as out:
        fits.PrimaryHDU(image, header).writeto(out)
        return out.getvalue()


def _native(png: bytes, shape: tuple[int, int]) -> np.ndarray:
    """The preview's grey level of each FITS pixel (undo the upscaling and the row flip)."""
    pixels = _pixels(png)
    factor = pixels.shape[0] // shape[0]
    grey = pixels[..., 0] if pixels.ndim == 3 else pixels
    return np.flipud(grey[::factor, ::factor])


@pytest.mark.parametrize("field", ["cutoutDifference", "cutoutScience", "cutoutTemplate"])
def test_preview_is_a_png_of_the_upscaled_cutout(alerts, field):
    for alert in alerts[:10]:
        image = fits.getdata(io.BytesIO(alert[field]))
        picture = Image.open(io.BytesIO(png_preview(alert[field])))
        assert picture.format == "PNG" and picture.mode == "L"
        factor = -(-MIN_PREVIEW_PX // image.shape[0])
        assert picture.size == (image.shape[1] * factor, image.shape[0] * factor)
        assert picture.size[0] >= MIN_PREVIEW_PX
        pixels = np.asarray(picture)
        assert len(np.unique(pixels)) > 10
        # nearest-neighbour: every native pixel is a uniform factor x factor square
        blocks = pixels.reshape(image.shape[0], factor, image.shape[1], factor)
        assert (blocks == blocks[:, :1, :, :1]).all()


def test_difference_preview_keeps_zero_at_mid_grey_and_signs_apart(bright):
    image = fits.getdata(io.BytesIO(bright["cutoutDifference"])).astype(float)
    grey = _native(png_preview(bright["cutoutDifference"], signed=True), image.shape)
    assert (grey[image > 0] >= 128).all() and (grey[image < 0] <= 128).all()
    zeroed = image.copy()
    zeroed[:5, :5] = 0.0
    assert (_native(png_preview(_fits(zeroed), signed=True), image.shape)[:5, :5] == 128).all()
    # the source pixel is lighter than the median, and the row flip keeps FITS row 0 at the bottom
    y, x = np.unravel_index(np.argmax(image), image.shape)
    assert grey[y, x] == grey.max() > np.median(grey)


def test_science_preview_shows_the_source_brighter_than_the_median(bright):
    image = fits.getdata(io.BytesIO(bright["cutoutScience"]))
    grey = _native(png_preview(bright["cutoutScience"]), image.shape)
    centre = grey[image.shape[0] // 2 - 1: image.shape[0] // 2 + 2, image.shape[1] // 2 - 1: image.shape[1] // 2 + 2]
    assert centre.max() > np.median(grey) + 50


def test_signed_is_detected_from_negative_sources_and_the_multires_header(bright):
    science = bright["cutoutScience"]
    assert png_preview(science) == png_preview(science, signed=False)
    negated = -fits.getdata(io.BytesIO(science)).astype(float)    # a clearly negative source: a fading transient
    assert png_preview(_fits(negated)) == png_preview(_fits(negated), signed=True)
    assert png_preview(_fits(negated)) != png_preview(_fits(negated), signed=False)
    difference = build(Settings(), bright, "difference")
    assert png_preview(difference) == png_preview(difference, signed=True)
    assert png_preview(difference) != png_preview(difference, signed=False)


@pytest.mark.parametrize("signed", [True, False])
def test_nan_pixels_are_transparent(bright, signed):
    image = fits.getdata(io.BytesIO(bright["cutoutScience"])).astype(float)
    image[3, :] = np.nan
    png = png_preview(_fits(image), signed=signed)
    picture = Image.open(io.BytesIO(png))
    assert picture.mode == "LA"
    factor = picture.size[1] // image.shape[0]
    alpha = np.flipud(np.asarray(picture)[::factor, ::factor, 1])
    pixels = _native(png, image.shape)
    assert (alpha[3] == 0).all() and (np.delete(alpha, 3, axis=0) == 255).all()
    assert len(np.unique(pixels[np.isfinite(image)])) > 10


def test_all_nan_and_flat_images_still_render():
    assert (_pixels(png_preview(_fits(np.full((30, 30), np.nan))))[..., 1] == 0).all()
    assert len(np.unique(_pixels(png_preview(_fits(np.zeros((30, 30))))))) == 1


@pytest.mark.parametrize("data", [
    b"",
    b"not a FITS file at all" * 200,
    "truncated header",
    "truncated data",
    _fits(np.arange(30.0)),
    _fits(np.zeros((2, 30, 30))),
    _fits(None),
])
def test_unreadable_or_non_image_bytes_raise_value_error(bright, data):
    if isinstance(data, str):
        data = bright["cutoutScience"][:2000 if data == "truncated header" else 4000]
    with pytest.raises(ValueError, match="FITS"):
        png_preview(data)
