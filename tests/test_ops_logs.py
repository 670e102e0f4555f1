"""Structured logs: AFS_LOG_FORMAT=json (or --log-format json) makes every `afs` command log one JSON object
per line, carrying the ``extra=`` fields (diaSourceId, filter_id, ...) and tracebacks as fields."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from afs.logs import JsonFormatter

REPO = Path(__file__).resolve().parents[1]


def test_a_record_becomes_one_json_object_with_its_extra_fields() -> None:
    logger = logging.getLogger("afs.test")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logger.makeRecord("afs.test", logging.WARNING, __file__, 1, "filter %s disabled", ("f1",),
                                   sys.exc_info(), extra={"filter_id": "f1", "diaSourceId": 170032882292506625})
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["message"] == "filter f1 disabled" and entry["level"] == "WARNING" and entry["logger"] == "afs.test"
    assert entry["filter_id"] == "f1" and entry["diaSourceId"] == 170032882292506625
    assert "ValueError: boom" in entry["exception"] and entry["time"].endswith("+00:00")
    assert not {"args", "msg", "exc_info", "levelno", "pathname"} & set(entry)  # LogRecord internals stay out


def test_the_cli_logs_json_when_asked_by_the_environment_or_the_option() -> None:
    code = "import logging; from afs.cli import main; main.add_command(__import__('click').Command(" \
           "'hello', callback=lambda: logging.getLogger('afs.x').info('hi', extra={'diaSourceId': 7}))); main()"
    for env, args in (({"AFS_LOG_FORMAT": "json"}, []), ({}, ["--log-format", "json"])):
        result = subprocess.run([sys.executable, "-c", code, "--log-level", "info", *args, "hello"], cwd=REPO,
                                env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        (entry,) = [json.loads(line) for line in result.stderr.splitlines()]
        assert entry["message"] == "hi" and entry["diaSourceId"] == 7
    text = subprocess.run([sys.executable, "-c", code, "--log-level", "info", "hello"], cwd=REPO,
                          env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60).stderr
    assert text.rstrip().endswith("INFO afs.x: hi")
