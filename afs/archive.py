"""The full-alert archive: gzipped wire-format packets by diaSourceId (as Rubin's DMTN-183 archive).

Local filesystem layout ``{root}/{id % 1000:03d}/{id}.avro.gz``; writes are atomic (temp file +
rename) so a reader never sees half a packet, and idempotent so redelivered alerts are harmless.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


class AlertArchive:
    def __init__(self, root: Path, compresslevel: int = 1, threads: int = 2) -> None:
        self.root = Path(root)
        self.compresslevel = compresslevel
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="archive")

    def path(self, dia_source_id: int) -> Path:
        return self.root / f"{dia_source_id % 1000:03d}" / f"{dia_source_id}.avro.gz"

    def put(self, dia_source_id: int, wire_bytes: bytes) -> Path:
        target = self.path(dia_source_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = gzip.compress(wire_bytes, compresslevel=self.compresslevel, mtime=0)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
        return target

    def put_many(self, items: Iterable[tuple[int, bytes]], cpu: Counter[str] | None = None) -> int:
        """Archive a batch; zlib releases the GIL, so the threads compress in parallel. ``cpu["archive"]``
        gets the CPU seconds the threads spent."""
        def put(item: tuple[int, bytes]) -> float:
            started = time.thread_time()
            self.put(*item)
            return time.thread_time() - started

        spent = list(self._pool.map(put, items))
        if cpu is not None:
            cpu["archive"] += sum(spent)
        return len(spent)

    def get(self, dia_source_id: int) -> bytes | None:
        try:
            return gzip.decompress(self.path(dia_source_id).read_bytes())
        except FileNotFoundError:
            return None

    def _paths(self) -> list[Path]:
        return list(self.root.glob("[0-9][0-9][0-9]/*.avro.gz"))

    def recent(self, limit: int) -> list[bytes]:
        """The wire bytes of the most recently archived packets, newest first (samples for dry runs)."""
        paths = sorted(self._paths(), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        return [gzip.decompress(p.read_bytes()) for p in paths[:limit]]

    def ids(self) -> list[int]:
        """Every archived diaSourceId, in no particular order (what a backtest walks through)."""
        return [int(p.name.split(".", 1)[0]) for p in self._paths()]

    def __contains__(self, dia_source_id: int) -> bool:
        return self.path(dia_source_id).exists()

    def close(self) -> None:
        self._pool.shutdown()
