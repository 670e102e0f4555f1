"""Shared fixtures for the sandbox tests: alerts, planted secrets, fast limits."""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import SandboxLimits
from sandbox.sample_alerts import sample_alerts

# Small limits so that time-outs, kills and disabling happen in well under a second.
FAST_LIMITS = SandboxLimits(
    workers=2, batch_deadline_s=20.0, memory_mb=512, cpu_seconds=30.0,
    per_call_soft_timeout_s=0.1, per_call_hard_timeout_s=1.0,
    max_errors=3, max_timeouts=2, max_kills=2,
)


@pytest.fixture(scope="session")
def alerts() -> list[dict]:
    return sample_alerts(24, history=6, seed=3)


@pytest.fixture
def planted_secrets(tmp_path_factory: pytest.TempPathFactory,
                    monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str, Path]]:
    """A secret file and a secret environment variable that no filter may ever see."""
    file_secret, env_secret = secrets.token_hex(16), secrets.token_hex(16)
    path = tmp_path_factory.mktemp("secret") / "secret.txt"
    path.write_text(file_secret)
    os.chmod(path, 0o644)
    monkeypatch.setenv("AFS_SANDBOX_TEST_SECRET", env_secret)
    yield file_secret, env_secret, path
