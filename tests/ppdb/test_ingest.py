"""Appending alert batches and Parquet exports: idempotent replays, DiaObject versions, bulk loads."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from afs.cli import main
from afs.ppdb.mirror import Mirror
from afs.ppdb.schema import HEALPIX_COLUMN, MIRRORED, load, quote

KEYED = [*MIRRORED, "DiaObjectLast"]


def snapshot(mirror: Mirror) -> dict[str, list[tuple]]:
    """Every row of every table, sorted: equal snapshots mean nothing was added or changed."""
    tables = load().tables
    with mirror.reader() as con:
        return {name: con.sql(f"SELECT * FROM {quote(name)} ORDER BY ALL").fetchall() for name in KEYED
                if tables[name].primary_key}


def test_alert_batches_land_in_every_table(mirror: Mirror, visits: list[list[dict]]) -> None:
    report = mirror.ingest_alerts(visits[0])
    counts = mirror.info()["rows"]
    alerts = visits[0]
    assert counts["DiaObject"] == report.inserted["DiaObject"] == sum(a["diaObject"] is not None for a in alerts)
    assert counts["SSSource"] == sum(a["ssSource"] is not None for a in alerts)
    sources = {s["diaSourceId"] for a in alerts for s in [a["diaSource"], *(a["prvDiaSources"] or ())]}
    assert counts["DiaSource"] == len(sources)
    forced = {(f["diaObjectId"], f["visit"], f["detector"]) for a in alerts for f in a["prvDiaForcedSources"] or ()}
    assert counts["DiaForcedSource"] == len(forced)
    with mirror.reader() as con:
        stored = con.sql('SELECT * EXCLUDE (healpix) FROM "DiaSource" WHERE "diaSourceId" = $id',
                         params={"id": alerts[0]["diaSourceId"]}).to_arrow_table().to_pylist()[0]
    assert {k: v for k, v in stored.items() if v is not None} == \
        {k: v for k, v in alerts[0]["diaSource"].items() if v is not None}


def test_replays_are_idempotent(mirror: Mirror, visits: list[list[dict]]) -> None:
    for alerts in visits:
        mirror.ingest_alerts(alerts)
    before = snapshot(mirror)
    for alerts in visits:
        report = mirror.ingest_alerts(alerts)
        assert sum(report.inserted.values()) == 0
        assert sum(report.offered.values()) == 0  # every row known: none even converted
    # a batch that repeats alerts within itself and mixes old visits in, in another order
    report = mirror.ingest_alerts(visits[2][::-1] + visits[0] + visits[2])
    assert sum(report.inserted.values()) == 0
    assert snapshot(mirror) == before


def test_inserts_are_idempotent_even_without_the_known_key_shortcut(mirror: Mirror,
                                                                   visits: list[list[dict]]) -> None:
    from afs.ppdb import rows

    mirror.ingest_alerts(visits[1])
    before = snapshot(mirror)
    nothing_known = lambda table, keys: keys.slice(0, 0)  # noqa: E731
    new, _ = rows.alert_tables(visits[1], nothing_known)
    report = mirror.ingest_tables(new)
    assert sum(report.offered.values()) > 0 and sum(report.inserted.values()) == 0
    assert snapshot(mirror) == before


@pytest.mark.parametrize("share", [0.0, 1e9], ids=["scan", "index"])
def test_known_keys_match_whole_keys(mirror: Mirror, visits: list[list[dict]], share: float,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Scanned or looked up by the key's first column (diaObjectId here): a stored object with another visit or
    detector is not a known row, nor is an unseen object."""
    from afs.ppdb import mirror as mirror_module, rows

    monkeypatch.setattr(mirror_module, "INDEX_SCAN_SHARE", share)
    table = load().tables["DiaForcedSource"]
    mirror.ingest_alerts(visits[0])
    with mirror.reader() as con:
        (obj, visit, detector), = con.sql('SELECT "diaObjectId", visit, detector FROM "DiaForcedSource" '
                                          'LIMIT 1').fetchall()
    asked = [(obj, visit, detector), (obj, visit + 10**6, detector), (obj, visit, detector + 1),
             (obj + 10**12, visit, detector)]
    known = mirror.known_keys("DiaForcedSource", rows.keys_table(table, asked))
    assert rows.key_set(table, known) == {(obj, visit, detector)}
    assert mirror.known_keys("DiaForcedSource", rows.keys_table(table, [])).num_rows == 0


def test_diaobject_versions_and_the_latest_view(mirror: Mirror, visits: list[list[dict]]) -> None:
    first = visits[0][0]["diaObject"]
    versions = [dict(first, validityStartMjdTai=first["validityStartMjdTai"] + dt, nDiaSources=n)
                for dt, n in ((0.0, 1), (1.0, 3), (0.5, 2))]
    mirror.ingest_alerts([{"diaObject": versions[1]}])  # the newest arrives first ...
    mirror.ingest_alerts([{"diaObject": versions[0]}, {"diaObject": versions[2]}])  # ... then older ones
    with mirror.reader() as con:
        stored = con.sql('SELECT count(*) FROM "DiaObject" WHERE "diaObjectId" = $id',
                         params={"id": first["diaObjectId"]}).fetchall()[0][0]
        latest = con.sql('SELECT "validityStartMjdTai", "nDiaSources" FROM "DiaObject_latest" '
                         'WHERE "diaObjectId" = $id', params={"id": first["diaObjectId"]}).fetchall()
    assert stored == 3
    assert latest == [(versions[1]["validityStartMjdTai"], 3)]


def test_rows_missing_a_required_value_are_rejected_not_fatal(mirror: Mirror, visits: list[list[dict]]) -> None:
    good, bad = visits[0][0]["diaSource"], dict(visits[0][1]["diaSource"], ra=None)
    report = mirror.ingest_tables({"DiaSource": pa.Table.from_pylist([good, bad])})
    assert (report.inserted["DiaSource"], report.rejected["DiaSource"]) == (1, 1)


def export(mirror: Mirror, directory: Path) -> None:
    """The mirror's rows as PPDB-style Parquet chunks, named the ways Rubin's exports are."""
    with mirror.reader() as con:
        for name, target in (("DiaSource", "chunk_0001/DiaSource.parquet"),
                             ("DiaObject", "chunk_0001/DiaObject.parquet"),
                             ("DiaForcedSource", "DiaForcedSource/part-0.parquet"),
                             ("SSSource", "ssSource.parquet")):
            path = directory / target
            path.parent.mkdir(parents=True, exist_ok=True)
            exclude = f" EXCLUDE ({HEALPIX_COLUMN})" if name == "DiaSource" else ""
            pq.write_table(con.sql(f"SELECT *{exclude} FROM {quote(name)}").to_arrow_table(), path)


def test_bulk_parquet_load_rebuilds_the_same_mirror(mirror: Mirror, visits: list[list[dict]],
                                                    tmp_path: Path) -> None:
    for alerts in visits[:3]:
        mirror.ingest_alerts(alerts)
    export(mirror, tmp_path / "export")
    with Mirror(tmp_path / "copy.duckdb") as copy:
        report = copy.load_parquet(tmp_path / "export")
        assert snapshot(copy) == snapshot(mirror)
        assert sum(report.inserted.values()) == sum(mirror.info()["rows"][t] for t in MIRRORED)
        again = copy.load_parquet(tmp_path / "export")
        assert sum(again.inserted.values()) == 0
        assert snapshot(copy) == snapshot(mirror)


def test_bulk_load_needs_to_know_the_table(mirror: Mirror, tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": [1]}), tmp_path / "mystery.parquet")
    with pytest.raises(ValueError, match="cannot tell which table"):
        mirror.load_parquet(tmp_path / "mystery.parquet")
    with pytest.raises(ValueError, match="not a mirrored table"):
        mirror.load_parquet(tmp_path / "mystery.parquet", table="Users")


def test_cli_load_info_history_cone(visits: list[list[dict]], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with Mirror(tmp_path / "source.duckdb") as source:
        for alerts in visits[:2]:
            source.ingest_alerts(alerts)
        export(source, tmp_path / "export")
    monkeypatch.setenv("AFS_PPDB_PATH", str(tmp_path / "cli.duckdb"))
    monkeypatch.delenv("AFS_PPDB_URL", raising=False)
    runner = CliRunner()
    loaded = runner.invoke(main, ["ppdb", "load", str(tmp_path / "export")])
    assert loaded.exit_code == 0, loaded.output
    assert "DiaSource:" in loaded.output and "rejected" in loaded.output
    info = runner.invoke(main, ["ppdb", "info"])
    assert '"schema_version"' in info.output and '"DiaSource"' in info.output
    source = visits[1][0]["diaSource"]
    history = runner.invoke(main, ["ppdb", "history", str(source["diaObjectId"]), "--columns",
                                   "midpointMjdTai,psfFlux"])
    assert history.exit_code == 0, history.output
    assert '"psfFlux"' in history.output and '"next_cursor"' in history.output
    out = tmp_path / "cone.parquet"
    cone = runner.invoke(main, ["ppdb", "cone", str(source["ra"]), str(source["dec"]), "5", "--format", "parquet",
                                "--out", str(out)])
    assert cone.exit_code == 0, cone.output
    assert source["diaObjectId"] in pq.read_table(out).column("diaObjectId").to_pylist()
    refused = runner.invoke(main, ["ppdb", "cone", "10", "-95", "5"])
    assert refused.exit_code == 1 and "dec must be between" in refused.output
    with duckdb.connect(str(tmp_path / "cli.duckdb")):  # the CLI let go of the file
        pass
