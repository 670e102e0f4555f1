"""The benchmark harness: its generated filter mix is valid, and a small run prints every figure."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sandbox import compile_filter

from afs.bench import filter_mix
from afs.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_filter_mix_is_the_predefined_filters_plus_distinct_compiling_variations() -> None:
    predefined = {p.stem: p.read_text() for p in (REPO / "filters").glob("*.py")}
    mix = filter_mix(REPO / "filters", 30, seed=1)
    assert len(mix) == 30 and len(set(mix.values())) == 30
    assert {k: v for k, v in mix.items() if k in predefined} == predefined
    for name, source in mix.items():
        compile_filter(source, name)
    assert filter_mix(REPO / "filters", 30, seed=1) == mix


@pytest.mark.slow
def test_bench_stream_with_two_workers_prints_history_rates_latencies_and_the_ratio() -> None:
    result = CliRunner().invoke(main, ["bench", "stream", "--visits", "2", "--alerts", "150", "--filters", "12",
                                       "--workers", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    history = next(line for line in lines if line.startswith("simulated 2 x 150 alerts"))
    assert len(history.split("prvDiaForcedSources): ")[1].split(", ")) == 2 and "already in the mirror" in history
    assert any(line.startswith("12 filters (") and line.endswith("2 worker processes") for line in lines)
    visit_rows = [line.split() for line in lines if line.strip()[:1].isdigit() and "s" in line]
    assert [row[0] for row in visit_rows if row[1] == "150"] == ["1", "2"]
    ratio = next(line for line in lines if line.startswith("ratio worker path"))
    assert float(ratio.split()[-1]) > 0
