"""`afs filter check|test`: a scientist's edit-and-test loop, run exactly as the worker runs filters."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sandbox import FilterInfo, FilterRejected, FilterSpec, compile_filter

from afs.alerts.codec import AlertCodec
from afs.archive import AlertArchive
from afs.config import Settings
from afs.filtering import CUTOUT_KEYS, FilterEngine, sandbox_limits

CLI_OWNER = "cli"


def rejection_text(path: str, error: FilterRejected) -> str:
    """Every problem, one per line, as ``path: line L, column C: reason``."""
    return "\n".join(f"{path}: {problem}" for problem in error.problems)


def check(path: Path) -> FilterInfo:
    """Compile one filter file; raises FilterRejected with the line and the reason."""
    return compile_filter(path.read_text(encoding="utf-8"), path.name)


@dataclass
class FilterReport:
    """What `afs filter test` says about one filter."""

    filter: str
    status: str = "ok"  # ok | rejected | disabled
    reason: str | None = None
    offending_dia_source_id: int | None = None
    alerts_seen: int = 0
    matched: int = 0
    errors: int = 0
    timeouts: int = 0
    kills: int = 0
    cpu_seconds: float = 0.0
    batch_cpu_per_alert_us: list[float] = field(default_factory=list)
    first_errors: list[str] = field(default_factory=list)

    @property
    def match_rate(self) -> float:
        return self.matched / self.alerts_seen if self.alerts_seen else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        per_alert = data.pop("batch_cpu_per_alert_us")
        data["match_rate"] = self.match_rate
        data["cpu_per_alert_us"] = {"p50": _quantile(per_alert, 0.5), "p99": _quantile(per_alert, 0.99)}
        return data


def _quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def sample_batches(settings: Settings, paths: Sequence[Path], visits: int, alerts_per_visit: int, seed: int,
                   archived: bool) -> Iterable[list[dict[str, Any]]]:
    """One batch per simulated visit, or the most recent archived alerts as one batch."""
    if archived:
        codec = AlertCodec(max_bytes=settings.max_alert_bytes)
        archive = AlertArchive(settings.archive_dir)
        return [[codec.decode(m).record for m in archive.recent(visits * alerts_per_visit)]]
    from afs.alerts.simulate import simulate_visits

    reads: set[str] = set()
    for path in paths:
        try:
            reads |= check(path).reads or set()
        except FilterRejected:
            pass
    return (alerts for _, alerts in simulate_visits(visits, alerts_per_visit, seed, cutouts=bool(reads & CUTOUT_KEYS)))


def test_filters(settings: Settings, paths: Sequence[Path], batches: Iterable[list[dict[str, Any]]]) -> list[FilterReport]:
    """Run the filters together in one sandbox pool over the batches, as the worker would."""
    specs = [FilterSpec(id=p.stem, owner=CLI_OWNER, source=p.read_text(encoding="utf-8")) for p in paths]
    reports = {s.id: FilterReport(s.id) for s in specs}
    engine = FilterEngine(sandbox_limits(settings))
    try:
        for fid, error in engine.activate(specs).items():
            reports[fid].status, reports[fid].reason = "rejected", rejection_text(f"{fid}.py", error)
        for alerts in batches:
            result = engine.run(alerts)
            for fid, outcome in (result.outcomes.items() if result else ()):
                report = reports[fid]
                if outcome.disabled is None or report.status == "ok":
                    report.alerts_seen += len(alerts)
                report.matched += len(outcome.matches)
                report.errors += len(outcome.errors)
                report.timeouts += outcome.timeouts
                report.kills += outcome.kills
                report.cpu_seconds += outcome.cpu_seconds
                report.batch_cpu_per_alert_us.append(outcome.cpu_seconds / len(alerts) * 1e6)
                report.first_errors.extend(f"alert {alerts[i]['diaSourceId']}: {message}"
                                           for i, message in outcome.errors[: 3 - len(report.first_errors)])
                if outcome.disabled:
                    report.status, report.reason = "disabled", outcome.disabled
                    report.offending_dia_source_id = outcome.offending_id
    finally:
        engine.close()
    return list(reports.values())


def format_table(reports: Sequence[FilterReport]) -> str:
    lines = [f"{'filter':28s} {'status':9s} {'seen':>7s} {'matched':>8s} {'rate':>7s} {'errors':>7s} "
             f"{'timeouts':>8s} {'kills':>6s} {'cpu/alert p50':>14s} {'p99':>9s}"]
    for r in reports:
        cpu = r.as_dict()["cpu_per_alert_us"]
        fmt = lambda v: "-" if v is None else f"{v:.1f} us"  # noqa: E731
        lines.append(f"{r.filter:28s} {r.status:9s} {r.alerts_seen:7d} {r.matched:8d} {r.match_rate:7.2%} "
                     f"{r.errors:7d} {r.timeouts:8d} {r.kills:6d} {fmt(cpu['p50']):>14s} {fmt(cpu['p99']):>9s}")
        if r.reason:
            suffix = f" (diaSourceId {r.offending_dia_source_id})" if r.offending_dia_source_id else ""
            lines.append(f"  {r.status}: {r.reason}{suffix}")
        lines.extend(f"  error: {e}" for e in r.first_errors)
    return "\n".join(lines)
