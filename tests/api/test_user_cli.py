"""The user CLI against a real API server (uvicorn on 127.0.0.1): login, upload, list, activate,
dry-run, backtest. `afs subscribe` needs Kafka: tests/api/test_live.py runs it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import uvicorn
from click.testing import CliRunner

from afs.alerts.codec import AlertCodec
from afs.alerts.simulate import simulate_visit
from afs.api.app import create_app
from afs.archive import AlertArchive
from afs.broker import free_port
from afs.cli import main
from afs.config import Settings

SELECTIVE = '"""Every 40th source."""\n\ndef filter(alert):\n    return alert["diaSourceId"] % 40 == 0\n'


@pytest.fixture(scope="module")
def server(module_database_url: str, tmp_path_factory: pytest.TempPathFactory, settings_for) -> Iterator[Settings]:  # noqa: ANN001
    """The API served by uvicorn in a thread, over an archive holding one simulated visit."""
    tmp = tmp_path_factory.mktemp("cli")
    port = free_port()
    settings = settings_for(module_database_url, tmp, api_url=f"http://127.0.0.1:{port}")
    codec = AlertCodec()
    archive = AlertArchive(settings.archive_dir)
    archive.put_many((a["diaSourceId"], codec.encode(a)) for a in simulate_visit(4, 300, 9, cutouts=False))
    archive.close()
    uv = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    while not uv.started:
        time.sleep(0.05)
    yield settings
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def afs(server: Settings):  # noqa: ANN201
    """Run `afs ...` as a user would, configured by AFS_* variables (a fresh login per module)."""
    env = {"AFS_DATABASE_URL": server.database_url, "AFS_CREDENTIALS_FILE": str(server.credentials_file),
           "AFS_API_URL": server.api_url}

    def run(*args: str, code: int = 0) -> str:
        result = CliRunner().invoke(main, list(args), env=env)
        assert result.exit_code == code, result.output
        return result.output

    token = run("users", "create", "alice").strip()
    assert "logged in to" in run("login", "--token", token) and "as alice (user)" in run("login", "--token", token)
    return run


def test_upload_list_activate(afs, tmp_path: Path) -> None:  # noqa: ANN001
    path = tmp_path / "every_fortieth.py"
    path.write_text(SELECTIVE)
    out = afs("filter", "upload", str(path))
    filter_id = out.split("filter ")[1].split()[0]
    assert "version 1 (every_fortieth)" in out and "dry run on 200 archived alerts: ok" in out
    assert filter_id in afs("filter", "list")
    assert "version 1 active" in afs("filter", "activate", filter_id)
    path.write_text(SELECTIVE.replace("40", "41"))
    assert "version 2" in afs("filter", "upload", str(path), "--id", filter_id, "--activate")
    assert '"alerts_seen": 0' in afs("filter", "stats", filter_id)


def test_upload_refusals_name_the_line_or_the_gate(afs, tmp_path: Path) -> None:  # noqa: ANN001
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\ndef filter(alert):\n    return True\n")
    out = afs("filter", "upload", str(bad), code=1)
    assert f"{bad}: line 1, column 1: importing 'os' is not allowed" in out
    everything = tmp_path / "everything.py"
    everything.write_text("def filter(alert):\n    return True\n")
    out = afs("filter", "upload", str(everything), "--activate", code=1)
    assert "error (409): version 1 matched 100.0% of the reference sample" in out


def test_dry_run_a_file_or_a_stored_filter(afs, tmp_path: Path) -> None:  # noqa: ANN001
    path = tmp_path / "every_fortieth.py"
    path.write_text(SELECTIVE)
    report = json.loads(afs("filter", "dry-run", str(path), "--json"))
    assert report["sample"] == "archived" and report["status"] == "ok" and report["matched"] > 0
    filter_id = afs("filter", "upload", str(path)).split("filter ")[1].split()[0]
    assert "matched" in afs("filter", "dry-run", filter_id)
    assert "error (404)" in afs("filter", "dry-run", "no-such-filter", code=1)


def test_backtest_downloads_the_matches_of_the_time_range(afs, server: Settings, tmp_path: Path) -> None:  # noqa: ANN001
    path = tmp_path / "every_fortieth.py"
    path.write_text(SELECTIVE)
    filter_id = afs("filter", "upload", str(path)).split("filter ")[1].split()[0]
    alerts = simulate_visit(4, 300, 9, cutouts=False)
    want = sorted(a["diaSourceId"] for a in alerts if a["diaSourceId"] % 40 == 0)
    output = tmp_path / "matches.jsonl"
    out = afs("filter", "backtest", filter_id, "--start", "2000-01-01", "--end", "2100-01-01", "--output",
              str(output))
    assert f"{len(want)} matches in 300 alerts" in out
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(r["diaSourceId"] for r in rows) == want
    assert all(r["score"] == 1.0 and r["alertUri"].endswith(f"/v1/alerts/{r['diaSourceId']}") for r in rows)
    parquet = tmp_path / "matches.parquet"
    afs("filter", "backtest", filter_id, "--start", "2000-01-01", "--end", "2100-01-01", "--format", "parquet",
        "--output", str(parquet))
    assert sorted(pq.read_table(parquet).column("diaSourceId").to_pylist()) == want
    empty = afs("filter", "backtest", filter_id, "--start", "2000-01-01", "--end", "2000-01-02", "--output",
                str(tmp_path / "none.jsonl"))
    assert "0 matches in 0 alerts" in empty
