"""The predefined filters (DMS-REQ-0348) compile in the sandbox and match sensible fractions of a simulated night."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import MappingProxyType

import pytest

import sandbox.helpers
from afs.alerts.simulate import simulate_visits
from sandbox import compile_filter

FILTERS = sorted((Path(__file__).parent.parent / "filters").glob("*.py"))
# Most filters look for rare things; known asteroids are a few percent of alerts near the ecliptic.
MAX_RATE = {"solar_system": 0.15}


def _read_only(value):
    """A deep read-only copy, as the sandbox hands alerts to filters."""
    if isinstance(value, dict):
        return MappingProxyType({k: _read_only(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_read_only(v) for v in value)
    return value


@pytest.fixture(scope="module")
def alerts():
    return [a for seed in (1, 2) for _, batch in simulate_visits(3, 1000, seed=seed, cutouts=False) for a in batch]


@pytest.fixture(scope="module")
def loaded():
    """Each filter module, executed with `helpers` resolving to the sandbox's helpers, as in a worker."""
    saved = sys.modules.get("helpers")
    sys.modules["helpers"] = sandbox.helpers
    try:
        modules = {}
        for path in FILTERS:
            spec = importlib.util.spec_from_file_location(f"predefined_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            modules[path.stem] = (module, compile_filter(path.read_text(), path.name))
        yield modules
    finally:
        if saved is None:
            sys.modules.pop("helpers", None)
        else:
            sys.modules["helpers"] = saved


def test_there_are_at_least_six_and_each_compiles_with_a_description(loaded):
    assert len(loaded) >= 6
    for name, (module, info) in loaded.items():
        assert info.name == module.NAME and len(info.description) > 80, name
        assert info.reads and set(info.reads) <= {"diaSourceId", "diaSource", "prvDiaSources", "prvDiaForcedSources",
                                                  "diaObject", "ssSource", "mpc_orbits"}, name


@pytest.mark.parametrize("path", FILTERS, ids=[p.stem for p in FILTERS])
def test_filter_runs_on_the_keys_it_reads_and_matches_a_sensible_fraction(path, loaded, alerts):
    module, info = loaded[path.stem]
    matches = 0
    for alert in alerts:
        # What a worker hands a filter: read-only, only the declared keys plus diaSourceId.
        view = _read_only({key: alert[key] for key in (*info.reads, "diaSourceId")})
        result = module.filter(view)
        assert isinstance(result, bool) or (isinstance(result, (int, float)) and math.isfinite(result))
        matches += result is True or (type(result) is not bool and result > 0)
    assert 0 < matches / len(alerts) < MAX_RATE.get(path.stem, 0.05)
