"""The interface both quota backends implement, and the values they exchange with the engine.

A backend does two atomic operations: ``charge`` adds amounts to several counters all or nothing
(never past a limit, whatever runs concurrently), and ``spend`` takes tokens from a user's bucket.
Both take ``now`` from the caller, so the engine's clock (injected in tests) is the only clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Take:
    """Add ``amount`` to the (kind, period) counter if it stays within ``limit``; a counter created or
    restarted now runs until ``reset_at``."""

    kind: str
    period: str
    amount: int
    limit: int
    reset_at: float


@dataclass(frozen=True)
class Level:
    """A counter after a charge (or as it stands, on a refusal)."""

    used: int
    reset_at: float


@dataclass(frozen=True)
class Charged:
    """``refused`` is the index of the first take that did not fit (then nothing was added), or None."""

    levels: list[Level]
    refused: int | None = None


class QuotaStore(Protocol):
    def charge(self, user_id: int, takes: Sequence[Take], now: float) -> Charged: ...

    def spend(self, user_id: int, amount: float, rate: float, burst: float, now: float) -> tuple[bool, float]:
        """Take ``amount`` tokens if there are that many; (granted, tokens left)."""
        ...

    def level(self, user_id: int, kind: str, period: str, now: float) -> Level | None:
        """The counter as it stands (None: never used or its period is over)."""
        ...

    def tokens(self, user_id: int, rate: float, burst: float, now: float) -> float: ...

    def prune(self, now: float) -> None:
        """Forget counters whose period is over (the Redis backend lets keys expire instead)."""
        ...

    def close(self) -> None: ...
