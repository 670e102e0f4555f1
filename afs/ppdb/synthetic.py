"""Synthetic PPDB rows at scale, vectorised (numpy -> Arrow), for the benchmark and the tests.

The alert simulator makes realistic alerts one Python dict at a time, far too slow for 10^7 rows; this
makes every column of DiaSource and DiaObject straight from numpy with the layout that matters to the
mirror: visits of ~10^4 sources in one ~3.5-degree field, fields revisited in pairs on nights days apart
(so objects build up histories and rows arrive in time order), objects detected with very unequal
frequencies, a few fields at the south pole and across RA 0/360. Columns the mirror does not query get
plausible random values of the right type.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from afs.ppdb.schema import HEALPIX_COLUMN, TableDef, load

FIELD_RADIUS_DEG = 1.75
VISIT_S = 37.0
MJD0 = 61_000.0


def fill(table: TableDef, n: int, rng: np.random.Generator, given: Mapping[str, np.ndarray]) -> pa.Table:
    """Every column of ``table`` (but the mirror's healpix): ``given`` ones, random values for the rest."""
    columns = {}
    for column in table.columns:
        if column.name == HEALPIX_COLUMN:
            continue
        if column.name in given:
            columns[column.name] = given[column.name]
        elif column.sql_type in ("FLOAT", "DOUBLE"):
            columns[column.name] = rng.standard_normal(n).astype(np.float32 if column.sql_type == "FLOAT" else float)
        elif column.sql_type in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT"):
            dtype = np.int16 if column.sql_type == "SMALLINT" else np.int64
            columns[column.name] = rng.integers(0, 100, n, dtype=dtype)
        elif column.sql_type == "BOOLEAN":
            columns[column.name] = rng.random(n) < 0.02
        else:
            columns[column.name] = np.full(n, "x")
    schema = pa.schema([f for f in table.arrow_schema() if f.name in columns])
    return pa.table({name: pa.array(values, schema.field(name).type) for name, values in columns.items()})


def sky_disc(rng: np.random.Generator, n: int, ra0: float, dec0: float,
             radius_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Uniform positions in a disc around (ra0, dec0), exact on the sphere (poles and RA 0 included)."""
    r = np.radians(radius_deg) * np.sqrt(rng.random(n))
    bearing = rng.uniform(0, 2 * np.pi, n)
    dec0r, ra0r = np.radians(dec0), np.radians(ra0)
    dec = np.arcsin(np.sin(dec0r) * np.cos(r) + np.cos(dec0r) * np.sin(r) * np.cos(bearing))
    ra = ra0r + np.arctan2(np.sin(bearing) * np.sin(r) * np.cos(dec0r), np.cos(r) - np.sin(dec0r) * np.sin(dec))
    return np.degrees(ra) % 360.0, np.degrees(dec)


@dataclass(frozen=True)
class Survey:
    """Fields, their object pools and the visit sequence; ``visits()`` yields one visit's rows at a time."""

    fields: int = 100
    visits_per_field: int = 10
    sources_per_visit: int = 10_000
    objects_per_field: int = 30_000
    seed: int = 5

    @property
    def n_visits(self) -> int:
        return self.fields * self.visits_per_field

    def field_centres(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, 0])
        ra = rng.uniform(0, 360, self.fields)
        dec = np.degrees(np.arcsin(rng.uniform(-1, np.sin(np.radians(30)), self.fields)))
        ra[:2], dec[:2] = (0.5, 359.5), (-20.0, 10.0)  # across RA 0/360
        dec[2] = -89.0  # at the south pole
        return ra, dec

    def objects(self, field: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(diaObjectId, ra, dec, detection weight) of a field's pool, the same on every call."""
        rng = np.random.default_rng([self.seed, 1, field])
        ra0, dec0 = (c[field] for c in self.field_centres())
        ra, dec = sky_disc(rng, self.objects_per_field, ra0, dec0, FIELD_RADIUS_DEG)
        ids = (np.int64(field + 1) << 32) + np.arange(self.objects_per_field, dtype=np.int64)
        weight = rng.pareto(1.5, self.objects_per_field) + 0.05
        return ids, ra, dec, weight / weight.sum()

    def visit_time(self, visit: int) -> tuple[int, float]:
        """(field, midpoint MJD): fields in order, each observed twice 33 min apart, rounds three nights apart."""
        round_, within = divmod(visit, 2 * self.fields)
        field, second = divmod(within, 2)
        return field, MJD0 + 3 * round_ + field * 2 * VISIT_S / 86400 + second * 33 / 1440

    def visit(self, visit: int) -> tuple[pa.Table, pa.Table]:
        """One visit: its DiaSources and the DiaObject version each detection makes."""
        tables = load().tables
        field, mjd = self.visit_time(visit)
        rng = np.random.default_rng([self.seed, 2, visit])
        ids, ra, dec, weight = self.objects(field)
        n = min(self.sources_per_visit, len(ids))
        pick = np.argpartition(np.log(weight) + rng.gumbel(size=len(ids)), -n)[-n:]  # weighted, no repeats
        jitter = 0.05 / 3600
        src_ra = (ra[pick] + rng.normal(0, jitter, n) / np.maximum(np.cos(np.radians(dec[pick])), 1e-3)) % 360
        src_dec = np.clip(dec[pick] + rng.normal(0, jitter, n), -90, 90)
        processed = np.full(n, mjd + 120 / 86400)
        source = fill(tables["DiaSource"], n, rng, {
            "diaSourceId": (np.int64(visit) << 22) + np.arange(n, dtype=np.int64),
            "visit": np.full(n, visit, np.int64), "detector": rng.integers(0, 189, n, dtype=np.int16),
            "diaObjectId": ids[pick], "ssObjectId": np.zeros(n, np.int64), "midpointMjdTai": np.full(n, mjd),
            "ra": src_ra, "dec": src_dec, "band": np.full(n, "ugrizy"[visit % 6]),
            "timeProcessedMjdTai": processed, "psfFlux": rng.lognormal(8, 1, n).astype(np.float32)})
        obj = fill(tables["DiaObject"], n, rng, {
            "diaObjectId": ids[pick], "validityStartMjdTai": processed, "ra": ra[pick], "dec": dec[pick],
            "firstDiaSourceMjdTai": np.full(n, MJD0), "lastDiaSourceMjdTai": np.full(n, mjd),
            "nDiaSources": rng.integers(1, 20, n, dtype=np.int64)})
        return source, obj

    def stream(self, first: int = 0, last: int | None = None) -> Iterator[tuple[int, pa.Table, pa.Table]]:
        for visit in range(first, self.n_visits if last is None else last):
            yield (visit, *self.visit(visit))
