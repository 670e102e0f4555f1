"""`afs filter check` and `afs filter test`, through the real console entry point and sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from afs.cli import main

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "filters").glob("*.py")) + sorted((REPO / "examples" / "filters").glob("*.py"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_check_accepts_every_shipped_filter(path: Path) -> None:
    result = CliRunner().invoke(main, ["filter", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: ")


def test_check_names_every_problem_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\ndef filter(alert):\n    return alert.__class__\n")
    result = CliRunner().invoke(main, ["filter", "check", str(bad)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0].startswith(f"{bad}: line 1") and "'os'" in lines[0]
    assert lines[1].startswith(f"{bad}: line 4") and "__class__" in lines[1]


def test_test_reports_each_filter_run_together(tmp_path: Path) -> None:
    (tmp_path / "everything.py").write_text("def filter(alert):\n    return True\n")
    (tmp_path / "spin.py").write_text("def filter(alert):\n    while True:\n        pass\n")
    (tmp_path / "broken.py").write_text("def filter(alert):\n    return eval('1')\n")
    paths = [str(REPO / "filters" / "bright_reliable.py"), *(str(tmp_path / n) for n in
                                                           ("everything.py", "spin.py", "broken.py"))]
    result = CliRunner().invoke(main, ["filter", "test", *paths, "--alerts", "200", "--visits", "2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["everything"]["status"] == "ok"
    assert report["everything"]["matched"] == report["everything"]["alerts_seen"] == 400
    assert report["everything"]["match_rate"] == 1.0
    cpu = report["bright_reliable"]["cpu_per_alert_us"]
    assert 0 < cpu["p50"] <= cpu["p99"] < 100_000
    assert report["everything"]["unevaluated"] == 0
    assert report["bright_reliable"]["status"] == "ok" and report["bright_reliable"]["alerts_seen"] == 400
    assert report["spin"]["status"] == "disabled" and report["spin"]["timeouts"] > 0
    assert report["spin"]["offending_dia_source_id"] is not None
    assert report["broken"]["status"] == "rejected" and "eval" in report["broken"]["reason"]


def test_the_readme_example_filter_compiles_and_runs(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Writing a filter"):]
    source = section[section.index("```python\n") + 10: section.index("```\n", section.index("```python"))]
    (tmp_path / "readme_filter.py").write_text(source)
    result = CliRunner().invoke(main, ["filter", "test", str(tmp_path / "readme_filter.py"), "--alerts", "300",
                                       "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])["readme_filter"]
    assert report["status"] == "ok" and report["errors"] == 0 and report["alerts_seen"] == 300
