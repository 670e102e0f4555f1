"""Every alert accounted for, and the CPU of lost calls charged.

Scripted workers drive SandboxPool down every path on which a filter is not run
on some alerts (deterministically, with no processes); real pools then force
the ones that matter most: isolation giving up, a filter stopped, a worker killed.
"""
from __future__ import annotations

import dataclasses
import pickle
import re
import types
from collections.abc import Callable

import pytest
from conftest import FAST_LIMITS

from sandbox import (
    FilterOutcome,
    FilterSpec,
    SandboxLimits,
    SandboxPool,
    histogram_quantile,
    merge_histograms,
)
from sandbox import pool as pool_module
from sandbox import shard
from sandbox.batch_runner import RunRequest
from sandbox.cpu_histogram import histogram_of_ns
from sandbox.protocol import PHASE_FREEZING, PHASE_LOADING, PHASE_RUNNING, FilterReport
from sandbox.worker import Death, RunOutcome

N = 20
ALERTS = [{"diaSourceId": i} for i in range(N)]
RESULTS = {"match", "error", "timeout"}  # any other action is a death of that kind
FILTER_CPU_S, CALL_CPU_S, CALL_NS = 0.25, 0.002, 1_000  # what the scripted worker reports
SOURCE = "def filter(alert):\n    return True\n"
LIMITS = SandboxLimits(workers=1, batch_deadline_s=1.0, memory_mb=512, max_errors=3,
                       max_timeouts=2, max_kills=100)

Script = Callable[[int, int], str]  # (diaSourceId, position in the run) -> action


class ScriptedWorker:
    """Plays a worker process: the script says what each filter does with each
    alert (a result or a death, of the kinds sandbox.worker reports); `load` makes
    a filter die or fail while loading, in runs with alerts; each run takes
    run_seconds of the clock. It keeps the CPU time it reports and the CPU it
    reports a death took, per filter."""

    def __init__(self, scripts: dict[str, Script], limits: SandboxLimits, clock: Clock,
                 load: dict[str, str], freezing_deaths: int, run_seconds: float) -> None:
        self.scripts, self.limits, self.clock = scripts, limits, clock
        self.load, self.freezing_deaths, self.run_seconds = load, freezing_deaths, run_seconds
        self.confinement: dict = {}
        self.cpu_by_key: dict[str, float] = {key: 0.0 for key in scripts}

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def run(self, request: RunRequest, frames: list[bytes], answer: object = None) -> RunOutcome:
        self.clock.now += self.run_seconds
        ids = pickle.loads(frames[request.keys.index("diaSourceId")]) if frames else []
        if ids and self.freezing_deaths:
            self.freezing_deaths -= 1
            return RunOutcome({}, Death("memory", "ran out of memory", PHASE_FREEZING, -1, -1))
        reports: dict[int, FilterReport] = {}
        for position, code in enumerate(request.filters):
            load = self.load.get(code.key) if ids else None
            if load == "error":
                reports[position] = FilterReport(position, [], [], [], 0, (), 0.0, "NameError: x",
                                                 1, None)
                continue
            if load is not None:
                death = Death(load, f"died ({load})", PHASE_LOADING, position, -1)
                return RunOutcome(reports, death)
            matches, errors, timeouts, stopped = [], [], [], None
            for i, dia_source_id in enumerate(ids):
                action = self.scripts[code.key](dia_source_id, i)
                if action not in RESULTS:
                    self.cpu_by_key[code.key] += FILTER_CPU_S
                    return RunOutcome(reports, Death(action, f"died ({action})", PHASE_RUNNING,
                                                     position, i, FILTER_CPU_S, CALL_CPU_S))
                {"match": matches, "error": errors, "timeout": timeouts}[action].append(i)
                if len(errors) > self.limits.max_errors or len(timeouts) > self.limits.max_timeouts:
                    stopped = "errors" if errors and errors[-1] == i else "timeouts"
                    break
            calls = len(matches) + len(errors) + len(timeouts)
            cpu = calls * CALL_NS / 1e9
            self.cpu_by_key[code.key] += cpu
            reports[position] = FilterReport(
                position, [(i, 1.0) for i in matches], [(i, "ValueError") for i in errors],
                timeouts, calls, histogram_of_ns([CALL_NS] * calls), cpu, None, None, stopped)
        return RunOutcome(reports)


@dataclasses.dataclass
class Clock:
    now: float = 0.0

    def monotonic(self) -> float:
        return self.now


def run_scripted(monkeypatch: pytest.MonkeyPatch, scripts: dict[str, Script],
                 limits: SandboxLimits = LIMITS, load: dict[str, str] | None = None,
                 freezing_deaths: int = 0, run_seconds: float = 0.0,
                 ) -> tuple[dict[str, FilterOutcome], dict[str, float]]:
    """One batch of N alerts through a one-worker pool of scripted workers: the
    outcomes, and the CPU time each filter's worker reported or died with."""
    specs = {fid: FilterSpec(fid, fid, SOURCE) for fid in scripts}
    keys = {fid: pool_module._source_key(spec) for fid, spec in specs.items()}
    clock = Clock()
    monkeypatch.setattr(shard, "time", types.SimpleNamespace(monotonic=clock.monotonic))
    workers: list[ScriptedWorker] = []

    def make_worker(limits: SandboxLimits, empty_root: str | None) -> ScriptedWorker:
        workers.append(ScriptedWorker({keys[f]: s for f, s in scripts.items()}, limits, clock,
                                      {keys[f]: how for f, how in (load or {}).items()},
                                      freezing_deaths, run_seconds))
        return workers[-1]

    monkeypatch.setattr(pool_module, "WorkerProcess", make_worker)
    with SandboxPool(limits) as pool:
        assert pool.set_filters(list(specs.values())) == {}
        outcomes = pool.run_batch(ALERTS).outcomes
    return outcomes, {fid: workers[0].cpu_by_key[key] for fid, key in keys.items()}


def assert_accounted(outcome: FilterOutcome, n_alerts: int, kills_without_call: int = 0,
                     non_matches: int = 0) -> None:
    """Every alert of the batch is counted once, and the reasons add up."""
    assert outcome.evaluated + outcome.unevaluated == n_alerts
    assert sum(outcome.cpu_histogram) == outcome.evaluated
    assert (len(outcome.matches) + non_matches + len(outcome.errors) + outcome.timeouts
            + outcome.kills - kills_without_call + outcome.unevaluated) == n_alerts
    if outcome.unevaluated:
        counts = re.findall(r"\((\d+) alerts\)", outcome.incomplete or "")
        assert sum(map(int, counts)) == outcome.unevaluated
    else:
        assert outcome.incomplete is None


def always(action: str) -> Script:
    return lambda dia_source_id, position: action


def on(ids: set[int], action: str, otherwise: str = "match") -> Script:
    return lambda dia_source_id, position: action if dia_source_id in ids else otherwise


# name: scripts, options, {filter: (unevaluated, reason, kills, kills without a killed call)}
SCENARIOS = {
    "crashes are isolated to their alerts": (
        {"a": on({3, 9, 15}, "crash"), "b": always("match")}, {},
        {"a": (0, None, 3, 0), "b": (0, None, 0, 0)}),
    "a stuck call is not run again, the rest is": (
        {"a": on({4}, "stall"), "b": always("match")}, {},
        {"a": (0, None, 1, 0), "b": (0, None, 0, 0)}),
    "after a deadline the rest is not run again": (
        {"a": on({5}, "deadline"), "b": always("match")}, {},
        {"a": (N - 1, "not run again after it died (deadline)", 1, 0), "b": (0, None, 0, 0)}),
    "a filter that wears its worker down": (
        {"a": lambda dia_source_id, position: "crash" if position >= 3 else "match"}, {},
        {"a": (N - 1, "not run again after it died (crash)", 1, 1)}),
    "stopped after errors": (
        {"a": always("error"), "b": always("match")}, {},
        {"a": (N - 4, "stopped after errors on more than 3 alerts", 0, 0), "b": (0, None, 0, 0)}),
    "stopped after time-outs": (
        {"a": on({2, 4, 6, 8}, "timeout")}, {},
        {"a": (N - 7, "stopped after time-outs on more than 2 alerts", 0, 0)}),
    "killed its worker too often": (
        {"a": on({2, 6, 10, 14}, "crash")}, {"limits": dataclasses.replace(LIMITS, max_kills=2)},
        {"a": (N - 2, "killed its worker too often", 2, 0)}),
    "failed to load mid-batch": (
        {"a": always("match"), "b": always("match")}, {"load": {"a": "error"}},
        {"a": (N, "failed to load", 0, 0), "b": (0, None, 0, 0)}),
    "died loading": (
        {"a": always("match"), "b": always("match")}, {"load": {"a": "crash"}},
        {"a": (N, "not run again after it died (crash)", 1, 1), "b": (0, None, 0, 0)}),
    "stuck loading": (
        {"a": always("match"), "b": always("match")}, {"load": {"a": "stall"}},
        {"a": (N, "not run again after it died (stall)", 1, 1), "b": (0, None, 0, 0)}),
    "isolation gives up": (
        {"a": on(set(range(0, N, 2)), "memory"), "b": always("match")},
        {"run_seconds": LIMITS.batch_deadline_s},
        # b waits under a's isolation, so it loses the batch too (but says so)
        {"a": (None, "isolating worker deaths took longer than 4 batch deadlines", None, 0),
         "b": (N, "isolating worker deaths took longer than 4 batch deadlines", 0, 0)}),
    "the batch itself kills the worker twice": (
        {"a": always("match"), "b": always("match")}, {"freezing_deaths": 2},
        {"a": (N, "its worker died twice handling the batch itself", 0, 0),
         "b": (N, "its worker died twice handling the batch itself", 0, 0)}),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_alert_is_accounted_for(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    scripts, options, expected = SCENARIOS[name]
    outcomes, cpu = run_scripted(monkeypatch, scripts, **options)
    for fid, (unevaluated, reason, kills, kills_without_call) in expected.items():
        outcome = outcomes[fid]
        assert_accounted(outcome, N, kills_without_call)
        if unevaluated is None:  # as many as the time allowed
            assert outcome.unevaluated > 0
        else:
            assert outcome.unevaluated == unevaluated
        assert (reason is None) == (outcome.incomplete is None)
        assert reason is None or reason in outcome.incomplete
        if kills is not None:
            assert outcome.kills == kills
        # What the worker reported, and what it used in runs it did not survive.
        assert outcome.cpu_seconds == pytest.approx(cpu[fid])
        killed_calls = outcome.kills - kills_without_call
        assert outcome.cpu_histogram == merge_histograms(  # 1 us per call, 2 ms per killed call
            histogram_of_ns([CALL_NS] * (outcome.evaluated - killed_calls)),
            histogram_of_ns([round(CALL_CPU_S * 1e9)] * killed_calls))


def test_isolation_giving_up_is_counted_on_real_workers(alerts: list[dict]) -> None:
    """A filter that kills its worker on half the alerts, with a tiny batch deadline:
    isolating the deaths takes too long, and what was left is counted, not dropped."""
    oom = '''
def filter(alert):
    if alert["diaSourceId"] // 1000 % 2:
        return len("x" * 10 ** 10) > 0
    return True
'''
    limits = dataclasses.replace(FAST_LIMITS, workers=1, batch_deadline_s=0.3, max_kills=1000)
    batch = alerts * 4
    with SandboxPool(limits) as pool:
        # "a_oom" runs first in its worker, so "ok" waits on its isolation too.
        pool.set_filters([FilterSpec("a_oom", "mal", oom), FilterSpec("ok", "ann", SOURCE)])
        outcomes = pool.run_batch(batch).outcomes
    assert_accounted(outcomes["a_oom"], len(batch))
    assert_accounted(outcomes["ok"], len(batch))
    assert outcomes["a_oom"].kills > 0 and outcomes["a_oom"].unevaluated > 0
    assert "isolating worker deaths took longer" in outcomes["a_oom"].incomplete
    assert all(index % 2 == 0 for index, _ in outcomes["a_oom"].matches)


def test_a_filter_stopped_mid_batch_accounts_for_the_rest(alerts: list[dict]) -> None:
    failing = "def filter(alert):\n    return alert['nope']\n"
    with SandboxPool(FAST_LIMITS) as pool:
        pool.set_filters([FilterSpec("failing", "ann", failing)])
        outcome = pool.run_batch(alerts).outcomes["failing"]
        assert outcome.disabled and outcome.evaluated == FAST_LIMITS.max_errors + 1
        assert_accounted(outcome, len(alerts))
        assert "stopped after errors on more than 3 alerts" in outcome.incomplete
        after = pool.run_batch(alerts).outcomes["failing"]  # disabled: not run, says so
        assert (after.evaluated, after.unevaluated, after.incomplete) == (0, 0, None)


def test_a_call_killed_by_the_watchdog_is_charged_its_cpu(alerts: list[dict]) -> None:
    """A call spinning in C past the hard limit: its CPU (read from the dead worker)
    counts towards cpu_seconds, and the call in the histogram; the rest runs."""
    stuck = '''
def filter(alert):
    if alert["diaSourceId"] == STUCK:
        return sum(map(sum, [range(10 ** 7)] * 10 ** 4)) < 0
    return True
'''.replace("STUCK", str(alerts[3]["diaSourceId"]))
    with SandboxPool(FAST_LIMITS) as pool:
        pool.set_filters([FilterSpec("stuck", "ann", stuck)])
        outcome = pool.run_batch(alerts).outcomes["stuck"]
    assert outcome.kills == 1 and len(outcome.matches) == len(alerts) - 1
    assert_accounted(outcome, len(alerts))
    # It spun for the 1 s hard limit; on a busy machine it may have had less of a CPU.
    assert 0.2 < outcome.cpu_seconds < 2 * FAST_LIMITS.per_call_hard_timeout_s
    assert 0.2 < histogram_quantile(outcome.cpu_histogram, 1.0) <= 2.0
    assert histogram_quantile(outcome.cpu_histogram, 0.9) < 0.01


def test_a_batch_deadline_charges_the_lost_run_and_bounds_the_killed_call(
        alerts: list[dict]) -> None:
    """Past the batch deadline a lone filter is not run again: the rest is counted
    as unevaluated; its CPU in the runs that died is charged, and the killed call
    counts with at most its own time, not the run's."""
    limits = dataclasses.replace(FAST_LIMITS, workers=1, batch_deadline_s=1.0,
                                 per_call_soft_timeout_s=0.1, per_call_hard_timeout_s=0.5)
    dawdle = '''
def filter(alert):
    x = 0
    for i in range(600_000):
        x += i
    return True
'''
    batch = alerts * 6
    with SandboxPool(limits) as pool:
        pool.set_filters([FilterSpec("dawdle", "bob", dawdle)])
        outcome = pool.run_batch(batch).outcomes["dawdle"]
    assert outcome.kills == 1 and outcome.matches == [] and outcome.evaluated == 1
    assert_accounted(outcome, len(batch))
    assert "not run again after it ran past the batch deadline of 1 s" in outcome.incomplete
    assert outcome.cpu_seconds > 0.2  # ~1 s of CPU, on an idle machine
    assert histogram_quantile(outcome.cpu_histogram, 1.0) < 0.3
