"""Per-call CPU time: the histogram layout and helpers, the worker's timing of
calls, and what a real pool reports."""
from __future__ import annotations

import math
import random
import signal
import types
from bisect import bisect_right
from collections.abc import Iterator

import pytest
from conftest import FAST_LIMITS

from sandbox import (
    CPU_HISTOGRAM_EDGES_S,
    FilterSpec,
    SandboxPool,
    histogram_quantile,
    merge_histograms,
)
from sandbox import batch_runner
from sandbox.batch_runner import BatchRunner
from sandbox.cpu_histogram import N_BINS, histogram_of_ns


def reference(durations_ns: list[int]) -> tuple[int, ...]:
    edges_ns = [round(edge * 1e9) for edge in CPU_HISTOGRAM_EDGES_S]
    counts = [0] * N_BINS
    for duration in durations_ns:
        counts[bisect_right(edges_ns, duration)] += 1
    while counts and not counts[-1]:
        counts.pop()
    return tuple(counts)


def test_layout() -> None:
    edges = CPU_HISTOGRAM_EDGES_S
    assert N_BINS == 58 and len(edges) == 57
    assert edges[0] == 1e-6 and edges[8] == 1e-5 and edges[-1] == 10.0
    assert all(1.32 < b / a < 1.34 for a, b in zip(edges, edges[1:]))


def test_histogram_of_ns_bins_every_duration_exactly() -> None:
    rng = random.Random(7)
    edges_ns = [round(edge * 1e9) for edge in CPU_HISTOGRAM_EDGES_S]
    durations = ([round(10 ** rng.uniform(1, 11)) for _ in range(5000)] + [-5, 0, 999]
                 + edges_ns + [e - 1 for e in edges_ns] + [e + 1 for e in edges_ns])
    histogram = histogram_of_ns(durations)
    assert histogram == reference(durations) and sum(histogram) == len(durations)
    assert histogram_of_ns([]) == () and histogram_of_ns([1200]) == (0, 1)


def test_merge() -> None:
    a, b = histogram_of_ns([500, 2000]), histogram_of_ns([2000, 3 * 10 ** 9])
    assert merge_histograms(a, b) == histogram_of_ns([500, 2000, 2000, 3 * 10 ** 9])
    assert merge_histograms(a, b) == merge_histograms(b, a)
    assert merge_histograms((), a) == a and merge_histograms((), ()) == ()
    with pytest.raises(ValueError):
        merge_histograms((0,) * 59, a)


def test_quantile_is_the_upper_edge_of_the_bin() -> None:
    histogram = histogram_of_ns([1500] * 90 + [50_000] * 9 + [3 * 10 ** 9])
    assert histogram_quantile(histogram, 0.5) == histogram_quantile(histogram, 0.9) == 1.776e-6
    assert histogram_quantile(histogram, 0.91) == histogram_quantile(histogram, 0.99) == 5.6232e-5
    assert histogram_quantile(histogram, 1.0) == 3.162277664
    assert histogram_quantile(histogram, 0.0) == 1.776e-6  # the first call
    assert histogram_quantile(histogram_of_ns([200]), 0.5) == 1e-6
    assert histogram_quantile(histogram_of_ns([11 * 10 ** 9]), 0.5) == math.inf
    assert math.isnan(histogram_quantile((), 0.5))
    with pytest.raises(ValueError):
        histogram_quantile(histogram, 1.5)


class ScriptedClocks:
    """Stands in for the time module in the worker: each call advances the wall
    clock and the thread CPU clock by what the script says."""

    def __init__(self, script: list[tuple[int, int]]) -> None:
        self.wall = self.cpu = 0
        self.steps: Iterator[tuple[int, int]] = iter(script)

    def perf_counter_ns(self) -> int:
        return self.wall

    def thread_time_ns(self) -> int:
        return self.cpu

    def call(self, alert: object) -> bool:
        wall, cpu = next(self.steps)
        self.wall += wall
        self.cpu += cpu
        return False


def test_a_call_off_the_cpu_is_timed_by_the_cpu_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short calls are timed by wall clock; a long one by the CPU clock, less the
    short calls since the last CPU reading: preemption never counts as CPU."""
    script = [(2_000, 2_000), (3_000, 3_000), (900_000, 30_000),  # preempted for 870 us
              (1_500, 1_500), (5_000_000, 5_000_000), (2_500, 2_500), (40_000, 4_000)]
    clocks = ScriptedClocks(script)
    monkeypatch.setattr(batch_runner, "time", types.SimpleNamespace(
        perf_counter_ns=clocks.perf_counter_ns, thread_time_ns=clocks.thread_time_ns))
    alarm = signal.getsignal(signal.SIGALRM)  # the runner installs its soft timer's
    try:
        runner = BatchRunner(memoryview(bytearray(64)).cast("q"), lambda message: None, 0.1, 3, 3)
        report: dict = {"m": [], "e": [], "t": [], "stop": None}
        runner._call_all(0, clocks.call, [{}] * len(script), report, None)
    finally:
        signal.signal(signal.SIGALRM, alarm)
    assert report["n"] == len(script)
    assert report["h"] == histogram_of_ns([cpu for _, cpu in script])
    assert report["cpu"] == sum(cpu for _, cpu in script) / 1e9


SPIN = '''
READS = ("diaSourceId",)

def filter(alert):
    x = 0
    if alert["diaSourceId"] // 1000 % 10 == 0:
        for i in range(100_000):
            x += i
    return x >= 0
'''


def test_a_pool_reports_per_call_cpu(alerts: list[dict]) -> None:
    """One alert in ten costs ~1000 times the others: p50 and p99 tell them apart,
    the histograms of several batches add up, and their calls add up to cpu_seconds."""
    batch = alerts * 5  # 3 alerts in 24 are slow
    assert 0 < sum(1 for a in batch if a["diaSourceId"] // 1000 % 10 == 0) < len(batch) // 4
    with SandboxPool(FAST_LIMITS) as pool:
        pool.set_filters([FilterSpec("spin", "ann", SPIN)])
        outcomes = [pool.run_batch(batch).outcomes["spin"] for _ in range(3)]
    total = ()
    for outcome in outcomes:
        assert sum(outcome.cpu_histogram) == outcome.evaluated == len(batch)
        bins = list(enumerate(outcome.cpu_histogram))
        low = sum(count * (CPU_HISTOGRAM_EDGES_S[i - 1] if i else 0.0) for i, count in bins)
        high = sum(count * CPU_HISTOGRAM_EDGES_S[i] for i, count in bins)
        assert 0.9 * low - 1e-4 <= outcome.cpu_seconds <= 1.1 * high + 1e-4
        total = merge_histograms(total, outcome.cpu_histogram)
    assert sum(total) == 3 * len(batch)
    p50, p99 = histogram_quantile(total, 0.5), histogram_quantile(total, 0.99)
    assert p50 < 1e-4 and p99 > 100 * p50
