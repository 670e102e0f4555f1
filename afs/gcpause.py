"""Pausing the cyclic garbage collector around bulk building of acyclic data."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Building ~10^5-10^6 small acyclic dicts or rows (a simulated visit, a batch's PPDB rows) triggers
    full collections that find nothing and cost more than the building itself; pause them meanwhile."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
