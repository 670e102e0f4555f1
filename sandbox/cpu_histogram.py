"""Per-call CPU time of a filter as a small histogram that adds up across batches.

A histogram is a tuple of call counts in fixed bins of CPU time per call:

    bin 0          under 1 µs
    bin i (1..56)  CPU_HISTOGRAM_EDGES_S[i - 1] or more, under CPU_HISTOGRAM_EDGES_S[i];
                   the edges are 1 µs * 10 ** (k / 8) for k = 0..56 rounded to 8 ns,
                   8 bins per decade, each 1.33 times as wide as the one before
                   (1, 1.336, 1.776, 2.368, 3.16, 4.216, 5.624, 7.496, 10 µs, ...)
    bin 57         10 s or more

Trailing empty bins are left out, so () is "no calls" and a filter whose calls
all take microseconds needs a dozen numbers. Fixed bins are what make
histograms from different batches, workers and runs add up exactly.
"""
from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable
from functools import partial
from itertools import accumulate, repeat, zip_longest
from operator import rshift

BINS_PER_DECADE = 8
_DECADES = 7  # 1 µs to 10 s
_QUANTUM_SHIFT = 3  # edges are multiples of 8 ns: a call's bin is that of its 8 ns quantum
_EDGES_NS = tuple(round(1_000 * 10 ** (k / BINS_PER_DECADE) / 8) * 8
                  for k in range(_DECADES * BINS_PER_DECADE + 1))
CPU_HISTOGRAM_EDGES_S = tuple(edge / 1e9 for edge in _EDGES_NS)
N_BINS = len(_EDGES_NS) + 1

bin_of_ns = partial(bisect_right, _EDGES_NS)


def _trimmed(counts: list[int]) -> tuple[int, ...]:
    while counts and not counts[-1]:
        counts.pop()
    return tuple(counts)


def histogram_of_ns(durations_ns: Iterable[int]) -> tuple[int, ...]:
    """The histogram of these per-call CPU times (in nanoseconds).

    Counted per 8 ns quantum first, in C: similar calls share a quantum, so a
    batch of fast calls costs a few tens of nanoseconds per call (in the worker).
    """
    counts = [0] * N_BINS
    per_quantum = Counter(map(rshift, durations_ns, repeat(_QUANTUM_SHIFT)))
    for quantum, count in per_quantum.items():
        counts[bin_of_ns(quantum << _QUANTUM_SHIFT)] += count
    return _trimmed(counts)


def merge_histograms(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """The histogram of the calls of both."""
    if len(a) > N_BINS or len(b) > N_BINS:
        raise ValueError("not a CPU histogram: too many bins")
    return _trimmed([x + y for x, y in zip_longest(a, b, fillvalue=0)])


def histogram_quantile(histogram: tuple[int, ...], q: float) -> float:
    """An upper bound, in seconds, of the q-quantile of per-call CPU time.

    The upper edge of the bin holding the call of rank ceil(q * calls) (at least
    the first): the quantile itself is between about three quarters of this and
    this, or under 1 µs when this is 1 µs; inf when that call took 10 s or more;
    nan for an empty histogram.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError("q must be between 0 and 1")
    cumulative = list(accumulate(histogram))
    if not cumulative or not cumulative[-1]:
        return math.nan
    index = bisect_left(cumulative, max(1, math.ceil(q * cumulative[-1])))
    return CPU_HISTOGRAM_EDGES_S[index] if index < len(CPU_HISTOGRAM_EDGES_S) else math.inf
