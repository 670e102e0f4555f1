"""A seccomp filter for worker processes: a deny-list of system calls a filter
never needs (networking, new processes, signalling other processes, opening or
changing files, namespaces, mounts, kernel modules, tracing).

Denied calls fail with EPERM, so Python raises an ordinary PermissionError.
Built as a classic BPF program through ctypes; x86_64 only (elsewhere
`install` reports it as unavailable and the worker logs a warning).
"""
from __future__ import annotations

import ctypes
import errno
import platform
import struct

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000

_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_RET_KILL_PROCESS = 0x80000000

_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_RET_K = 0x06

_OFFSET_NR, _OFFSET_ARCH, _OFFSET_ARG0 = 0, 4, 16

# x86_64 numbers.
DENIED_X86_64 = {
    # networking
    "socket": 41, "connect": 42, "accept": 43, "bind": 49, "listen": 50,
    "socketpair": 53, "accept4": 288,
    # new processes and programs
    "clone": 56, "fork": 57, "vfork": 58, "execve": 59, "execveat": 322, "clone3": 435,
    # other processes
    "kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129,
    "rt_tgsigqueueinfo": 297, "ptrace": 101, "process_vm_readv": 310,
    "process_vm_writev": 311, "pidfd_open": 434, "pidfd_send_signal": 424,
    "pidfd_getfd": 438, "kcmp": 312,
    # files
    "open": 2, "openat": 257, "openat2": 437, "creat": 85, "open_by_handle_at": 304,
    "name_to_handle_at": 303, "truncate": 76, "rename": 82, "mkdir": 83, "rmdir": 84,
    "link": 86, "unlink": 87, "symlink": 88, "chmod": 90, "fchmod": 91, "chown": 92,
    "fchown": 93, "lchown": 94, "mknod": 133, "mkdirat": 258, "mknodat": 259,
    "fchownat": 260, "unlinkat": 263, "renameat": 264, "linkat": 265, "symlinkat": 266,
    "fchmodat": 268, "renameat2": 316, "memfd_create": 319,
    # identity, namespaces, mounts, kernel
    "setuid": 105, "setgid": 106, "setreuid": 113, "setregid": 114, "setgroups": 116,
    "setresuid": 117, "setresgid": 119, "capset": 126, "chroot": 161, "pivot_root": 155,
    "mount": 165, "umount2": 166, "unshare": 272, "setns": 308, "init_module": 175,
    "finit_module": 313, "delete_module": 176, "kexec_load": 246, "bpf": 321,
    "perf_event_open": 298, "userfaultfd": 323, "keyctl": 250, "add_key": 248,
    "request_key": 249, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "personality": 135,
}
_PRLIMIT64 = 302  # allowed only on the calling process itself (pid 0)


class _Program:
    """Classic BPF with forward jumps to named labels."""

    def __init__(self) -> None:
        self.code: list[tuple[int, int | str, int | str, int]] = []
        self.labels: dict[str, int] = {}

    def add(self, op: int, k: int, jt: int | str = 0, jf: int | str = 0) -> None:
        self.code.append((op, jt, jf, k))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def assemble(self) -> bytes:
        out = bytearray()
        for index, (op, jt, jf, k) in enumerate(self.code):
            jumps = [self.labels[j] - index - 1 if isinstance(j, str) else j for j in (jt, jf)]
            if not all(0 <= j <= 255 for j in jumps):
                raise ValueError("seccomp jump out of range")
            out += struct.pack("=HBBI", op, jumps[0], jumps[1], k)
        return bytes(out)


def _program() -> bytes:
    p = _Program()
    p.add(_LD_W_ABS, _OFFSET_ARCH)
    p.add(_JEQ_K, _AUDIT_ARCH_X86_64, 0, "kill")
    p.add(_LD_W_ABS, _OFFSET_NR)
    p.add(_JGE_K, _X32_SYSCALL_BIT, "deny", 0)
    for number in sorted(set(DENIED_X86_64.values())):
        p.add(_JEQ_K, number, "deny", 0)
    p.add(_JEQ_K, _PRLIMIT64, 0, "allow")
    p.add(_LD_W_ABS, _OFFSET_ARG0)
    p.add(_JEQ_K, 0, 0, "deny")
    p.add(_LD_W_ABS, _OFFSET_ARG0 + 4)
    p.add(_JEQ_K, 0, "allow", "deny")
    p.label("allow")
    p.add(_RET_K, _RET_ALLOW)
    p.label("deny")
    p.add(_RET_K, _RET_ERRNO | errno.EPERM)
    p.label("kill")
    p.add(_RET_K, _RET_KILL_PROCESS)
    return p.assemble()


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install() -> str | None:
    """Install the filter on this process; None on success, else why not."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return f"seccomp filter not available on {platform.system()} {platform.machine()}"
    code = _program()
    buffer = ctypes.create_string_buffer(code, len(code))
    program = _SockFprog(len(code) // 8, ctypes.addressof(buffer))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return f"prctl(PR_SET_NO_NEW_PRIVS) failed: {errno.errorcode.get(ctypes.get_errno())}"
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0) != 0:
        return f"prctl(PR_SET_SECCOMP) failed: {errno.errorcode.get(ctypes.get_errno())}"
    return None
