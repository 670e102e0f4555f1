"""Inside a worker: frozen alerts, guards, stand-ins, and the parent's validation of
what a worker sends back."""
from __future__ import annotations

import json
import marshal
from types import MappingProxyType

import pytest

from sandbox.compiler import compile_source
from sandbox.freeze import UnsupportedValue, freeze, freeze_top, project
from sandbox.pool import assign_shards
from sandbox.protocol import ProtocolError, parse_report, validate_filter_report
from sandbox.runtime import STAND_INS, filter_globals, guarded_getattr


def run(source: str, alert: object) -> object:
    namespace = filter_globals("<filter>")
    exec(marshal.loads(compile_source(source).code), namespace)
    return namespace["filter"](alert)


def test_freeze_is_deep_and_read_only() -> None:
    frozen = freeze({"a": [1, {"b": [2.0, None]}], "c": b"x", "d": bytearray(b"y")})
    assert frozen == {"a": (1, {"b": (2.0, None)}), "c": b"x", "d": b"y"}
    assert type(frozen) is MappingProxyType and type(frozen["a"][1]) is MappingProxyType
    with pytest.raises(TypeError):
        frozen["a"] = 1  # type: ignore[index]
    with pytest.raises(UnsupportedValue):
        freeze({"a": object()})


def test_projection_shows_only_declared_keys() -> None:
    top = freeze_top({"diaSourceId": 1, "diaSource": {"x": 1}, "diaObject": {"y": 2}})
    view = project(top, ("diaSource", "diaSourceId"))
    assert dict(view) == {"diaSourceId": 1, "diaSource": {"x": 1}}
    assert set(project(top, None)) == {"diaSourceId", "diaSource", "diaObject"}


def test_filters_get_their_own_namespace_and_builtins() -> None:
    first, second = filter_globals("<filter>"), filter_globals("<filter>")
    assert first["__builtins__"] is not second["__builtins__"]
    assert "open" not in first["__builtins__"] and "type" not in first["__builtins__"]


def test_guards_refuse_what_the_compiler_would() -> None:
    with pytest.raises(AttributeError):
        guarded_getattr((), "__class__")
    with pytest.raises(AttributeError):
        guarded_getattr(run, "__globals__")
    with pytest.raises(AttributeError):
        guarded_getattr(STAND_INS["helpers"], "_members")
    with pytest.raises(TypeError):
        STAND_INS["math"].pi = 3  # type: ignore[misc]
    assert guarded_getattr(STAND_INS["math"], "pi") > 3.14


def test_filter_code_sees_a_frozen_alert() -> None:
    alert = freeze({"diaSource": {"psfFlux": 5.0}, "prvDiaSources": [{"psfFlux": 1.0}]})
    assert run("def filter(a):\n    return a['diaSource']['psfFlux'] * 2\n", alert) == 10.0
    with pytest.raises(TypeError, match="read-only"):
        run("def filter(a):\n    a['diaSource']['psfFlux'] = 0\n    return 1\n", alert)
    assert run("def filter(a):\n    d = dict(a)\n    d['x'] = 1\n    l = list(a['prvDiaSources'])\n"
               "    l.append(1)\n    return len(l)\n", alert) == 2
    assert alert["diaSource"]["psfFlux"] == 5.0


def test_imports_resolve_to_stand_ins() -> None:
    assert run("import math\nfrom helpers import snr\ndef filter(a):\n"
               "    return math.floor(snr(10.0, 2.0))\n", {}) == 5
    with pytest.raises(ValueError, match="not allowed in filters"):
        run("import math\ndef filter(a):\n    return math.factorial(100000)\n", {})
    with pytest.raises(ValueError, match="range"):
        run("def filter(a):\n    return len(range(10 ** 9))\n", {})


def _report(**fields: object) -> dict:
    message = {"type": "filter", "f": 0, "m": [[1, 2.5]], "e": [[2, "KeyError: 'x'"]], "t": [3],
               "n": 5, "h": [0, 4, 0, 1], "cpu": 0.01, "load_error": None, "load_line": None,
               "stop": None}
    message.update(fields)
    return parse_report(json.dumps(message).encode())


def test_valid_report() -> None:
    report = validate_filter_report(_report(), 1, 5, max_errors=3, max_timeouts=3)
    assert report.matches == [(1, 2.5)] and report.errors == [(2, "KeyError: 'x'")]
    assert report.timeouts == [3] and report.calls == 5 and report.cpu_histogram == (0, 4, 0, 1)
    stopped = validate_filter_report(_report(stop="errors", n=3, h=[3], t=[]), 1, 5, 3, 3)
    assert stopped.calls == 3 and stopped.stopped == "errors"
    unloaded = _report(load_error="NameError", m=[], e=[], t=[], n=0, h=[])
    assert validate_filter_report(unloaded, 1, 5, 3, 3).calls == 0


@pytest.mark.parametrize("fields", [
    {"f": 1}, {"f": True}, {"f": "0"},
    {"m": [[9, 1.0]]}, {"m": [[1, 0.0]]}, {"m": [[1, -2.0]]}, {"m": [[2, 1.0], [1, 1.0]]},
    {"m": [[1, "1"]]}, {"m": [[1, True]]}, {"m": "x"}, {"m": [[1.0, 1.0]]},
    {"e": [[2, "x" * 5000]]}, {"e": [[2, 3]]}, {"e": [[i, "e"] for i in range(5)]},
    {"t": [1, 1]}, {"t": [7]}, {"cpu": -1}, {"cpu": "1"}, {"stop": "other"},
    {"load_error": 5}, {"load_line": 0}, {"load_line": "1"},
    # every alert is called unless the filter stopped (then no result past the last call)
    {"n": 4, "h": [0, 4]}, {"n": 6, "h": [0, 6]}, {"n": True}, {"n": 5.0}, {"n": None},
    {"stop": "errors", "n": 2, "h": [2]},
    {"stop": "errors", "n": 0, "h": [], "m": [], "e": [], "t": []},
    {"load_error": "x", "n": 5}, {"load_error": "x", "n": 0, "h": []},
    # the histogram counts those calls, in at most 58 bins, with no trailing empty bin
    {"h": [0, 4]}, {"h": [0, 4, 0, 1, 0]}, {"h": [0, 6, 0, -1]}, {"h": [5.0]}, {"h": [True] * 5},
    {"h": [0] * 58 + [5]}, {"h": "5"}, {"h": None},
])
def test_malformed_reports_are_refused(fields: dict) -> None:
    with pytest.raises(ProtocolError):
        validate_filter_report(_report(**fields), 1, 5, max_errors=3, max_timeouts=3)


@pytest.mark.parametrize("payload", [b"\xff", b"[1]", b'{"type": 1}', b"{" * 100_000])
def test_undecodable_messages_are_refused(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_report(payload)


def test_shards_keep_owners_together_and_balance() -> None:
    owners = {"a1": "ann", "a2": "ann", "b1": "bob", "c1": "cat", "c2": "cat", "c3": "cat"}
    shards = assign_shards(owners, 2)
    assert sorted(len(s) for s in shards) == [3, 3]
    for owner in ("ann", "cat"):
        assert any({f for f, o in owners.items() if o == owner} <= set(s) for s in shards)
    big = assign_shards({f"f{i}": "afs" for i in range(10)}, 2)
    assert sorted(len(s) for s in big) == [5, 5]


def test_freeze_handles_shared_references() -> None:
    shared = {"x": [1.0, {"y": 2}]}
    frozen = freeze({"a": shared, "b": [shared, shared]})
    assert frozen["a"] == frozen["b"][0] == {"x": (1.0, {"y": 2})}
