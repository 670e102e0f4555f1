"""What a filter declares it needs from the mirror, checked when the filter is compiled.

A filter states its needs in a top-level literal, next to NAME and READS::

    NEEDS = {
        "history": {"days": 3650},                      # the object's DiaSources before this alert
        "forced_history": {"days": 365, "columns": ("midpointMjdTai", "band", "psfFlux")},
        "neighbours": {"radius_arcsec": 5},             # other DiaObjects within 5"
        "recent_detections": {"nights": 3, "radius_arcsec": 2},   # any DiaSource here in the last 3 nights
    }

Every kind is optional and every option has a default. The service fetches the needs of all filters for a
whole batch in one query and hands each filter ``alert["ppdb"][kind]``: a tuple of rows (dicts), oldest
first for histories and nearest first for positions, each holding at least the kind's KEY_COLUMNS. All of
it is as of the alert: only what was observed before its midpointMjdTai.

``validate_needs`` is a pure function of the literal: the sandbox compiler calls it with the value of
``NEEDS`` and turns a NeedsError's problems into compile errors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from afs.ppdb.schema import HEALPIX_COLUMN, load

KINDS = {"history": "DiaSource", "forced_history": "DiaForcedSource", "neighbours": "DiaObjectLast",
         "recent_detections": "DiaSource"}
KEY_COLUMNS = {"history": ("diaSourceId", "midpointMjdTai"), "forced_history": ("diaForcedSourceId", "midpointMjdTai"),
               "neighbours": ("diaObjectId",), "recent_detections": ("diaSourceId", "midpointMjdTai")}
DEFAULT_COLUMNS = {
    "history": ("diaSourceId", "visit", "midpointMjdTai", "band", "ra", "dec", "psfFlux", "psfFluxErr",
                "scienceFlux", "scienceFluxErr", "snr", "reliability", "extendedness"),
    "forced_history": ("diaForcedSourceId", "visit", "midpointMjdTai", "band", "psfFlux", "psfFluxErr",
                       "scienceFlux", "scienceFluxErr"),
    "neighbours": ("diaObjectId", "ra", "dec", "nDiaSources", "firstDiaSourceMjdTai", "lastDiaSourceMjdTai"),
    "recent_detections": ("diaSourceId", "diaObjectId", "ssObjectId", "midpointMjdTai", "band", "ra", "dec",
                          "psfFlux", "psfFluxErr", "reliability"),
}
SPATIAL = ("neighbours", "recent_detections")
SEPARATION = "separation_arcsec"  # added to the rows of the spatial kinds
OPTIONS = {"history": ("days", "columns", "max_rows"), "forced_history": ("days", "columns", "max_rows"),
           "neighbours": ("radius_arcsec", "columns", "max_rows"),
           "recent_detections": ("nights", "radius_arcsec", "columns", "max_rows")}
MAX_DAYS = 36_500.0
MAX_NIGHTS = 30
MAX_RADIUS_ARCSEC = 60.0
DEFAULT_RADIUS_ARCSEC = {"neighbours": 5.0, "recent_detections": 1.0}
MAX_ROWS = 2000  # per need per alert; the service may cap lower


class NeedsError(ValueError):
    """NEEDS is not valid; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Need:
    """One kind of supplemental data, normalised: equal needs are equal values (and share one fetch)."""

    kind: str
    columns: tuple[str, ...]
    max_rows: int = MAX_ROWS
    days: float | None = None  # history kinds; None: the whole history
    nights: int | None = None  # recent_detections
    radius_arcsec: float | None = None  # spatial kinds


Needs = Mapping[str, Need]  # kind -> Need


def validate_needs(value: Any) -> dict[str, Need]:
    """The NEEDS literal as normalised Needs, or NeedsError with every problem found."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise NeedsError([f"NEEDS must be a dict of {{kind: options}}, kinds: {', '.join(KINDS)}"])
    problems: list[str] = []
    needs = {}
    for kind, options in value.items():
        if kind not in KINDS:
            problems.append(f"NEEDS: unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
            continue
        if not isinstance(options, Mapping):
            problems.append(f"NEEDS[{kind!r}] must be a dict of options ({', '.join(OPTIONS[kind])}), or {{}}")
            continue
        before = len(problems)
        need = _need(kind, options, problems)
        if len(problems) == before:
            needs[kind] = need
    if problems:
        raise NeedsError(problems)
    return needs


def needs_problems(value: Any) -> list[str]:
    """Everything wrong with a NEEDS literal (the sandbox compiler's ``check_needs``)."""
    try:
        validate_needs(value)
    except NeedsError as error:
        return error.problems
    return []


def _need(kind: str, options: Mapping[str, Any], problems: list[str]) -> Need:
    where = f"NEEDS[{kind!r}]"
    for option in options:
        if option not in OPTIONS[kind]:
            problems.append(f"{where}: unknown option {option!r}; options: {', '.join(OPTIONS[kind])}")
    days = _number(options, "days", where, problems, 0, MAX_DAYS) if "days" in options else None
    nights = None
    if kind == "recent_detections":
        nights = options.get("nights", 1)
        if isinstance(nights, bool) or not isinstance(nights, int) or not 1 <= nights <= MAX_NIGHTS:
            problems.append(f"{where}: nights must be a whole number from 1 to {MAX_NIGHTS}")
            nights = 1
    radius = None
    if kind in SPATIAL:
        radius = DEFAULT_RADIUS_ARCSEC[kind]
        if "radius_arcsec" in options:
            radius = _number(options, "radius_arcsec", where, problems, 0, MAX_RADIUS_ARCSEC)
    max_rows = options.get("max_rows", MAX_ROWS)
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or not 1 <= max_rows <= MAX_ROWS:
        problems.append(f"{where}: max_rows must be a whole number from 1 to {MAX_ROWS}")
        max_rows = MAX_ROWS
    return Need(kind, _columns(kind, options.get("columns"), where, problems), max_rows, days, nights, radius)


def _number(options: Mapping[str, Any], name: str, where: str, problems: list[str], low: float,
            high: float) -> float:
    value = options[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not low < value <= high:
        problems.append(f"{where}: {name} must be a number greater than {low:g} and at most {high:g}")
        return high
    return float(value)


def _columns(kind: str, columns: Any, where: str, problems: list[str]) -> tuple[str, ...]:
    """The requested columns (checked against the Felis schema) plus the kind's key columns, in order."""
    if columns is None:
        columns = DEFAULT_COLUMNS[kind]
    elif isinstance(columns, str) or not isinstance(columns, tuple | list) or not columns:
        problems.append(f"{where}: columns must be a non-empty tuple of column names")
        return ()
    known = set(column_choices(kind))
    unknown = [c for c in columns if c not in known]
    for column in unknown:
        problems.append(f"{where}: {KINDS[kind]} has no column {column!r}")
    wanted = [c for c in columns if c in known]
    return tuple(dict.fromkeys([*KEY_COLUMNS[kind], *wanted]))


def column_choices(kind: str) -> tuple[str, ...]:
    return tuple(n for n in load().tables[KINDS[kind]].names if n != HEALPIX_COLUMN)


def union(needs: list[Need], max_rows: int) -> Need:
    """One need (same kind) whose rows include every row any of ``needs`` asks for, up to ``max_rows``."""
    kind = needs[0].kind
    columns = tuple(dict.fromkeys(c for need in needs for c in need.columns))
    days = None if any(n.days is None for n in needs) else max(n.days for n in needs)  # type: ignore[type-var]
    nights = max((n.nights for n in needs if n.nights is not None), default=None)
    radius = max((n.radius_arcsec for n in needs if n.radius_arcsec is not None), default=None)
    return Need(kind, columns, max_rows, days, nights, radius)
