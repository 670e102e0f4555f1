"""User queries: cone search checked against brute force at the poles and across RA 0/360, pagination,
row caps, time limits, and hostile parameters."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from afs.ppdb.mirror import Mirror
from afs.ppdb.needs import NeedsError, validate_needs
from afs.ppdb.queries import QueryError, QueryLimits, QueryTimeout, encode_cursor, time_limit
from tests.ppdb.conftest import AWKWARD_CENTRES

RADII = (2.0, 20.0, 100.0, 900.0, 3600.0)  # arcsec: short ART IN-lists up to coarse nested-id ranges


def everything(mirror: Mirror, table: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    key = "diaObjectId" if table == "DiaObjectLast" else "diaSourceId"
    with mirror.reader() as con:
        rows = con.sql(f'SELECT "{key}", ra, dec FROM "{table}"').fetchnumpy()
    return rows[key], rows["ra"], rows["dec"]


def brute_force(ids: np.ndarray, ra: np.ndarray, dec: np.ndarray, centre: tuple[float, float],
                radius: float) -> dict[int, float]:
    """Ids within the radius by astropy's own separation (Vincenty), with their separations in arcsec."""
    separation = SkyCoord(centre[0] * u.deg, centre[1] * u.deg).separation(SkyCoord(ra * u.deg, dec * u.deg))
    arcsec = separation.to_value(u.arcsec)
    inside = arcsec <= radius
    return dict(zip(ids[inside].tolist(), arcsec[inside].tolist()))


def all_pages(query, **options) -> list[dict]:
    rows, cursor = [], None
    while True:
        page = query(cursor=cursor, **options)
        rows += page.table.to_pylist()
        if page.next_cursor is None:
            return rows
        cursor = page.next_cursor


@pytest.mark.parametrize("centre", AWKWARD_CENTRES)
@pytest.mark.parametrize("table", ["DiaObject", "DiaSource"])
def test_cone_search_equals_brute_force(filled: Mirror, centre: tuple[float, float], table: str) -> None:
    ids, ra, dec = everything(filled, "DiaObjectLast" if table == "DiaObject" else "DiaSource")
    key = "diaObjectId" if table == "DiaObject" else "diaSourceId"
    for radius in RADII:
        expected = brute_force(ids, ra, dec, centre, radius)
        # tolerate only points within a micro-arcsecond of the edge, where two exact formulas may disagree
        edge = {i for i, s in brute_force(ids, ra, dec, centre, radius + 1e-6).items() if s > radius - 1e-6}
        rows = filled.cone(*centre, radius, table=table, columns=[key, "ra", "dec"], limit=10_000).table.to_pylist()
        found = {r[key]: r["separation_arcsec"] for r in rows}
        assert set(found) ^ set(expected) <= edge, (centre, radius)
        assert all(abs(found[i] - expected[i]) < 1e-6 for i in set(found) & set(expected))
        separations = [r["separation_arcsec"] for r in rows]
        assert separations == sorted(separations)
        if radius >= 20:
            assert expected, "the crowds put objects in every cone of 20\" or more"


def test_cone_pages_add_up_to_the_whole_answer(filled: Mirror) -> None:
    centre = AWKWARD_CENTRES[0]
    for table in ("DiaObject", "DiaSource"):
        whole = filled.cone(*centre, 900, table=table, limit=10_000).table.to_pylist()
        paged = all_pages(lambda **o: filled.cone(*centre, 900, table=table, **o), limit=7)
        assert len(whole) > 20 and paged == whole


def test_history_and_window_pages(filled: Mirror, visits: list[list[dict]]) -> None:
    alert = max((a for alerts in visits[:-1] for a in alerts), key=lambda a: len(a["prvDiaSources"] or ()))
    object_id = alert["diaSource"]["diaObjectId"]
    whole = filled.history(object_id, columns=["diaSourceId", "midpointMjdTai"], limit=10_000).table.to_pylist()
    assert len(whole) > 3
    assert [r["midpointMjdTai"] for r in whole] == sorted(r["midpointMjdTai"] for r in whole)
    assert all_pages(lambda **o: filled.history(object_id, columns=["diaSourceId", "midpointMjdTai"], **o),
                     limit=2) == whole
    forced = filled.history(object_id, table="DiaForcedSource", columns=["psfFlux"], limit=10_000)
    assert forced.rows == len({f["visit"] for f in alert["prvDiaForcedSources"]})
    assert forced.table.column_names == ["psfFlux"]
    start, end = whole[1]["midpointMjdTai"], whole[-1]["midpointMjdTai"]
    window = filled.history(object_id, start_mjd=start, end_mjd=end, columns=["diaSourceId"]).table.to_pylist()
    assert window == [{"diaSourceId": r["diaSourceId"]} for r in whole[1:-1]]
    everything = all_pages(lambda **o: filled.window(start, end, columns=["diaSourceId"], **o), limit=50)
    assert len(everything) == len({r["diaSourceId"] for r in everything})
    with filled.reader() as con:
        count = con.sql('SELECT count(*) FROM "DiaSource" WHERE "midpointMjdTai" >= $s AND "midpointMjdTai" < $e',
                        params={"s": start, "e": end}).fetchall()[0][0]
    assert len(everything) == count


def test_row_caps(filled: Mirror) -> None:
    centre = AWKWARD_CENTRES[0]
    limits = QueryLimits(page_rows=5, max_page_rows=12, max_radius_arcsec=1000)
    with filled.reader() as con:
        from afs.ppdb import queries

        assert queries.cone(con, *centre, 900, limits=limits).rows == 5
        assert queries.cone(con, *centre, 900, limit=12, limits=limits).rows == 12
        with pytest.raises(QueryError, match="limit must be between 1 and 12"):
            queries.cone(con, *centre, 900, limit=13, limits=limits)
        with pytest.raises(QueryError, match="radius_arcsec"):
            queries.cone(con, *centre, 1001, limits=limits)


def test_a_query_past_its_time_limit_is_interrupted(filled: Mirror) -> None:
    with filled.reader() as con, pytest.raises(QueryTimeout):
        with time_limit(con, 0.2):
            con.sql("SELECT count(*) FROM range(10000000000) a, range(10) b").fetchall()


HOSTILE = '1; DROP TABLE "DiaSource"; --'


@pytest.mark.parametrize("call", [
    lambda m: m.history(HOSTILE),
    lambda m: m.history("1 OR 1=1"),
    lambda m: m.history(True),
    lambda m: m.history(2**70),
    lambda m: m.history(1, table='DiaSource"; DROP TABLE "DiaSource"; --'),
    lambda m: m.history(1, columns=['ra" FROM "DiaSource"; DROP TABLE "DiaSource"; --']),
    lambda m: m.history(1, columns="ra"),
    lambda m: m.history(1, start_mjd="60000 OR 1=1"),
    lambda m: m.history(1, cursor="'; DROP TABLE x; --"),
    lambda m: m.history(1, cursor=encode_cursor([HOSTILE, 1])),
    lambda m: m.history(1, cursor=encode_cursor([1.0])),
    lambda m: m.history(1, limit="10; DROP TABLE x"),
    lambda m: m.cone("0 OR 1=1", 0, 10),
    lambda m: m.cone(float("nan"), 0, 10),
    lambda m: m.cone(10, 0, float("inf")),
    lambda m: m.cone(10, 0, 10, table="DiaObject_latest; DROP TABLE x"),
    lambda m: m.window(0, HOSTILE),
    lambda m: m.narrow("history; DROP TABLE x", {}, 10, 1.0),
    lambda m: m.narrow("history", {"diaObjectId": HOSTILE, "before_mjd": 1.0}, 10, 1.0),
    lambda m: m.narrow("history", {"diaObjectId": 1, "before_mjd": 1.0, "columns": [HOSTILE]}, 10, 1.0),
    lambda m: m.narrow("history", {"diaObjectId": 1, "before_mjd": 1.0, HOSTILE: 1}, 10, 1.0),
    lambda m: m.narrow("neighbours", {"ra": HOSTILE, "dec": 0, "before_mjd": 1.0}, 10, 1.0),
])
def test_injection_attempts_are_rejected(filled: Mirror, call) -> None:
    before = filled.info()["rows"]
    with pytest.raises(QueryError):
        call(filled)
    assert filled.info()["rows"] == before


def test_hostile_needs_are_rejected() -> None:
    for needs in ({"history": {"columns": [HOSTILE]}}, {HOSTILE: {}}, {"history": {HOSTILE: 1}},
                  {"neighbours": {"radius_arcsec": HOSTILE}}):
        with pytest.raises(NeedsError):
            validate_needs(needs)
