"""Child processes the service starts (broker, worker): they die with their parent and stop cleanly."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from afs.config import Settings

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` for children: SIGTERM when the parent dies, so nothing is left behind."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: callers still stop their children explicitly
        pass


def stop_process_group(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM the child's process group, then SIGKILL whatever outlived the grace period."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@contextmanager
def afs_process(settings: Settings, log_path: Path, *command: str) -> Iterator[subprocess.Popen[bytes]]:
    """A real `afs COMMAND...` subprocess configured like this one; SIGTERM then SIGKILL on the way out."""
    env = os.environ | settings.as_env()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "afs.cli", "--log-level", "info", *command], env=env,
                                stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
                                start_new_session=True)
    try:
        yield proc
    finally:
        stop_process_group(proc)


def worker_process(settings: Settings, log_path: Path) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """A real `afs worker` subprocess (see afs_process)."""
    return afs_process(settings, log_path, "worker")
