"""Upload checks: compile in the sandbox, then a dry run on the reference sample.

The reference sample is the most recent archived alerts (simulated ones while the archive is
empty). Its match rate is stored with the version and is what the activation gate judges, so the
figure a user saw at upload is the figure the gate uses.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from sandbox import FilterInfo, FilterRejected, FilterSpec

from afs.config import Settings
from afs.control.errors import ControlError
from afs.filter_tool import problem_list, run_filters, sample_batches
from afs.filtering import CUTOUT_KEYS, check_filter

SIMULATED_SEED = 1
ARCHIVE_SAMPLE_TTL_S = 60.0
_RUNNING = threading.BoundedSemaphore(2)  # each dry run starts its own sandbox pool: bound the processes


class Rejected(ControlError):
    """The source does not compile or does not load: every problem with its line, column and reason."""


@dataclass(frozen=True)
class ReferenceSample:
    kind: str  # archived | simulated
    alerts: list[dict[str, Any]]


class ReferenceSamples:
    """The sample, cached: simulated ones are deterministic, archived ones are re-read after a minute."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._archived: tuple[float, list[dict[str, Any]]] | None = None
        self._simulated: dict[bool, list[dict[str, Any]]] = {}

    def get(self, cutouts: bool) -> ReferenceSample:
        n = self.settings.dry_run_alerts
        with self._lock:
            if self._archived is None or time.monotonic() - self._archived[0] > ARCHIVE_SAMPLE_TTL_S:
                recent = next(iter(sample_batches(self.settings, [], 1, n, SIMULATED_SEED, archived=True)))
                self._archived = (time.monotonic(), recent)
            if self._archived[1]:
                return ReferenceSample("archived", self._archived[1])
            if cutouts not in self._simulated:
                from afs.alerts.simulate import simulate_visit

                self._simulated[cutouts] = simulate_visit(1, n, SIMULATED_SEED, cutouts=cutouts)
            return ReferenceSample("simulated", self._simulated[cutouts])


def compile_upload(source: str, name: str | None) -> FilterInfo:
    """The filter's name, description and READS; its name is NAME in the source, else ``name``."""
    try:
        return check_filter(source, name or "unnamed")
    except FilterRejected as error:
        raise Rejected(f"the filter was refused: {error}", problems=problem_list(error)) from None


def dry_run(settings: Settings, samples: ReferenceSamples, source: str, info: FilterInfo) -> dict[str, Any]:
    """What the filter does on the reference sample, run in the sandbox exactly as the worker runs it."""
    sample = samples.get(cutouts=bool((info.reads or frozenset()) & CUTOUT_KEYS))
    size = settings.batch_size
    batches = [sample.alerts[i:i + size] for i in range(0, len(sample.alerts), size)]
    with _RUNNING:
        report = run_filters(settings, [FilterSpec("filter", "dry-run", source)], batches)[0]
    if report.status == "rejected":
        raise Rejected(f"the filter was refused: {report.reason}", problems=report.problems)
    result = report.as_dict()
    del result["filter"], result["problems"]
    return {"sample": sample.kind, "sample_size": len(sample.alerts), **result}
