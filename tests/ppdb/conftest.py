"""Shared fixtures for the PPDB mirror tests: real DuckDB files in temporary directories, no mocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from afs.alerts.simulate import simulate_visits
from afs.ppdb.mirror import Mirror
from afs.ppdb.schema import load
from afs.ppdb.synthetic import fill, sky_disc

# Cone centres where spherical geometry goes wrong first: both poles, across RA 0/360, and an ordinary place.
AWKWARD_CENTRES = [(123.0, 89.9995), (17.0, -89.99), (0.0, 90.0), (0.0003, 0.0), (359.9997, 60.0),
                   (0.0, -30.0), (360.0, 45.0), (150.0, -20.0)]


@pytest.fixture(scope="session")
def visits() -> list[list[dict]]:
    """Seven simulated visits of 150 alerts; the last two revisit fields of the first ones (objects come back
    with history)."""
    return [alerts for _, alerts in simulate_visits(7, 150, seed=4, cutouts=False)]


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[Mirror]:
    with Mirror(tmp_path / "ppdb.duckdb") as m:
        yield m


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory, visits: list[list[dict]]) -> Iterator[Mirror]:
    """A mirror holding all but the last simulated visit and synthetic objects crowded around AWKWARD_CENTRES."""
    with Mirror(tmp_path_factory.mktemp("filled") / "ppdb.duckdb") as m:
        for alerts in visits[:-1]:
            m.ingest_alerts(alerts)
        m.ingest_tables(crowds(AWKWARD_CENTRES))
        yield m


def crowds(centres: list[tuple[float, float]], per_centre: int = 400, radius_deg: float = 0.6,
           seed: int = 9) -> dict[str, pa.Table]:
    """DiaObjects (one version each) and one DiaSource per object, scattered around each centre, plus a
    tight clump within a few arcsec so that small cones find something."""
    rng = np.random.default_rng(seed)
    tables = load().tables
    ra, dec = [], []
    for ra0, dec0 in centres:
        for radius, n in ((radius_deg, per_centre), (6 / 3600, per_centre // 4)):
            r, d = sky_disc(rng, n, ra0, dec0, radius)
            ra.append(r)
            dec.append(d)
    ra, dec = np.concatenate(ra), np.concatenate(dec)
    n = len(ra)
    ids = 9_000_000_000 + np.arange(n, dtype=np.int64)
    mjd = 61_000.0 + rng.uniform(0, 30, n)
    objects = fill(tables["DiaObject"], n, rng, {
        "diaObjectId": ids, "validityStartMjdTai": mjd + 0.001, "ra": ra, "dec": dec,
        "firstDiaSourceMjdTai": mjd, "lastDiaSourceMjdTai": mjd, "nDiaSources": np.ones(n, np.int64)})
    sources = fill(tables["DiaSource"], n, rng, {
        "diaSourceId": ids, "diaObjectId": ids, "ra": ra, "dec": dec, "midpointMjdTai": mjd,
        "timeProcessedMjdTai": mjd + 0.001, "visit": np.full(n, 7, np.int64), "band": np.full(n, "r")})
    return {"DiaObject": objects, "DiaSource": sources}
