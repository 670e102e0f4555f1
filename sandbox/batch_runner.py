"""Inside a worker: load filters, freeze a batch once, run every filter over it.

Filters run one after another over the whole batch, and each filter's results
go to the parent as soon as it finishes, so a worker that dies mid-batch loses
only the filter it was running. The position of the current call (and the CPU
clock when the filter began) is kept in memory shared with the parent, which
uses it to spot a stuck call, to know whom to suspect when a worker dies, and
to charge the CPU the filter used before it died. Each call is timed (see
SLOW_CALL_NS) and the times sent as a histogram (sandbox.cpu_histogram).
"""
from __future__ import annotations

import marshal
import math
import pickle
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType, FunctionType, MappingProxyType, TracebackType
from typing import Any

from . import helpers
from .alert_columns import is_supplement, rows
from .cpu_histogram import histogram_of_ns
from .freeze import UnsupportedValue, freeze, freeze_top, project
from .isolation import set_cpu_budget
from .protocol import (
    MAX_MESSAGE_CHARS,
    PHASE_FREEZING,
    PHASE_IDLE,
    PHASE_LOADING,
    PHASE_REPORTING,
    PHASE_RUNNING,
    SLOT_ALERT,
    SLOT_CPU_NS,
    SLOT_FILTER,
    SLOT_PHASE,
    SLOT_SEQUENCE,
    USER_CODE_PHASES,
)
from .runtime import INTERRUPTIBLE_FILES, filter_globals
from .where import BatchColumns, Condition

FILTER_FILENAME_PREFIX = "<filter"
# Calls are timed by the monotonic clock (~50 ns from Python, no system call);
# one that took at least this long by it is timed again by the thread's CPU
# clock, a system call (~0.5 us, ~0.7 us under seccomp): too dear for every call,
# but < 4% of a call this long. A shorter call cannot have lost more than this
# to other processes, and a preemption usually lasts far longer, so its wall
# time is its CPU time; a long call's CPU time is the CPU used since the last
# reading less the wall time of the short calls since then.
SLOW_CALL_NS = 20_000


class CallTimeout(BaseException):
    """Raised into a filter call that outlived the soft timer.

    A BaseException, and filters may neither name it nor use a bare except, so
    a filter cannot catch it.
    """


@dataclass(frozen=True)
class FilterCode:
    """A filter as the parent sends it."""

    key: str  # changes whenever the source changes
    filename: str
    code: bytes
    reads: tuple[str, ...] | None
    where: tuple[Condition, ...] | None = None  # its WHERE: only alerts that pass are handed to it


@dataclass(frozen=True)
class RunRequest:
    """Run these filters over n_alerts alerts, sent next as one pickled column per key."""

    sequence: int
    cpu_seconds: float
    filters: tuple[FilterCode, ...]
    keys: tuple[str, ...]
    n_alerts: int
    supplements: tuple[str | None, ...] = ()  # per filter: its supplement column, if any


@dataclass
class LoadedFilter:
    key: str
    function: Callable[[Any], Any] | None
    reads: tuple[str, ...] | None
    load_error: str | None = None
    load_line: int | None = None


def _is_filter_frame(filename: str) -> bool:
    return filename.startswith(FILTER_FILENAME_PREFIX) or filename in INTERRUPTIBLE_FILES


class SoftTimer:
    """A periodic SIGALRM that interrupts a filter call seen at two ticks in a row.

    So a call is interrupted after between one and two periods. Only frames of
    filter code and the helpers are interrupted, never the runner's own.
    """

    def __init__(self, cursor: memoryview, period_s: float) -> None:
        self.cursor = cursor
        self.period_s = period_s
        self.last: tuple[int, ...] = ()
        signal.signal(signal.SIGALRM, self._tick)

    def _tick(self, signum: int, frame: FrameType | None) -> None:
        now = tuple(self.cursor)
        if (now == self.last and now[SLOT_PHASE] in USER_CODE_PHASES and frame is not None
                and _is_filter_frame(frame.f_code.co_filename)):
            raise CallTimeout
        self.last = now

    def start(self) -> None:
        self.last = ()
        signal.setitimer(signal.ITIMER_REAL, self.period_s, self.period_s)

    def stop(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)


def describe_exception(exc: BaseException) -> tuple[str, int | None]:
    """Type, message and the filter's line as plain text, and that line; frames
    are released."""
    line = None
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith(FILTER_FILENAME_PREFIX):
            line = tb.tb_lineno
        tb = tb.tb_next
    exc.__traceback__ = None
    try:
        text = " ".join(str(exc).split())[:300]
    except Exception:  # noqa: BLE001 - e.g. RecursionError from deeply nested arguments
        text = "(the error's message could not be shown)"
    where = f" (line {line})" if line is not None else ""
    separator = ": " if text else ""
    return f"{type(exc).__name__}{separator}{text}{where}"[:MAX_MESSAGE_CHARS], line


def describe_result(result: object) -> str | None:
    """None for a valid result, else why it is not one."""
    kind = type(result)
    if kind is bool:
        return None
    if kind is float or kind is int:
        try:
            if math.isfinite(result):  # type: ignore[arg-type]
                return None
        except OverflowError:
            return "returned an integer too large to be a score"
        return f"returned {result!r}; a score must be a finite number"
    what = "None (is a return statement missing?)" if result is None else f"a {kind.__name__}"
    return f"returned {what}; a filter must return True/False or a finite number (> 0 means a match)"


SUPPLEMENT_KEY = "ppdb"  # where a filter finds what the service fetched for it
Views = list[list[MappingProxyType[str, Any]]]  # per filter position, per alert


class BatchRunner:
    def __init__(self, cursor: memoryview, send: Callable[[dict[str, Any]], None],
                 soft_timeout_s: float, max_errors: int, max_timeouts: int,
                 receive: Callable[[], Any] | None = None) -> None:
        self.cursor = cursor
        self.send = send
        self.receive = receive
        self.timer = SoftTimer(cursor, soft_timeout_s)
        self.soft_timeout_s = soft_timeout_s
        self.max_errors = max_errors
        self.max_timeouts = max_timeouts
        self.loaded: dict[str, LoadedFilter] = {}

    def run(self, request: RunRequest, columns: list[bytearray]) -> None:
        cursor = self.cursor
        cursor[SLOT_SEQUENCE] = request.sequence
        set_cpu_budget(request.cpu_seconds)
        self.timer.start()
        helpers.set_query_channel(self._ask if self.receive is not None else None)
        try:
            active = self._load(request.filters)
            frozen = self._freeze(request, columns, active)
            if frozen is not None:
                views, batch = frozen
                for position, (loaded, code) in enumerate(zip(active, request.filters)):
                    candidates = batch.candidates(code.where) if code.where else None
                    self._run_filter(position, loaded, views[position], candidates)
        finally:  # the cursor keeps its position if this fails: the parent needs it
            self.timer.stop()
            helpers.set_query_channel(None)
        cursor[SLOT_PHASE] = PHASE_IDLE
        helpers.reset_caches()
        self.send({"type": "done"})

    def _load(self, filters: tuple[FilterCode, ...]) -> list[LoadedFilter]:
        """Keep exactly the requested filters loaded; a dropped one loses its state."""
        wanted = {code.key for code in filters}
        self.loaded = {key: f for key, f in self.loaded.items() if key in wanted}
        self.cursor[SLOT_PHASE] = PHASE_LOADING
        active = []
        for position, code in enumerate(filters):
            loaded = self.loaded.get(code.key)
            if loaded is None:
                self.cursor[SLOT_FILTER] = position
                self.cursor[SLOT_ALERT] = -1
                loaded = self.loaded[code.key] = self._load_one(code)
            active.append(loaded)
        return active

    def _load_one(self, code: FilterCode) -> LoadedFilter:
        namespace = filter_globals(code.filename)
        try:
            exec(marshal.loads(code.code), namespace)
        except CallTimeout:
            return LoadedFilter(code.key, None, code.reads,
                                f"loading took longer than {self.soft_timeout_s} s")
        except MemoryError:
            raise
        except BaseException as exc:  # noqa: BLE001 - any failure of filter code
            return LoadedFilter(code.key, None, code.reads, *describe_exception(exc))
        function = namespace.get("filter")
        if type(function) is not FunctionType:
            return LoadedFilter(code.key, None, code.reads, "the module defines no filter function")
        return LoadedFilter(code.key, function, code.reads)

    def _freeze(self, request: RunRequest, columns: list[bytearray],
                active: list[LoadedFilter]) -> tuple[Views, BatchColumns] | None:
        """One frozen copy of each alert and of each supplement, and one read-only view per
        (READS set, supplement): a filter sees its own supplement, never another's. With them, the
        plain alerts as columns for the filters' WHERE conditions."""
        self.cursor[SLOT_PHASE] = PHASE_FREEZING
        alerts = rows(request.keys, [pickle.loads(column) for column in columns], request.n_alerts)
        columns.clear()
        supplements: dict[str, list[Any]] = {key: [] for key in request.keys if is_supplement(key)}
        tops = []
        try:
            for index, alert in enumerate(alerts):
                self.cursor[SLOT_ALERT] = index
                for key, values in supplements.items():
                    values.append(freeze(alert.pop(key, None)))
                tops.append(freeze_top(alert))
        except UnsupportedValue as exc:
            self.send({"type": "fatal", "reason": f"alert {index}: {exc}"[:MAX_MESSAGE_CHARS]})
            return None
        shared: dict[Any, list[MappingProxyType[str, Any]]] = {}
        views = []
        for position, loaded in enumerate(active):
            supplement = request.supplements[position] if request.supplements else None
            key = (loaded.reads, supplement)
            if key not in shared:
                if supplement is None:
                    shared[key] = [project(top, loaded.reads) for top in tops]
                else:
                    shared[key] = [project(top, loaded.reads, {SUPPLEMENT_KEY: value})
                                   for top, value in zip(tops, supplements[supplement])]
            views.append(shared[key])
        return views, BatchColumns(alerts)

    def _ask(self, kind: str, params: dict[str, Any]) -> Any:
        """A filter's query, answered by the parent while the filter waits. The soft timer is held
        off meanwhile so the answer is always read; the time counts against the call all the same."""
        assert self.receive is not None
        cursor = self.cursor
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            self.send({"type": "query", "f": cursor[SLOT_FILTER], "a": cursor[SLOT_ALERT],
                       "kind": kind, "params": params})
            answer = self.receive()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if answer is None:
            raise SystemExit(0)  # the parent went away
        return pickle.loads(answer)

    def _run_filter(self, position: int, loaded: LoadedFilter, views: list[MappingProxyType[str, Any]],
                    candidates: list[int] | None) -> None:
        """Call the filter on every alert, or only on ``candidates`` (those its WHERE passed); the others
        count as calls that returned no match at no CPU."""
        report: dict[str, Any] = {"type": "filter", "f": position, "m": [], "e": [], "t": [],
                                  "n": 0, "h": [], "cpu": 0.0, "load_error": loaded.load_error,
                                  "load_line": loaded.load_line, "stop": None}
        if loaded.function is not None:
            self._call_all(position, loaded.function, views, report, candidates)
        self.cursor[SLOT_PHASE] = PHASE_REPORTING
        self.send(report)

    def _call_all(self, position: int, function: Callable[[Any], Any], alerts: list[MappingProxyType[str, Any]],
                  report: dict[str, Any], candidates: list[int] | None) -> None:
        cursor = self.cursor
        matches: list[list[Any]] = report["m"]
        errors: list[list[Any]] = report["e"]
        timeouts: list[int] = report["t"]
        durations: list[int] = []  # CPU ns per call, see SLOW_CALL_NS
        record = durations.append
        clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
        cursor[SLOT_FILTER] = position
        cursor[SLOT_ALERT] = -1
        # The thread clock: with RLIMIT_CPU set, the process clock only moves per tick.
        cursor[SLOT_CPU_NS] = started = cpu_mark = cpu_clock()
        cursor[SLOT_PHASE] = PHASE_RUNNING
        wall_mark = last = clock()
        passed = 0  # alerts before this index are done with, called or not
        for index in range(len(alerts)) if candidates is None else candidates:
            durations.extend([0] * (index - passed))
            passed = index + 1
            alert = alerts[index]
            cursor[SLOT_ALERT] = index
            try:
                result = function(alert)
            except CallTimeout:
                timeouts.append(index)
                if len(timeouts) > self.max_timeouts:
                    report["stop"] = "timeouts"
                    break
                continue
            except MemoryError:
                raise
            except BaseException as exc:  # noqa: BLE001 - any failure of filter code
                errors.append([index, describe_exception(exc)[0]])
            else:
                if result is True:
                    matches.append([index, 1.0])
                    continue
                if result is False:
                    continue
                problem = describe_result(result)
                if problem is None:
                    if result > 0:
                        matches.append([index, float(result)])
                    continue
                errors.append([index, problem])
            finally:
                now = clock()
                took = now - last
                if took >= SLOW_CALL_NS:  # the CPU since the last reading, less the short calls
                    cpu_now = cpu_clock()
                    took = cpu_now - cpu_mark - (last - wall_mark)
                    cpu_mark, wall_mark = cpu_now, now
                record(took)
                last = now
            if len(errors) > self.max_errors:
                report["stop"] = "errors"
                break
        if report["stop"] is None:
            durations.extend([0] * (len(alerts) - passed))
        report["cpu"] = (cpu_clock() - started) / 1e9
        report["n"] = len(durations)
        report["h"] = histogram_of_ns(durations)
