"""PPDB queries for scientists: an object's history, a cone search, the sources of a time window.

The API never opens the mirror file: it asks the mirror's owner (the stream worker, or ``afs ppdb
serve``) at ``Settings.ppdb_owner_url()``. Every page is one query charged to the caller's
``ppdb_queries`` quota (per UTC day) after the per-second throttle; pages are row-capped and carry
``next_cursor`` (also as a ``Link: rel="next"`` header) to fetch the next. ``format=parquet`` returns
the page as one Parquet file. Parameters reach DuckDB only as bound values (afs.ppdb.queries).
"""

from __future__ import annotations

import threading
from typing import Annotated, Any, Literal

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse

from afs.api.deps import ActorDep
from afs.api.quota_deps import TOO_MANY, Throttled, charge, with_quota_headers
from afs.api.schemas import AVRO_LONG_MAX
from afs.ppdb.queries import Page, QueryError, QueryTimeout
from afs.ppdb.service import MirrorClient

router = APIRouter(prefix="/v1/ppdb", tags=["ppdb"])
_lock = threading.Lock()

Columns = Annotated[str | None, Query(description="Comma-separated column names (default: all)",
                                      examples=["midpointMjdTai,band,psfFlux,psfFluxErr"])]
Limit = Annotated[int | None, Query(ge=1, description="Rows per page (capped by AFS_PPDB_MAX_PAGE_ROWS)")]
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page")]
Format = Annotated[Literal["json", "parquet"], Query()]
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "application/vnd.apache.parquet": {}},
          "description": "One page: JSON {rows, next_cursor}, or a Parquet file with a Link header to the next"},
    422: {"description": "A parameter the mirror refuses, with the reason"},
    503: {"description": "The mirror's owner is not reachable"}, **TOO_MANY}


def mirror_of(request: Request) -> MirrorClient:
    """One client per app, made on first use (the owner may start after the API)."""
    state = request.app.state
    with _lock:
        if getattr(state, "ppdb", None) is None:
            settings = state.settings
            state.ppdb = MirrorClient(settings.ppdb_owner_url(), settings.ppdb_prefetch_max_rows)
        return state.ppdb


def _columns(value: str | None) -> list[str] | None:
    return [c.strip() for c in value.split(",") if c.strip()] if value else None


def _page(request: Request, actor: Any, throttled: Any, fmt: str, op: str, *args: Any, **options: Any) -> Response:
    decision = charge(request, actor, "ppdb_queries")
    try:
        page: Page = getattr(mirror_of(request), op)(*args, **options)
    except QueryTimeout as error:
        raise HTTPException(status.HTTP_504_GATEWAY_TIMEOUT, str(error)) from None
    except QueryError as error:
        raise HTTPException(422, str(error)) from None
    except flight.FlightUnavailableError:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "the PPDB mirror is not reachable (is the stream worker or `afs ppdb serve` running?)"
                            ) from None
    if fmt == "parquet":
        sink = pa.BufferOutputStream()
        pq.write_table(page.table, sink)
        response: Response = Response(sink.getvalue().to_pybytes(), media_type="application/vnd.apache.parquet")
    else:
        response = JSONResponse(page.as_json())
    if page.next_cursor:
        url = request.url.include_query_params(cursor=page.next_cursor)
        response.headers["Link"] = f'<{url}>; rel="next"'
    return with_quota_headers(response, throttled, decision)


@router.get("/objects/{dia_object_id}/history", responses=RESPONSES)
def history(request: Request, actor: ActorDep, throttled: Throttled,
            dia_object_id: Annotated[int, Path(ge=0, le=AVRO_LONG_MAX)],
            table: Literal["DiaSource", "DiaForcedSource"] = "DiaSource",
            start_mjd: Annotated[float | None, Query(description="From this MJD (TAI)")] = None,
            end_mjd: Annotated[float | None, Query(description="Before this MJD (TAI)")] = None,
            columns: Columns = None, limit: Limit = None, cursor: Cursor = None, format: Format = "json") -> Response:
    """An object's DiaSources (or DiaForcedSources) in time order."""
    return _page(request, actor, throttled, format, "history", dia_object_id, table=table, columns=_columns(columns),
                 start_mjd=start_mjd, end_mjd=end_mjd, cursor=cursor, limit=limit)


@router.get("/cone", responses=RESPONSES)
def cone(request: Request, actor: ActorDep, throttled: Throttled,
         ra: Annotated[float, Query(ge=0, le=360, description="degrees")],
         dec: Annotated[float, Query(ge=-90, le=90, description="degrees")],
         radius_arcsec: Annotated[float, Query(gt=0)],
         table: Literal["DiaObject", "DiaSource"] = "DiaObject",
         columns: Columns = None, limit: Limit = None, cursor: Cursor = None, format: Format = "json") -> Response:
    """Objects (latest version) or sources within the radius, nearest first, with their separation."""
    return _page(request, actor, throttled, format, "cone", ra, dec, radius_arcsec, table=table,
                 columns=_columns(columns), cursor=cursor, limit=limit)


@router.get("/sources", responses=RESPONSES)
def sources(request: Request, actor: ActorDep, throttled: Throttled,
            start_mjd: Annotated[float, Query(description="From this MJD (TAI)")],
            end_mjd: Annotated[float, Query(description="Before this MJD (TAI)")],
            table: Literal["DiaSource", "DiaForcedSource"] = "DiaSource",
            columns: Columns = None, limit: Limit = None, cursor: Cursor = None, format: Format = "json") -> Response:
    """Every source observed in [start_mjd, end_mjd), in time order."""
    return _page(request, actor, throttled, format, "window", start_mjd, end_mjd, table=table,
                 columns=_columns(columns), cursor=cursor, limit=limit)
