"""A small-scale run of the benchmark (the real one is `python -m afs.ppdb.bench`, 10M rows)."""

from __future__ import annotations

import pytest

from afs.ppdb import bench


@pytest.mark.slow
def test_the_benchmark_runs_and_prints_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    bench.main(["--sources", "60000", "--alerts", "2000", "--lookups", "20", "--naive-sample", "20"])
    out = capsys.readouterr().out
    for figure in ("ingest DiaSource", "ingest DiaObject", "ingest_alerts revisit", "replay at", "checkpoint",
                   "history (in-process)", "cone 10\" (in-process)", "prefetch", "history (Flight)",
                   "history while writing"):
        assert figure in out, figure
