"""`afs users create|token`: bootstrap accounts straight in the control-plane database."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from afs.control.models import User


@click.group("users")
def users() -> None:
    """Create users and tokens directly in AFS_DATABASE_URL (to bootstrap; then use the API)."""


def _print_token(find_user: Callable[[Session], User], label: str) -> None:
    """Issue a token for the user ``find_user`` finds or makes, print it, or exit 1 with the reason."""
    from afs.config import Settings
    from afs.control.db import Database
    from afs.control.errors import ControlError
    from afs.control.users import issue_token

    db = Database(Settings().database_url).create_schema()
    try:
        with db.transaction() as session:
            _, text = issue_token(session, find_user(session), label=label)
    except ControlError as error:
        click.echo(f"error: {error.message}", err=True)
        sys.exit(1)
    finally:
        db.close()
    click.echo(text)


@users.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Make the user an admin (the token gets the admin scope).")
@click.option("--max-matches-per-visit", type=click.IntRange(min=0), default=None,
              help="Per-visit cap for this user (0: none). Default: AFS_MAX_MATCHES_PER_VISIT.")
def create(name: str, admin: bool, max_matches_per_visit: int | None) -> None:
    """Create user NAME and print their first token (shown once; only its hash is stored)."""
    from afs.control.users import create_user

    _print_token(lambda s: create_user(s, name, admin=admin, max_matches_per_visit=max_matches_per_visit),
                 "afs users create")


@users.command("token")
@click.argument("name")
def token(name: str) -> None:
    """Print a new token for existing user NAME (when theirs was lost: revoke the old one)."""
    from afs.control.users import by_name

    _print_token(lambda s: by_name(s, name), "afs users token")
