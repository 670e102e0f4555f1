"""SandboxPool: the service's one entry point for running user filters.

Filters are sharded across long-lived worker processes by owner; each batch
goes to every worker once (projected to the alert keys its filters read), the
workers run in parallel, and the results are judged here: a filter that raises
or times out on too many alerts of a batch, or kills its worker too often, is
disabled with the reason and the offending diaSourceId, until enable() or a new
version of its source.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .alert_columns import AlertColumns
from .batch_runner import FilterCode
from .compiler import CompiledFilter, FilterInfo, NeedsCheck, compile_source
from .errors import FilterRejected
from .limits import SandboxLimits
from .results import BatchResult, FilterOutcome
from .shard import FilterTally, Query, ShardRun
from .worker import WorkerProcess

log = logging.getLogger("sandbox")

FILTER_FILENAME = "<filter>"


@dataclass(frozen=True)
class FilterSpec:
    """A filter as the service stores it: its id, its owner and its source."""

    id: str
    owner: str
    source: str


@dataclass
class _FilterState:
    spec: FilterSpec
    compiled: CompiledFilter
    code: FilterCode
    kills: int = 0
    disabled: str | None = None
    offending_id: int | None = None


def assign_shards(owners: Mapping[str, str], workers: int) -> list[list[str]]:
    """Filters per worker: an owner's filters together, so one user's crash stays
    on one worker, unless an owner has more than a fair share (then it is split)."""
    by_owner: dict[str, list[str]] = {}
    for fid in sorted(owners):
        by_owner.setdefault(owners[fid], []).append(fid)
    fair = max(1, -(-len(owners) // workers))
    groups = []
    for owner in sorted(by_owner, key=lambda o: (-len(by_owner[o]), o)):
        fids = by_owner[owner]
        groups += [fids[i:i + fair] for i in range(0, len(fids), fair)]
    shards: list[list[str]] = [[] for _ in range(workers)]
    for group in sorted(groups, key=len, reverse=True):
        min(shards, key=len).extend(group)
    return shards


def _source_key(spec: FilterSpec) -> str:
    return hashlib.sha256(f"{spec.id}\0{spec.source}".encode()).hexdigest()[:32]


def _dia_source_id(alert: Mapping[str, Any]) -> int | None:
    value = alert.get("diaSourceId")
    return value if type(value) is int else None


def _make_empty_root() -> str:
    """An empty, read-only directory for workers to chroot into."""
    path = tempfile.mkdtemp(prefix="afs-sandbox-root-")
    os.chmod(path, 0o555)
    return path


def _shutdown(workers: list[WorkerProcess], executor: ThreadPoolExecutor, empty_root: str) -> None:
    for worker in workers:
        worker.close()
    executor.shutdown(wait=False)
    shutil.rmtree(empty_root, ignore_errors=True)


class SandboxPool:
    """Long-lived sandbox workers and the active set of filters.

    run_batch blocks (call it from a thread); one batch runs at a time.
    """

    def __init__(self, limits: SandboxLimits | None = None, check_needs: NeedsCheck | None = None) -> None:
        """``check_needs`` judges each filter's NEEDS literal (see compile_filter)."""
        self.limits = limits or SandboxLimits()
        self.check_needs = check_needs
        self._empty_root = _make_empty_root()
        self._workers = [WorkerProcess(self.limits, self._empty_root)
                         for _ in range(self.limits.workers)]
        self._executor = ThreadPoolExecutor(self.limits.workers, thread_name_prefix="sandbox")
        self._finalizer = weakref.finalize(self, _shutdown, self._workers, self._executor,
                                           self._empty_root)
        self._filters: dict[str, _FilterState] = {}
        self._shards: list[list[str]] = [[] for _ in self._workers]
        self._batch_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._warned: set[str] = set()
        self._closed = False
        try:
            list(self._executor.map(self._start, self._workers))
        except Exception:
            self.close()
            raise

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill the workers and remove their empty root; the pool is unusable after."""
        with self._batch_lock:
            self._closed = True
            self._finalizer()

    # -- the active set -----------------------------------------------------------

    def set_filters(self, specs: Sequence[FilterSpec]) -> dict[str, FilterRejected]:
        """Replace the active set; returns why each refused filter was refused.

        A filter whose source is unchanged keeps its kill count and disabled state;
        a new version starts afresh. Filters are loaded in their workers here, so
        one that fails while loading is refused too.
        """
        rejections: dict[str, FilterRejected] = {}
        states: dict[str, _FilterState] = {}
        for spec in specs:
            if spec.id in states or spec.id in rejections:
                rejections[spec.id] = FilterRejected("the same filter id appears twice")
                states.pop(spec.id, None)
                continue
            old = self._filters.get(spec.id)
            if old is not None and old.spec.source == spec.source:
                old.spec = spec
                states[spec.id] = old
                continue
            try:
                compiled = compile_source(spec.source, FILTER_FILENAME, self.check_needs)
            except FilterRejected as rejection:
                rejections[spec.id] = rejection
                continue
            reads = None if compiled.info.reads is None else tuple(sorted(compiled.info.reads))
            code = FilterCode(_source_key(spec), FILTER_FILENAME, compiled.code, reads, compiled.info.where)
            states[spec.id] = _FilterState(spec, compiled, code)
        with self._batch_lock:
            with self._state_lock:
                self._filters = states
            self._shards = assign_shards({fid: s.spec.owner for fid, s in states.items()},
                                         len(self._workers))
            for fid, tally in self._run_shards([]).items():
                if tally.load_error is not None:
                    rejections[fid] = FilterRejected(
                        f"the filter failed while loading: {tally.load_error}", tally.load_line)
                elif tally.kills:
                    rejections[fid] = FilterRejected(
                        f"the filter's worker died while loading it: it {tally.kills[-1].detail}")
                else:
                    continue
                with self._state_lock:
                    del self._filters[fid]
            self._shards = [[fid for fid in shard if fid in self._filters] for shard in self._shards]
        return rejections

    def info(self, filter_id: str) -> FilterInfo:
        """What an active filter declared (name, description, READS, NEEDS), as compiled by set_filters."""
        with self._state_lock:
            return self._filters[filter_id].compiled.info

    def enable(self, filter_id: str) -> None:
        """Switch a disabled filter back on and forget its kills."""
        with self._state_lock:
            state = self._filters[filter_id]
            state.disabled = None
            state.offending_id = None
            state.kills = 0

    # -- batches --------------------------------------------------------------------

    def run_batch(self, alerts: Sequence[Mapping[str, Any]],
                  supplements: Mapping[str, Sequence[Any]] | None = None,
                  query: Query | None = None) -> BatchResult:
        """Run every enabled filter over the alerts; outcomes for the whole active set.

        ``supplements``: filter id -> one value (plain data) per alert, which that filter
        alone finds frozen under alert["ppdb"]; pass the same list object to filters that
        share a value, and it is sent once. ``query`` answers filters' helpers.ppdb_query
        calls, in this thread, while the batch runs.
        """
        started = time.monotonic()
        alerts = list(alerts)
        with self._batch_lock:
            tallies = self._run_shards(alerts, supplements, query)
            with self._state_lock:
                outcomes = {fid: self._judge(state, tallies.get(fid), alerts)
                            for fid, state in self._filters.items()}
        return BatchResult(outcomes, time.monotonic() - started)

    def _run_shards(self, alerts: list[Mapping[str, Any]],
                    supplements: Mapping[str, Sequence[Any]] | None = None,
                    query: Query | None = None) -> dict[str, FilterTally]:
        if self._closed:
            raise RuntimeError("the sandbox pool is closed")
        with self._state_lock:
            shards = [[fid for fid in shard if self._filters[fid].disabled is None]
                      for shard in self._shards]
            codes = {fid: state.code for fid, state in self._filters.items()}
            budget = {fid: self.limits.max_kills - state.kills for fid, state in self._filters.items()}
        columns = AlertColumns(alerts, supplements)
        runs = [ShardRun(worker, {fid: codes[fid] for fid in shard}, columns, budget, self.limits, query)
                for worker, shard in zip(self._workers, shards) if shard]
        tallies: dict[str, FilterTally] = {}
        for result in self._executor.map(ShardRun.execute, runs):
            tallies.update(result)
        for worker in self._workers:
            self._warn_about_confinement(worker)
        return tallies

    def _start(self, worker: WorkerProcess) -> None:
        worker.start()
        self._warn_about_confinement(worker)

    def _warn_about_confinement(self, worker: WorkerProcess) -> None:
        for warning in (worker.confinement or {}).get("warnings", ()):
            if warning not in self._warned:
                self._warned.add(warning)
                log.warning("sandbox confinement: %s", warning)

    def _judge(self, state: _FilterState, tally: FilterTally | None,
               alerts: list[Mapping[str, Any]]) -> FilterOutcome:
        """The filter's outcome for this batch, disabling it if it crossed a threshold."""
        if tally is None:
            return FilterOutcome(disabled=state.disabled, offending_id=state.offending_id)
        limits = self.limits
        state.kills += len(tally.kills)
        reason, culprit = None, None
        if tally.load_error is not None:
            reason = f"it failed to load: {tally.load_error}"
        elif tally.kills and state.kills >= limits.max_kills:
            last = tally.kills[-1]
            reason, culprit = f"it killed its sandbox worker {state.kills} times; last time it {last.detail}", last.alert
        elif tally.stopped == "errors" or len(tally.errors) > limits.max_errors:
            last_index, message = max(tally.errors)
            reason = f"it failed on more than {limits.max_errors} alerts of one batch; last error: {message}"
            culprit = last_index
        elif tally.stopped == "timeouts" or len(tally.timeouts) > limits.max_timeouts:
            reason = (f"it ran longer than {limits.per_call_soft_timeout_s:g} s on more than "
                      f"{limits.max_timeouts} alerts of one batch")
            culprit = max(tally.timeouts)
        if reason is not None:
            state.disabled = reason
            state.offending_id = None if culprit is None else _dia_source_id(alerts[culprit])
            log.warning("sandbox disabled filter %s of %s: %s (diaSourceId %s)", state.spec.id,
                        state.spec.owner, reason, state.offending_id)
        if tally.unevaluated:
            log.warning("sandbox did not run filter %s on every alert: %s", state.spec.id,
                        tally.incomplete)
        offending_id = state.offending_id
        if state.disabled is None and tally.kills and tally.kills[-1].alert is not None:
            offending_id = _dia_source_id(alerts[tally.kills[-1].alert])
        return FilterOutcome(
            matches=sorted(tally.matches),
            errors=sorted(tally.errors),
            timeouts=len(tally.timeouts),
            kills=len(tally.kills),
            cpu_seconds=tally.cpu_seconds,
            disabled=state.disabled,
            offending_id=offending_id,
            cpu_histogram=tally.cpu_histogram,
            evaluated=tally.evaluated,
            unevaluated=sum(tally.unevaluated.values()),
            incomplete=tally.incomplete,
        )

