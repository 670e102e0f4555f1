"""Filters get the PPDB through the sandbox: declared NEEDS arrive as alert["ppdb"], narrow queries go
through the worker's channel under a per-filter, per-alert budget; all against a real mirror and real
sandbox workers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sandbox import FilterRejected, FilterSpec, SandboxLimits

from afs.filtering import FilterEngine, check_filter
from afs.ppdb.mirror import Mirror
from afs.ppdb.narrow import NarrowLimits
from afs.ppdb.needs import validate_needs
from tests.ppdb.conftest import AWKWARD_CENTRES

HISTORY_FILTER = '''
"""Matches when the object has at least 3 earlier detections within 400 days; scores their count."""
NEEDS = {"history": {"days": 400, "columns": ("psfFlux", "band")}}
READS = ("diaSource",)


def filter(alert):
    return len(alert["ppdb"]["history"])
'''
NEIGHBOUR_FILTER = '''
NEEDS = {"neighbours": {"radius_arcsec": 30}}


def filter(alert):
    return len(alert["ppdb"]["neighbours"]) + 0.5
'''
NO_NEEDS = '''
def filter(alert):
    return "ppdb" in alert
'''
NARROW_FILTER = '''
import helpers


def filter(alert):
    source = alert["diaSource"]
    if source["diaObjectId"] is None:  # a solar-system source
        return False
    rows = helpers.ppdb_query("history", diaObjectId=source["diaObjectId"], before_mjd=1e9, days=400)
    if len(rows) != 0 and max(r["midpointMjdTai"] for r in rows) >= source["midpointMjdTai"]:
        return -1  # would be a look into the future: reported as an error below
    return len(rows) + 0.25
'''
GREEDY_FILTER = '''
import helpers


def filter(alert):
    source = alert["diaSource"]
    for _ in range(10):
        helpers.ppdb_query("neighbours", ra=source["ra"], dec=source["dec"], radius_arcsec=1)
    return True
'''


@pytest.fixture(scope="module")
def engine(filled: Mirror) -> Iterator[FilterEngine]:
    engine = FilterEngine(SandboxLimits(workers=2), filled, NarrowLimits(max_calls=3, max_rows=200, max_seconds=1.0))
    rejected = engine.activate([FilterSpec("history", "ann", HISTORY_FILTER),
                                FilterSpec("neighbours", "bob", NEIGHBOUR_FILTER),
                                FilterSpec("plain", "cat", NO_NEEDS), FilterSpec("narrow", "dan", NARROW_FILTER)])
    assert rejected == {}
    yield engine
    engine.close()


def scores(outcome) -> dict[int, float]:  # noqa: ANN001
    return dict(outcome.matches)


def crowded(visits: list[list[dict]]) -> list[dict]:
    """The last visit plus a few of its alerts moved into the synthetic crowds (they have neighbours)."""
    moved = []
    for record, (ra, dec) in zip(visits[-1], AWKWARD_CENTRES):
        moved.append({**record, "diaSource": {**record["diaSource"], "ra": ra, "dec": dec}})
    return visits[-1] + moved


def test_declared_needs_arrive_as_prefetched(engine: FilterEngine, filled: Mirror, visits: list[list[dict]]) -> None:
    alerts = crowded(visits)
    result = engine.run(alerts)
    assert result is not None
    expected = filled.prefetch({"history": validate_needs({"history": {"days": 400, "columns": ("psfFlux", "band")}}),
                                "neighbours": validate_needs({"neighbours": {"radius_arcsec": 30}})}, alerts)
    history = [len(per_alert["history"]) for per_alert in expected["history"]]
    neighbours = [len(per_alert["neighbours"]) + 0.5 for per_alert in expected["neighbours"]]
    assert sum(history) > 0 and any(n > 0.5 for n in neighbours), "the fixture should give both kinds some rows"
    assert scores(result.outcomes["history"]) == {i: float(n) for i, n in enumerate(history) if n}
    assert scores(result.outcomes["neighbours"]) == dict(enumerate(neighbours))
    assert result.outcomes["plain"].matches == [], "a filter without NEEDS must not see alert['ppdb']"
    assert all(not o.errors for o in result.outcomes.values())


def test_narrow_queries_are_answered_as_of_the_alert(engine: FilterEngine, filled: Mirror,
                                                     visits: list[list[dict]]) -> None:
    alerts = visits[-1]
    outcome = engine.run(alerts).outcomes["narrow"]  # type: ignore[union-attr]
    assert outcome.errors == []
    for index, record in enumerate(alerts):
        source = record["diaSource"]
        if source["diaObjectId"] is None:
            assert index not in scores(outcome)
            continue
        rows = filled.narrow("history", {"diaObjectId": source["diaObjectId"], "before_mjd": source["midpointMjdTai"],
                                         "days": 400}, 200, 5.0)
        assert scores(outcome)[index] == len(rows) + 0.25


def test_a_filter_past_its_query_budget_gets_an_error_per_alert(filled: Mirror, visits: list[list[dict]]) -> None:
    alerts = visits[-1][:20]
    engine = FilterEngine(SandboxLimits(workers=1), filled, NarrowLimits(max_calls=3, max_rows=200, max_seconds=1.0))
    try:
        assert engine.activate([FilterSpec("greedy", "eve", GREEDY_FILTER)]) == {}
        outcome = engine.run(alerts).outcomes["greedy"]  # type: ignore[union-attr]
    finally:
        engine.close()
    assert outcome.matches == []
    assert len(outcome.errors) == len(alerts)
    assert all("at most 3 queries per alert" in message for _, message in outcome.errors)
    assert outcome.kills == 0, "refusing a query must not cost the worker"


def test_bad_queries_are_refused_with_a_reason(filled: Mirror, visits: list[list[dict]]) -> None:
    source = '''
import helpers


def filter(alert):
    helpers.ppdb_query("history", diaObjectId="1; DROP TABLE DiaSource", before_mjd=1e9)
    return True
'''
    engine = FilterEngine(SandboxLimits(workers=1), filled)
    try:
        assert engine.activate([FilterSpec("inject", "mal", source)]) == {}
        outcome = engine.run(visits[-1][:3]).outcomes["inject"]  # type: ignore[union-attr]
    finally:
        engine.close()
    assert len(outcome.errors) == 3 and "diaObjectId" in outcome.errors[0][1]
    assert filled.info()["rows"]["DiaSource"] > 0


def test_without_a_mirror_needs_come_from_the_alerts_own_history(visits: list[list[dict]]) -> None:
    engine = FilterEngine(SandboxLimits(workers=1))
    try:
        engine.activate([FilterSpec("history", "ann", HISTORY_FILTER)])
        alerts = visits[0]
        outcome = engine.run(alerts).outcomes["history"]  # type: ignore[union-attr]
    finally:
        engine.close()
    expected = {}
    for index, record in enumerate(alerts):
        t = record["diaSource"]["midpointMjdTai"]
        earlier = [s for s in record["prvDiaSources"] or () if t - 400 <= s["midpointMjdTai"] < t]
        if earlier:
            expected[index] = float(len(earlier))
    assert expected and scores(outcome) == expected


@pytest.mark.parametrize("needs, reason", [
    ('{"histroy": {}}', "unknown kind 'histroy'"),
    ('{"history": {"days": -1}}', "days must be a number greater than 0"),
    ('{"neighbours": {"radius_arcsec": 3600}}', "radius_arcsec must be a number greater than 0 and at most 60"),
    ('{"history": {"columns": ("psfFlux", "secret")}}', "DiaSource has no column 'secret'"),
    ('dict(history={})', "NEEDS must be a literal dict"),
])
def test_bad_needs_are_compile_errors_on_their_line(needs: str, reason: str) -> None:
    source = f'"""doc"""\n\nNEEDS = {needs}\n\n\ndef filter(alert):\n    return True\n'
    with pytest.raises(FilterRejected) as caught:
        check_filter(source)
    assert caught.value.line == 3
    assert reason in str(caught.value)
