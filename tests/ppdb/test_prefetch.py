"""Declared needs: validation, the one-query batch prefetch against per-alert queries, the narrow budget."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from afs.ppdb import narrow, sky
from afs.ppdb.mirror import Mirror
from afs.ppdb.needs import MAX_ROWS, Need, NeedsError, validate_needs
from afs.ppdb.queries import QueryTimeout
from afs.ppdb.synthetic import sky_disc
from tests.ppdb.conftest import AWKWARD_CENTRES

FILTERS = {  # several filters whose needs overlap, differ in window, radius, columns and row counts
    "everything": validate_needs({"history": {}, "forced_history": {}, "neighbours": {"radius_arcsec": 60},
                                  "recent_detections": {"nights": 30, "radius_arcsec": 30}}),
    "recent": validate_needs({"history": {"days": 2, "columns": ["psfFlux", "band"]},
                              "recent_detections": {"nights": 1, "radius_arcsec": 2}}),
    "close": validate_needs({"neighbours": {"radius_arcsec": 4, "max_rows": 3},
                             "forced_history": {"days": 10, "max_rows": 2}}),
    "same_as_recent": validate_needs({"history": {"days": 2, "columns": ["psfFlux", "band"]}}),
    "nothing": {},
}


def per_alert(mirror: Mirror, need: Need, record: dict) -> tuple:
    """The same need, asked the slow way: one narrow query for one alert."""
    source = record["diaSource"]
    params = {"before_mjd": source["midpointMjdTai"], "columns": list(need.columns)}
    if need.kind in ("history", "forced_history"):
        if source.get("diaObjectId") is None:
            return ()
        params |= {"diaObjectId": source["diaObjectId"]} | ({"days": need.days} if need.days else {})
    else:
        params |= {"ra": source["ra"], "dec": source["dec"], "radius_arcsec": need.radius_arcsec}
        if need.kind == "neighbours":
            params["exclude_diaObjectId"] = source.get("diaObjectId")
        else:
            params["nights"] = need.nights
    return mirror.narrow(need.kind, params, need.max_rows, 10.0)


def awkward_alerts() -> list[dict]:
    """Alerts at the awkward places, among the crowds the fixture put there, and one with no object."""
    rng = np.random.default_rng(3)
    records = []
    for ra0, dec0 in AWKWARD_CENTRES:
        ra, dec = sky_disc(rng, 6, ra0, dec0, 3 / 3600)
        for r, d in zip(ra, dec):
            records.append({"diaSource": {"diaSourceId": 1, "diaObjectId": 9_000_000_000, "ra": float(r),
                                          "dec": float(d), "midpointMjdTai": 61_020.0}})
    records[-1]["diaSource"]["diaObjectId"] = None
    return records


def test_validated_needs_are_normalised() -> None:
    needs = validate_needs({"history": {"days": 30}, "neighbours": {}, "recent_detections": {"nights": 3}})
    assert needs["history"].days == 30.0 and needs["history"].columns[:2] == ("diaSourceId", "midpointMjdTai")
    assert needs["neighbours"].radius_arcsec == 5.0 and needs["recent_detections"].radius_arcsec == 1.0
    assert needs["recent_detections"].nights == 3 and needs["history"].max_rows == MAX_ROWS
    assert validate_needs(None) == {} and validate_needs({}) == {}
    columns = validate_needs({"history": {"columns": ["psfFlux"]}})["history"].columns
    assert columns == ("diaSourceId", "midpointMjdTai", "psfFlux")  # the key columns always come along


def test_every_problem_is_reported() -> None:
    with pytest.raises(NeedsError) as error:
        validate_needs({"histroy": {}, "history": {"days": -1, "columns": ["psfflux"], "colour": 1},
                        "neighbours": {"radius_arcsec": 3600}, "recent_detections": {"nights": 2.5},
                        "forced_history": {"max_rows": True}})
    problems = "\n".join(error.value.problems)
    for expected in ("unknown kind 'histroy'", "days must be", "no column 'psfflux'", "unknown option 'colour'",
                     "radius_arcsec must be", "nights must be", "max_rows must be"):
        assert expected in problems
    for bad in (["history"], {"history": []}, {"history": {"days": math.nan}}, {"history": {"columns": "psfFlux"}}):
        with pytest.raises(NeedsError):
            validate_needs(bad)


@pytest.mark.parametrize("batch", ["stored", "new", "awkward"])
def test_batch_prefetch_equals_per_alert_queries(filled: Mirror, visits: list[list[dict]], batch: str) -> None:
    records = {"stored": visits[-2], "new": visits[-1], "awkward": awkward_alerts()}[batch]
    result = filled.prefetch(FILTERS, records)
    assert set(result) == set(FILTERS)
    found = 0
    for filter_id, needs in FILTERS.items():
        assert len(result[filter_id]) == len(records)
        for record, got in zip(records, result[filter_id]):
            assert set(got) == set(needs)
            for kind, need in needs.items():
                assert got[kind] == per_alert(filled, need, record), (filter_id, kind)
                found += len(got[kind])
    assert found > 50, "the comparison covered real rows"


def test_neighbours_at_the_poles_and_across_ra_0_equal_brute_force(filled: Mirror) -> None:
    records = awkward_alerts()
    needs = {"f": validate_needs({"neighbours": {"radius_arcsec": 60, "columns": ["ra", "dec"]}})}
    result = filled.prefetch(needs, records)["f"]
    with filled.reader() as con:
        stored = con.sql('SELECT "diaObjectId", ra, dec, "firstDiaSourceMjdTai" FROM "DiaObjectLast"').fetchnumpy()
    for record, got in zip(records, result):
        source = record["diaSource"]
        separation = sky.separation_arcsec(source["ra"], source["dec"], stored["ra"], stored["dec"])
        expected = (separation <= 60) & (stored["diaObjectId"] != (source["diaObjectId"] or -1)) \
            & (stored["firstDiaSourceMjdTai"] < source["midpointMjdTai"])
        assert {r["diaObjectId"] for r in got["neighbours"]} == set(stored["diaObjectId"][expected].tolist())
        assert len(got["neighbours"]) > 0


def test_filters_with_equal_needs_share_the_same_rows(filled: Mirror, visits: list[list[dict]]) -> None:
    result = filled.prefetch(FILTERS, visits[-2])
    for mine, theirs in zip(result["recent"], result["same_as_recent"]):
        assert mine["history"] is theirs["history"]
    assert all(alert == {} for alert in result["nothing"])


def test_prefetched_data_is_plain(filled: Mirror, visits: list[list[dict]]) -> None:
    def plain(value: object) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, tuple):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, bool | int | float | str)

    result = filled.prefetch(FILTERS, visits[-2])
    assert all(plain(alert) for alerts in result.values() for alert in alerts)


def test_the_budget_caps_calls_rows_and_time_and_pins_the_alert_time(filled: Mirror,
                                                                     visits: list[list[dict]]) -> None:
    alert = max(visits[-2], key=lambda a: len(a["prvDiaSources"] or ()))
    source = alert["diaSource"]
    asked = []

    def run(shape, params, max_rows, timeout_s):
        asked.append((params["before_mjd"], max_rows))
        return filled.narrow(shape, params, max_rows, timeout_s)

    budget = narrow.Budget(narrow.NarrowLimits(max_calls=3, max_rows=4, max_seconds=5.0), source["midpointMjdTai"])
    query = {"diaObjectId": source["diaObjectId"], "before_mjd": 99_999.0}
    first = budget.run(run, "history", query)
    assert asked[0][0] == source["midpointMjdTai"]  # a filter cannot look past its alert
    assert 0 < len(first) <= 4
    with pytest.raises(narrow.NarrowLimitExceeded):
        while True:  # rows or calls run out, whichever first
            budget.run(run, "history", query)
    assert budget.calls <= 3 and budget.rows <= 4

    def interrupted(shape, params, max_rows, timeout_s):
        time.sleep(0.01)
        raise QueryTimeout("interrupted")

    slow = narrow.Budget(narrow.NarrowLimits(max_calls=10, max_rows=100, max_seconds=0.005), 61_000.0)
    with pytest.raises(QueryTimeout):
        slow.run(interrupted, "history", query)
    with pytest.raises(narrow.NarrowLimitExceeded, match="s of queries"):  # the failed call's time counted
        slow.run(run, "history", query)
