"""Resource limits and disable thresholds for a SandboxPool."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SandboxLimits:
    """Plain values, so the service can build them from its own configuration.

    workers: long-lived worker processes; filters are sharded across them by owner.
    batch_deadline_s: wall-clock time one worker may spend on one batch before the
        parent kills it.
    memory_mb: address-space limit of each worker (RLIMIT_AS).
    cpu_seconds: CPU time one worker may spend on one batch (RLIMIT_CPU, re-armed
        before each batch).
    per_call_soft_timeout_s: a filter call running longer than this (up to twice
        this, as it is checked by a periodic timer) is interrupted and counted as a
        timeout.
    per_call_hard_timeout_s: a call that does not finish within this, even when
        interrupted (C-level loops ignore the soft timer), gets its worker killed.
    max_errors / max_timeouts: a filter that raises on, or times out on, more than
        this many alerts of one batch is disabled.
    max_kills: a filter that kills its worker this many times (counted since it
        was loaded or re-enabled) is disabled.
    """

    workers: int = 2
    batch_deadline_s: float = 20.0
    memory_mb: int = 2048
    cpu_seconds: float = 30.0
    per_call_soft_timeout_s: float = 0.1
    per_call_hard_timeout_s: float = 2.0
    max_errors: int = 100
    max_timeouts: int = 10
    max_kills: int = 3

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.memory_mb < 256:
            raise ValueError("memory_mb below 256 cannot hold a Python interpreter")
        for name in ("batch_deadline_s", "cpu_seconds", "per_call_soft_timeout_s",
                     "per_call_hard_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.per_call_hard_timeout_s <= 2 * self.per_call_soft_timeout_s:
            raise ValueError("per_call_hard_timeout_s must exceed twice the soft timeout")
        for name in ("max_errors", "max_timeouts"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.max_kills < 1:
            raise ValueError("max_kills must be at least 1")
