"""Run one shard's filters over a batch on one worker, isolating whatever kills it.

When the worker dies, the filters that already reported keep their results and
the rest of the work is split and run again on a fresh worker, suspect first,
until the (filter, alert) pair that kills it is found; everyone else still gets
exactly their results. The progress cursor names the suspect, so a crash costs a
few runs rather than a full bisection; without it (or when the suspect turns
out innocent, e.g. the victim of another filter's memory) the work is halved.
A call stuck past the hard limit is conclusive on its own and is not re-run.

Every alert of the batch ends up, for each filter, either evaluated (a result,
or a call that killed the worker) or unevaluated with the reason why: isolation
gave up, the filter was stopped or failed to load, or its worker died and the
rest of its work was not run again.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .alert_columns import AlertColumns
from .batch_runner import FilterCode, RunRequest
from .cpu_histogram import histogram_of_ns, merge_histograms
from .limits import SandboxLimits
from .protocol import PHASE_LOADING, PHASE_RUNNING
from .worker import Death, RunOutcome, WorkerProcess

log = logging.getLogger("sandbox")

# Isolating deaths may take this many batch deadlines before the rest is dropped.
ISOLATION_BUDGET_DEADLINES = 4
# Deaths that may come from one alert or from state a filter built up: when a lone
# filter dies so, its (filter, alert) pair is re-run alone to tell which. Running
# past the CPU limit, the deadline or the hard per-call limit is charged at once.
PROBED_DEATHS = frozenset({"crash", "exit", "protocol", "memory"})
# The service's answer to a filter's query: (filter id, alert index in the batch, kind,
# params) -> plain data, or raises QueryRefused with a message for the filter.
Query = Callable[[str, int, str, dict[str, Any]], Any]


class AlertsRejected(ValueError):
    """The batch itself is invalid (alerts that are not plain decoded data)."""


@dataclass(frozen=True)
class Kill:
    alert: int | None  # batch index; None when the worker died loading the filter
    detail: str


@dataclass
class FilterTally:
    """One filter's results over every run of one batch; indices are batch indices.

    evaluated: alerts with a result or whose call killed the worker, each once;
    cpu_histogram counts those calls. unevaluated: the other alerts, by reason.
    """

    matches: list[tuple[int, float]] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)
    timeouts: list[int] = field(default_factory=list)
    cpu_seconds: float = 0.0
    cpu_histogram: tuple[int, ...] = ()
    kills: list[Kill] = field(default_factory=list)
    load_error: str | None = None
    load_line: int | None = None
    stopped: str | None = None
    evaluated: int = 0
    unevaluated: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, count: int) -> None:
        if count:
            self.unevaluated[reason] = self.unevaluated.get(reason, 0) + count

    @property
    def incomplete(self) -> str | None:
        """Why some alerts are unevaluated, if any are: "reason (n alerts); ..."."""
        return "; ".join(f"{reason} ({count} alerts)"
                         for reason, count in self.unevaluated.items()) or None


_Unit = tuple[tuple[str, ...], tuple[int, ...]]  # filter ids, batch indices


class ShardRun:
    def __init__(self, worker: WorkerProcess, codes: dict[str, FilterCode],
                 columns: AlertColumns, kill_budget: dict[str, int],
                 limits: SandboxLimits, query: Query | None = None) -> None:
        self.worker = worker
        self.codes = codes
        self.columns = columns
        supplements = sorted({columns.supplement_of[f] for f in codes if f in columns.supplement_of})
        self.keys = columns.keys_for(code.reads for code in codes.values()) + tuple(supplements)
        self.query = query
        self.n_alerts = len(columns.alerts)
        self.kill_budget = kill_budget
        self.limits = limits
        self.tallies = {fid: FilterTally() for fid in codes}
        self._retried: set[_Unit] = set()

    def execute(self) -> dict[str, FilterTally]:
        pending: list[_Unit] = [(tuple(self.codes), tuple(range(self.n_alerts)))]
        give_up_at = time.monotonic() + ISOLATION_BUDGET_DEADLINES * self.limits.batch_deadline_s
        while pending:
            fids, indices = pending.pop()
            fids = self._runnable(fids, len(indices))
            if not fids:
                continue
            if time.monotonic() > give_up_at:
                for fid in fids:
                    self.tallies[fid].skip(f"isolating worker deaths took longer than "
                                           f"{ISOLATION_BUDGET_DEADLINES} batch deadlines",
                                           len(indices))
                continue
            outcome = self._run(fids, indices)
            if outcome.fatal is not None:
                raise AlertsRejected(outcome.fatal)
            if outcome.death is not None:
                pending.extend(self._split(fids, indices, outcome, outcome.death))
        return self.tallies

    def _runnable(self, fids: tuple[str, ...], n_alerts: int) -> tuple[str, ...]:
        """The filters still to be run; the others skip these alerts."""
        runnable = []
        for fid in fids:
            reason = self._why_stopped(fid)
            if reason is None:
                runnable.append(fid)
            else:
                self.tallies[fid].skip(reason, n_alerts)
        return tuple(runnable)

    def _why_stopped(self, fid: str) -> str | None:
        tally = self.tallies[fid]
        if tally.load_error is not None:
            return "it failed to load"
        if tally.stopped == "errors":
            return f"it was stopped after errors on more than {self.limits.max_errors} alerts"
        if tally.stopped == "timeouts":
            return f"it was stopped after time-outs on more than {self.limits.max_timeouts} alerts"
        if len(tally.kills) >= self.kill_budget[fid]:
            return "it had killed its worker too often"
        return None

    def _run(self, fids: tuple[str, ...], indices: tuple[int, ...]) -> RunOutcome:
        whole = len(indices) == self.n_alerts
        frames = self.columns.frames(self.keys, None if whole else indices)
        request = RunRequest(0, self.limits.cpu_seconds, tuple(self.codes[f] for f in fids),
                             self.keys, len(indices),
                             tuple(self.columns.supplement_of.get(f) for f in fids))
        answer = None
        if self.query is not None:
            query = self.query

            def answer(position: int, alert: int, kind: str, params: dict[str, Any]) -> Any:
                return query(fids[position], indices[alert], kind, params)
        outcome = self.worker.run(request, frames, answer)
        for position, report in outcome.reports.items():
            fid = fids[position]
            tally = self.tallies[fid]
            tally.matches += [(indices[i], score) for i, score in report.matches]
            tally.errors += [(indices[i], message) for i, message in report.errors]
            tally.timeouts += [indices[i] for i in report.timeouts]
            tally.cpu_seconds += report.cpu_seconds
            tally.cpu_histogram = merge_histograms(tally.cpu_histogram, report.cpu_histogram)
            tally.evaluated += report.calls
            if report.load_error is not None:
                tally.load_error, tally.load_line = report.load_error, report.load_line
            tally.stopped = tally.stopped or report.stopped
            reason = self._why_stopped(fid)
            if reason is not None:  # the only cases (the protocol checks) of calls < alerts
                tally.skip(reason, len(indices) - report.calls)
        death = outcome.death
        if death is not None and 0 <= death.filter_position < len(fids):
            self.tallies[fids[death.filter_position]].cpu_seconds += death.filter_cpu_s
        return outcome

    def _charge(self, fid: str, alert: int | None, death: Death, *, call_died: bool = True) -> None:
        """A kill against the filter, at `alert` if known; unless that alert has a
        result from another run (call_died=False), its call counts as evaluated."""
        tally = self.tallies[fid]
        tally.kills.append(Kill(alert, death.detail))
        if alert is not None and call_died:
            tally.evaluated += 1
            tally.cpu_histogram = merge_histograms(
                tally.cpu_histogram, histogram_of_ns([round(death.call_cpu_s * 1e9)]))

    def _not_rerun(self, fid: str, count: int, death: Death) -> None:
        self.tallies[fid].skip(f"it was not run again after it {death.detail}", count)

    def _retry_once(self, unit: _Unit, death: Death) -> list[_Unit]:
        """A death outside filter code (receiving or freezing the batch): the batch
        is too large for the limits, or an earlier batch left the worker unwell.
        A fresh worker gets one more try; then the work is dropped, blaming no one."""
        if unit not in self._retried:
            self._retried.add(unit)
            return [unit]
        log.error("sandbox worker %s while handling the batch itself (not filter code); "
                  "dropping the batch for %d filter(s)", death.detail, len(unit[0]))
        for fid in unit[0]:
            self.tallies[fid].skip("its worker died twice handling the batch itself",
                                   len(unit[1]))
        return []

    def _split(self, fids: tuple[str, ...], indices: tuple[int, ...], outcome: RunOutcome,
               death: Death) -> list[_Unit]:
        """The work still to do after a death, the suspect's part last (so run first)."""
        unfinished = tuple(f for position, f in enumerate(fids) if position not in outcome.reports)
        if not unfinished:
            return []
        if death.phase not in (PHASE_LOADING, PHASE_RUNNING):
            return self._retry_once((unfinished, indices), death)
        suspect = fids[death.filter_position] if 0 <= death.filter_position < len(fids) else None
        if suspect not in unfinished:
            suspect = None
        at = death.alert_position if death.phase == PHASE_RUNNING else -1
        at = at if 0 <= at < len(indices) else None
        alert = None if at is None else indices[at]
        rest = indices if at is None else indices[:at] + indices[at + 1:]
        others = tuple(f for f in unfinished if f != suspect)

        if suspect is not None and death.kind == "stall":
            # One call stuck past the hard limit is proof enough; it is not re-run.
            self._charge(suspect, alert, death)
            units: list[_Unit] = [(others, indices)] if others else []
            if at is None:  # stuck loading it: none of its calls happened
                self._not_rerun(suspect, len(indices), death)
            elif rest:
                units.append(((suspect,), rest))
            return units
        if len(unfinished) > 1:
            if suspect is not None:
                return [(others, indices), ((suspect,), indices)]
            half = len(unfinished) // 2
            return [(unfinished[half:], indices), (unfinished[:half], indices)]
        only = unfinished[0]
        if death.kind in PROBED_DEATHS and death.phase == PHASE_RUNNING and len(indices) > 1:
            if at is None:
                half = len(indices) // 2
                return [((only,), indices[half:]), ((only,), indices[:half])]
            probe = self._run((only,), (indices[at],))
            if probe.fatal is not None:
                raise AlertsRejected(probe.fatal)
            if probe.death is not None:  # this alert does it: charge it, go on with the rest
                self._charge(only, alert, probe.death)
                return [((only,), rest)]
            # The alert alone is fine (and has its result): the filter wore the
            # worker down itself.
            self._charge(only, alert, death, call_died=False)
            self._not_rerun(only, len(rest), death)
            return []
        if alert is None and death.phase == PHASE_RUNNING and len(indices) == 1:
            alert = indices[0]
        self._charge(only, alert, death)
        self._not_rerun(only, len(indices) - (alert is not None), death)
        return []
