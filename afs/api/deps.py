"""Request dependencies: the app's settings and database, and who is asking (bearer tokens)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from afs.alerts.schemas import SchemaStore
from afs.config import Settings
from afs.control.db import Database
from afs.control.dry_run import ReferenceSamples
from afs.control.users import Actor, authenticate

_bearer = HTTPBearer(auto_error=False, description="A token from `afs users create` or POST /v1/users/{name}/tokens")


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def db_of(request: Request) -> Database:
    return request.app.state.db


def samples_of(request: Request) -> ReferenceSamples:
    return request.app.state.samples


def schemas_of(request: Request) -> SchemaStore:
    return request.app.state.schemas


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"})


def current_actor(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Actor:
    """Every endpoint but the public ones depends on this: no valid token, no answer."""
    if credentials is None:
        raise _unauthorized("a bearer token is required")
    with db_of(request).sessions() as session:
        actor = authenticate(session, credentials.credentials)
    if actor is None:
        raise _unauthorized("the token is invalid or revoked")
    return actor


def admin_actor(actor: Annotated[Actor, Depends(current_actor)]) -> Actor:
    if not actor.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "admins only")
    return actor


SettingsDep = Annotated[Settings, Depends(settings_of)]
DatabaseDep = Annotated[Database, Depends(db_of)]
SamplesDep = Annotated[ReferenceSamples, Depends(samples_of)]
SchemasDep = Annotated[SchemaStore, Depends(schemas_of)]
ActorDep = Annotated[Actor, Depends(current_actor)]
AdminDep = Annotated[Actor, Depends(admin_actor)]
