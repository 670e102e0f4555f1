"""Subscribing to a filter's matches: Kafka connection details, or an HTTP stream (SSE). Schemas."""

from __future__ import annotations

import json
from typing import Annotated, Any

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse

from afs.alerts import lightweight
from afs.alerts.schemas import UnknownSchemaError, latest_schema_id
from afs.api.deps import ActorDep, DatabaseDep, SchemasDep, SettingsDep
from afs.api.schemas import KafkaSubscription
from afs.api.stream import MatchStream, parse_event_id
from afs.control import filters

router = APIRouter(prefix="/v1", tags=["subscriptions"])


@router.get("/filters/{filter_id}/subscription", response_model=KafkaSubscription)
def subscription(filter_id: str, request: Request, actor: ActorDep, db: DatabaseDep, settings: SettingsDep,
                 schemas: SchemasDep) -> dict[str, Any]:
    """How to read the filter's matches with any Kafka client: topic, servers, your consumer-group
    prefix, and the Avro schema of the messages (the full alert, as Rubin sent it)."""
    with db.sessions() as session:
        found = filters.visible_filter(session, actor, filter_id)
    sid = latest_schema_id()
    return {
        "filter_id": found.id, "topic": settings.filter_topic(found.id),
        "bootstrap_servers": settings.public_kafka_bootstrap or settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
        "consumer_group_prefix": f"{settings.consumer_group_prefix}{actor.user.name}-",
        "headers": {"afs-filter-id": "the filter id", "afs-score": "the filter's score (text)",
                    "afs-schema-id": "the alert's schema id"},
        "value_format": "Confluent wire format: 0x00, 4-byte big-endian schema id, schemaless Avro",
        "schema_id": sid, "value_schema": json.loads(schemas.schema_json(sid)),
        "schema_url": str(request.url_for("schema", schema_id=sid)),
        "http_stream_url": str(request.url_for("stream", filter_id=found.id)),
    }


@router.get("/filters/{filter_id}/stream", name="stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events, one per match"},
                       503: {"description": "Kafka is unreachable"}})
async def stream(filter_id: str, actor: ActorDep, db: DatabaseDep, settings: SettingsDep,
                 last_event_id: Annotated[str | None, Header()] = None,
                 start: Annotated[str, Query(pattern="^(earliest|latest)$",
                                             description="Where to begin without Last-Event-ID")] = "latest",
                 limit: Annotated[int | None, Query(ge=0, description="Stop after this many events")] = None,
                 ) -> StreamingResponse:
    """The filter's matches as they arrive (`event: match`, JSON data). Reconnect with the last
    event's id in Last-Event-ID to resume exactly where you stopped."""
    with db.sessions() as session:
        found = filters.visible_filter(session, actor, filter_id)
    try:
        resume = parse_event_id(last_event_id) if last_event_id else None
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"Last-Event-ID {last_event_id!r} is not one of "
                                                         "this stream's event ids") from None
    matches = MatchStream(settings, found.id)
    try:
        await matches.open(resume, start)
    except KafkaError as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"Kafka is unreachable: {error}") from None
    return StreamingResponse(matches.events(limit), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/schemas/{schema_id}", name="schema", tags=["public"])
def schema(schema_id: int, schemas: SchemasDep) -> dict[str, Any]:
    """An Avro schema by id, as a schema registry serves it: Rubin alert schemas (major*100+minor) and
    the lightweight packet (900001). Public."""
    if schema_id == lightweight.LIGHTWEIGHT_SCHEMA_ID:
        return {"schema": json.dumps(lightweight.SCHEMA)}
    try:
        return {"schema": schemas.schema_json(schema_id)}
    except UnknownSchemaError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
