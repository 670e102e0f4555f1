"""What a batch produced, per filter."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FilterOutcome:
    """One filter's results on one batch.

    matches: (index into the batch, score). A filter matches when it returns True
        (score 1.0) or a finite number greater than 0 (that number is the score).
    errors: (index, message) for alerts on which the filter raised or returned
        something other than a bool or a finite number.
    timeouts: calls interrupted by the soft per-call timer.
    kills: worker deaths charged to the filter in this batch: (filter, alert)
        pairs found to kill a worker, and deaths while loading it.
    cpu_seconds: CPU time spent in this filter's calls in this batch, with the
        calls (and the results) lost when its worker was killed or died.
    disabled: why the filter is switched off, or None; stays set until
        SandboxPool.enable() or a new version of the source.
    offending_id: diaSourceId of the alert that got the filter disabled or, while it
        is enabled, of the alert behind this batch's latest kill; None otherwise.
    cpu_histogram: CPU time per evaluated alert, as counts in fixed log-spaced
        bins (sandbox.cpu_histogram): histogram_quantile(h, 0.99) is its p99, and
        merge_histograms adds up batches. A killed call counts with the CPU it
        used as far as the parent can tell (sandbox.worker.Death).
    evaluated: alerts the filter was run on to an end, each counted once: a
        match, no match, an error, a time-out, or a call that killed its worker.
    unevaluated: alerts it was not run on although it was enabled when the batch
        began: its worker died and the rest was not run again, isolating a death
        took too long, it failed to load, or it was stopped (and disabled) mid-batch.
    incomplete: why, as "reason (n alerts); ...", when unevaluated is not 0.

    For a filter enabled when the batch began, evaluated + unevaluated is the
    number of alerts and sum(cpu_histogram) == evaluated, which is len(matches)
    + non-matches + len(errors) + timeouts + kills, less the kills that name no
    alert (while loading) or whose alert ran fine alone (the filter wore its
    worker down, and the alert has that result). A filter disabled before the
    batch has 0 for each.
    """

    matches: list[tuple[int, float]] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)
    timeouts: int = 0
    kills: int = 0
    cpu_seconds: float = 0.0
    disabled: str | None = None
    offending_id: int | None = None
    cpu_histogram: tuple[int, ...] = ()
    evaluated: int = 0
    unevaluated: int = 0
    incomplete: str | None = None


@dataclass
class BatchResult:
    """Outcomes by filter id, for every filter in the active set."""

    outcomes: dict[str, FilterOutcome]
    elapsed_s: float = 0.0
