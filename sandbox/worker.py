"""A worker process seen from the parent: start it, feed it a run, watch it, kill it.

The watchdog lives here: while a run is in progress the parent polls the
worker's output and the shared progress cursor, and SIGKILLs the worker when
the batch deadline passes, when one call stays stuck past the hard per-call
limit, or when it sends anything malformed. A dead worker is described by a
Death (what happened, where the cursor stood, and the CPU the filter at the
cursor used in the run) and replaced on the next run.

That CPU time is the dead worker's CPU clock, read from /proc/<pid>/schedstat
(the kernel's runtime of the task, in ns: the clock the worker itself reads as
its thread CPU time) after it ended but before it is reaped, less the reading
the worker stored in the cursor when the filter began. So it counts the killed
call and the calls before it in that run, whose results died with the worker.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import mmap
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any

import RestrictedPython

from .batch_runner import RunRequest
from .errors import QueryRefused
from .isolation import ConfinementConfig
from .limits import SandboxLimits
from .protocol import (
    CURSOR_SLOTS,
    EXIT_OUT_OF_MEMORY,
    MAX_MESSAGE_CHARS,
    MAX_REPORT_BYTES,
    PHASE_IDLE,
    PHASE_RUNNING,
    SLOT_ALERT,
    SLOT_CPU_NS,
    SLOT_FILTER,
    SLOT_PHASE,
    SLOT_SEQUENCE,
    TO_PARENT_HEADER,
    USER_CODE_PHASES,
    FilterReport,
    ProtocolError,
    parse_report,
    to_worker,
    validate_confinement,
    validate_filter_report,
    validate_query,
    worker_frame_header,
)

log = logging.getLogger("sandbox")

# Answers a filter's query: (filter position, alert position in the run, kind, params) ->
# plain data, or raises QueryRefused.
Answer = Callable[[int, int, str, dict[str, Any]], Any]

STARTUP_TIMEOUT_S = 20.0
EXIT_GRACE_S = 2.0
_POLL_S = 0.02
# A worker runs `python -I` (no environment, no user site), so it is told where
# the only two packages it imports live: this one and RestrictedPython.
_IMPORT_PATHS = [str(Path(__file__).resolve().parent.parent),
                 str(Path(RestrictedPython.__file__).resolve().parent.parent)]
_BOOT = "import sys; sys.path[:0] = {paths!r}; from sandbox._child import main; main()"


class WorkerStartError(RuntimeError):
    """A worker process could not be started or did not confine itself."""


@dataclass(frozen=True)
class Death:
    """Why a worker ended mid-run, and the last call it had started (-1: none).

    filter_cpu_s: CPU time the filter at filter_position used in this run, its
        last call included, when the worker died running it (else 0).
    call_cpu_s: that last call's share: filter_cpu_s, but at most the wall time
        the watchdog saw the call running (to within a poll, _POLL_S).
    """

    kind: str  # crash, memory, system, stall, deadline, protocol, exit
    detail: str  # words for the filter's owner: "crashed the interpreter (SIGSEGV)"
    phase: int
    filter_position: int
    alert_position: int
    filter_cpu_s: float = 0.0
    call_cpu_s: float = 0.0


@dataclass(frozen=True)
class RunOutcome:
    reports: dict[int, FilterReport]
    death: Death | None = None
    fatal: str | None = None  # the worker refused the batch itself (bad alert data)


class WorkerProcess:
    """One long-lived worker; `run` blocks until the run ends or the worker dies."""

    def __init__(self, limits: SandboxLimits, empty_root: str | None) -> None:
        self.limits = limits
        self.empty_root = empty_root
        self.confinement: dict[str, Any] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._cursor: memoryview | None = None
        self._sequence = 0
        self._killed_because: tuple[str, str] | None = None
        self._watch: _StallWatch | None = None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        cursor_fd = os.memfd_create("afs-sandbox-cursor")  # close-on-exec but for pass_fds
        try:
            os.ftruncate(cursor_fd, CURSOR_SLOTS * 8)
            shared = mmap.mmap(cursor_fd, CURSOR_SLOTS * 8)
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOT.format(paths=_IMPORT_PATHS), str(cursor_fd)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env={}, cwd=self.empty_root or "/", pass_fds=(cursor_fd,), close_fds=True,
                start_new_session=True)
        finally:
            os.close(cursor_fd)
        self._cursor = memoryview(shared).cast("q")
        os.set_blocking(self._process.stdout.fileno(), False)  # type: ignore[union-attr]
        config = ConfinementConfig(memory_mb=self.limits.memory_mb, empty_root=self.empty_root)
        settings = {"confinement": asdict(config),
                    "soft_timeout_s": self.limits.per_call_soft_timeout_s,
                    "max_errors": self.limits.max_errors,
                    "max_timeouts": self.limits.max_timeouts}
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        try:
            self._send(to_worker(settings), deadline)
            ready = self._next_message(bytearray(), deadline)
            if ready is None or ready.get("type") != "ready":
                raise ProtocolError("no ready message")
            self.confinement = validate_confinement(ready)
        except (ProtocolError, OSError, TimeoutError) as exc:
            self.close()
            raise WorkerStartError(f"sandbox worker failed to start: {exc}") from None

    def close(self) -> None:
        """Kill the process (if any) and reap it."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
            process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()
        self._cursor = None

    # -- one run ----------------------------------------------------------------

    def run(self, request: RunRequest, columns: list[bytes], answer: Answer | None = None) -> RunOutcome:
        """Send a run (its alerts as pickled columns) and collect its reports, or
        describe how the worker died. ``answer`` serves the filters' queries meanwhile."""
        if not self.alive:
            self.close()
            self.start()
        self._sequence += 1
        request = dataclasses.replace(request, sequence=self._sequence)
        n_alerts = request.n_alerts
        self._killed_because = None
        self._watch = _StallWatch(self._cursor, request.sequence,
                                  self.limits.per_call_hard_timeout_s)
        deadline = time.monotonic() + self.limits.batch_deadline_s
        reports: dict[int, FilterReport] = {}
        try:
            self._send(to_worker(request), deadline)
            for column in columns:
                self._send(worker_frame_header(len(column)), deadline)
                self._send(column, deadline)
            return self._collect(request, n_alerts, deadline, reports, self._watch, answer)
        except TimeoutError:
            self._kill("deadline", f"ran past the batch deadline of "
                                   f"{self.limits.batch_deadline_s:g} s")
        except ProtocolError as exc:
            log.warning("sandbox worker %s sent an invalid message (%s); killing it", self.pid, exc)
            self._kill("protocol", "made its worker send an invalid message")
        except OSError:  # broken pipe: the worker died while we were writing
            pass
        return RunOutcome(reports, self._reap())

    def _collect(self, request: RunRequest, n_alerts: int, deadline: float,
                 reports: dict[int, FilterReport], watch: _StallWatch,
                 answer: Answer | None = None) -> RunOutcome:
        buffer = bytearray()
        fatal: str | None = None
        while True:
            message = self._next_message(buffer, deadline, watch)
            if message is None:
                return RunOutcome(reports, self._reap())
            kind = message["type"]
            if kind == "filter":
                report = validate_filter_report(message, len(request.filters), n_alerts,
                                                self.limits.max_errors, self.limits.max_timeouts)
                if report.position in reports:
                    raise ProtocolError("duplicate filter report")
                reports[report.position] = report
            elif kind == "query":
                self._send(to_worker(_answer(answer, *validate_query(message, len(request.filters), n_alerts))),
                           deadline)
            elif kind == "done":
                if buffer or (fatal is None and len(reports) != len(request.filters)):
                    raise ProtocolError("incomplete run")
                return RunOutcome(reports, fatal=fatal)
            elif kind == "fatal" and isinstance(message.get("reason"), str) and fatal is None:
                # The run still ends with "done": read up to it, or the next run would find it first.
                fatal = message["reason"][:1000]
            else:
                raise ProtocolError(f"unexpected message {kind[:20]!r}")

    def _next_message(self, buffer: bytearray, deadline: float,
                      watch: _StallWatch | None = None) -> dict[str, Any] | None:
        """The next complete message; None once the worker has closed its output."""
        fd = self._process.stdout.fileno()  # type: ignore[union-attr]
        while True:
            if len(buffer) >= TO_PARENT_HEADER.size:
                (length,) = TO_PARENT_HEADER.unpack_from(buffer)
                if length > MAX_REPORT_BYTES:
                    raise ProtocolError("message too large")
                end = TO_PARENT_HEADER.size + length
                if len(buffer) >= end:
                    payload = bytes(buffer[TO_PARENT_HEADER.size:end])
                    del buffer[:end]
                    return parse_report(payload)
            now = time.monotonic()
            if now >= deadline:
                raise TimeoutError
            if watch is not None and watch.stalled(now):
                self._kill("stall", f"kept one call running past the "
                                    f"{self.limits.per_call_hard_timeout_s:g} s hard limit")
                return None
            if _wait(fd, select.POLLIN, min(_POLL_S, deadline - now)):
                try:
                    chunk = os.read(fd, 1 << 20)
                except BlockingIOError:
                    continue
                if not chunk:
                    return None
                buffer += chunk

    def _send(self, data: bytes, deadline: float) -> None:
        stdin = self._process.stdin  # type: ignore[union-attr]
        fd = stdin.fileno()  # type: ignore[union-attr]
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if _wait(fd, select.POLLOUT, min(_POLL_S, remaining)):
                view = view[os.write(fd, view[:1 << 16]):]

    def _kill(self, kind: str, detail: str) -> None:
        """SIGKILL the worker; it is left unreaped for _reap to read its CPU time."""
        self._killed_because = (kind, detail)
        if self._process is not None and self._process.returncode is None:
            os.kill(self._process.pid, signal.SIGKILL)

    def _reap(self) -> Death:
        """Wait for the dead (or killed) worker and say what happened to it."""
        process, watch = self._process, self._watch
        assert process is not None and self._cursor is not None and watch is not None
        noticed = time.monotonic()
        # Output closed: it is exiting, give it a moment to finish.
        if self._killed_because is None and not _ended_within(process.pid, EXIT_GRACE_S):
            self._kill("exit", "made its worker close its output")
        _await_end(process.pid)
        end_cpu_ns = _cpu_ns(process.pid)
        cursor = tuple(self._cursor)
        if cursor[SLOT_SEQUENCE] != self._sequence:
            cursor = (self._sequence, PHASE_IDLE, -1, -1, 0)
        code = process.wait()
        kind, detail = self._killed_because or _classify(code, self.limits)
        self.close()
        filter_cpu_s = call_cpu_s = 0.0
        if cursor[SLOT_PHASE] == PHASE_RUNNING:
            wall_s = watch.running_for(cursor, noticed)
            if end_cpu_ns is None:  # /proc does not say: the call's wall time bounds its CPU
                filter_cpu_s = call_cpu_s = wall_s
            else:
                filter_cpu_s = max(0, end_cpu_ns - cursor[SLOT_CPU_NS]) / 1e9
                call_cpu_s = min(wall_s, filter_cpu_s)
        return Death(kind, detail, cursor[SLOT_PHASE], cursor[SLOT_FILTER], cursor[SLOT_ALERT],
                     filter_cpu_s, call_cpu_s)


def _answer(answer: Answer | None, position: int, alert: int, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    if answer is None:
        return {"error": "PPDB queries are not available here"}
    try:
        return {"rows": answer(position, alert, kind, params)}
    except QueryRefused as refusal:
        return {"error": str(refusal)[:MAX_MESSAGE_CHARS]}


def _ended_within(pid: int, timeout_s: float) -> bool:
    """Whether the process ends within the timeout; it is not reaped (see _reap)."""
    deadline = time.monotonic() + timeout_s
    pause = 0.001  # it is usually all but gone: look again soon, then less often
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
                return True
        except ChildProcessError:  # reaped already
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(2 * pause, _POLL_S)


def _await_end(pid: int) -> None:
    """Wait until the (killed or exiting) process has ended, without reaping it."""
    with contextlib.suppress(ChildProcessError):
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


def _cpu_ns(pid: int) -> int | None:
    """CPU time of an unreaped process, in ns (None where /proc does not say)."""
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as stats:
            return int(stats.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _wait(fd: int, event: int, timeout_s: float) -> bool:
    """Whether fd is ready (or closed) within the timeout; poll, as the service may
    hold more descriptors than select() can take."""
    poller = select.poll()
    poller.register(fd, event)
    return bool(poller.poll(max(0, int(timeout_s * 1000))))


class _StallWatch:
    """Notices a cursor that has not moved past the hard per-call limit."""

    def __init__(self, cursor: memoryview | None, sequence: int, limit_s: float) -> None:
        self.cursor = cursor
        self.sequence = sequence
        self.limit_s = limit_s
        self.position: tuple[int, ...] = ()
        self.since = self.checked = time.monotonic()

    def running_for(self, position: tuple[int, ...], now: float) -> float:
        """Wall time since the call at `position` began, as far as the checks tell:
        since it was first seen, or if it never was, since the last check."""
        return now - (self.since if position == self.position else self.checked)

    def stalled(self, now: float) -> bool:
        self.checked = now
        if self.cursor is None:
            return False
        position = tuple(self.cursor)
        if position != self.position:
            self.position, self.since = position, now
            return False
        return (position[SLOT_SEQUENCE] == self.sequence
                and position[SLOT_PHASE] in USER_CODE_PHASES
                and now - self.since > self.limit_s)


def _classify(code: int, limits: SandboxLimits) -> tuple[str, str]:
    if code == EXIT_OUT_OF_MEMORY:
        return "memory", f"ran out of memory (limit {limits.memory_mb} MB per worker)"
    if code == -signal.SIGXCPU:
        return "system", f"exceeded the CPU limit of {limits.cpu_seconds:g} s per batch"
    if code == -signal.SIGKILL:  # not by us: the kernel (out of memory, or CPU hard limit)
        return "system", "got its worker killed by the operating system"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return "crash", f"crashed the interpreter ({name})"
    return "exit", f"made its worker exit unexpectedly (code {code})"
