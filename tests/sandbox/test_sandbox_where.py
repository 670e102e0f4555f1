"""WHERE: declared cuts evaluated over the batch give exactly the Python's results, with fewer calls."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
from conftest import FAST_LIMITS
from test_sandbox_pool import crash_on

from sandbox import FilterRejected, FilterSpec, SandboxPool, compile_filter
from sandbox.where import BatchColumns, normalize

from afs.alerts.simulate import simulate_visit
from afs.filtering import check_filter, load_filter_dir

REPO = Path(__file__).resolve().parents[2]


def without_where(source: str) -> str:
    """The filter with its WHERE assignment taken out: the Python alone."""
    node = next(n for n in ast.parse(source).body if isinstance(n, ast.Assign) and n.targets[0].id == "WHERE")
    lines = source.splitlines(keepends=True)
    return "".join(lines[: node.lineno - 1] + lines[node.end_lineno:])


@pytest.fixture(scope="module")
def visit() -> list[dict]:
    return simulate_visit(3, 600, 11, cutouts=False)


def test_predefined_filters_match_the_same_alerts_with_and_without_their_where(visit: list[dict]) -> None:
    specs = load_filter_dir(REPO / "filters")
    assert all(check_filter(spec.source, spec.id).where for spec in specs)
    plain = [FilterSpec(f"{spec.id}-plain", "rubin", without_where(spec.source)) for spec in specs]
    with SandboxPool(FAST_LIMITS) as pool:
        assert pool.set_filters(specs + plain) == {}
        outcomes = pool.run_batch(visit).outcomes
    calls = 0
    for spec in specs:
        declared, python = outcomes[spec.id], outcomes[f"{spec.id}-plain"]
        assert declared.matches == python.matches and declared.errors == python.errors == []
        assert declared.evaluated == python.evaluated == len(visit)
        assert sum(declared.cpu_histogram) == len(visit)
        calls += len(BatchColumns(visit).candidates(check_filter(spec.source, spec.id).where))
    assert calls < len(specs) * len(visit) / 2  # most alerts never reach the Python
    assert sum(len(o.matches) for o in outcomes.values()) > 0


def test_alerts_the_where_excludes_never_reach_the_python(visit: list[dict]) -> None:
    """The Python raises on every call: only the alerts that pass WHERE show up as errors."""
    raising = 'READS = ("diaSource",)\nWHERE = (("diaSource.snr", ">=", 20),)\ndef filter(alert):\n    return 1 / 0\n'
    limits = dataclasses.replace(FAST_LIMITS, max_errors=len(visit))
    with SandboxPool(limits) as pool:
        pool.set_filters([FilterSpec("raising", "alice", raising)])
        outcome = pool.run_batch(visit).outcomes["raising"]
    expected = [i for i, a in enumerate(visit) if (a["diaSource"]["snr"] or 0) >= 20]
    assert [i for i, _ in outcome.errors] == expected and 0 < len(expected) < len(visit) / 2
    assert outcome.evaluated == len(visit) and outcome.matches == []


def test_conditions_follow_sql_null_rules_and_never_raise() -> None:
    alerts = [{"diaSourceId": 1, "diaSource": {"snr": 60.0, "band": "g", "ssObjectId": None}},
              {"diaSourceId": 2, "diaSource": {"snr": None, "band": "r", "ssObjectId": 5}},
              {"diaSourceId": 3, "diaSource": {"snr": float("nan"), "band": None, "ssObjectId": None}},
              {"diaSourceId": 4, "diaSource": None},
              {"diaSourceId": 5, "diaSource": {"snr": "high", "band": "i"}}]
    columns = BatchColumns(alerts)

    def passing(*conditions: tuple) -> list[int]:
        return columns.candidates(normalize(conditions))

    assert passing(("diaSource.snr", ">=", 50)) == [0]
    assert passing(("diaSource.snr", "<", 50)) == []  # None, NaN, absent and a string are never < 50
    assert passing(("diaSource.snr", "!=", 50)) == [0, 2, 4]  # NaN != 50, as in Python; None is not
    assert passing(("diaSource.ssObjectId", "is", None)) == [0, 2, 3, 4]
    assert passing(("diaSource.ssObjectId", "is not", None)) == [1]
    assert passing(("diaSource.band", "in", ("g", "i"))) == [0, 4]
    assert passing(("diaSource.band", "not in", ("g",))) == [1, 4]
    assert passing(("diaSourceId", ">", 2), ("diaSource.band", "in", ("i", "r"))) == [4]


@pytest.mark.parametrize(("where", "reason"), [
    ('(("diaSource.psfFlx", ">", 0),)', "diaSource has no column 'psfFlx'"),
    ('(("diaSource.psfFlux", "=>", 0),)', "is not an operator WHERE knows"),
    ('(("diaSource.psfFlux", ">", (1, 2)),)', "> needs a number, string or boolean"),
    ('(("diaSource.band", "in", "gr"),)', "in needs a tuple"),
    ('(("diaSource.ssObjectId", "is", 0),)', "is takes only None"),
    ('(("prvDiaSources.psfFlux", ">", 0),)', "is not a field WHERE can test"),
    ('(("diaObject.nDiaSources", ">", 3),)', "WHERE tests diaObject, which READS does not list"),
    ('()', "non-empty tuple"),
    ('[c for c in ()]', "WHERE must be a literal tuple"),
])
def test_a_bad_where_is_refused_at_its_line(where: str, reason: str) -> None:
    source = f'"""Bright."""\nREADS = ("diaSource",)\n\nWHERE = {where}\n\ndef filter(alert):\n    return True\n'
    with pytest.raises(FilterRejected) as caught:
        check_filter(source, "bright")
    assert reason in str(caught.value) and caught.value.line == 4


def test_the_sandbox_alone_checks_the_structure_but_not_the_schema() -> None:
    source = 'WHERE = (("diaSource.anything", ">", 1),)\ndef filter(alert):\n    return True\n'
    assert compile_filter(source).where == (("diaSource.anything", ">", 1),)
    with pytest.raises(FilterRejected, match="is not an operator"):
        compile_filter(source.replace('">"', '"><"'))


def test_a_filter_that_crashes_on_a_candidate_is_isolated_as_before(visit: list[dict]) -> None:
    victim = visit[10]["diaSourceId"]
    crasher = crash_on(victim).replace("def filter", 'WHERE = (("diaSourceId", ">=", 0),)\n\ndef filter', 1)
    bright = 'READS = ("diaSource",)\nWHERE = (("diaSource.snr", ">=", 20),)\ndef filter(alert):\n    return True\n'
    limits = dataclasses.replace(FAST_LIMITS, workers=1, per_call_soft_timeout_s=1.0, per_call_hard_timeout_s=3.0)
    with SandboxPool(limits) as pool:  # one worker: the crasher shares it with the other filter
        pool.set_filters([FilterSpec("crash", "mallory", crasher), FilterSpec("bright", "alice", bright)])
        outcomes = pool.run_batch(visit).outcomes
    assert outcomes["crash"].kills == 1 and outcomes["crash"].offending_id == victim
    assert outcomes["crash"].evaluated == len(visit)
    expected = [(i, 1.0) for i, a in enumerate(visit) if (a["diaSource"]["snr"] or 0) >= 20]
    assert outcomes["bright"].matches == expected and expected
