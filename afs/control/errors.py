"""What a control-plane operation can refuse, independent of HTTP (the API maps these to statuses)."""

from __future__ import annotations

from typing import Any


class ControlError(Exception):
    """Base: ``message`` is written for the person who asked; ``details`` is extra structured data."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(ControlError):
    """It does not exist, or the caller may not know that it does."""


class Forbidden(ControlError):
    """The caller may see it but not do this."""


class Conflict(ControlError):
    """Not possible in the current state (a name taken, the activation gate, a job not finished)."""


class Invalid(ControlError):
    """The request itself is wrong in a way the schema cannot express."""
