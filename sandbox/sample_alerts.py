"""Synthetic v11.1 alerts with history, for the sandbox's tests and benchmark.

Every field of the lsst.v11_1 records is filled (as fastavro would decode it:
dicts, lists, floats, ints, str, bool, None), so freezing and transport costs
are realistic; fluxes, times and bands follow a simple variable source.
"""
from __future__ import annotations

import json
import random
from functools import cache
from importlib import resources
from typing import Any

BANDS = ("u", "g", "r", "i", "z", "y")
_SCHEMA = "lsst.alert.packet"


@cache
def _fields(record: str) -> tuple[tuple[str, str, bool], ...]:
    """(name, avro type, nullable) of one lsst.v11_1 record."""
    path = resources.files(_SCHEMA) / "schema" / "11" / "1" / f"lsst.v11_1.{record}.avsc"
    schema = json.loads(path.read_text())
    fields = []
    for field in schema["fields"]:
        kind = field["type"]
        nullable = isinstance(kind, list) and "null" in kind
        if isinstance(kind, list):
            kind = next(k for k in kind if k != "null")
        fields.append((field["name"], kind if isinstance(kind, str) else "record", nullable))
    return tuple(fields)


def _record(record: str, rng: random.Random) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, kind, nullable in _fields(record):
        if nullable and rng.random() < 0.1:
            values[name] = None
        elif kind in ("float", "double"):
            values[name] = rng.uniform(-100.0, 100.0)
        elif kind in ("int", "long"):
            values[name] = rng.randrange(1 << 40)
        elif kind == "boolean":
            values[name] = rng.random() < 0.05
        elif kind == "string":
            values[name] = rng.choice(BANDS)
        else:
            values[name] = None
    return values


def _detection(rng: random.Random, source_id: int, object_id: int, mjd: float,
               ra: float, dec: float, flux: float) -> dict[str, Any]:
    source = _record("diaSource", rng)
    source.update(diaSourceId=source_id, diaObjectId=object_id, midpointMjdTai=mjd,
                  band=rng.choice(BANDS), ra=ra, dec=dec, psfFlux=flux,
                  psfFluxErr=abs(flux) * 0.05 + 50.0, ssObjectId=None)
    return source


def sample_alert(index: int, history: int = 10, seed: int = 0) -> dict[str, Any]:
    """One alert: a diaSource, `history` previous detections and forced photometry."""
    rng = random.Random(seed * 1_000_003 + index)
    object_id = 10**17 + index
    ra, dec = rng.uniform(0.0, 360.0), rng.uniform(-70.0, 10.0)
    base_flux = 10 ** rng.uniform(2.5, 5.5)
    trend = rng.uniform(-0.05, 0.05)
    now = 61000.0 + rng.uniform(0.0, 1.0)

    def flux_at(days_ago: float) -> float:
        return base_flux * 10 ** (0.4 * trend * days_ago) * rng.uniform(0.9, 1.1)

    source_id = 10**18 + index * 1000
    previous = [_detection(rng, source_id + k + 1, object_id, now - 3.0 * (history - k),
                           ra, dec, flux_at(3.0 * (history - k))) for k in range(history)]
    forced = []
    for k in range(history):
        record = _record("diaForcedSource", rng)
        record.update(diaObjectId=object_id, midpointMjdTai=now - 3.0 * (history - k) - 0.5,
                      band=rng.choice(BANDS), psfFlux=flux_at(3.0 * (history - k)),
                      psfFluxErr=60.0, ra=ra, dec=dec)
        forced.append(record)
    dia_object = _record("diaObject", rng)
    dia_object.update(diaObjectId=object_id, ra=ra, dec=dec, nDiaSources=history + 1)
    return {
        "diaSourceId": source_id,
        "observation_reason": None,
        "target_name": None,
        "diaSource": _detection(rng, source_id, object_id, now, ra, dec, flux_at(0.0)),
        "prvDiaSources": previous,
        "prvDiaForcedSources": forced,
        "diaObject": dia_object,
        "ssSource": None,
        "mpc_orbits": None,
        "cutoutDifference": None,
        "cutoutScience": None,
        "cutoutTemplate": None,
    }


def sample_alerts(n: int, history: int = 10, seed: int = 0) -> list[dict[str, Any]]:
    return [sample_alert(i, history, seed) for i in range(n)]
