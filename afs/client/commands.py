"""The user CLI over the API: `afs login`, `afs filter upload|list|activate|deactivate|dry-run|backtest|stats`
and `afs subscribe`. (`afs filter check` and `afs filter test` stay local: they need no account.)"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from afs.client.api_client import ApiClient, ApiError, save_credentials
from afs.config import Settings


@contextmanager
def _client() -> Iterator[ApiClient]:
    """The API client for a command; any refusal ends the command with the API's reason."""
    try:
        with ApiClient.from_settings(Settings()) as client:
            yield client
    except ApiError as error:
        click.echo(f"error ({error.status}): {error.detail}", err=True)
        sys.exit(1)


def _dry_run_text(report: dict[str, Any]) -> str:
    cpu = report["cpu_per_alert_us"]["p50"]
    lines = [f"dry run on {report['sample_size']} {report['sample']} alerts: {report['status']}, "
             f"matched {report['matched']} ({report['match_rate']:.2%}), errors {report['errors']}, "
             f"timeouts {report['timeouts']}, kills {report['kills']}, "
             f"cpu/alert {'-' if cpu is None else f'{cpu:.1f} us'}"]
    if report["reason"]:
        lines.append(f"  {report['status']}: {report['reason']}")
    lines += [f"  error: {e}" for e in report["first_errors"]]
    if report["sample_matches"]:
        lines.append(f"  first matches: {', '.join(map(str, report['sample_matches'][:10]))}")
    return "\n".join(lines)


@contextmanager
def _refusals_located(path: Path) -> Iterator[None]:
    """A filter the API refused (422): every problem as ``file: line L, column C: reason``, exit 1."""
    try:
        yield
    except ApiError as error:
        if error.status != 422:
            raise
        for problem in error.problems:
            where = f"line {problem['line']}, column {problem['column']}: " if problem.get("line") else ""
            click.echo(f"{path}: {where}{problem['reason']}", err=True)
        if not error.problems:
            click.echo(f"error ({error.status}): {error.detail}", err=True)
        sys.exit(1)


@click.command("login")
@click.option("--url", default=None, help="The API, e.g. https://afs.example.org. Default: AFS_API_URL.")
@click.option("--token", default=None, help="Default: asked for (not echoed).")
def login(url: str | None, token: str | None) -> None:
    """Check a token against the API and save it (and the URL) for the other commands."""
    settings = Settings()
    url = url or settings.api_url
    token = token or click.prompt("token", hide_input=True)
    try:
        with ApiClient(url, token) as client:
            me = client.call("GET", "/v1/me")
    except ApiError as error:
        click.echo(f"login refused ({error.status}): {error.detail}", err=True)
        sys.exit(1)
    path = save_credentials(settings, url, token)
    click.echo(f"logged in to {url} as {me['name']} ({', '.join(me['scopes'])}); token saved in {path}")


@click.command("upload")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--id", "filter_id", default=None, help="Upload as a new version of this filter.")
@click.option("--activate", is_flag=True, help="Activate the new version if the gate lets it through.")
def upload(path: Path, filter_id: str | None, activate: bool) -> None:
    """Upload FILE (compiled and dry-run by the API), as a new filter or a new version of one."""
    body = {"source": path.read_text(encoding="utf-8"), "name": path.stem}
    with _client() as client:
        with _refusals_located(path):
            made = client.call("PUT", f"/v1/filters/{filter_id}", json=body) if filter_id else \
                client.call("POST", "/v1/filters", json=body)
        flt, version = made["filter"], made["version"]
        click.echo(f"{path}: filter {flt['id']} version {version['version']} ({flt['name']}); topic {flt['topic']}")
        click.echo(_dry_run_text(version["dry_run"]))
        if activate:
            client.call("POST", f"/v1/filters/{flt['id']}/activate", json={"version": version["version"]})
            click.echo(f"activated version {version['version']}")


@click.command("list")
def list_filters() -> None:
    """Your filters and the predefined ones."""
    with _client() as client:
        found = client.call("GET", "/v1/filters")
    click.echo(f"{'id':24s} {'status':9s} {'active':>6s} {'latest':>6s} {'owner':12s} name")
    for f in found:
        active = "-" if f["active_version"] is None else str(f["active_version"])
        click.echo(f"{f['id']:24s} {f['status']:9s} {active:>6s} {f['latest_version']:6d} {f['owner']:12s} {f['name']}")


@click.command("activate")
@click.argument("filter_id")
@click.option("--version", type=int, default=None, help="Default: the latest.")
def activate(filter_id: str, version: int | None) -> None:
    """Run FILTER_ID's version from the next visit on (refused above the match-rate limit)."""
    with _client() as client:
        flt = client.call("POST", f"/v1/filters/{filter_id}/activate", json={"version": version})
    click.echo(f"filter {filter_id}: version {flt['active_version']} active; matches on {flt['topic']}")


@click.command("deactivate")
@click.argument("filter_id")
def deactivate(filter_id: str) -> None:
    """Stop running FILTER_ID."""
    with _client() as client:
        client.call("POST", f"/v1/filters/{filter_id}/deactivate")
    click.echo(f"filter {filter_id}: inactive")


@click.command("dry-run")
@click.argument("target")
@click.option("--version", type=int, default=None, help="For a FILTER_ID: which version (default: the latest).")
@click.option("--json", "as_json", is_flag=True)
def dry_run(target: str, version: int | None, as_json: bool) -> None:
    """Dry-run TARGET on the API's reference sample (recent archived alerts): a FILE (nothing is
    stored) or a stored FILTER_ID. `afs filter test` runs files locally instead."""
    path = Path(target)
    with _client() as client, _refusals_located(path):
        report = client.call("POST", "/v1/dry-run", json={"source": path.read_text(encoding="utf-8"),
                                                          "name": path.stem}) if path.is_file() else \
            client.call("POST", f"/v1/filters/{target}/dry-run", json={"version": version})
    click.echo(json.dumps(report, indent=2) if as_json else _dry_run_text(report))


@click.command("backtest")
@click.argument("filter_id")
@click.option("--start", required=True, help="Alert time from (ISO 8601, UTC unless a zone is given).")
@click.option("--end", required=True, help="...to (exclusive).")
@click.option("--version", type=int, default=None, help="Default: the latest.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "parquet"]), default="jsonl", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to save the matches. Default: backtest-JOB.FORMAT")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Follow progress and download.")
def backtest(filter_id: str, start: str, end: str, version: int | None, fmt: str, output: Path | None,
             wait: bool) -> None:
    """Run FILTER_ID over the archived alerts of a time range in the background; download the matches."""
    with _client() as client:
        job = client.call("POST", f"/v1/filters/{filter_id}/backtests",
                          json={"start": start, "end": end, "version": version})
        click.echo(f"backtest {job['id']} queued (filter {filter_id} version {job['version']})")
        delay = 0.1
        while wait and job["status"] in ("queued", "running"):
            time.sleep(delay)
            delay = min(2.0, delay * 1.5)
            job = client.call("GET", f"/v1/jobs/{job['id']}")
            click.echo(f"  {job['status']}: {job['processed']}/{job['total']} archived alerts, "
                       f"{job['in_range']} in range, {job['matched']} matched", err=True)
        if job["status"] == "failed":
            click.echo(f"backtest {job['id']} failed: {job['error']}", err=True)
            sys.exit(1)
        if job["status"] == "done":
            target = output or Path(f"backtest-{job['id']}.{fmt}")
            client.download(f"/v1/jobs/{job['id']}/results", target, params={"format": fmt})
            click.echo(f"backtest {job['id']}: {job['matched']} matches in {job['in_range']} alerts -> {target}")


@click.command("stats")
@click.argument("filter_id")
def stats(filter_id: str) -> None:
    """What the workers counted for FILTER_ID: seen, matched, delivered, withheld by the cap, errors."""
    with _client() as client:
        got = client.call("GET", f"/v1/filters/{filter_id}/stats")
    click.echo(json.dumps(got, indent=2))


@click.command("subscribe")
@click.argument("filter_id")
@click.option("--from-start", is_flag=True, help="Everything still on the topic, not only new matches.")
@click.option("--resume", "last_event_id", default=None, help="An event id printed by --json: continue after it.")
@click.option("--max", "limit", type=click.IntRange(min=1), default=None, help="Stop after this many matches.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per match, with its eventId.")
def subscribe(filter_id: str, from_start: bool, last_event_id: str | None, limit: int | None,
              as_json: bool) -> None:
    """Print FILTER_ID's matches as they arrive (over HTTP: no Kafka client needed). Ctrl-C stops."""
    with _client() as client:
        try:
            for event in client.events(filter_id, start="earliest" if from_start else "latest",
                                       last_event_id=last_event_id, limit=limit):
                data = event.data
                if as_json:
                    click.echo(json.dumps({"eventId": event.id} | data))
                else:
                    source = data["diaSource"]
                    click.echo(f"{data['diaSourceId']} score={data['score']:g} band={source.get('band')} "
                               f"ra={source.get('ra'):.5f} dec={source.get('dec'):.5f} {data['alertUri']}")
        except KeyboardInterrupt:
            pass


FILTER_COMMANDS = (upload, list_filters, activate, deactivate, dry_run, backtest, stats)
