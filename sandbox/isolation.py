"""Operating-system confinement a worker applies to itself before running any filter.

In order: die with the parent; drop any environment; leave the network (a new, empty network
namespace); leave the file system (chroot into an empty directory); drop root
(to nobody); resource limits (RLIMIT_AS, RLIMIT_CPU, RLIMIT_FSIZE=0, small
RLIMIT_NOFILE and RLIMIT_NPROC, no core dumps); no new privileges; a seccomp
deny-list. Each step that the platform refuses is reported, never skipped
silently: the parent logs it as a warning.

The worker has already been started by the parent with an empty environment,
closed file descriptors and a fresh interpreter (python -I).
"""
from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
from dataclasses import dataclass, field

from . import seccomp

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1

NOFILE_LIMIT = 8  # stdin, stdout, stderr and a few spare
NPROC_LIMIT = 0   # a worker never starts a process or thread


@dataclass(frozen=True)
class ConfinementConfig:
    """What the parent asks a worker to apply to itself."""

    memory_mb: int
    empty_root: str | None
    run_as_uid: int = 65534
    run_as_gid: int = 65534


@dataclass
class ConfinementReport:
    """What actually took effect, sent to the parent as JSON."""

    network: str = "none"  # "netns", "userns+netns" or "none"
    filesystem: str = "none"  # "chroot" or "none"
    uid: int = -1
    seccomp: bool = False
    rlimits: bool = False
    warnings: list[str] = field(default_factory=list)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _unshare(flags: int) -> int:
    return 0 if _libc().unshare(flags) == 0 else ctypes.get_errno()


def _leave_network(report: ConfinementReport) -> bool:
    """A new network namespace has only a loopback device, and it is down."""
    if _unshare(_CLONE_NEWNET) == 0:
        report.network = "netns"
        return False
    # Unprivileged: a user namespace gives the rights to make the others; a new
    # mount namespace along with it allows the chroot below.
    code = _unshare(_CLONE_NEWUSER | _CLONE_NEWNET | _CLONE_NEWNS)
    if code == 0:
        report.network = "userns+netns"
        return True
    report.warnings.append(f"no network namespace ({errno.errorcode.get(code, code)}): "
                           "workers rely on the seccomp filter alone to stay off the network")
    return False


def _leave_filesystem(config: ConfinementConfig, report: ConfinementReport) -> None:
    if config.empty_root is None:
        report.warnings.append("no empty directory to chroot into: workers can see the file "
                               "system (filters still cannot open files)")
        return
    try:
        os.chroot(config.empty_root)
        os.chdir("/")
        report.filesystem = "chroot"
    except OSError as exc:
        report.warnings.append(f"chroot failed ({exc.strerror}): workers can see the file "
                               "system (filters still cannot open files)")


def _drop_root(config: ConfinementConfig, report: ConfinementReport) -> None:
    if os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(config.run_as_gid, config.run_as_gid, config.run_as_gid)
        os.setresuid(config.run_as_uid, config.run_as_uid, config.run_as_uid)
    report.uid = os.geteuid()
    if report.uid == 0:
        report.warnings.append("workers run as root")


def _set_limits(config: ConfinementConfig, report: ConfinementReport) -> None:
    memory = config.memory_mb * 1024 * 1024
    limits = [
        (resource.RLIMIT_AS, (memory, memory)),
        (resource.RLIMIT_FSIZE, (0, 0)),
        (resource.RLIMIT_CORE, (0, 0)),
        (resource.RLIMIT_NOFILE, (NOFILE_LIMIT, NOFILE_LIMIT)),
        (resource.RLIMIT_NPROC, (NPROC_LIMIT, NPROC_LIMIT)),
    ]
    try:
        for which, values in limits:
            resource.setrlimit(which, values)
        report.rlimits = True
    except (OSError, ValueError) as exc:
        report.warnings.append(f"resource limits incomplete: {exc}")


def set_cpu_budget(seconds: float) -> None:
    """RLIMIT_CPU for the next batch: what this worker has used so far plus `seconds`.

    Past it the kernel sends SIGXCPU, which ends the worker.
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime + seconds) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (soft, resource.RLIM_INFINITY))


def confine(config: ConfinementConfig) -> ConfinementReport:
    """Apply every layer this platform allows; report what took effect."""
    report = ConfinementReport()
    _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    os.environ.clear()  # the parent starts workers with none; make sure of it
    in_user_namespace = _leave_network(report)
    _leave_filesystem(config, report)
    if not in_user_namespace:
        _drop_root(config, report)
    else:
        report.uid = os.geteuid()
    _set_limits(config, report)
    failure = seccomp.install()
    if failure is None:
        report.seccomp = True
    else:
        report.warnings.append(failure)
    return report
