"""SandboxPool end to end, with real worker processes."""
from __future__ import annotations

import dataclasses
import os
import select
import subprocess
import sys
import time

import pytest
from conftest import FAST_LIMITS

from sandbox import FilterSpec, SandboxLimits, SandboxPool
from sandbox.batch_runner import RunRequest
from sandbox.shard import AlertsRejected
from sandbox.worker import WorkerProcess

BRIGHT = '''
READS = ("diaSource",)

def filter(alert):
    return alert["diaSource"]["psfFlux"] > 20000
'''
SCORE = '''
import helpers

def filter(alert):
    return len(helpers.light_curve(alert)) + 0.5 if alert["diaSourceId"] // 1000 % 2 else -1
'''
FAILING = '''
def filter(alert):
    return alert["nope"]
'''


def crash_on(dia_source_id: int) -> str:
    """Segfaults the interpreter on one alert (hashing a very deep tuple)."""
    return f'''
def filter(alert):
    if alert["diaSourceId"] == {dia_source_id}:
        nest = ()
        for i in range(400_000):
            nest = (((nest,),),)
        return {{nest: 1}}[nest] > 0
    return alert["diaSourceId"] // 1000 % 3 == 0
'''


def bright(alerts: list[dict]) -> list[tuple[int, float]]:
    return [(i, 1.0) for i, a in enumerate(alerts) if a["diaSource"]["psfFlux"] > 20000]


def by_three(alerts: list[dict], skip: int | None = None) -> list[tuple[int, float]]:
    return [(i, 1.0) for i, a in enumerate(alerts)
            if a["diaSourceId"] // 1000 % 3 == 0 and a["diaSourceId"] != skip]


@pytest.fixture
def pool():
    with SandboxPool(FAST_LIMITS) as pool:
        yield pool


def test_matches_scores_and_cpu(pool: SandboxPool, alerts: list[dict]) -> None:
    assert pool.set_filters([FilterSpec("bright", "ann", BRIGHT), FilterSpec("score", "bob", SCORE)]) == {}
    result = pool.run_batch(alerts)
    assert result.outcomes["bright"].matches == bright(alerts)
    expected = [(i, 7.5) for i, a in enumerate(alerts) if a["diaSourceId"] // 1000 % 2]
    assert expected
    assert result.outcomes["score"].matches == expected  # 6 previous + 1 detection, + 0.5
    assert all(o.cpu_seconds > 0 and not o.errors and o.disabled is None
               for o in result.outcomes.values())
    assert pool.run_batch([]).outcomes["bright"].matches == []


def test_reads_limits_what_a_filter_sees(pool: SandboxPool, alerts: list[dict]) -> None:
    keys = '''
READS = ("diaObject",)

def filter(alert):
    return len(alert) == 2 and "diaObject" in alert and "diaSourceId" in alert
'''
    pool.set_filters([FilterSpec("keys", "ann", keys), FilterSpec("all", "ann",
                      "def filter(alert):\n    return len(alert) == 12\n")])
    result = pool.run_batch(alerts)
    assert len(result.outcomes["keys"].matches) == len(alerts)
    assert len(result.outcomes["all"].matches) == len(alerts)
    assert pool.info("keys").reads == {"diaObject", "diaSourceId"} and pool.info("all").reads is None


def test_rejections(pool: SandboxPool) -> None:
    specs = [FilterSpec("ok", "ann", BRIGHT), FilterSpec("syntax", "ann", "def filter(:\n"),
             FilterSpec("loads", "bob", "X = 1 / 0\ndef filter(alert):\n    return True\n"),
             FilterSpec("twice", "cat", BRIGHT), FilterSpec("twice", "cat", BRIGHT)]
    rejected = pool.set_filters(specs)
    assert set(rejected) == {"syntax", "loads", "twice"}
    assert rejected["syntax"].line == 1
    assert "ZeroDivisionError" in rejected["loads"].reason and rejected["loads"].line == 1
    assert set(pool.run_batch([]).outcomes) == {"ok"}


def test_errors_disable_until_enabled(pool: SandboxPool, alerts: list[dict]) -> None:
    pool.set_filters([FilterSpec("failing", "ann", FAILING), FilterSpec("bright", "bob", BRIGHT)])
    first = pool.run_batch(alerts).outcomes
    failing = first["failing"]
    assert failing.errors[0] == (0, "KeyError: 'nope' (line 3)")
    assert len(failing.errors) == FAST_LIMITS.max_errors + 1
    assert "failed on more than 3 alerts" in failing.disabled
    assert failing.offending_id == alerts[FAST_LIMITS.max_errors]["diaSourceId"]
    assert first["bright"].matches == bright(alerts)

    second = pool.run_batch(alerts).outcomes["failing"]
    assert second.errors == [] and second.disabled == failing.disabled
    pool.set_filters([FilterSpec("failing", "ann", FAILING), FilterSpec("bright", "bob", BRIGHT)])
    assert pool.run_batch(alerts).outcomes["failing"].disabled  # same source: still off
    pool.enable("failing")
    assert pool.run_batch(alerts).outcomes["failing"].errors
    pool.set_filters([FilterSpec("failing", "ann", FAILING.replace("nope", "diaSourceId"))])
    fixed = pool.run_batch(alerts).outcomes["failing"]
    assert fixed.disabled is None and len(fixed.matches) == len(alerts)


def test_timeouts(pool: SandboxPool, alerts: list[dict]) -> None:
    slow = '''
def filter(alert):
    if alert["diaSourceId"] == SLOW:
        while True:
            pass
    return True
'''.replace("SLOW", str(alerts[5]["diaSourceId"]))
    pool.set_filters([FilterSpec("slow", "ann", slow)])
    outcome = pool.run_batch(alerts).outcomes["slow"]
    assert outcome.timeouts == 1 and outcome.disabled is None
    assert [i for i, _ in outcome.matches] == [i for i in range(len(alerts)) if i != 5]


def test_crash_is_bisected_to_the_pair(alerts: list[dict]) -> None:
    """One worker, so the crasher shares it with everyone else."""
    culprit = alerts[7]["diaSourceId"]
    limits = dataclasses.replace(FAST_LIMITS, workers=1, per_call_soft_timeout_s=1.0,
                                 per_call_hard_timeout_s=3.0)
    with SandboxPool(limits) as pool:
        pool.set_filters([FilterSpec("bright", "ann", BRIGHT), FilterSpec("crash", "mal", crash_on(culprit)),
                          FilterSpec("score", "bob", SCORE)])
        before = pool._workers[0].pid
        outcomes = pool.run_batch(alerts).outcomes
        assert pool._workers[0].pid != before  # the worker died and was replaced
        assert outcomes["bright"].matches == bright(alerts)
        assert len(outcomes["score"].matches) == len(alerts) // 2
        crash = outcomes["crash"]
        assert crash.kills == 1 and crash.offending_id == culprit and crash.disabled is None
        assert crash.matches == by_three(alerts, skip=culprit)
        second = pool.run_batch(alerts).outcomes["crash"]  # max_kills=2: now disabled
        assert "killed its sandbox worker 2 times" in second.disabled
        assert "SIGSEGV" in second.disabled and second.offending_id == culprit
        third = pool.run_batch(alerts).outcomes
        assert third["crash"].kills == 0 and third["bright"].matches == bright(alerts)


def test_c_level_loop_is_killed_by_the_watchdog(pool: SandboxPool, alerts: list[dict]) -> None:
    stuck = '''
def filter(alert):
    if alert["diaSourceId"] == STUCK:
        return sum(map(sum, [range(10 ** 7)] * 10 ** 4)) < 0
    return True
'''.replace("STUCK", str(alerts[3]["diaSourceId"]))
    pool.set_filters([FilterSpec("stuck", "ann", stuck), FilterSpec("bright", "ann", BRIGHT)])
    started = time.monotonic()
    outcomes = pool.run_batch(alerts).outcomes
    assert time.monotonic() - started < 3 * FAST_LIMITS.per_call_hard_timeout_s + 2
    assert outcomes["stuck"].kills == 1 and outcomes["stuck"].offending_id == alerts[3]["diaSourceId"]
    assert [i for i, _ in outcomes["stuck"].matches] == [i for i in range(len(alerts)) if i != 3]
    assert outcomes["bright"].matches == bright(alerts)


def test_memory_bomb_is_contained(pool: SandboxPool, alerts: list[dict]) -> None:
    bomb = '''
def filter(alert):
    if alert["diaSourceId"] == BOMB:
        return len("x" * 10 ** 10) > 0
    return False
'''.replace("BOMB", str(alerts[2]["diaSourceId"]))
    pool.set_filters([FilterSpec("bomb", "ann", bomb), FilterSpec("bright", "ann", BRIGHT)])
    outcomes = pool.run_batch(alerts).outcomes
    assert outcomes["bomb"].kills == 1 and outcomes["bomb"].offending_id == alerts[2]["diaSourceId"]
    assert outcomes["bright"].matches == bright(alerts)


def test_batch_deadline(alerts: list[dict]) -> None:
    limits = dataclasses.replace(FAST_LIMITS, workers=1, batch_deadline_s=1.0,
                                 per_call_soft_timeout_s=0.1, per_call_hard_timeout_s=0.5)
    dawdle = '''
def filter(alert):
    x = 0
    for i in range(600_000):
        x += i
    return True
'''
    with SandboxPool(limits) as pool:
        pool.set_filters([FilterSpec("bright", "ann", BRIGHT), FilterSpec("dawdle", "bob", dawdle)])
        outcomes = pool.run_batch(alerts * 3).outcomes
        assert outcomes["dawdle"].kills == 1 and outcomes["dawdle"].matches == []
        assert outcomes["bright"].matches == bright(alerts * 3)


def test_invalid_alerts_raise(pool: SandboxPool) -> None:
    pool.set_filters([FilterSpec("bright", "ann", BRIGHT)])
    with pytest.raises(AlertsRejected):
        pool.run_batch([{"diaSourceId": 1, "diaSource": {"psfFlux": 1.0 + 2j}}])
    assert pool.run_batch([{"diaSourceId": 1, "diaSource": {"psfFlux": 3e4}}]).outcomes["bright"].matches


REFUSING_CHILD = """
import sys, time
from sandbox.protocol import to_parent
def send(message):
    sys.stdout.buffer.write(to_parent(message))
    sys.stdout.buffer.flush()
send({"type": "fatal", "reason": "alert 0: unsupported value"})
time.sleep(0.3)  # the run's "done" comes after the parent has read "fatal"
send({"type": "done"})
time.sleep(60)
"""


def test_a_refused_run_is_read_up_to_its_end() -> None:
    """A worker that refuses a batch ("fatal") still ends the run with "done"; the parent must read it,
    or the next run finds it first, calls the run incomplete and kills the worker."""
    worker = WorkerProcess(FAST_LIMITS, None)
    worker._process = subprocess.Popen([sys.executable, "-c", REFUSING_CHILD], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE)
    try:
        outcome = worker.run(RunRequest(0, 1.0, (), (), 1), [])
        assert outcome.fatal == "alert 0: unsupported value" and outcome.death is None
        time.sleep(0.5)
        assert not select.select([worker._process.stdout], [], [], 0)[0], "the run's end was left unread"
    finally:
        worker.close()


def test_close_ends_every_worker(alerts: list[dict]) -> None:
    pool = SandboxPool(SandboxLimits(workers=2))
    pids = [w.pid for w in pool._workers]
    pool.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(RuntimeError):
        pool.run_batch(alerts)


def test_cpu_limit_ends_a_runaway_worker(alerts: list[dict]) -> None:
    limits = dataclasses.replace(FAST_LIMITS, workers=1, cpu_seconds=1.0, batch_deadline_s=10.0,
                                 per_call_soft_timeout_s=1.0, per_call_hard_timeout_s=8.0)
    spin = '''
def filter(alert):
    return sum(map(sum, [range(10 ** 7)] * 10 ** 4)) < 0
'''
    with SandboxPool(limits) as pool:
        pool.set_filters([FilterSpec("spin", "ann", spin)])
        started = time.monotonic()
        outcome = pool.run_batch(alerts[:3]).outcomes["spin"]
        assert time.monotonic() - started < 6
        assert outcome.kills == 1 and outcome.offending_id == alerts[0]["diaSourceId"]


@pytest.mark.slow
def test_a_full_visit_with_100_filters_matches_plain_python() -> None:
    """10,000 alerts, 100 filters: within the deadline, identical to plain Python."""
    from sandbox.bench import main
    main(["--alerts", "10000"])  # raises SystemExit if any result differs
