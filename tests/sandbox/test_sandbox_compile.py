"""compile_filter: metadata, and refusals that name the line and say why."""
from __future__ import annotations

import pytest

from sandbox import FilterInfo, FilterRejected, compile_filter

GOOD = '''"""Bright, significant new sources."""
import math
from helpers import flux_to_mag, snr

NAME = "bright new"
READS = ("diaSource", "diaObject")
LIMIT: float = 20.5


def filter(alert):
    source = alert["diaSource"]
    return flux_to_mag(source["psfFlux"]) < LIMIT and math.isfinite(snr(1.0, 2.0))
'''


def rejection(source: str) -> FilterRejected:
    with pytest.raises(FilterRejected) as caught:
        compile_filter(source)
    return caught.value


def test_metadata() -> None:
    info = compile_filter(GOOD)
    assert info == FilterInfo("bright new", "Bright, significant new sources.",
                              frozenset({"diaSource", "diaObject", "diaSourceId"}))


def test_defaults_without_name_reads_or_docstring() -> None:
    info = compile_filter("def filter(alert):\n    return True\n", "riser.py")
    assert info == FilterInfo("riser", "", None)


@pytest.mark.parametrize("source, line, words", [
    ("import os\ndef filter(a):\n    return True\n", 1, "may import only math and helpers"),
    ("def filter(a):\n    x = 1\n    return a.__class__\n", 3, "reserved|internals"),
    ("def filter(a):\n\n    return open('x')\n", 3, "cannot read or write files"),
    ("def filter(a):\n    try:\n        pass\n    except:\n        pass\n    return 1\n", 4,
     "bare 'except:'"),
    ("def filter(a):\n    return '{0.x}'.format(a)\n", 2, "f-string"),
    ("class A:\n    pass\ndef filter(a):\n    return 1\n", 1, "class definitions"),
    ("def filter(a):\n    return undefined_name\n", 2, "not defined"),
    ("def filter(a):\n    return a +\n", 2, "syntax error"),
    ("def filter(a, b):\n    return 1\n", 1, "exactly one argument"),
    ("X = [1]\nX.append(2)\ndef filter(a):\n    return 1\n", 2, "top level"),
    ("def filter(a):\n    return print(a)\n", 2, "no console"),
    ("READS = ('diaSorce',)\ndef filter(a):\n    return 1\n", 1, "not a top-level alert key"),
    ("NAME = 3\ndef filter(a):\n    return 1\n", 1, "NAME must be a string"),
    ("def filter(a):\n    from helpers import nope\n    return 1\n", 2, "helpers has no member"),
    ("def filter(a):\n    return a\n\u202e\n", 3, "U\\+202E"),
    ("def filter(a):\n    caf\u00e9 = 1\n    return caf\u00e9\n", 2, "non-ASCII"),
])
def test_refusals_name_the_line_and_the_reason(source: str, line: int, words: str) -> None:
    import re
    found = rejection(source)
    assert found.line == line, found.problems
    assert re.search(words, found.reason), found.reason
    assert str(found).startswith(f"line {line}")


def test_every_problem_is_reported_in_reading_order() -> None:
    found = rejection("import os\nimport sys\ndef filter(a):\n    return eval('1')\n")
    assert [p.line for p in found.problems] == [1, 2, 4]
    assert "(and 2 more problem(s))" in str(found)


def test_missing_filter_function() -> None:
    found = rejection("def other(alert):\n    return True\n")
    assert "def filter(alert)" in found.reason and found.line is None


@pytest.mark.parametrize("source", [
    "def filter(a):\n    return " + "(" * 60 + "1" + ")" * 60 + "\n",
    "def filter(a):\n    return " + "+".join(["1"] * 5000) + "\n",
    "def filter(a):\n    return " + "-" * 100_000 + "1\n",
    "x" * 200_000,
    "def filter(a):\n" + "    pass\n" * 4000,
    b"def filter(a): return 1",
])
def test_pathological_sources_are_refused_not_crashed(source: object) -> None:
    found = rejection(source)  # type: ignore[arg-type]
    assert found.reason


def test_power_is_guarded() -> None:
    # `**` compiles to a guarded call; the runtime refuses huge integer results.
    from sandbox.compiler import compile_source
    import marshal
    from sandbox.runtime import filter_globals
    compiled = compile_source("def filter(a):\n    return 2 ** a\n")
    namespace = filter_globals("<filter>")
    exec(marshal.loads(compiled.code), namespace)
    assert namespace["filter"](10) == 1024
    with pytest.raises(OverflowError):
        namespace["filter"](10**7)
