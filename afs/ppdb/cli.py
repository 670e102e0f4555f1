"""`afs ppdb ...`: run the mirror's owner, bulk-load Parquet exports, and query the mirror."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import click

from afs.config import Settings


@contextmanager
def _mirror(read_only: bool) -> Iterator[Any]:
    import pyarrow.flight as flight

    from afs.ppdb.queries import QueryError
    from afs.ppdb.service import connect

    settings = Settings()
    mirror = connect(settings, read_only=read_only)
    try:
        yield mirror
    except QueryError as error:
        raise click.ClickException(str(error)) from None
    except flight.FlightUnavailableError:
        raise click.ClickException(f"{settings.ppdb_path} is held by another process and its owner does not "
                                   f"answer at {settings.ppdb_owner_url()}; set AFS_PPDB_URL to the address "
                                   "of `afs ppdb serve`") from None
    finally:
        mirror.close()


def _emit(page: Any, fmt: str, out: Path | None) -> None:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        if out is None:
            raise click.UsageError("--format parquet needs --out FILE")
        pq.write_table(page.table, out)
        click.echo(f"{page.rows} rows to {out}" + (f"; next page: --cursor {page.next_cursor}"
                                                    if page.next_cursor else ""), err=True)
        return
    text = json.dumps(page.as_json(), indent=1)
    if out is None:
        click.echo(text)
    else:
        out.write_text(text + "\n")


def _columns(value: str | None) -> list[str] | None:
    return [c.strip() for c in value.split(",") if c.strip()] if value else None


def page_options(func: Any) -> Any:
    """The options every paginated query shares."""
    for option in reversed([
        click.option("--columns", help="Comma-separated column names (default: all)."),
        click.option("--limit", type=int, help="Rows per page (capped by AFS_PPDB_MAX_PAGE_ROWS)."),
        click.option("--cursor", help="The next_cursor of the previous page."),
        click.option("--format", "fmt", type=click.Choice(["json", "parquet"]), default="json", show_default=True),
        click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE."),
    ]):
        func = option(func)
    return func


@click.group("ppdb")
def ppdb() -> None:
    """The PPDB mirror: supplemental data for filters, and history and cone queries for users."""


@ppdb.command()
@click.option("--listen", help="Flight location to serve on (default AFS_PPDB_LISTEN).")
def serve(listen: str | None) -> None:
    """Own the mirror file and serve it to the API, the stream workers and the CLI over Arrow Flight."""
    from afs.ppdb.mirror import Mirror
    from afs.ppdb.service import MirrorServer

    settings = Settings()
    with Mirror.from_settings(settings) as mirror:
        address = listen or settings.ppdb_listen_address()
        server = MirrorServer(mirror, address)
        click.echo(f"serving {settings.ppdb_path} on {address}", err=True)
        try:
            server.serve()
        except KeyboardInterrupt:
            pass
        finally:
            server.shutdown()


@ppdb.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--table", help="The table the files hold (default: from the file or directory names).")
def load(path: Path, table: str | None) -> None:
    """Bulk-load PPDB Parquet exports (a file or a directory of chunks); loading twice adds nothing."""
    with _mirror(read_only=False) as mirror:
        report = mirror.load_parquet(str(path.resolve()), table)
    for name in sorted(report.offered):
        click.echo(f"{name}: {report.offered[name]} rows read, {report.inserted[name]} new, "
                   f"{report.rejected[name]} rejected (a required value missing)")
    click.echo(f"{report.seconds:.1f} s")


@ppdb.command()
@click.argument("dia_object_id", type=int)
@click.option("--table", type=click.Choice(["DiaSource", "DiaForcedSource"]), default="DiaSource",
              show_default=True)
@click.option("--start", "start_mjd", type=float, help="From this MJD (TAI).")
@click.option("--end", "end_mjd", type=float, help="Before this MJD (TAI).")
@page_options
def history(dia_object_id: int, table: str, start_mjd: float | None, end_mjd: float | None, columns: str | None,
            limit: int | None, cursor: str | None, fmt: str, out: Path | None) -> None:
    """An object's sources in time order."""
    with _mirror(read_only=True) as mirror:
        page = mirror.history(dia_object_id, table=table, columns=_columns(columns), start_mjd=start_mjd,
                              end_mjd=end_mjd, cursor=cursor, limit=limit)
    _emit(page, fmt, out)


@ppdb.command(context_settings={"ignore_unknown_options": True})  # so that a negative DEC is an argument
@click.argument("ra", type=float)
@click.argument("dec", type=float)
@click.argument("radius", type=float)
@click.option("--table", type=click.Choice(["DiaObject", "DiaSource"]), default="DiaObject", show_default=True)
@page_options
def cone(ra: float, dec: float, radius: float, table: str, columns: str | None, limit: int | None,
         cursor: str | None, fmt: str, out: Path | None) -> None:
    """Objects (latest version) or sources within RADIUS arcsec of RA DEC (degrees), nearest first."""
    with _mirror(read_only=True) as mirror:
        page = mirror.cone(ra, dec, radius, table=table, columns=_columns(columns), cursor=cursor, limit=limit)
    _emit(page, fmt, out)


@ppdb.command()
@click.argument("start_mjd", type=float)
@click.argument("end_mjd", type=float)
@click.option("--table", type=click.Choice(["DiaSource", "DiaForcedSource"]), default="DiaSource",
              show_default=True)
@page_options
def window(start_mjd: float, end_mjd: float, table: str, columns: str | None, limit: int | None,
           cursor: str | None, fmt: str, out: Path | None) -> None:
    """Every source observed from START_MJD to before END_MJD (TAI), in time order."""
    with _mirror(read_only=True) as mirror:
        page = mirror.window(start_mjd, end_mjd, table=table, columns=_columns(columns), cursor=cursor, limit=limit)
    _emit(page, fmt, out)


@ppdb.command()
def info() -> None:
    """Rows per table, file size, and the schema version the mirror was built from."""
    with _mirror(read_only=True) as mirror:
        json.dump(mirror.info(), sys.stdout, indent=1)
    click.echo()
