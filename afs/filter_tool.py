"""`afs filter check|test`: a scientist's edit-and-test loop, run exactly as the worker runs filters."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sandbox import FilterInfo, FilterRejected, FilterSpec, histogram_quantile, merge_histograms

from afs.alerts.codec import AlertCodec
from afs.archive import AlertArchive
from afs.config import Settings
from afs.filtering import CUTOUT_KEYS, FilterEngine, check_filter, sandbox_limits

CLI_OWNER = "cli"
SAMPLE_MATCHES = 100


def rejection_text(path: str, error: FilterRejected) -> str:
    """Every problem, one per line, as ``path: line L, column C: reason``."""
    return "\n".join(f"{path}: {problem}" for problem in error.problems)


def check(path: Path) -> FilterInfo:
    """Compile one filter file; raises FilterRejected with the line and the reason."""
    return check_filter(path.read_text(encoding="utf-8"), path.name)


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
    cpu_histogram: tuple[int, ...] = ()  # per-call CPU, the sandbox's log-spaced bins
    unevaluated: int = 0  # alerts the sandbox could not run the filter on (never silently)
    incomplete: list[str] = field(default_factory=list)
    first_errors: list[str] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)  # why it was rejected: line, column, reason
    sample_matches: list[int] = field(default_factory=list)  # the first SAMPLE_MATCHES matched diaSourceIds

    @property
    def match_rate(self) -> float:
        return self.matched / self.alerts_seen if self.alerts_seen else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["cpu_histogram"]
        data["match_rate"] = self.match_rate
        data["cpu_per_alert_us"] = {"p50": self.cpu_quantile_us(0.5), "p99": self.cpu_quantile_us(0.99)}
        return data

    def cpu_quantile_us(self, q: float) -> float | None:
        """Upper edge of the histogram bin holding quantile q of the per-call CPU; None before any call."""
        return histogram_quantile(self.cpu_histogram, q) * 1e6 if sum(self.cpu_histogram) else None


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
    """Run the filter files together in one sandbox pool over the batches, as the worker would."""
    specs = [FilterSpec(id=p.stem, owner=CLI_OWNER, source=p.read_text(encoding="utf-8")) for p in paths]
    return run_filters(settings, specs, batches)


def problem_list(error: FilterRejected) -> list[dict[str, Any]]:
    return [{"line": p.line, "column": p.column, "reason": p.reason} for p in error.problems]


def run_filters(settings: Settings, specs: Sequence[FilterSpec],
                batches: Iterable[list[dict[str, Any]]]) -> list[FilterReport]:
    """Run the filters together in one sandbox pool over the batches, as the worker would."""
    reports = {s.id: FilterReport(s.id) for s in specs}
    engine = FilterEngine(sandbox_limits(settings))
    try:
        for fid, error in engine.activate(specs).items():
            reports[fid].status, reports[fid].reason = "rejected", rejection_text(f"{fid}.py", error)
            reports[fid].problems = problem_list(error)
        for alerts in batches:
            result = engine.run(alerts)
            for fid, outcome in (result.outcomes.items() if result else ()):
                report = reports[fid]
                if outcome.disabled is None or report.status == "ok":
                    report.alerts_seen += len(alerts)
                report.matched += len(outcome.matches)
                report.sample_matches.extend(alerts[i]["diaSourceId"] for i, _ in
                                             outcome.matches[: SAMPLE_MATCHES - len(report.sample_matches)])
                report.errors += len(outcome.errors)
                report.timeouts += outcome.timeouts
                report.kills += outcome.kills
                report.cpu_seconds += outcome.cpu_seconds
                report.cpu_histogram = merge_histograms(report.cpu_histogram, outcome.cpu_histogram)
                report.unevaluated += outcome.unevaluated
                if outcome.incomplete:
                    report.incomplete.append(outcome.incomplete)
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
        fmt = lambda v: "-" if v is None else f"<{v:.1f} us"  # noqa: E731
        lines.append(f"{r.filter:28s} {r.status:9s} {r.alerts_seen:7d} {r.matched:8d} {r.match_rate:7.2%} "
                     f"{r.errors:7d} {r.timeouts:8d} {r.kills:6d} {fmt(cpu['p50']):>14s} {fmt(cpu['p99']):>9s}")
        if r.reason:
            suffix = f" (diaSourceId {r.offending_dia_source_id})" if r.offending_dia_source_id else ""
            lines.append(f"  {r.status}: {r.reason}{suffix}")
        lines.extend(f"  error: {e}" for e in r.first_errors)
        lines.extend(f"  not evaluated: {note}" for note in r.incomplete)
    return "\n".join(lines)
