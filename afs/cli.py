"""`afs`: the one entry point for every command of the service."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Literal

import click

from afs.config import Settings
from afs.logs import configure_logging


def _settings() -> Settings:
    return Settings()


@click.group()
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--log-format", type=click.Choice(["text", "json"]), default=lambda: _settings().log_format,
              help="text, or one JSON object per line with diaSourceId / filter_id fields  [default: AFS_LOG_FORMAT "
                   "or text]")
def main(log_level: str, log_format: Literal["text", "json"]) -> None:
    """Rubin Alert Filtering Service. Configure with AFS_* environment variables."""
    configure_logging(log_level, log_format)


@main.command()
def broker() -> None:
    """Run the embedded Kafka-protocol broker (Tansu) on 127.0.0.1 with the service topics."""
    from afs.broker import run_broker_forever

    run_broker_forever(_settings())


@main.command()
def worker() -> None:
    """Run the stream worker (faust-streaming) against AFS_KAFKA_BOOTSTRAP."""
    from afs.worker import run_worker

    run_worker(_settings(), loglevel=logging.getLevelName(logging.getLogger().level).lower())


@main.command()
@click.option("--visits", default=1, show_default=True, help="Number of visits to produce.")
@click.option("--alerts", "alerts_per_visit", default=1000, show_default=True, help="Alerts per visit.")
@click.option("--seed", default=1, show_default=True)
@click.option("--malformed-rate", default=0.0, show_default=True, help="Fraction of broken messages mixed in.")
@click.option("--cutouts/--no-cutouts", default=True, show_default=True)
def simulate(visits: int, alerts_per_visit: int, seed: int, malformed_rate: float, cutouts: bool) -> None:
    """Produce simulated visits of v11.1 alerts to the alert topic."""
    from afs.produce import simulate as run

    settings = _settings()
    report = asyncio.run(run(settings, visits, alerts_per_visit, seed, malformed_rate, cutouts))
    click.echo(f"produced {report.alerts} alerts and {sum(report.malformed.values())} malformed messages "
               f"({report.bytes / 1e6:.1f} MB) to {settings.alerts_topic}")


@main.command()
@click.option("--visits", default=3, show_default=True)
@click.option("--alerts", "alerts_per_visit", default=500, show_default=True)
@click.option("--seed", default=2, show_default=True, help="2: fields where every predefined filter has matches.")
@click.option("--malformed-rate", default=0.01, show_default=True)
def demo(visits: int, alerts_per_visit: int, seed: int, malformed_rate: float) -> None:
    """Broker + worker + simulated visits, end to end, with a live summary; cleans up after itself."""
    from afs.demo import run_demo

    sys.exit(run_demo(_settings(), visits, alerts_per_visit, seed, malformed_rate))


@main.group("filter")
def filter_group() -> None:
    """Filters: check and test locally (as the worker runs them); upload, activate, dry-run, backtest via the API."""


@filter_group.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def filter_check(path: Path) -> None:
    """Compile FILE in the sandbox: exit 0 with a summary, or 1 with the line and the reason."""
    from sandbox import FilterRejected

    from afs.filter_tool import check, rejection_text

    try:
        info = check(path)
    except FilterRejected as error:
        click.echo(rejection_text(str(path), error), err=True)
        sys.exit(1)
    reads = ", ".join(sorted(info.reads)) if info.reads is not None else "the whole alert"
    click.echo(f"ok: {info.name}: {info.description.splitlines()[0] if info.description else '(no docstring)'}")
    click.echo(f"reads: {reads}")


@filter_group.command("test")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--visits", default=1, show_default=True, help="Simulated visits (one sandbox batch each).")
@click.option("--alerts", "alerts_per_visit", default=1000, show_default=True, help="Alerts per visit.")
@click.option("--seed", default=1, show_default=True)
@click.option("--archived", is_flag=True, help="Use the most recent archived alerts instead of simulated ones.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def filter_test(paths: tuple[Path, ...], visits: int, alerts_per_visit: int, seed: int, archived: bool,
                as_json: bool) -> None:
    """Run FILES together in the sandbox on simulated (or archived) alerts and report per filter."""
    import json

    from afs.filter_tool import format_table, sample_batches, test_filters

    settings = _settings()
    batches = sample_batches(settings, list(paths), visits, alerts_per_visit, seed, archived)
    reports = test_filters(settings, list(paths), batches)
    if as_json:
        click.echo(json.dumps({r.filter: r.as_dict() for r in reports}, indent=2))
    else:
        click.echo(format_table(reports))


@main.group()
def bench() -> None:
    """Benchmarks that print their figures against a baseline measured in the same run."""


@bench.command("visit")
@click.option("--alerts", "n_alerts", default=10_000, show_default=True)
@click.option("--seed", type=int, default=None,
              help="Default: afs.bench.BENCH_SEED, whose fields carry about the sky's average history.")
def bench_visit(n_alerts: int, seed: int | None) -> None:
    """Replay one visit with the predefined filters: decoding alone vs the whole worker path."""
    from afs.bench import BENCH_SEED, StreamCase, run_case

    run_case(_settings(), StreamCase(visits=1, alerts=n_alerts, seed=BENCH_SEED if seed is None else seed))


@bench.command("stream")
@click.option("--visits", default=3, show_default=True)
@click.option("--alerts", "n_alerts", default=10_000, show_default=True, help="Alerts per visit.")
@click.option("--filters", "n_filters", default=100, show_default=True,
              help="Active filters: the predefined ones plus generated variations.")
@click.option("--cadence", "cadence_s", default=0.0, show_default=True,
              help="Seconds between visits (Rubin: ~32); 0 produces each visit when the last is out.")
@click.option("--seed", type=int, default=None,
              help="Default: afs.bench.BENCH_SEED, whose fields carry about the sky's average history.")
@click.option("--workers", default=1, show_default=True, help="Worker processes in one consumer group.")
def bench_stream(visits: int, n_alerts: int, n_filters: int, cadence_s: float, seed: int | None,
                 workers: int) -> None:
    """Replay visits with K filters: alerts/s, wall per visit, produce-to-output latency p50/p99."""
    from afs.bench import BENCH_SEED, StreamCase, run_case

    run_case(_settings(), StreamCase(visits=visits, alerts=n_alerts, filters=n_filters, cadence_s=cadence_s,
                                     seed=BENCH_SEED if seed is None else seed, workers=workers))


@bench.command("targets")
def bench_targets() -> None:
    """Issue #7's cases in one run: 10,000 alerts with 1, 100 and 1,000 filters, and two 40,000-alert
    peak visits at Rubin's cadence; then a table against the targets."""
    from afs.bench import run_targets

    run_targets(_settings())


from afs.api.cli import api  # noqa: E402  (the scientists' API, accounts, user CLI: issue #4)
from afs.client.commands import FILTER_COMMANDS, login, subscribe  # noqa: E402
from afs.control.cli import users  # noqa: E402

main.add_command(api)
main.add_command(users)
main.add_command(login)
main.add_command(subscribe)
for _command in FILTER_COMMANDS:
    filter_group.add_command(_command)

from afs.ppdb.cli import ppdb  # noqa: E402  (the PPDB mirror: issue #5)

main.add_command(ppdb)
from afs.client.query import query  # noqa: E402  (PPDB queries through the API, for scientists)

main.add_command(query)

if __name__ == "__main__":
    main()
