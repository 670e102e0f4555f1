"""Operating-system confinement, checked from outside on real workers and from
inside with unrestricted code (as if a filter had escaped RestrictedPython)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sandbox import SandboxLimits, SandboxPool

ROOT = Path(__file__).resolve().parents[2]
requires_linux_root = pytest.mark.skipif(
    sys.platform != "linux" or os.geteuid() != 0,
    reason="full confinement (netns, chroot, uid change) is exercised when tests run as root")


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


@requires_linux_root
def test_workers_are_confined(planted_secrets: tuple[str, str, Path]) -> None:
    """Seen from the parent through /proc: what each live worker actually runs with."""
    with SandboxPool(SandboxLimits(workers=2, memory_mb=700)) as pool:
        for worker in pool._workers:
            assert worker.confinement == {"network": "netns", "filesystem": "chroot",
                                          "uid": 65534, "seccomp": True, "rlimits": True,
                                          "warnings": []}
            pid = worker.pid
            assert Path(f"/proc/{pid}/environ").read_bytes() == b""
            status = _status(pid)
            assert status["Uid"].split()[0] == "65534" and status["Seccomp"].strip() == "2"
            assert status["NoNewPrivs"].strip() == "1"
            assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
            assert os.readlink(f"/proc/{pid}/root") == pool._empty_root
            assert os.listdir(pool._empty_root) == []
            limits = Path(f"/proc/{pid}/limits").read_text()
            assert "Max file size             0" in limits
            assert f"Max address space         {700 * 1024 * 1024}" in limits
            # stdin, stdout, stderr and the shared progress cursor, nothing else
            assert sorted(os.listdir(f"/proc/{pid}/fd")) == ["0", "1", "2", "3"]
            assert os.readlink(f"/proc/{pid}/fd/3").startswith("/memfd:afs-sandbox-cursor")


ESCAPED = textwrap.dedent('''
    import json, os, socket, sys
    sys.path.insert(0, {root!r})
    from sandbox.isolation import ConfinementConfig, confine
    report = confine(ConfinementConfig(memory_mb=512, empty_root={empty!r}))
    results = {{"warnings": report.warnings}}

    def attempt(name, action):
        try:
            results[name] = repr(action())
        except BaseException as exc:
            results[name] = "refused: " + type(exc).__name__

    def read_secret():
        with open({secret!r}) as f:
            return f.read()

    def write_file():
        with open("/tmp/escaped", "w") as f:
            return f.write("x")

    attempt("secret file", read_secret)
    attempt("write file", write_file)
    attempt("environment", lambda: dict(os.environ))
    attempt("proc environ", lambda: open("/proc/1/environ").read())
    attempt("network", lambda: socket.create_connection(("1.1.1.1", 53), timeout=2))
    attempt("socket", lambda: socket.socket())
    attempt("fork", os.fork)
    attempt("exec", lambda: os.execv("/bin/sh", ["sh"]))
    attempt("kill parent", lambda: os.kill(os.getppid(), 0))
    attempt("chroot out", lambda: os.chroot("/"))
    attempt("setuid root", lambda: os.setuid(0))
    attempt("listdir", lambda: os.listdir("/"))
    sys.stdout.write(json.dumps(results))
''')


@requires_linux_root
def test_escaped_code_reaches_nothing(tmp_path: Path, planted_secrets: tuple[str, str, Path]) -> None:
    """Plain Python (no RestrictedPython) after confine(): no file, no env, no network."""
    file_secret, env_secret, secret_path = planted_secrets
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o555)
    script = ESCAPED.format(root=str(ROOT), empty=str(empty), secret=str(secret_path))
    output = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True,
                            timeout=60, env={"AFS_SANDBOX_TEST_SECRET": env_secret}, check=True)
    results = json.loads(output.stdout)
    assert file_secret not in output.stdout.decode() and env_secret not in output.stdout.decode()
    assert results.pop("warnings") == []
    assert results.pop("environment") == "{}"
    for name, outcome in results.items():
        assert outcome.startswith("refused"), (name, outcome)
    assert not Path("/tmp/escaped").exists()
