"""Users and bearer tokens in the style of Rubin's Gafaelfawr.

A token is ``afs-{key}.{secret}``: both parts are 128 random bits (URL-safe base64). The key is
stored in clear to find the row; of the secret only its SHA-256 is stored and compared in constant
time. A slow password hash would buy nothing against 128 random bits and cost every request.
Tokens carry scopes (``user``, ``admin``) and are revoked, never deleted, so audits keep them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from afs.control.errors import Conflict, Invalid, NotFound
from afs.control.models import Filter, FilterStats, Job, Token, User, utcnow

TOKEN_PREFIX = "afs-"
SCOPES = ("user", "admin")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{1,31}$")


@dataclass(frozen=True)
class Actor:
    """Who is asking: the user and what their token allows."""

    user: User
    scopes: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return self.user.is_admin and "admin" in self.scopes

    def may_see(self, owner_id: int) -> bool:
        return self.is_admin or owner_id == self.user.id


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_user(session: Session, name: str, *, admin: bool = False, max_matches_per_visit: int | None = None,
                builtin: bool = False) -> User:
    if not NAME_PATTERN.match(name):
        raise Invalid(f"user name {name!r}: 2 to 32 characters, lower-case letters, digits, '-' and '_', "
                      "starting with a letter")
    if session.scalar(select(User).where(User.name == name)) is not None:
        raise Conflict(f"user {name!r} already exists")
    user = User(name=name, is_admin=admin, builtin=builtin, max_matches_per_visit=max_matches_per_visit)
    session.add(user)
    session.flush()
    return user


def issue_token(session: Session, user: User, scopes: set[str] | None = None, label: str = "") -> tuple[Token, str]:
    """A new token for ``user``: the row and the token text, which is shown once and never stored."""
    if user.builtin:
        raise Invalid(f"user {user.name!r} is built in and cannot have tokens")
    wanted = set(scopes) if scopes else ({"user", "admin"} if user.is_admin else {"user"})
    if not wanted <= set(SCOPES) or "user" not in wanted:
        raise Invalid(f"scopes must include 'user' and be among {', '.join(SCOPES)}")
    if "admin" in wanted and not user.is_admin:
        raise Invalid(f"user {user.name!r} is not an admin and cannot hold the admin scope")
    key, secret = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    token = Token(key=key, user_id=user.id, secret_sha256=_sha256(secret),
                  scopes=" ".join(s for s in SCOPES if s in wanted), label=label)
    session.add(token)
    session.flush()
    return token, f"{TOKEN_PREFIX}{key}.{secret}"


def authenticate(session: Session, text: str) -> Actor | None:
    """The actor behind a presented token, or None for anything malformed, unknown or revoked."""
    if not text.startswith(TOKEN_PREFIX) or "." not in text:
        return None
    key, secret = text[len(TOKEN_PREFIX):].split(".", 1)
    row = session.execute(select(Token, User).join(User, User.id == Token.user_id)
                          .where(Token.key == key)).one_or_none()
    if row is None:
        return None
    token, user = row
    if token.revoked_at is not None or not hmac.compare_digest(token.secret_sha256, _sha256(secret)):
        return None
    return Actor(user, frozenset(token.scopes.split()))


def by_name(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"no user {name!r}")
    return user


def user_named(session: Session, actor: Actor, name: str) -> User:
    """A user the actor may see (themselves, or anyone for an admin)."""
    user = by_name(session, name)
    if not actor.may_see(user.id):
        raise NotFound(f"no user {name!r}")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.name)))


def update_user(session: Session, user: User, *, is_admin: bool | None = None,
                max_matches_per_visit: int | None = None, reset_cap: bool = False) -> User:
    if is_admin is not None:
        user.is_admin = is_admin
    if reset_cap:
        user.max_matches_per_visit = None
    elif max_matches_per_visit is not None:
        user.max_matches_per_visit = max_matches_per_visit
    session.flush()
    return user


def tokens_of(session: Session, user: User) -> list[Token]:
    return list(session.scalars(select(Token).where(Token.user_id == user.id).order_by(Token.created_at)))


def revoke_token(session: Session, user: User, key: str) -> Token:
    token = session.get(Token, key)
    if token is None or token.user_id != user.id:
        raise NotFound(f"no token {key!r} for user {user.name!r}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    session.flush()
    return token


def usage(session: Session, user: User) -> dict[str, int]:
    """What a user has and what their filters did, summed over all time."""
    own = Filter.owner_id == user.id
    live = own & Filter.deleted_at.is_(None)
    totals = session.execute(
        select(func.coalesce(func.sum(FilterStats.matched), 0), func.coalesce(func.sum(FilterStats.delivered), 0),
               func.coalesce(func.sum(FilterStats.withheld), 0))
        .join(Filter, Filter.id == FilterStats.filter_id).where(own)).one()
    return {
        "filters": session.scalar(select(func.count()).select_from(Filter).where(live)) or 0,
        "active_filters": session.scalar(select(func.count()).select_from(Filter)
                                         .where(live & Filter.active_version.is_not(None))) or 0,
        "jobs": session.scalar(select(func.count()).select_from(Job).where(Job.owner_id == user.id)) or 0,
        "matched": int(totals[0]),
        "delivered": int(totals[1]),
        "withheld": int(totals[2]),
    }
