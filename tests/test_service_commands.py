"""`afs broker` and `afs demo` as a newcomer runs them: they work, and they leave no process behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from afs.broker import EmbeddedBroker, free_port
from afs.config import Settings

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    live = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            live.add(pid)
    return live


def afs(*args: str, env: dict[str, str], **kwargs: object) -> subprocess.Popen[str]:
    """Start an `afs` command as from a terminal: with Ctrl-C's default disposition, even when this test
    run was launched in the background with SIGINT ignored (an ignored signal stays ignored across exec)."""
    return subprocess.Popen([sys.executable, "-m", "afs.cli", *args], cwd=REPO, env=os.environ | env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs)


def test_broker_command_serves_the_service_topics_until_interrupted() -> None:
    port = free_port()
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{port}")
    proc = afs("broker", env={"AFS_BROKER_PORT": str(port)})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in line

        async def topics() -> dict[str, int]:
            admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs())
            await admin.start()
            try:
                described = await admin.describe_topics(await admin.list_topics())
                return {t["topic"]: len(t["partitions"]) for t in described}
            finally:
                await admin.close()

        found = asyncio.run(topics())
        assert found[settings.alerts_topic] == settings.alerts_partitions
        assert found[settings.lightweight_topic] == settings.output_partitions
        assert settings.dead_letter_topic in found
        children = descendants(proc.pid)
        assert children, "tansu should run as a child"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
        assert not alive(children)
    finally:
        proc.kill()


def test_demo_runs_end_to_end_and_stops_everything(tmp_path: Path) -> None:
    proc = afs("demo", "--visits", "2", "--alerts", "150", env={"AFS_BROKER_PORT": str(free_port())})
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "lightweight packets out:" in out and "matches per filter:" in out
    assert "one lightweight packet" in out and '"alertUri"' in out
    produced = int(out.split("alerts in: ")[1].split()[0])
    lightweight = int(out.split("lightweight packets out: ")[1].split()[0])
    dead = int(out.split("dead-lettered: ")[1].split()[0])
    assert produced == 300 and lightweight + dead == produced
    assert not alive(descendants(proc.pid))


def test_demo_on_ctrl_c_leaves_no_process_behind() -> None:
    proc = afs("demo", "--visits", "50", "--alerts", "200", env={"AFS_BROKER_PORT": str(free_port())})
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    seen: set[int] = set()
    while time.monotonic() < deadline:  # wait until the first visit is through: broker, worker, sandbox up
        line = proc.stdout.readline()
        seen |= descendants(proc.pid)
        if line.startswith("visit "):
            break
    seen |= descendants(proc.pid)
    assert len(seen) >= 3, "expected the broker, the worker and its sandbox processes"
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    time.sleep(0.5)
    assert not alive(seen), f"left behind: {alive(seen)}"


def test_a_worker_whose_broker_is_gone_still_stops_on_sigterm(tmp_path: Path) -> None:
    broker = EmbeddedBroker(free_port()).start()
    settings = Settings(kafka_bootstrap=broker.bootstrap, archive_dir=tmp_path / "archive", ppdb_path=tmp_path / "ppdb.duckdb",
                        database_url=f"sqlite:///{tmp_path}/afs.db", shutdown_grace_s=3)
    log = tmp_path / "worker.log"
    worker = subprocess.Popen([sys.executable, "-m", "afs.cli", "--log-level", "info", "worker"], cwd=REPO,
                              env=os.environ | settings.as_env(), stdout=log.open("wb"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while "worker ready" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        children = descendants(worker.pid)
        broker.stop()
        time.sleep(2)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) in (0, 75)
        time.sleep(0.5)
        assert not alive(children | {worker.pid}), "the worker or its sandbox processes outlived it"
    finally:
        broker.stop()
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
