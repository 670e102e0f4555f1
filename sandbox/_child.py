"""Entry point of a worker process: `python -I -c <boot> <cursor fd>`, started by
sandbox.worker with an empty environment.

It reads its configuration, confines itself (sandbox.isolation), reports what
took effect, then serves run requests until its input closes. Running out of
memory ends the process (with a distinct exit code): the memory may be held by
a filter's state, and only a fresh process reliably gets it back.
"""
from __future__ import annotations

import io
import mmap
import os
import pickle
import sys
from dataclasses import asdict
from typing import Any

from .batch_runner import BatchRunner, RunRequest
from .isolation import ConfinementConfig, confine
from .protocol import (
    CURSOR_SLOTS,
    EXIT_OUT_OF_MEMORY,
    PHASE_RECEIVING,
    SLOT_PHASE,
    TO_WORKER_HEADER,
    to_parent,
)


class _Channel:
    def __init__(self) -> None:
        self.reader = io.FileIO(0, "rb", closefd=False)

    def receive(self) -> bytearray | None:
        header = self._read_exactly(TO_WORKER_HEADER.size)
        if header is None:
            return None
        (length,) = TO_WORKER_HEADER.unpack(header)
        return self._read_exactly(length)

    def _read_exactly(self, size: int) -> bytearray | None:
        buffer = bytearray(size)
        view = memoryview(buffer)
        while view:
            count = self.reader.readinto(view)
            if not count:
                return None
            view = view[count:]
        return buffer

    @staticmethod
    def send(message: dict[str, Any]) -> None:
        data = memoryview(to_parent(message))
        while data:
            data = data[os.write(1, data):]


def _serve(cursor_fd: int) -> None:
    channel = _Channel()
    settings = channel.receive()
    if settings is None:
        return
    config: dict[str, Any] = pickle.loads(settings)
    shared = mmap.mmap(cursor_fd, CURSOR_SLOTS * 8)
    os.close(cursor_fd)
    cursor = memoryview(shared).cast("q")
    report = confine(ConfinementConfig(**config["confinement"]))
    channel.send({"type": "ready", "confinement": asdict(report)})
    runner = BatchRunner(cursor, channel.send, config["soft_timeout_s"],
                         config["max_errors"], config["max_timeouts"], channel.receive)
    while True:
        header = channel.receive()
        if header is None:
            return
        cursor[SLOT_PHASE] = PHASE_RECEIVING
        request: RunRequest = pickle.loads(header)
        columns = [channel.receive() for _ in request.keys]
        if any(column is None for column in columns):
            return
        runner.run(request, columns)  # type: ignore[arg-type]


def main() -> None:
    try:
        _serve(int(sys.argv[1]))
    except MemoryError:
        os._exit(EXIT_OUT_OF_MEMORY)
    os._exit(0)
