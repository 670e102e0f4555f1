"""`afs query history|cone|sources`: the PPDB mirror through the API, as a scientist (against their quota).

Rows print as JSON lines; ``--out FILE.parquet`` saves Parquet instead. One page by default (its
``next_cursor`` goes to stderr); ``--pages N`` follows the cursor for up to N pages, each one query.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from afs.client.commands import _client


def _run(path: str, params: dict[str, Any], pages: int, out: Path | None) -> None:
    params = {k: v for k, v in params.items() if v is not None}
    with _client() as client:
        if out is not None:
            size = client.download(path, out, params=params | {"format": "parquet"})
            click.echo(f"{size} bytes to {out} (one page; --cursor for the next)", err=True)
            return
        cursor = params.pop("cursor", None)
        for _ in range(pages):
            page = client.call("GET", path, params=params | ({"cursor": cursor} if cursor else {}))
            for row in page["rows"]:
                sys.stdout.write(json.dumps(row) + "\n")
            cursor = page["next_cursor"]
            if not cursor:
                return
        click.echo(f"next page: --cursor {cursor}", err=True)


def page_options(func: Any) -> Any:
    for option in reversed([
        click.option("--columns", help="Comma-separated column names (default: all)."),
        click.option("--limit", type=int, help="Rows per page."),
        click.option("--cursor", help="Start from this next_cursor."),
        click.option("--pages", type=int, default=1, show_default=True, help="Follow the cursor this many pages."),
        click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Save one page as Parquet."),
    ]):
        func = option(func)
    return func


@click.group("query")
def query() -> None:
    """Query the PPDB mirror through the API (counted against your ppdb_queries quota)."""


@query.command()
@click.argument("dia_object_id", type=int)
@click.option("--table", type=click.Choice(["DiaSource", "DiaForcedSource"]), default="DiaSource", show_default=True)
@click.option("--start", "start_mjd", type=float, help="From this MJD (TAI).")
@click.option("--end", "end_mjd", type=float, help="Before this MJD (TAI).")
@page_options
def history(dia_object_id: int, table: str, start_mjd: float | None, end_mjd: float | None, columns: str | None,
            limit: int | None, cursor: str | None, pages: int, out: Path | None) -> None:
    """An object's sources in time order."""
    _run(f"/v1/ppdb/objects/{dia_object_id}/history", {"table": table, "start_mjd": start_mjd, "end_mjd": end_mjd,
                                                       "columns": columns, "limit": limit, "cursor": cursor}, pages, out)


@query.command(context_settings={"ignore_unknown_options": True})  # a negative DEC is an argument
@click.argument("ra", type=float)
@click.argument("dec", type=float)
@click.argument("radius_arcsec", type=float)
@click.option("--table", type=click.Choice(["DiaObject", "DiaSource"]), default="DiaObject", show_default=True)
@page_options
def cone(ra: float, dec: float, radius_arcsec: float, table: str, columns: str | None, limit: int | None,
         cursor: str | None, pages: int, out: Path | None) -> None:
    """Objects (latest version) or sources within RADIUS_ARCSEC of RA DEC (degrees), nearest first."""
    _run("/v1/ppdb/cone", {"ra": ra, "dec": dec, "radius_arcsec": radius_arcsec, "table": table, "columns": columns,
                           "limit": limit, "cursor": cursor}, pages, out)


@query.command()
@click.argument("start_mjd", type=float)
@click.argument("end_mjd", type=float)
@click.option("--table", type=click.Choice(["DiaSource", "DiaForcedSource"]), default="DiaSource", show_default=True)
@page_options
def sources(start_mjd: float, end_mjd: float, table: str, columns: str | None, limit: int | None,
            cursor: str | None, pages: int, out: Path | None) -> None:
    """Every source observed from START_MJD to before END_MJD (TAI), in time order."""
    _run("/v1/ppdb/sources", {"start_mjd": start_mjd, "end_mjd": end_mjd, "table": table, "columns": columns,
                              "limit": limit, "cursor": cursor}, pages, out)
