"""PPDB mirror benchmark: ``python -m afs.ppdb.bench [--sources 10000000]``.

Builds a mirror of generated DiaSource rows (with the DiaObject version and the forced source each detection makes)
and prints: ingest rows/s, a stored visit replayed with its objects' histories at half and at full size (the steady
state of the stream worker's call: its cost must not grow with the mirror), a 10,000-alert visit of simulated
alerts through the same call, object history and cone search p50/p99, prefetch for a 10,000-alert visit against
per-alert queries in the same run, and the single-writer design measured: the same lookups through the owner's
Flight server, idle and while it ingests.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from afs.alerts.simulate import BLOB, DEFAULT_FIRST_VISIT, simulate_visits
from afs.ppdb.mirror import IngestReport, Mirror
from afs.ppdb.needs import validate_needs
from afs.ppdb.service import MirrorClient
from afs.ppdb.synthetic import Survey

CHUNK_VISITS = 10  # visits per bulk append (100,000 rows)
REPLAY_BATCH = 1000  # the stream worker's batch size
NEEDS = {  # three filters' declared needs, as a visit's prefetch would merge them
    "history": validate_needs({"history": {}}),
    "neighbours": validate_needs({"neighbours": {"radius_arcsec": 5}, "history": {"days": 30}}),
    "recent": validate_needs({"recent_detections": {"nights": 3, "radius_arcsec": 2}}),
}


def percentiles(seconds: list[float]) -> str:
    ms = np.array(seconds) * 1000
    return f"p50 {np.percentile(ms, 50):7.2f} ms   p99 {np.percentile(ms, 99):7.2f} ms"


def timed(calls: list[Callable[[], Any]]) -> list[float]:
    out = []
    for call in calls:
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return out


def build(mirror: Mirror, survey: Survey) -> None:
    """Stores the survey; halfway and at the end, replays a stored visit as the stream worker would."""
    inserted: Counter[str] = Counter()
    seconds: Counter[str] = Counter()
    generate_s = 0.0
    started = time.perf_counter()
    replays = []
    for first in range(0, survey.n_visits, CHUNK_VISITS):
        t = time.perf_counter()
        end = min(first + CHUNK_VISITS, survey.n_visits)
        chunk = [survey.visit(v) for v in range(first, end)]
        src, obj = pa.concat_tables([c[0] for c in chunk]), pa.concat_tables([c[1] for c in chunk])
        generate_s += time.perf_counter() - t
        for name, data in (("DiaSource", src), ("DiaObject", obj), ("DiaForcedSource", forced(src))):
            report = mirror.ingest_tables({name: data})
            inserted[name] += report.inserted[name]
            seconds[name] += report.seconds
        if first // CHUNK_VISITS % 20 == 0:
            print(f"  {inserted['DiaSource']:>11,} DiaSource rows  {time.perf_counter() - started:6.0f} s", flush=True)
        if end >= survey.n_visits // 2 and not replays:
            replays.append(replay(mirror, survey, end - 1))
        if end == survey.n_visits:
            replays.append(replay(mirror, survey, end - 1))
    notes = {"DiaSource": f"({CHUNK_VISITS * survey.sources_per_visit:,}-row appends, 3 ART indexes)",
             "DiaObject": "(versions, with the DiaObjectLast upsert)", "DiaForcedSource": "(one per detection)"}
    for name, note in notes.items():
        print(f"ingest {name:<15} {inserted[name]:>11,} rows  {inserted[name] / seconds[name]:>9,.0f} rows/s {note}")
    print(f"  (generating them took {generate_s:.0f} s, not counted)")
    (half, half_rows, half_s), (full, full_rows, full_s) = replays  # later visits carry longer histories: per row
    print(f"replay at {half:>11,} DiaSource rows  {half_s:5.2f} s per {survey.sources_per_visit:,}-alert visit "
          f"({1e6 * half_s / half_rows:.1f} us per row held); at {full:,}: {full_s:5.2f} s "
          f"({1e6 * full_s / full_rows:.1f} us); {full_s / full_rows / (half_s / half_rows):.2f}x per row "
          f"for {full / half:.1f}x the rows stored")


def forced(source: pa.Table) -> pa.Table:
    """Forced photometry at each detection: the DiaForcedSource rows of the build."""
    columns = ["diaObjectId", "visit", "detector", "ra", "dec", "midpointMjdTai", "band", "psfFlux",
               "psfFluxErr", "timeProcessedMjdTai"]
    return source.select(columns).append_column("diaForcedSourceId", source.column("diaSourceId"))


def replay(mirror: Mirror, survey: Survey, visit: int) -> tuple[int, int, float]:
    """A stored visit's alerts again, each with its object's stored history, in the worker's 1,000-alert
    batches: every row is already held, so this times the mirror's known-key check at its current size.
    Returns (DiaSource rows stored, rows the alerts held, seconds)."""
    source, obj = survey.visit(visit)
    mjd = survey.visit_time(visit)[1]
    histories: dict[tuple[int, str], list[dict]] = {}
    with mirror.reader() as con:
        con.register("objects", source.select(["diaObjectId"]))
        for table, field in (("DiaSource", "prvDiaSources"), ("DiaForcedSource", "prvDiaForcedSources")):
            history = con.sql(f'SELECT * FROM "{table}" WHERE "midpointMjdTai" < {mjd} '
                              'AND "diaObjectId" IN (SELECT "diaObjectId" FROM objects)')
            for row in history.to_arrow_table().to_pylist():
                histories.setdefault((row["diaObjectId"], field), []).append(row)
        stored = con.sql('SELECT count(*) FROM "DiaSource"').fetchall()[0][0]
    alerts = [{"diaSource": s, "diaObject": o, "prvDiaSources": histories.get((s["diaObjectId"], "prvDiaSources")),
               "prvDiaForcedSources": histories.get((s["diaObjectId"], "prvDiaForcedSources"))}
              for s, o in zip(source.to_pylist(), obj.to_pylist())]
    total = IngestReport()
    for start in range(0, len(alerts), REPLAY_BATCH):
        total.add(mirror.ingest_alerts(alerts[start:start + REPLAY_BATCH]))
    assert not sum(total.inserted.values()), "a replayed visit added rows"
    return stored, sum(total.known.values()), total.seconds


def alert_path(mirror: Mirror, n_alerts: int) -> None:
    """The worker's call on simulated alerts: a field's first visit (its whole history is new to the mirror),
    a replay of it, and the field's revisit (steady state: most of the history is already stored)."""
    for visit, alerts in simulate_visits(BLOB + 1, n_alerts, seed=3, cutouts=False):
        if visit - DEFAULT_FIRST_VISIT not in (0, BLOB):
            continue  # the other fields of the scheduler's blob
        labels = ("first visit", "replayed") if visit == DEFAULT_FIRST_VISIT else ("revisit",)
        for label in labels:
            report = mirror.ingest_alerts(alerts)
            print(f"ingest_alerts {label:<11} {n_alerts:,} alerts: {report.seconds:5.2f} s, "
                  f"{sum(report.inserted.values()):>7,} rows added, {sum(report.known.values()):>7,} already held")


def sample_objects(mirror: Mirror, n: int) -> list[tuple[int, float, float]]:
    """(diaObjectId, ra, dec) of ``n`` stored objects, to look up and to centre cones on."""
    with mirror.reader() as con:
        return con.sql(f'SELECT "diaObjectId", ra, dec FROM "DiaObjectLast" USING SAMPLE {int(n)} ROWS').fetchall()


def lookups(mirror: Any, objects: list[tuple[int, float, float]], label: str) -> None:
    light_curve = ["midpointMjdTai", "band", "psfFlux", "psfFluxErr"]
    for columns, what in ((None, "all 103 columns"), (light_curve, "4 light-curve columns")):
        calls = [lambda i=i: mirror.history(i, columns=columns) for i, _, _ in objects]
        print(f"history {label:<13} {percentiles(timed(calls))}   ({len(objects)} objects, {what})")
    for radius in (10, 60):
        calls = [lambda ra=ra, dec=dec: mirror.cone(ra, dec, radius) for _, ra, dec in objects]
        print(f"cone {radius:>2}\" {label:<11} {percentiles(timed(calls))}   (DiaObject latest version, all columns)")


def visit_records(survey: Survey, visit: int) -> list[dict]:
    """A new visit's alerts, reduced to what prefetch reads of an alert (its diaSource)."""
    source, _ = survey.visit(visit)
    keep = ["diaSourceId", "diaObjectId", "ra", "dec", "midpointMjdTai"]
    return [{"diaSource": row} for row in source.select(keep).to_pylist()]


def prefetch_vs_naive(mirror: Mirror, survey: Survey, sample: int) -> None:
    records = visit_records(survey, survey.n_visits)  # the visit after the last one stored
    started = time.perf_counter()
    result = mirror.prefetch(NEEDS, records)
    batch_s = time.perf_counter() - started
    rows = sum(len(r) for per_alert in result.values() for alert in per_alert for r in alert.values())
    naive_s = sum(timed([lambda r=r: naive(mirror, r) for r in records[:sample]])) * len(records) / sample
    print(f"prefetch              {len(records):,}-alert visit, {len(NEEDS)} filters: {batch_s:.2f} s for "
          f"{rows:,} rows in one query; per-alert queries: {naive_s:.1f} s "
          f"(extrapolated from {sample}); {naive_s / batch_s:.0f}x")


def naive(mirror: Mirror, record: dict) -> None:
    source = record["diaSource"]
    before = source["midpointMjdTai"]
    for needs in NEEDS.values():
        for kind, need in needs.items():
            columns = list(need.columns)
            if kind in ("history", "forced_history"):
                params = {"diaObjectId": source["diaObjectId"], "before_mjd": before, "columns": columns}
                params |= {"days": need.days} if need.days else {}
            else:
                params = {"ra": source["ra"], "dec": source["dec"], "before_mjd": before, "columns": columns,
                          "radius_arcsec": need.radius_arcsec}
                params |= {"nights": need.nights} if kind == "recent_detections" else {}
            mirror.narrow(kind, params, need.max_rows, 10.0)


def single_writer(path: Path, survey: Survey, objects: list[tuple[int, float, float]]) -> None:
    """The design as deployed: the owner in its own process, this process a client, idle then while writing."""
    socket = Path(tempfile.mkdtemp()) / "ppdb.sock"
    env = {**os.environ, "AFS_PPDB_PATH": str(path), "AFS_PPDB_MEMORY_LIMIT": "6GB"}
    server = subprocess.Popen([sys.executable, "-m", "afs.cli", "ppdb", "serve", "--listen", f"grpc+unix://{socket}"],
                              env=env, stderr=subprocess.DEVNULL)
    visits = [survey.visit(v) for v in range(survey.n_visits + 1, survey.n_visits + 31)]  # made before timing
    try:
        while not socket.exists():
            time.sleep(0.1)
        with MirrorClient(f"grpc+unix://{socket}") as client:
            lookups(client, objects[:len(objects) // 2], "(Flight)")
            stop, written = threading.Event(), []

            def write() -> None:
                for source, obj in visits:
                    if stop.is_set():
                        return
                    report = client.ingest_tables({"DiaSource": source, "DiaObject": obj})
                    written.append((sum(report.inserted.values()), report.seconds))

            writer = threading.Thread(target=write)
            writer.start()
            reads = timed([lambda i=i: client.history(i) for i, _, _ in objects[len(objects) // 2:]])
            stop.set()
            writer.join()
            rows, seconds = sum(w[0] for w in written), sum(w[1] for w in written)
            print(f"history while writing {percentiles(reads)}   (meanwhile the owner appended {rows:,} rows, "
                  f"{rows / max(seconds, 1e-9):,.0f} rows/s, one {survey.sources_per_visit:,}-source visit per "
                  "transaction)")
    finally:
        server.terminate()
        server.wait(30)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=10_000_000, help="DiaSource rows to generate")
    parser.add_argument("--alerts", type=int, default=10_000, help="alerts in the visits ingested and prefetched")
    parser.add_argument("--lookups", type=int, default=500, help="history and cone queries to time")
    parser.add_argument("--naive-sample", type=int, default=500, help="alerts to time per-alert queries on")
    parser.add_argument("--path", type=Path, help="mirror file (default: a temporary one, deleted afterwards)")
    parser.add_argument("--memory-limit", default="6GB")
    args = parser.parse_args(argv)
    visits = max(2, args.sources // args.alerts)
    fields = max(3, visits // 10)
    survey = Survey(fields=fields, visits_per_field=max(1, visits // fields), sources_per_visit=args.alerts,
                    objects_per_field=3 * args.alerts)
    workdir = None if args.path else tempfile.TemporaryDirectory(dir="var" if Path("var").is_dir() else None)
    path = args.path or Path(workdir.name) / "ppdb-bench.duckdb"
    print(f"PPDB mirror benchmark: {survey.n_visits * args.alerts:,} DiaSource rows in {survey.n_visits} visits "
          f"of {args.alerts:,} over {fields} fields -> {path}")
    try:
        with Mirror(path, memory_limit=args.memory_limit) as mirror:
            build(mirror, survey)
            alert_path(mirror, args.alerts)
            started = time.perf_counter()
            mirror.checkpoint()
            print(f"checkpoint            {time.perf_counter() - started:.2f} s (readers wait meanwhile)")
            objects = sample_objects(mirror, 3 * args.lookups)  # a fresh third for each pass: none warmed up
            lookups(mirror, objects[:args.lookups], "(in-process)")
            prefetch_vs_naive(mirror, survey, args.naive_sample)
        print(f"mirror file           {path.stat().st_size / 1e9:.2f} GB")
        single_writer(path, survey, objects[args.lookups:])
    finally:
        if workdir:
            workdir.cleanup()


if __name__ == "__main__":
    main()
