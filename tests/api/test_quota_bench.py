"""The quota benchmark runs end to end at a tiny size (it prints figures; nothing about speed is asserted)."""

from __future__ import annotations

import pytest

from afs.quotas import bench


def test_the_benchmark_runs_and_reports_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    bench.main(["--calls", "20", "--requests", "8", "--clients", "2"])
    out = capsys.readouterr().out
    assert "sql/sqlite" in out and "p99" in out
    assert "quotas on, SQL (SQLite)" in out and "quotas off" in out and "on/off ratio" in out
