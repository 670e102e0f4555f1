"""``create_app(settings)``: the FastAPI application over the control-plane database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from afs import web
from afs.alerts.schemas import SchemaStore
from afs.alerts.codec import AlertCodec
from afs.api import admin, alerts, filters, health, helpers, jobs, ppdb, subscriptions, users
from afs.archive import AlertArchive
from afs.config import Settings
from afs.control.db import Database
from afs.control.dry_run import ReferenceSamples, Rejected
from afs.control.errors import Conflict, ControlError, Forbidden, Invalid, NotFound
from afs.control.filters import sync_predefined
from afs.control.jobs import JobRunner
from afs.metrics import RequestMetrics
from afs.quotas import QuotaEngine

STATUS = {NotFound: 404, Forbidden: 403, Conflict: 409, Invalid: 422, Rejected: 422}
DESCRIPTION = """Upload Python filters for the Rubin alert stream, see at once what they would match,
activate them, and subscribe to their matches (Kafka or Server-Sent Events).

Every endpoint except `/health`, `/v1/schemas/{id}` and these docs needs a bearer token
(`Authorization: Bearer afs-...`): from `afs users create NAME` or `POST /v1/users/{name}/tokens`.
The web page at `/ui/` does all of this in a browser with such a token.
"""


async def _invalid_request(_: Request, error: Exception) -> JSONResponse:
    """422 with what was wrong. FastAPI's own handler echoes the input and fails (a 500) when the body
    is bytes that are not UTF-8; such input is echoed with replacement characters instead."""
    assert isinstance(error, RequestValidationError)
    detail = jsonable_encoder(error.errors(), custom_encoder={bytes: lambda b: b.decode("utf-8", "replace")})
    return JSONResponse({"detail": detail}, status_code=422)


async def _control_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ControlError)
    code = next(c for kind, c in STATUS.items() if isinstance(error, kind))
    return JSONResponse({"detail": error.message, **error.details}, status_code=code)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.database_url).create_schema()
        sync_predefined(db, settings.filters_dir)
        app.state.settings, app.state.db = settings, db
        app.state.samples = ReferenceSamples(settings)
        app.state.schemas = SchemaStore(settings.schema_registry_url)
        app.state.archive = AlertArchive(settings.archive_dir)
        app.state.codec = AlertCodec(app.state.schemas, settings.max_alert_bytes)
        app.state.quotas = QuotaEngine.for_settings(settings, db)
        app.state.quotas.ledger.start()
        app.state.jobs = JobRunner(settings, db, quotas=app.state.quotas).start()
        try:
            yield
        finally:
            app.state.jobs.stop()
            app.state.quotas.ledger.stop()
            app.state.quotas.close()
            app.state.archive.close()
            if getattr(app.state, "ppdb", None) is not None:
                app.state.ppdb.close()
            db.close()

    app = FastAPI(title="Rubin Alert Filtering Service", description=DESCRIPTION, version="1",
                  lifespan=lifespan)
    for module in (health, users, filters, helpers, jobs, subscriptions, alerts, ppdb, admin):
        app.include_router(module.router)
    web.mount(app)
    app.add_exception_handler(ControlError, _control_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_middleware(RequestMetrics)
    return app
