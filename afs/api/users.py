"""Accounts and tokens: /v1/me, /v1/users (admins), /v1/users/{name}/tokens (the user or an admin)."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlalchemy.orm import Session

from afs.api.deps import ActorDep, AdminDep, DatabaseDep, SettingsDep
from afs.api.schemas import (Me, TokenCreate, TokenCreated, TokenOut, UserCreate, UserCreated, UserDetail, UserOut,
                             UserPatch)
from afs.config import Settings
from afs.control import users
from afs.control.models import Token, User

router = APIRouter(prefix="/v1", tags=["users and tokens"])


def user_out(user: User, settings: Settings) -> dict[str, object]:
    cap = user.max_matches_per_visit
    return {"name": user.name, "is_admin": user.is_admin, "builtin": user.builtin, "created_at": user.created_at,
            "max_matches_per_visit": settings.max_matches_per_visit if cap is None else cap,
            "cap_is_default": cap is None}


def user_detail(session: Session, user: User, settings: Settings) -> dict[str, object]:
    return user_out(user, settings) | {"usage": users.usage(session, user)}


def token_out(token: Token) -> dict[str, object]:
    return {"key": token.key, "scopes": token.scopes.split(), "label": token.label, "created_at": token.created_at,
            "revoked_at": token.revoked_at}


@router.get("/me", response_model=Me)
def me(actor: ActorDep, db: DatabaseDep, settings: SettingsDep) -> dict[str, object]:
    """Who the token belongs to, its scopes, and the user's usage."""
    with db.sessions() as session:
        return user_detail(session, actor.user, settings) | {"scopes": sorted(actor.scopes)}


@router.get("/users", response_model=list[UserOut])
def list_users(_: AdminDep, db: DatabaseDep, settings: SettingsDep) -> list[dict[str, object]]:
    with db.sessions() as session:
        return [user_out(u, settings) for u in users.list_users(session)]


@router.post("/users", response_model=UserCreated, status_code=status.HTTP_201_CREATED)
def create_user(body: UserCreate, _: AdminDep, db: DatabaseDep, settings: SettingsDep) -> dict[str, object]:
    """A new user and their first token (shown once)."""
    with db.transaction() as session:
        user = users.create_user(session, body.name, admin=body.admin, max_matches_per_visit=body.max_matches_per_visit)
        _, text = users.issue_token(session, user, label="created by an admin")
        return user_out(user, settings) | {"token": text}


@router.get("/users/{name}", response_model=UserDetail)
def get_user(name: str, actor: ActorDep, db: DatabaseDep, settings: SettingsDep) -> dict[str, object]:
    with db.sessions() as session:
        return user_detail(session, users.user_named(session, actor, name), settings)


@router.patch("/users/{name}", response_model=UserOut)
def update_user(name: str, body: UserPatch, actor: AdminDep, db: DatabaseDep,
                settings: SettingsDep) -> dict[str, object]:
    """Make a user an admin or not, or set their per-visit cap (numBrokerAlerts)."""
    with db.transaction() as session:
        user = users.update_user(session, users.user_named(session, actor, name), is_admin=body.is_admin,
                                 max_matches_per_visit=body.max_matches_per_visit, reset_cap=body.default_cap)
        return user_out(user, settings)


@router.get("/users/{name}/tokens", response_model=list[TokenOut])
def list_tokens(name: str, actor: ActorDep, db: DatabaseDep) -> list[dict[str, object]]:
    with db.sessions() as session:
        return [token_out(t) for t in users.tokens_of(session, users.user_named(session, actor, name))]


@router.post("/users/{name}/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED)
def create_token(name: str, body: TokenCreate, actor: ActorDep, db: DatabaseDep) -> dict[str, object]:
    """Another token, e.g. one with only the user scope for a script."""
    with db.transaction() as session:
        user = users.user_named(session, actor, name)
        token, text = users.issue_token(session, user, set(body.scopes) if body.scopes else None, body.label)
        return token_out(token) | {"token": text}


@router.delete("/users/{name}/tokens/{key}", response_model=TokenOut)
def revoke_token(name: str, key: str, actor: ActorDep, db: DatabaseDep) -> dict[str, object]:
    """Revoke a token at once; it stays listed, with the time it was revoked."""
    with db.transaction() as session:
        return token_out(users.revoke_token(session, users.user_named(session, actor, name), key))
