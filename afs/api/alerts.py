"""Full alerts and cutouts by diaSourceId, under the caller's quotas (the paths of Rubin's alert archive).

``GET /v1/alerts/{id}`` answers the archived packet byte for byte: Confluent framing (0x00, 4-byte
schema id) and schemaless Avro, as ``application/vnd.apache.avro+binary`` with the schema id in
``AFS-Schema-Id`` (the schema is at /v1/schemas/{id}). ``?format=json`` answers the decoded record
instead, with each cutout replaced by the URL it can be fetched from (JSON has no bytes; the
cutouts are most of an alert's size and quota) and non-finite floats as null. Either costs one full
alert of the ``visit_alerts`` quota (the alert's own visit) and one of ``alerts`` (the UTC day).

``POST /v1/filters/{id}/bulk`` queues a bulk download of the full alerts a filter matches (see
``afs.control.jobs``), charged to the daily full-alert quota as it is written.

``GET /v1/alerts/{id}/cutouts/{kind}`` answers one cutout: FITS as Rubin wrote it (``application/fits``),
``?format=png`` a preview, ``?format=multires`` a multi-resolution cutout; it costs its size in bytes
of the ``cutout_bytes`` quota. Every data request also takes a token from the per-second bucket.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from afs.alerts.codec import DecodedAlert
from afs.api.deps import ActorDep, DatabaseDep, SettingsDep
from afs.api.jobs import job_out
from afs.api.quota_deps import TOO_MANY, Throttled, charge, charge_all, quotas_of, refuse, with_quota_headers
from afs.api.schemas import AVRO_LONG_MAX, BulkIn, JobOut
from afs.config import Settings
from afs.control import filters, jobs
from afs.control.delivery import visit_of
from afs.control.errors import Conflict
from afs.quotas import Charge

router = APIRouter(prefix="/v1", tags=["alerts and cutouts"])
AVRO = "application/vnd.apache.avro+binary"
FITS = "application/fits"
CUTOUT_FIELDS = {"difference": "cutoutDifference", "science": "cutoutScience", "template": "cutoutTemplate"}
CUTOUT_MEDIA = {"fits": FITS, "png": "image/png", "multires": FITS}
AlertId = Annotated[int, Path(ge=0, le=AVRO_LONG_MAX, description="The alert's diaSourceId")]


def archived(request: Request, dia_source_id: int) -> tuple[bytes, DecodedAlert]:
    """The wire bytes and the decoded alert (its visit is what the per-visit quota counts)."""
    wire = request.app.state.archive.get(dia_source_id)
    if wire is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no archived alert {dia_source_id}")
    return wire, request.app.state.codec.decode(wire)


def _json_safe(value: Any) -> Any:
    """Strict JSON has no NaN, infinities or datetimes: null and ISO 8601 instead."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def as_json(request: Request, alert: DecodedAlert) -> dict[str, Any]:
    """The record with each cutout's bytes replaced by its URL (fetched, and charged, on their own)."""
    record = dict(alert.record)
    for kind, name in CUTOUT_FIELDS.items():
        if name in record:
            record[name] = None if record[name] is None else str(
                request.url_for("cutout", dia_source_id=alert.dia_source_id, kind=kind))
    return _json_safe(record)


@router.get("/alerts/{dia_source_id}", name="alert", response_class=Response,
            responses={200: {"content": {AVRO: {}, "application/json": {}},
                             "description": "The archived packet (default), or its decoded record as JSON"},
                       404: {"description": "Not archived"}, **TOO_MANY})
def get_alert(dia_source_id: AlertId, request: Request, actor: ActorDep, throttled: Throttled,
              format: Annotated[Literal["avro", "json"], Query()] = "avro") -> Response:
    """One full alert: the Avro wire format as Rubin sent it (default) or JSON. Costs one full alert
    of your per-visit and per-day quotas."""
    wire, alert = archived(request, dia_source_id)
    decision = charge_all(request, actor, [Charge("visit_alerts", 1, visit_of(alert.record)), Charge("alerts", 1)])
    headers = {"AFS-Schema-Id": str(alert.schema_id)}
    if format == "json":
        response = Response(json.dumps(as_json(request, alert)), media_type="application/json", headers=headers)
    else:
        response = Response(wire, media_type=AVRO, headers=headers)
    return with_quota_headers(response, throttled, decision)


def render(settings: Settings, alert: DecodedAlert, kind: str, fmt: str) -> bytes:
    """The cutout in the wanted format; the renderers are imported only when asked for."""
    fits = alert.record.get(CUTOUT_FIELDS[kind])
    if fits is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"alert {alert.dia_source_id} has no {kind} cutout")
    try:
        if fmt == "png":
            from afs.alerts.previews import png_preview

            return png_preview(fits, signed=kind == "difference")
        if fmt == "multires":
            from afs.alerts.multires import build

            return build(settings, alert.record, kind)
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, f"cannot render this cutout: {error}") from None
    return fits


@router.get("/alerts/{dia_source_id}/cutouts/{kind}", name="cutout", response_class=Response,
            responses={200: {"content": {FITS: {}, "image/png": {}},
                             "description": "FITS (CCDData: image, variance, PSF, WCS), a PNG preview, or "
                                            "a multi-resolution cutout"},
                       404: {"description": "Not archived, or no such cutout"}, **TOO_MANY})
def get_cutout(dia_source_id: AlertId, kind: Literal["difference", "science", "template"], request: Request,
               actor: ActorDep, settings: SettingsDep, throttled: Throttled,
               format: Annotated[Literal["fits", "png", "multires"], Query()] = "fits") -> Response:
    """One cutout of an archived alert. Costs its size in bytes of your daily cutout quota."""
    _, alert = archived(request, dia_source_id)
    body = render(settings, alert, kind, format)
    decision = charge(request, actor, "cutout_bytes", len(body))
    extension = "fits" if CUTOUT_MEDIA[format] == FITS else format
    return with_quota_headers(Response(body, media_type=CUTOUT_MEDIA[format], headers={
        "Content-Disposition": f'inline; filename="{dia_source_id}-{kind}.{extension}"'}), throttled, decision)


@router.post("/filters/{filter_id}/bulk", response_model=JobOut, status_code=status.HTTP_202_ACCEPTED,
             responses={409: {"description": "An admin disabled the filter"}, **TOO_MANY})
def bulk(filter_id: str, body: BulkIn, request: Request, actor: ActorDep, db: DatabaseDep,
         throttled: Throttled) -> Response:
    """Every archived full alert a version of your filter matches in [start, end) (midpointMjdTai), as a
    background job: a tar of Avro wire-format files or one Parquet file. The matches are found by running
    the version over the archive, as a backtest does (the stream keeps no record of what it delivered, and
    withheld matches are wanted too). Each alert written costs one of your daily full-alert quota; the job
    stops, with the reason, when it runs out. Download from /v1/jobs/{id}/results."""
    left = quotas_of(request).remaining(actor.user.id, "alerts")
    if not left.allowed:
        raise refuse(left)
    with db.transaction() as session:
        found = filters.visible_filter(session, actor, filter_id)
        if found.moderation is not None and found.moderation.disabled:
            raise Conflict(f"an admin disabled this filter: {found.moderation.reason}")
        number = body.version if body.version is not None else found.active_version
        job = jobs.create_backtest(session, actor, found, number, body.start, body.end, bulk_format=body.format)
    request.app.state.jobs.wake()
    return with_quota_headers(JSONResponse(jsonable_encoder(job_out(job, request)), status.HTTP_202_ACCEPTED),
                              throttled, left)
